"""Label noise on the new datasets: per-class symmetric quotas on long-tailed splits, and real human
noise (the CIFAR-N label files) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.imbalance import imbalance_indices
from bench.data.noise import corrupt_labels, even_quotas, proportional_quotas
from bench.data.regimes import RegimeConfig, apply_regime
from bench.data.splits import Splits
from bench.data.validation import hold_out
from bench.errors import BenchError
from tests.conftest import bench_inprocess
from tests.fixtures_data import write_cifar10_batches, write_cifar_n
from tests.test_datasets_kinds import trained, write_registry

K = 10


def _old_symmetric(y: torch.Tensor, rate: float, k: int, seed: int) -> torch.Tensor:
    """The symmetric draw as it was before per-class quotas (an even split of ⌊ηN⌋ over the classes)."""
    gen = torch.Generator().manual_seed(seed)
    noisy = y.clone()
    members = [(y == c).nonzero().squeeze(1) for c in range(k)]
    quotas = even_quotas([m.numel() for m in members], int(rate * y.numel()), gen)
    for c in range(k):
        chosen = members[c][torch.randperm(members[c].numel(), generator=gen)[:quotas[c]]]
        noisy[chosen] = (c + torch.randint(1, k, (chosen.numel(),), generator=gen)) % k
    return noisy


@pytest.mark.parametrize("n_per, rate, seed", [(100, 0.4, 0), (97, 0.37, 3), (5400, 0.2, 11), (13, 0.6, 5)])
def test_balanced_splits_draw_the_same_noisy_labels_as_before(n_per: int, rate: float, seed: int) -> None:
    y = torch.arange(K).repeat_interleave(n_per)[torch.randperm(K * n_per, generator=torch.Generator().manual_seed(1))]
    new, _ = corrupt_labels(y, "symmetric", rate, K, seed)
    assert torch.equal(new, _old_symmetric(y, rate, K, seed))


def test_proportional_quotas_are_the_largest_remainder_split() -> None:
    gen = torch.Generator().manual_seed(0)
    assert proportional_quotas([500, 50, 5], 222, gen) == [200, 20, 2]  # 222 · n_c / 555 exactly
    # exact 70/60, 140/60, 210/60: floors 1, 2, 3, the one left to the largest fractional part (0.5)
    assert proportional_quotas([10, 20, 30], 7, gen) == [1, 2, 4]
    # equal sizes: the tie is drawn exactly as the even split drew it, from the same generator state
    a, b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert proportional_quotas([10] * 6, 9, a) == even_quotas([10] * 6, 9, b)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


def test_long_tailed_symmetric_noise_corrupts_every_class_at_eta_and_is_stored_per_class() -> None:
    n = 500
    y = torch.arange(K).repeat_interleave(n)
    splits = Splits(torch.zeros(K * n, 1, 1, 1), y, torch.zeros(K, 1, 1, 1), torch.arange(K), K, (1, 1, 1), (0.0,),
                    (1.0,), "test", tuple(map(str, range(K))), kind="mnist")
    regime = RegimeConfig(noise="symmetric", noise_rate=0.4, imbalance="exp", imbalance_ratio=100)
    out, facts = apply_regime(splits, regime, "mnist")
    keep = imbalance_indices(y, "exp", 100, K, 0)
    clean = y[keep]
    sizes = torch.bincount(clean, minlength=K).tolist()
    assert sizes[0] == 500 and sizes[-1] == 5
    rates = [float(((out.train_y != clean) & (clean == c)).sum()) / sizes[c] for c in range(K)]
    assert all(abs(r - 0.4) <= 1 / s + 1e-9 for r, s in zip(rates, sizes)), rates  # each class at ⌊0.4 n_c⌋ or one more
    assert rates[-1] < 0.7  # the old even split mislabelled the 5-sample class completely
    assert list(facts.train_class_noise_rates) == pytest.approx(rates)
    assert json.loads(facts.row()["train_class_noise_rates"]) == pytest.approx(rates)
    assert facts.label_noise_rate == int(0.4 * sum(sizes)) / sum(sizes)


def _cifar10_labels(root: Path) -> np.ndarray:
    from bench.data import load_splits

    return load_splits("cifar10", None, root).train_y.numpy()


def test_human_noise_replaces_training_and_validation_labels_by_position(tmp_path: Path) -> None:
    from bench.data import load_splits

    write_cifar10_batches(tmp_path, n_per_batch=20, n_test=20)
    full = load_splits("cifar10", None, tmp_path)
    arrays = write_cifar_n(tmp_path / "CIFAR-10_human.pt", full.train_y.numpy(), rate=0.3)
    held = hold_out(full, 0.2, 0)
    regime = RegimeConfig(noise="human", noise_file=str(tmp_path / "CIFAR-10_human.pt"), noise_labels="worst")
    out, facts = apply_regime(held, regime, "cifar10")
    worse = torch.from_numpy(arrays["worse_label"])
    assert torch.equal(out.train_y, worse[held.train_index]) and torch.equal(out.val_y, worse[held.val_index])
    assert facts.label_noise_rate == int((worse[held.train_index] != held.train_y).sum()) / held.n_train
    assert torch.equal(out.test_y, full.test_y)


BAD_FILES = {
    "other-dataset": (lambda y, p: write_cifar_n(p, (y + 1) % 10), "clean_label differs from the dataset's training labels"),
    "truncated": (lambda y, p: write_cifar_n(p, y[:-7]), "truncated or of another dataset"),
    "wrong-keys": (lambda y, p: write_cifar_n(p, y, keys=("clean_label", "noisy_label"), cifar100=True),
                   "has no 'worse_label' array"),
    "not-a-dict": (lambda y, p: torch.save(torch.zeros(3), p), "expected a dict of label arrays"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_label_file_is_refused_naming_it(tmp_path: Path, case: str) -> None:
    from bench.data.human import human_labels

    y = np.arange(50) % 10
    make, message = BAD_FILES[case]
    make(y, tmp_path / "labels.pt")
    with pytest.raises(BenchError) as err:
        human_labels(str(tmp_path / "labels.pt"), "worst", y, 10)
    assert str(tmp_path / "labels.pt") in str(err.value) and message in str(err.value)


def test_a_bad_label_file_is_one_error_line_and_nothing_trains(tmp_path: Path) -> None:
    make, message = BAD_FILES["other-dataset"]
    write_cifar10_batches(tmp_path / "data", n_per_batch=20, n_test=20)
    make(_cifar10_labels(tmp_path / "data"), tmp_path / "labels.pt")
    reg = write_registry(tmp_path, {"kind": "cifar10"}, epochs=1,
                         regime={"noise": "human", "noise_file": "labels.pt", "noise_labels": "worst"})
    # through the app in this process: the CIFAR-N cell below runs the console script on the same path
    r = bench_inprocess("run", "--grid", "g", "--registry", reg, "--results", tmp_path / "results",
                        "--data-root", tmp_path / "data", "--plain", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(tmp_path / "labels.pt") in lines[0] and message in lines[0], r.stderr
    assert not (tmp_path / "results" / "cells").exists() or not list((tmp_path / "results").rglob("*.parquet"))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"clean_label": Evil()}, f)
    from bench.data.human import human_labels

    with pytest.raises(BenchError, match="cannot be read as a CIFAR-N label file"):
        human_labels(str(tmp_path / "evil.pt"), "aggre", np.zeros(3, dtype=np.int64), 10)
    assert not (tmp_path / "pwned").exists()


def test_a_cifar10n_cell_trains_end_to_end_and_records_the_realised_rate(tmp_path: Path) -> None:
    write_cifar10_batches(tmp_path / "data", n_per_batch=40, n_test=60)
    arrays = write_cifar_n(tmp_path / "CIFAR-10_human.pt", _cifar10_labels(tmp_path / "data"), rate=0.2)
    reg = write_registry(tmp_path, {"kind": "cifar10"}, epochs=3,
                         regime={"noise": "human", "noise_file": "CIFAR-10_human.pt", "noise_labels": "aggre"})
    row = trained(tmp_path, reg, tmp_path / "data")
    assert row["label_noise_rate"] == pytest.approx(float((arrays["aggre_label"] != arrays["clean_label"]).mean()))
    assert row["final_test_acc"] > 0.5  # 20% noisy labels, 10 classes: chance 0.1
    assert row["regime.noise_labels"] == "aggre" and row["regime.noise_file"].endswith("CIFAR-10_human.pt")
