"""Pick the training device: CUDA when present (or as asked), else CPU."""

from __future__ import annotations

from typing import Any

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


def resolve_train(train: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A cell's declared training settings with ``auto`` replaced by what runs on ``device``.

    The declared settings are the cell's identity; what they resolved to is recorded with its
    result (``precision_used``, ``channels_last_used``), so one cell trained on a GPU and on a
    CPU is the same cell with two provenances.
    """
    out = dict(train)
    if out["precision"] == "auto":
        out["precision"] = "bf16" if device.type == "cuda" else "fp32"
    if out["precision"] in ("bf16", "fp16") and device.type != "cuda":
        raise BenchError(f"precision {out['precision']!r} needs a CUDA device; use --set train.precision=fp32 "
                         f"(or auto) on {device.type}")
    if out["channels_last"] == "auto":
        # faster for conv nets on CUDA and on x86 CPUs alike (docs/benchmarks.md); no-op for 2-D inputs
        out["channels_last"] = "on"
    return out
