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
    """Check the shapes and return ``logits``, upcast to float32 if in half precision.

    The shape checks read only metadata, so they never wait for the device. Half-precision
    logits (from autocast) are upcast because log-probabilities summed over a batch in
    bfloat16 keep about two significant digits.
    """
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
