"""The validation split: a stratified, seeded holdout; its identity rule; its history and row fields; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from bench.config.cells import cell_identity, expand_grid
from bench.data.splits import Splits
from bench.data.validation import hold_out, holdout_counts, holdout_indices
from bench.errors import BenchError
from bench.train.cell import validation_fields
from bench.config.registry import parse_registry
from bench.store.results import Store
from tests.conftest import gauss_registry


def _labels() -> np.ndarray:
    # 20 of class 0, 10 of class 1, 5 of class 2, interleaved
    return np.array([0, 1] * 10 + [0] * 10 + [2] * 5)


def test_holdout_is_stratified_with_counts_by_hand():
    # round(0.2 * 20) = 4, round(0.2 * 10) = 2, round(0.2 * 5) = 1
    assert holdout_counts(_labels(), 0.2, 3).tolist() == [4, 2, 1]
    # a class of 3 at 0.1: round(0.3) = 0, raised to 1 so validation sees every class
    assert holdout_counts(np.array([0, 0, 0, 1, 1, 1]), 0.1, 2).tolist() == [1, 1]
    train, val = holdout_indices(_labels(), 0.2, 0, 3)
    assert len(val) == 7 and len(train) == 28
    assert np.bincount(_labels()[val], minlength=3).tolist() == [4, 2, 1]
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(35))


def test_holdout_depends_on_the_split_seed_only():
    a = holdout_indices(_labels(), 0.2, 0, 3)[1]
    assert np.array_equal(a, holdout_indices(_labels(), 0.2, 0, 3)[1])
    assert not np.array_equal(a, holdout_indices(_labels(), 0.2, 1, 3)[1])


def _splits(labels: np.ndarray) -> Splits:
    y = torch.from_numpy(labels)
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1)  # x encodes the index
    return Splits(x, y, x[:3], y[:3], 3, (1, 1, 1), (0.0,), (1.0,), "test", ("a", "b", "c"))


def test_hold_out_moves_the_validation_examples_out_of_training():
    s = hold_out(_splits(_labels()), 0.2, 0)
    _, val = holdout_indices(_labels(), 0.2, 0, 3)
    assert s.n_val == 7 and s.n_train == 28
    assert s.val_x.view(-1).long().tolist() == val.tolist()
    assert not set(s.train_x.view(-1).long().tolist()) & set(val.tolist())
    assert hold_out(_splits(_labels()), 0.0, 0).val_y is None


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.7])
def test_a_fraction_outside_the_range_is_refused(fraction):
    with pytest.raises(BenchError, match=r"val_fraction.*\[0, 0.5\)"):
        holdout_counts(_labels(), fraction, 3)


def test_a_class_too_small_to_split_is_refused():
    with pytest.raises(BenchError, match="class 1 has 1 training example"):
        holdout_counts(np.array([0, 0, 0, 1]), 0.1, 2)


def _grid(**train) -> dict:
    return gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0, 1],
                              "train": {"epochs": 2, **train}})


def test_cells_without_a_validation_split_keep_their_identity():
    cells = expand_grid(parse_registry(_grid()), "g1", validate=False)
    for c in cells:
        assert "val_fraction" not in c.config["train"] and "split_seed" not in c.config["train"]
        assert c.cell_id == cell_identity(c.config)
        assert c.flat()["train.val_fraction"] == 0.0  # still a column
    # split_seed without a validation split changes nothing
    assert [c.cell_id for c in expand_grid(parse_registry(_grid(split_seed=3)), "g1", validate=False)] == \
        [c.cell_id for c in cells]
    with_val = expand_grid(parse_registry(_grid(val_fraction=0.1)), "g1", validate=False)
    other_seed = expand_grid(parse_registry(_grid(val_fraction=0.1, split_seed=1)), "g1", validate=False)
    ids = [{c.cell_id for c in g} for g in (cells, with_val, other_seed)]
    assert not ids[0] & ids[1] and not ids[1] & ids[2]
    # the split seed is the same for every cell of the grid by default: a paired design
    assert {c.config["train"]["split_seed"] for c in with_val} == {0}


def test_validation_fields_by_hand():
    hist = [{"val_acc": 0.5}, {"val_acc": 0.7}, {"val_acc": 0.7}, {"val_acc": 0.6}]
    assert validation_fields(hist) == {"final_val_acc": 0.6, "best_val_acc": 0.7, "best_val_epoch": 2}
    empty = validation_fields([{"test_acc": 0.5}])
    assert np.isnan(empty["final_val_acc"]) and empty["best_val_epoch"] == 0


def test_a_run_records_the_validation_split_every_epoch(tmp_path, cli):
    reg = tmp_path / "registry.yaml"
    data = _grid(val_fraction=0.1, batch_size=128)
    data["datasets"]["g"]["params"] = {"d": 2, "n_train": 400, "n_test": 100}
    reg.write_text(yaml.safe_dump(data))
    r = cli("run", "--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--plain", "--no-report",
            "--filter", "seed=0")
    assert r.exit_code == 0, r.output
    store = Store(tmp_path / "res")
    rows = store.cells()
    hist = store.history().sort_values("epoch")
    assert len(rows) == 1 and len(hist) == 2
    assert {"val_acc", "val_nll"} <= set(hist.columns) and hist["val_acc"].between(0, 1).all()
    row = rows.iloc[0]
    vals = hist["val_acc"].tolist()
    assert row["final_val_acc"] == vals[-1] and row["best_val_acc"] == max(vals)
    assert row["best_val_epoch"] == vals.index(max(vals)) + 1
    assert row["train.val_fraction"] == 0.1


@pytest.mark.parametrize("args, message", [
    (["--set", "train.val_fraction=0.5"], "val_fraction"),
    (["--set", "train.val_fraction=-0.1"], "val_fraction"),
])
def test_bad_validation_settings_are_one_error_line(tmp_path, cli, args, message):
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(_grid()))
    r = cli("run", "--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--plain", *args)
    assert r.exit_code == 2 and message in r.output and r.output.count("error:") == 1
    assert not (tmp_path / "res" / "cells").exists()


def test_a_fraction_a_class_cannot_afford_stops_before_training(tmp_path, cli):
    reg = tmp_path / "registry.yaml"
    data = _grid(val_fraction=0.1)
    data["datasets"]["g"]["params"] = {"d": 2, "n_train": 3, "n_test": 10}
    reg.write_text(yaml.safe_dump(data))
    r = cli("run", "--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--plain")
    assert r.exit_code == 2 and "too large" in r.output, r.output
    assert not (tmp_path / "res" / "cells").exists()
