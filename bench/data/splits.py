"""A data set's splits as whole tensors, and their per-batch normalisation on the device.

Images are uint8 NCHW, gauss float32 (N, 1, 1, d); labels int64. Nothing is normalised
up front: ``splits.normalise(xb)`` (or :func:`normalise`) computes ``(x / 255 - mean) / std``
per channel for a uint8 batch and ``(x - mean) / std`` for a float one, on the batch's own
device. ``mean``/``std`` are the training split's per-channel statistics
(:func:`channel_stats`); for the real data sets they equal the published constants,
e.g. MNIST 0.1307 / 0.3081.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.data.provenance import Provenance


@dataclass(frozen=True, eq=False)
class Splits:
    """A data set's train and test split as whole tensors plus what a model needs to know.

    ``train_x``/``test_x``: uint8 NCHW images, or float32 (N, 1, 1, d) for gauss.
    ``train_y``/``test_y``: int64 class indices in ``[0, num_classes)``.
    ``mean``/``std``: per-channel constants used by :meth:`normalise`.
    ``source``: the directory the data came from, or how it was generated.
    ``provenance``: the files read and whether the decoded cache answered (None when built by
    hand); :func:`bench.data.describe_source` renders it.
    ``val_x``/``val_y``: a validation split held out of the training split
    (:func:`bench.data.validation.hold_out`), or None when the cell has none.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    class_names: tuple[str, ...]
    kind: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    # positions in the whole training split of the training and validation rows, set by the holdout
    # (None: the training split is whole): per-sample annotations (bench.data.human) align by them
    train_index: torch.Tensor | None = None
    val_index: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_y.shape[0])

    @property
    def n_val(self) -> int:
        return 0 if self.val_y is None else int(self.val_y.shape[0])

    def normalise(self, xb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Normalise a batch (on any device); see :func:`normalise`."""
        return normalise(xb, self, dtype)


@functools.lru_cache(maxsize=64)
def _affine_consts(
    mean: tuple[float, ...], std: tuple[float, ...], scale: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    # memoised: every batch of a run asks for the same constants on the same device
    a = torch.tensor([1.0 / (scale * s) for s in std], dtype=torch.float64)
    b = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float64)
    shape = (1, len(mean), 1, 1)
    return a.to(dtype).view(shape).to(device), b.to(dtype).view(shape).to(device)


def normalise(x: torch.Tensor, meta: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return ``(x / 255 - mean) / std`` (uint8 ``x``) or ``(x - mean) / std`` (float ``x``).

    ``meta`` is a :class:`Splits` or anything with ``mean``/``std`` (attributes or mapping
    keys). Works on a batch already on its device, vectorised, without changing ``x``;
    channels are dim 1 of an NCHW batch. The result has ``dtype`` (default float32).
    """
    if isinstance(meta, Mapping):
        mean, std = tuple(meta["mean"]), tuple(meta["std"])
    else:
        mean, std = tuple(meta.mean), tuple(meta.std)
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean {mean} and std {std} must be non-empty and of equal length")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    if scale == 1.0 and all(m == 0.0 for m in mean) and all(s == 1.0 for s in std):
        return x.to(dtype)
    if len(mean) == 1:
        a, b = 1.0 / (scale * std[0]), mean[0] / std[0]
    else:
        if x.dim() != 4 or x.shape[1] != len(mean):
            raise ValueError(f"batch of shape {tuple(x.shape)} does not have {len(mean)} channels in dim 1")
        a, b = _affine_consts(mean, std, scale, x.device, dtype)
    y = x.to(dtype)
    if y is x or y.data_ptr() == x.data_ptr():  # same tensor: stay out of place
        return y * a - b
    return y.mul_(a).sub_(b)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 NCHW images scaled to [0, 1] (float64, in chunks to bound memory)."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    ss = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], 4096):
        chunk = x[i : i + 4096].to(torch.float64).div_(255.0)
        s += chunk.sum(dim=(0, 2, 3))
        ss += chunk.square_().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    var = (ss / count - mean.square()).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant channel: do not divide by 0
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)
