"""Tests of bench/data/noise.py and bench/data/imbalance.py: counts by hand, seeds, bad input."""

from __future__ import annotations

import pytest
import torch

from bench.data.imbalance import class_sizes, imbalance_indices, subset_indices
from bench.data.noise import ASYMMETRIC_MAPS, asymmetric_map, corrupt_labels, even_quotas
from bench.errors import BenchError

K = 10


def balanced(per_class: int = 100, k: int = K) -> torch.Tensor:
    return torch.arange(k).repeat_interleave(per_class)[torch.randperm(k * per_class,
                                                                      generator=torch.Generator().manual_seed(9))]


@pytest.mark.parametrize(("rate", "n_per", "expected"), [(0.4, 100, 400), (0.37, 101, 373), (0.0, 50, 0),
                                                           (0.05, 7, 3)])
def test_symmetric_exact_count_even_spread_never_itself(rate: float, n_per: int, expected: int) -> None:
    y = balanced(n_per)
    noisy, realised = corrupt_labels(y, "symmetric", rate, K, seed=0)
    changed = noisy != y
    assert int(changed.sum()) == expected == int(rate * y.numel())  # ⌊ηN⌋: 0.37·1010 = 373.7 → 373
    assert realised == expected / y.numel()
    per_class = torch.bincount(y[changed], minlength=K)
    assert int(per_class.max() - per_class.min()) <= 1  # 373 = 10·37 + 3: seven classes 37, three 38
    assert (noisy[changed] != y[changed]).all() and noisy.dtype == torch.int64
    assert int(noisy.min()) >= 0 and int(noisy.max()) < K


def test_symmetric_targets_cover_the_other_classes() -> None:
    y = torch.zeros(3000, dtype=torch.int64)
    y[1500:] = 1
    y3 = torch.cat([y, torch.full((1500,), 2)])
    noisy, _ = corrupt_labels(y3, "symmetric", 0.6, 3, seed=1)
    moved = noisy[(y3 == 0) & (noisy != y3)]
    counts = torch.bincount(moved, minlength=3)
    assert counts[0] == 0 and counts[1] > 250 and counts[2] > 250  # 600 moved, about half to each


def test_even_quotas_respects_small_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    assert even_quotas([2, 100, 100], 50, gen) == [2, 24, 24]
    q = even_quotas([10, 10, 10], 7, gen)
    assert sum(q) == 7 and sorted(q) == [2, 2, 3]


def test_asymmetric_moves_only_mapped_classes() -> None:
    y = balanced(100)
    cmap = asymmetric_map("cifar10")
    assert cmap == {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
    noisy, realised = corrupt_labels(y, "asymmetric", 0.4, K, seed=3, class_map=cmap)
    changed = noisy != y
    assert set(y[changed].tolist()) == set(cmap)
    for src, dst in cmap.items():
        from_src = (y == src)
        assert int((noisy[from_src] == dst).sum()) == 40  # ⌊0.4 · 100⌋
        assert int((noisy[from_src] != src).sum()) == 40
    assert realised == 5 * 40 / 1000
    assert asymmetric_map("mnist") == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    fm = asymmetric_map("fashion-mnist")
    assert all(fm[fm[c]] == c for c in fm)  # swaps of look-alike pairs


def test_pairflip() -> None:
    y = balanced(50)
    noisy, realised = corrupt_labels(y, "pairflip", 0.2, K, seed=0)
    changed = noisy != y
    assert ((y[changed] + 1) % K == noisy[changed]).all()
    assert torch.bincount(y[changed], minlength=K).tolist() == [10] * K
    assert realised == 0.2


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric", "pairflip"])
def test_determinism_per_seed(kind: str) -> None:
    y = balanced(100)
    cmap = ASYMMETRIC_MAPS["mnist"] if kind == "asymmetric" else None
    a, _ = corrupt_labels(y, kind, 0.3, K, seed=5, class_map=cmap)
    b, _ = corrupt_labels(y, kind, 0.3, K, seed=5, class_map=cmap)
    c, _ = corrupt_labels(y, kind, 0.3, K, seed=6, class_map=cmap)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(y, balanced(100))  # input untouched


@pytest.mark.parametrize(("call", "words"), [
    (lambda y: corrupt_labels(y, "symmetric", 1.0, K, 0), ["noise rate must be in [0, 1)", "1.0"]),
    (lambda y: corrupt_labels(y, "symmetric", -0.1, K, 0), ["noise rate must be in [0, 1)"]),
    (lambda y: corrupt_labels(y, "symetric", 0.1, K, 0), ["unknown label noise kind", "symmetric"]),
    (lambda y: corrupt_labels(y, "asymmetric", 0.1, K, 0), ["needs a class map", "asymmetric_map"]),
    (lambda y: corrupt_labels(y, "asymmetric", 0.1, K, 0, {1: 1}), ["1->1", "different class"]),
    (lambda y: asymmetric_map("gauss"), ["no class map for dataset 'gauss'", "symmetric"]),
    (lambda y: corrupt_labels(y, "symmetric", 0.1, 5, 0), ["[0, 5)", "num_classes"]),
    (lambda y: imbalance_indices(y, "exp", 0.5, K, 0), ["imbalance ratio must be", ">= 1"]),
    (lambda y: imbalance_indices(y, "linear", 10, K, 0), ["unknown imbalance profile", "exp"]),
    (lambda y: imbalance_indices(y, "exp", 1000, K, 0), ["no sample", "ratio <= 100"]),
    (lambda y: subset_indices(y, 1001, 0), ["larger than the split (1000 samples)", "<= 1000"]),
    (lambda y: subset_indices(y, 0, 0), ["subset size must be"]),
])
def test_bad_input_is_one_bench_error_line(call, words: list[str]) -> None:
    with pytest.raises(BenchError) as err:
        call(balanced(100))
    text = str(err.value)
    assert "\n" not in text and all(w in text for w in words), text


def test_imbalance_class_counts_by_hand() -> None:
    # exp, n_c = ⌊5000 · r^(-c/9)⌋; e.g. r = 100, c = 1: 5000 / 100^(1/9) = 5000 / 1.66810 = 2997.4
    assert class_sizes("exp", 100, 10, 5000) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert class_sizes("exp", 10, 10, 5000) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert class_sizes("step", 100, 10, 5000) == [5000] * 5 + [50] * 5
    assert class_sizes("step", 10, 10, 5000) == [5000] * 5 + [500] * 5
    assert class_sizes("exp", 1, 10, 5000) == [5000] * 10


@pytest.mark.parametrize(("profile", "ratio", "counts"), [
    ("exp", 10, [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]),  # ⌊100 · 10^(-c/9)⌋
    ("step", 10, [100] * 5 + [10] * 5),
])
def test_imbalance_indices(profile: str, ratio: float, counts: list[int]) -> None:
    y = balanced(100)
    idx = imbalance_indices(y, profile, ratio, K, seed=0)
    assert torch.bincount(y[idx], minlength=K).tolist() == counts
    assert torch.equal(idx, idx.sort().values) and idx.unique().numel() == idx.numel()
    assert torch.equal(idx, imbalance_indices(y, profile, ratio, K, seed=0))
    assert not torch.equal(idx, imbalance_indices(y, profile, ratio, K, seed=1))


def test_subset_is_stratified_and_seeded() -> None:
    y = torch.cat([torch.zeros(600), torch.ones(300), torch.full((100,), 2)]).long()
    idx = subset_indices(y, 101, seed=0)
    # exact shares 60.6, 30.3, 10.1 → 60, 30, 10 and the one left to the largest fraction (class 0)
    assert torch.bincount(y[idx], minlength=3).tolist() == [61, 30, 10]
    assert torch.equal(idx, subset_indices(y, 101, seed=0))
    assert not torch.equal(idx, subset_indices(y, 101, seed=1))
    assert subset_indices(y, 1000, seed=0).tolist() == list(range(1000))
