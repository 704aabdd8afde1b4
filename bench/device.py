"""Pick the training device: CUDA when present (or as asked), else CPU."""

from __future__ import annotations

import torch

from bench.errors import BenchError


def pick_device(requested: str | None = None) -> torch.device:
    """``None``/"auto" -> cuda if available else cpu; otherwise validate what was asked."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise BenchError(f"--device {requested!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type not in ("cpu", "mps"):
        raise BenchError(f"--device {requested!r}: expected auto, cpu, cuda or cuda:N")
    return device


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type
