"""The planner's check of one architecture: built on the meta device, it must map a batch to ``[B, K]`` logits.

On the meta device a model has shapes but no memory and no initialisation cost, so every
architecture of a grid is checked at each of its datasets' input shapes before any cell trains:
a misspelt parameter, a builder that refuses its arguments, or a model whose head does not give
one logit per class is one ``error:`` line instead of a failure in every cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError, exception_line

PROBE_BATCH = 2  # two rows: a head that squeezes the batch dimension away shows as a wrong shape


def check_architecture(where: str, arch: Any, in_shape: tuple[int, ...], num_classes: int, dataset: str,
                       import_paths: Sequence[str] = ()) -> None:
    """Build ``arch`` (a registry ArchitectureSpec) for ``in_shape`` and ``num_classes`` on the meta
    device and run one batch through it.

    ``where`` names the entry in the error (``registry.yaml: architectures.NAME``), ``dataset`` the
    dataset whose shape it was checked at.
    """
    source, name, params = arch.source, arch.name, dict(arch.params)
    import torch

    from bench.models.zoo import build_model

    try:
        with torch.device("meta"):  # structure and parameters only: no memory, no init cost
            model = build_model(source, name, in_shape, num_classes, dict(params), import_paths)
    except BenchError as exc:
        raise BenchError(f"{where}: {exc} (for dataset {dataset!r})") from None
    except Exception as exc:  # noqa: BLE001 - a library's or the user's builder refusing its arguments
        raise BenchError(f"{where} with params {dict(params)}: {type(exc).__name__}: {exception_line(exc, 200)}") from None
    batch = (PROBE_BATCH, *in_shape)
    try:
        with torch.no_grad():
            out = model.eval()(torch.empty(batch, device="meta"))
    except Exception as exc:  # noqa: BLE001 - the user's forward failing on the dataset's shape
        raise BenchError(f"{where}: the model fails on a batch of shape {list(batch)} (dataset {dataset!r}): "
                         f"{type(exc).__name__}: {exception_line(exc, 200)}") from None
    want = [PROBE_BATCH, num_classes]
    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != want:
        raise BenchError(f"{where}: the model maps a batch of shape {list(batch)} (dataset {dataset!r}) to {got}, "
                         f"not to {want} logits; its last layer must give num_classes={num_classes} outputs")


__all__ = ["check_architecture"]
