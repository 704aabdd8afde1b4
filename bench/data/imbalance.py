"""Class-imbalance and few-data regimes: seeded, pure functions that choose training indices.

- :func:`imbalance_indices`: a long-tailed subset (Cao et al. 2019, "Learning Imbalanced Datasets
  with Label-Distribution-Aware Margin Loss", the LDAM-DRW protocol), imbalance ratio r =
  n_max / n_min (r = 100 and 10 are the usual settings):
  ``exp``: n_c = ⌊n_max · r^(-c/(K-1))⌋ for c = 0..K-1; ``step``: the first ⌈K/2⌉ classes keep
  n_max, the other ⌊K/2⌋ get ⌊n_max / r⌋. n_max is the size of the smallest class of the input
  (every class of a balanced split, so each class can supply its quota). Which samples of a class
  are kept is a seeded draw; it moves an ERM baseline by about three points, so the seed is
  part of the cell's identity and is recorded.
- :func:`subset_indices`: a stratified subset of n samples (few-data regime): class c gets
  ⌊n · n_c / N⌋ samples and the remaining ones go to the largest fractional parts (ties to the
  lower class), each class's samples drawn at random.

How they are applied (a grid's ``regime: {imbalance: ..., imbalance_ratio: ..., subset: ...}``,
through :func:`bench.data.regimes.apply_regime`): to the training split only, after the validation
split has been drawn from it (the validation split and the test split stay as they are, the test
split balanced); the imbalance first, then the subset of what it kept. Both return sorted int64
indices into the given labels, to index ``train_x`` and ``train_y`` together.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from bench.errors import BenchError, unknown

if TYPE_CHECKING:  # torch is imported where indices are drawn: the planner reads the profiles and
    from torch import Tensor  # class_sizes in commands that never train

IMBALANCE_PROFILES: Final[tuple[str, ...]] = ("exp", "step")


def _labels(y: Tensor, num_classes: int) -> Tensor:
    import torch

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise BenchError(f"class imbalance needs num_classes >= 2, got {num_classes!r}")
    if y.ndim != 1:
        raise BenchError(f"labels must be a 1-D tensor, got shape {tuple(y.shape)}")
    return y.detach().to("cpu", torch.int64)


def class_sizes(profile: str, ratio: float, num_classes: int, n_max: int) -> list[int]:
    """The per-class sizes of ``profile`` at imbalance ratio ``ratio`` (module docstring)."""
    if profile not in IMBALANCE_PROFILES:
        raise unknown("imbalance profile", profile, IMBALANCE_PROFILES)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio < 1:
        raise BenchError(f"imbalance ratio must be a number >= 1 (n_max / n_min), got {ratio!r}; "
                         "use e.g. 100 or 10 (1 is balanced)")
    k = num_classes
    if profile == "exp":
        # + 1e-9: r^(-c/(K-1)) n_max may land a hair below an exact integer in floating point
        sizes = [math.floor(n_max * ratio ** (-c / (k - 1)) + 1e-9) for c in range(k)]
    else:
        many = math.ceil(k / 2)
        sizes = [n_max] * many + [math.floor(n_max / ratio + 1e-9)] * (k - many)
    if min(sizes) < 1:
        raise BenchError(f"imbalance ratio {ratio:g} leaves a class with no sample (n_max = {n_max}); "
                         f"use a ratio <= {n_max}")
    return sizes


def imbalance_indices(y: Tensor, profile: str, ratio: float, num_classes: int, seed: int) -> Tensor:
    """Sorted indices of a ``profile`` long-tailed subset of labels ``y`` (seeded by ``seed``)."""
    import torch

    labels = _labels(y, num_classes)
    members = [(labels == c).nonzero().squeeze(1) for c in range(num_classes)]
    n_max = min(m.numel() for m in members)
    if n_max == 0:
        raise BenchError("class imbalance needs every class in the training split; "
                         f"class {[m.numel() for m in members].index(0)} has no sample")
    sizes = class_sizes(profile, ratio, num_classes, n_max)
    gen = torch.Generator().manual_seed(int(seed))
    kept = [m[torch.randperm(m.numel(), generator=gen)[:size]] for m, size in zip(members, sizes, strict=True)]
    return torch.cat(kept).sort().values


def subset_indices(y: Tensor, n: int, seed: int) -> Tensor:
    """Sorted indices of a stratified random subset of ``n`` samples of labels ``y``."""
    import torch

    if y.ndim != 1:
        raise BenchError(f"labels must be a 1-D tensor, got shape {tuple(y.shape)}")
    total = y.numel()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BenchError(f"training subset size must be an int >= 1, got {n!r}")
    if n > total:
        raise BenchError(f"training subset of {n} samples is larger than the split ({total} samples); "
                         f"use a size <= {total}")
    labels = y.detach().to("cpu", torch.int64)
    classes = labels.unique().tolist()
    members = [(labels == c).nonzero().squeeze(1) for c in classes]
    exact = [n * m.numel() / total for m in members]
    quotas = [math.floor(e) for e in exact]
    by_fraction = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in by_fraction[: n - sum(quotas)]:
        quotas[i] += 1
    gen = torch.Generator().manual_seed(int(seed))
    kept = [m[torch.randperm(m.numel(), generator=gen)[:q]] for m, q in zip(members, quotas, strict=True)]
    return torch.cat(kept).sort().values
