"""Base class and small shared helpers for lossbench losses.

Every loss is a ``torch.nn.Module`` whose ``forward(logits, targets)`` maps
``logits`` of shape ``(n, K)`` and integer class ``targets`` of shape ``(n,)`` to a
0-dim tensor: the batch-mean loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class Loss(nn.Module):
    """Base class of the benchmark's losses.

    Subclasses implement ``forward(logits, targets) -> Tensor`` (0-dim, batch mean).
    Losses whose value depends on training time override :meth:`set_progress`.
    """

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Training-time hook; the trainer calls it at the start of every epoch.

        ``epoch`` is the 0-based index of the epoch about to run and ``total_epochs``
        the planned number of epochs, so the fraction of training done is
        ``epoch / total_epochs``. The default is a no-op.
        """


def progress_fraction(epoch: int, total_epochs: int) -> float:
    """Return ``epoch / total_epochs`` in [0, 1], validating both arguments."""
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
        raise ValueError(f"total_epochs must be an int >= 1, got {total_epochs!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= total_epochs:
        raise ValueError(
            f"epoch must be an int in [0, total_epochs={total_epochs}], got {epoch!r}"
        )
    return epoch / total_epochs


def check_real(
    name: str,
    value: float,
    *,
    low: float,
    high: float = math.inf,
    high_inclusive: bool = False,
) -> float:
    """Return ``value`` as a float if ``low <= value < high`` (or ``<= high``), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    value = float(value)
    upper_ok = value <= high if high_inclusive else value < high
    if value < low or not upper_ok:
        bracket = "]" if high_inclusive else ")"
        upper = "inf" if math.isinf(high) else f"{high:g}"
        raise ValueError(f"{name} must be in [{low:g}, {upper}{bracket}, got {value!r}")
    return value


def prepare(logits: Tensor, targets: Tensor) -> Tensor:
    """Check shapes (no host sync) and return ``logits`` upcast to float32 if half precision."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, K), got {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape ({logits.shape[0]},) to match logits, "
            f"got {tuple(targets.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("empty batch: logits has 0 rows")
    if logits.dtype in _LOW_PRECISION:
        logits = logits.float()
    return logits


def class_major(logits: Tensor) -> bool:
    """Whether softmax-type ops should run over dim 0 of ``logits.t()`` instead of dim 1 of ``logits``.

    The values are the same either way; only the speed differs. On a CPU, PyTorch's
    (log_)softmax over a last dimension narrower than its SIMD width runs a loop per row,
    while over the leading dimension of the transposed view it vectorises along the batch:
    cross entropy forward + backward at n = 512, K = 10 takes ~65 µs instead of ~155 µs on the
    2-core Xeon of ``docs/benchmarks.md``. For K >= 16, for small batches and on CUDA the usual
    layout is as fast or faster. The rule, fitted on that machine's table
    (``benchmarks/softmax_layout.py`` prints it for any CPU): a CPU tensor with 2 <= K < 16 and
    n (K - 1) >= 1024.
    """
    n, k = logits.shape
    return logits.device.type == "cpu" and 2 <= k < 16 and n * (k - 1) >= 1024


def with_class_dim(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(input, target)`` for ``F.cross_entropy`` / ``F.nll_loss`` / ``softmax(dim=1)``, classes on dim 1.

    Either ``(logits, targets)`` unchanged, or (see :func:`class_major`) the same values as the
    views ``(1, K, n)`` and ``(1, n)``: PyTorch's K-dimensional loss form, whose batch mean is
    the same mean over the n samples. Reductions over the classes use ``dim=1`` in both cases.
    """
    if class_major(logits):
        return logits.t().unsqueeze(0), targets.unsqueeze(0)
    return logits, targets
