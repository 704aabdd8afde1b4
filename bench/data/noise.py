"""Label noise regimes: seeded, pure functions over a split's label tensor.

:func:`corrupt_labels` returns the noisy labels and the realised noise rate (the fraction of
labels changed), which is stored with each cell as ``label_noise_rate``: papers that say "40%"
differ by up to four points in what they realise, so the realised rate is the fact to keep.

- ``symmetric`` (the exact-count protocol of the APL code, Ma et al. 2020, "Normalized Loss
  Functions for Deep Learning with Noisy Labels"): exactly m = ⌊ηN⌋ labels change, split over
  the classes in proportion to their sizes (class c gets ⌊m n_c / N⌋, the remaining ones go to the
  largest fractional parts, ties drawn at random), so every class is corrupted at rate η also on
  a long-tailed split; each changed label moves to a class drawn uniformly among the K - 1
  *other* classes. Realised rate = ⌊ηN⌋/N. On a balanced split this is the even split the
  protocol has always drawn, with the same random draws (:func:`proportional_quotas`).
- ``asymmetric`` (Patrini et al. 2017, "Making Deep Neural Networks Robust to Label Noise: a Loss
  Correction Approach"): a per-dataset map of look-alike classes; ⌊η n_c⌋ of each source class c
  move to map[c], the other classes keep their labels. Maps in :data:`ASYMMETRIC_MAPS`.
  η ≤ 0.4 is the usual range: at η = 0.5 a flipped class ties with its target.
- ``pairflip`` (Han et al. 2018, "Co-teaching"): the map c → (c + 1) mod K for every class,
  ⌊η n_c⌋ of each class flipped.

How they are applied (a grid's ``regime: {noise: ..., noise_rate: ...}``, through
:func:`bench.data.regimes.apply_regime`): to the training labels and the validation labels, never
to the test labels. The validation split is drawn first, from the clean training split; then the
training part and the validation part are corrupted by separate calls, each seeded from its own
stream of the cell's ``noise_seed`` (separate from the training seed, so the same noisy labels are
trained with several seeds and losses), so each part's realised rate is exact on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from bench.errors import BenchError, unknown

if TYPE_CHECKING:  # torch is imported where labels are corrupted: the registry and the planner read
    import torch  # NOISE_KINDS and the maps in commands that never train
    from torch import Tensor

NOISE_KINDS: Final[tuple[str, ...]] = ("symmetric", "asymmetric", "pairflip")

# CIFAR-10: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
# Fashion-MNIST: 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
# 7 sneaker, 8 bag, 9 ankle boot. The literature has no standard Fashion-MNIST map; this one swaps
# the three pairs of garments that look alike at 28x28 and that classifiers confuse most (Xiao et
# al. 2017's dataset paper names shirt / T-shirt / pullover / coat the hard classes): shirt ↔
# T-shirt, pullover ↔ coat, sandal ↔ sneaker.
ASYMMETRIC_MAPS: Final[Mapping[str, Mapping[int, int]]] = {
    "cifar10": {9: 1, 2: 0, 3: 5, 5: 3, 4: 7},   # truck→automobile, bird→airplane, cat↔dog, deer→horse
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},     # 2→7, 3→8, 5↔6, 7→1
    "fashion-mnist": {6: 0, 0: 6, 2: 4, 4: 2, 5: 7, 7: 5},
    # CIFAR-100 (fine labels): "within each of the 20 superclasses, to the next class" as Patrini et al.
    # 2017's code (and the GCE/SCE/APL code after it) implements it: blocks of 5 consecutive fine
    # labels, each class to the next in its block, circularly
    "cifar100": {c: 5 * (c // 5) + (c + 1) % 5 for c in range(100)},
}
# Kinds the literature gives no asymmetric map (SVHN, KMNIST, EMNIST, a user's data): the refusal
# below says so and names the noise kinds that need none.


def asymmetric_map(dataset: str) -> dict[int, int]:
    """The asymmetric noise map of ``dataset`` (a registry dataset kind); BenchError if it has none."""
    if dataset not in ASYMMETRIC_MAPS:
        raise BenchError(f"asymmetric label noise has no class map for dataset {dataset!r} "
                         f"(maps exist for {', '.join(sorted(ASYMMETRIC_MAPS))}); use noise 'symmetric' or "
                         "'pairflip' for it")
    return dict(ASYMMETRIC_MAPS[dataset])


def check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
        raise BenchError(f"label noise rate must be in [0, 1), got {rate!r}; give the fraction of labels "
                         "to corrupt, e.g. 0.4")
    return float(rate)


def _check_labels(y: Tensor, num_classes: int) -> Tensor:
    import torch

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise BenchError(f"label noise needs num_classes >= 2, got {num_classes!r}")
    if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
        raise BenchError(f"labels must be a 1-D integer tensor, got shape {tuple(y.shape)} dtype {y.dtype}")
    y = y.detach().to("cpu", torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise BenchError(f"labels must lie in [0, {num_classes}); got a label {int(y.max())}: "
                         "check num_classes for this dataset")
    return y


def _check_map(class_map: Mapping[int, int], num_classes: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for src, dst in class_map.items():
        if not (0 <= int(src) < num_classes and 0 <= int(dst) < num_classes) or int(src) == int(dst):
            raise BenchError(f"asymmetric noise map entry {src}->{dst} is invalid for {num_classes} classes: "
                             "each entry must map a class in [0, K) to a different class")
        out[int(src)] = int(dst)
    return out


def even_quotas(capacity: list[int], total: int, gen: torch.Generator) -> list[int]:
    """Split ``total`` over classes as evenly as ``capacity`` allows (water-filling); the classes
    that get one more than the others are drawn at random from ``gen``."""
    import torch

    quotas = [0] * len(capacity)
    remaining = total
    open_ = list(range(len(capacity)))
    while remaining > 0 and open_:
        share = remaining // len(open_)
        full = [c for c in open_ if capacity[c] <= share]
        if full:  # classes too small for an even share give all they have; the rest re-split
            for c in full:
                quotas[c] = capacity[c]
                remaining -= capacity[c]
            open_ = [c for c in open_ if c not in full]
            continue
        extra = remaining - share * len(open_)
        lucky = {open_[int(i)] for i in torch.randperm(len(open_), generator=gen)[:extra]}
        for c in open_:
            quotas[c] = share + (1 if c in lucky else 0)
        remaining = 0
    return quotas


def proportional_quotas(sizes: list[int], total: int, gen: torch.Generator) -> list[int]:
    """Split ``total`` over classes in proportion to ``sizes`` (largest remainder, in integers).

    The classes tied at the cut of the remainder are drawn by one ``torch.randperm`` over them.
    On equal sizes every class ties, so the draw is exactly :func:`even_quotas`' (one randperm of
    all K classes, the first ``extra`` of it win): the noisy labels of balanced splits stay the
    ones drawn before per-class quotas existed (stored results depend on them).
    """
    import torch

    n = sum(sizes)
    if total <= 0 or n == 0:
        return [0] * len(sizes)
    quotas = [total * s // n for s in sizes]
    remainders = [total * s % n for s in sizes]  # the fractional parts, times n: exact
    extra = total - sum(quotas)
    order = sorted(set(remainders), reverse=True)
    for r in order:  # the whole groups above the cut get one more each
        group = [c for c in range(len(sizes)) if remainders[c] == r]
        if len(group) > extra:
            lucky = {group[int(i)] for i in torch.randperm(len(group), generator=gen)[:extra]}
            for c in lucky:
                quotas[c] += 1
            return quotas
        for c in group:
            quotas[c] += 1
        extra -= len(group)
    return quotas


def _flip_per_class(y: Tensor, rate: float, class_map: Mapping[int, int], gen: torch.Generator) -> Tensor:
    import torch

    noisy = y.clone()
    for src in sorted(class_map):
        members = (y == src).nonzero().squeeze(1)
        count = int(rate * members.numel())  # ⌊η n_c⌋
        chosen = members[torch.randperm(members.numel(), generator=gen)[:count]]
        noisy[chosen] = class_map[src]
    return noisy


def corrupt_labels(y: Tensor, kind: str, rate: float, num_classes: int, seed: int,
                   class_map: Mapping[int, int] | None = None) -> tuple[Tensor, float]:
    """Return ``(noisy_y, realised_rate)``: the labels after ``kind`` noise at rate η = ``rate``.

    ``kind`` is one of :data:`NOISE_KINDS`; ``class_map`` (source → target class) is needed for
    ``asymmetric`` (:func:`asymmetric_map` gives a dataset's). Deterministic in ``seed`` (a CPU
    ``torch.Generator``); ``y`` is not modified; ``noisy_y`` is int64 on ``y``'s device.
    """
    import torch

    if kind not in NOISE_KINDS:
        raise unknown("label noise kind", kind, NOISE_KINDS)
    rate = check_rate(rate)
    labels = _check_labels(y, num_classes)
    gen = torch.Generator().manual_seed(int(seed))
    n = labels.numel()
    if kind == "symmetric":
        noisy = labels.clone()
        members = [(labels == c).nonzero().squeeze(1) for c in range(num_classes)]
        quotas = proportional_quotas([m.numel() for m in members], int(rate * n), gen)  # ⌊ηN⌋ in all
        for c in range(num_classes):
            chosen = members[c][torch.randperm(members[c].numel(), generator=gen)[:quotas[c]]]
            # c + U{1..K-1} mod K: uniform over the other classes, never c itself
            offset = torch.randint(1, num_classes, (chosen.numel(),), generator=gen)
            noisy[chosen] = (c + offset) % num_classes
    elif kind == "asymmetric":
        if class_map is None:
            raise BenchError("asymmetric label noise needs a class map: pass class_map=asymmetric_map(dataset)")
        noisy = _flip_per_class(labels, rate, _check_map(class_map, num_classes), gen)
    else:
        noisy = _flip_per_class(labels, rate, {c: (c + 1) % num_classes for c in range(num_classes)}, gen)
    realised = float((noisy != labels).sum()) / n if n else 0.0
    return noisy.to(y.device), realised
