"""Data regimes as grid settings (bench/data/regimes.py): expansion, identity, columns, application,
the planner's checks, and a run through the real console script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from bench.config.cells import Cell, cell_identity, expand_grid, parse_set, set_flag
from bench.data.imbalance import class_sizes
from bench.data.noise import asymmetric_map
from bench.data.regimes import (UNKNOWN_FACTS, RegimeConfig, apply_regime, derived_seed, planned_training_labels,
                                regime_settings)
from bench.data.splits import Splits
from bench.data.validation import hold_out
from bench.errors import BenchError
from bench.train.cell import cell_regime_splits, failed_outcome
from bench.plan.planner import make_plan
from bench.config.registry import TrainConfig, parse_registry
from tests.conftest import REPO, gauss_registry, tiny_registry

BENCH = Path(sys.executable).with_name("bench")


def _grid(**extra) -> dict:
    grid = {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0, 1],
            "train": {"epochs": 2, "batch_size": 64}, **extra}
    return gauss_registry(g1=grid)


def _cells(**extra) -> list[Cell]:
    return expand_grid(parse_registry(_grid(**extra)), "g1", validate=False)


# ---- identity and expansion -------------------------------------------------------------------

# computed before regimes existed: a grid without a regime keeps these ids (and its stored results)
PINNED = {"g/mlp/celLoss/seed 0": "4763b9a2c614a80e", "g/mlp/celLoss/seed 1": "288744870626053b",
          "g/mlp/milLoss/seed 0": "51e17a7ab3327462", "g/mlp/milLoss/seed 1": "bd6b263cc09d66bb"}


@pytest.mark.parametrize("regime", [None, {}, [{}], {"noise": "none", "noise_rate": 0.0, "subset": 0}])
def test_cells_without_a_regime_keep_their_identity(regime):
    cells = _cells() if regime is None else _cells(regime=regime)
    assert {c.title: c.cell_id for c in cells} == PINNED
    assert all("regime" not in c.config and c.variant == "" for c in cells)


def test_a_swept_regime_is_part_of_identity_and_variant():
    cells = _cells(regime={"noise": "symmetric", "noise_rate": [0.2, 0.4]})
    assert len(cells) == 8
    assert sorted({c.variant for c in cells}) == ["noise_rate=0.2", "noise_rate=0.4"]
    assert not {c.cell_id for c in cells} & set(PINNED.values())
    for c in cells:  # the fast identity path hashes exactly the config
        assert c.cell_id == cell_identity(c.config)
        assert c.config["regime"] == {"noise": "symmetric", "noise_rate": float(c.variant.split("=")[1])}
        assert c.regime.noise == "symmetric"
    assert len({c.cell_id for c in cells}) == 8


def test_a_regime_sweep_combines_with_a_training_sweep():
    cells = _cells(regime={"noise": "pairflip", "noise_rate": [0.2, 0.4]},
                   train={"epochs": 2, "batch_size": [32, 64]})
    assert sorted({c.variant for c in cells}) == ["batch_size=32,noise_rate=0.2", "batch_size=32,noise_rate=0.4",
                                                 "batch_size=64,noise_rate=0.2", "batch_size=64,noise_rate=0.4"]
    assert len(cells) == 16 and all(c.cell_id == cell_identity(c.config) for c in cells)


def test_a_list_of_regimes_sits_side_by_side_and_names_what_differs():
    cells = _cells(regime=[{}, {"noise": "symmetric", "noise_rate": [0.2, 0.6]}, {"noise": "asymmetric", "noise_rate": 0.4}])
    assert [c.variant for c in cells if c.loss == "celLoss" and c.seed == 0] == [
        "noise=none,noise_rate=0", "noise=symmetric,noise_rate=0.2", "noise=symmetric,noise_rate=0.6",
        "noise=asymmetric,noise_rate=0.4"]
    clean = [c for c in cells if c.variant == "noise=none,noise_rate=0"]
    assert {c.title.replace(" [noise=none,noise_rate=0]", ""): c.cell_id for c in clean} == PINNED  # clean cells: same ids


def test_an_unswept_regime_changes_identity_but_not_the_variant():
    cells = _cells(regime={"imbalance": "exp", "imbalance_ratio": 10})
    assert {c.variant for c in cells} == {""}
    assert cells[0].config["regime"] == {"imbalance": "exp", "imbalance_ratio": 10.0}
    assert not {c.cell_id for c in cells} & set(PINNED.values())
    # the noise seed, default or not, is a separate identity
    seeded = _cells(regime={"imbalance": "exp", "imbalance_ratio": 10, "imbalance_seed": 1})
    assert not {c.cell_id for c in seeded} & {c.cell_id for c in cells}


def test_search_cells_carry_the_regime():
    search = {"trials": 2, "seed": 0, "space": {"train.lr": "loguniform(1e-3, 1e-1)"}}
    plain = _cells(search=search)
    noisy = _cells(search=search, regime={"noise": "symmetric", "noise_rate": [0.2, 0.4]})
    assert len(noisy) == 2 * len(plain)
    assert all(c.config["regime"]["noise"] == "symmetric" and c.variant.startswith("noise_rate=") for c in noisy)
    assert all("regime" not in c.config for c in plain)
    assert not {c.cell_id for c in plain} & {c.cell_id for c in noisy}
    assert all(c.cell_id == cell_identity(c.config) for c in noisy)


def test_every_regime_setting_is_a_column_defaults_included():
    plain = _cells()[0].flat()
    assert {k: v for k, v in plain.items() if k.startswith("regime.")} == {
        "regime.noise": "none", "regime.noise_rate": 0.0, "regime.noise_seed": 0, "regime.noise_file": "",
        "regime.noise_labels": "", "regime.imbalance": "none",
        "regime.imbalance_ratio": 1.0, "regime.imbalance_seed": 0, "regime.subset": 0, "regime.subset_seed": 0}
    noisy = _cells(regime={"noise": "symmetric", "noise_rate": 0.4, "noise_seed": 3})[0].flat()
    assert (noisy["regime.noise"], noisy["regime.noise_rate"], noisy["regime.noise_seed"]) == ("symmetric", 0.4, 3)


def test_set_overrides_a_regime_setting_like_a_training_one():
    overrides = parse_set(["regime.noise=symmetric", "regime.noise_rate=0.4", "train.epochs=1"])
    assert overrides == {"regime.noise": "symmetric", "regime.noise_rate": 0.4, "epochs": 1}
    cells = expand_grid(parse_registry(_grid()), "g1", overrides, validate=False)
    assert all(c.config["regime"] == {"noise": "symmetric", "noise_rate": 0.4} and c.train.epochs == 1 for c in cells)
    assert set_flag("regime.noise_rate", 0.4) == "--set regime.noise_rate=0.4"
    assert set_flag("epochs", 1) == "--set train.epochs=1"
    plan = make_plan(parse_registry(_grid()), "g1", overrides, validate=False)
    assert plan.settings_flags() == "--set train.epochs=1 --set regime.noise=symmetric --set regime.noise_rate=0.4"


@pytest.mark.parametrize(("items", "words"), [
    (["regime.noise_rate=1.0"], ["regime.noise_rate=1.0", "less than 1"]),
    (["regime.noise=gaussian"], ["regime.noise=gaussian", "'symmetric'"]),
    (["regime.imbalance_ratio=0.5"], ["imbalance_ratio=0.5", "greater than or equal to 1"]),
    (["regime.subset=-1"], ["subset=-1", "greater than or equal to 0"]),
    (["regime.nois=symmetric"], ["--set regime.nois", "closest: 'regime.noise'"]),
])
def test_bad_set_values_are_one_line(items, words):
    with pytest.raises(BenchError) as exc:
        parse_set(items)
    assert all(w in str(exc.value) for w in words), str(exc.value)


@pytest.mark.parametrize(("regime", "words"), [
    ({"noise_rate": 0.4}, ["grids.g1.regime", "noise_rate=0.4 without a noise kind", "symmetric"]),
    ({"noise": "symmetric"}, ["grids.g1.regime", "noise_rate 0 corrupts nothing"]),
    ({"noise": "symmetric", "noise_rate": [0.2, 0]}, ["grids.g1.regime", "noise_rate 0"]),
    ({"noise_seed": 2}, ["noise_seed=2 without a noise kind"]),
    ({"imbalance_ratio": 10}, ["imbalance_ratio=10 without an imbalance profile", "exp, step"]),
    ({"imbalance": "exp"}, ["imbalance_ratio 1 is balanced"]),
    ({"subset_seed": 1}, ["subset_seed=1 without a subset"]),
    ({"noise": "symmetric", "noise_rate": 1.5}, ["grids.g1.regime.noise_rate", "less than 1", "1.5"]),
    ({"imbalance": "exp", "imbalance_ratio": 0.5}, ["grids.g1.regime.imbalance_ratio", "greater than or equal to 1"]),
    ({"noize": "symmetric"}, ["grids.g1.regime", "unknown regime setting 'noize'", "closest: 'noise'"]),
    ({"noise": "symmetric", "noise_rate": []}, ["grids.g1.regime.noise_rate", "empty list"]),
    ([], ["grids.g1.regime", "empty list"]),
    ([{}, {"noise": "pairflip", "noise_rate": 2}], ["grids.g1.regime[1].noise_rate", "less than 1"]),
])
def test_inconsistent_regimes_are_refused_when_the_registry_loads(regime, words):
    with pytest.raises(BenchError) as exc:
        parse_registry(_grid(regime=regime))
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_an_override_that_leaves_a_regime_inconsistent_is_one_line():
    with pytest.raises(BenchError, match=r"grid 'g1': regime \{noise_rate=0.4\}: noise_rate=0.4 without a noise kind"):
        expand_grid(parse_registry(_grid()), "g1", parse_set(["regime.noise_rate=0.4"]), validate=False)


# ---- application -------------------------------------------------------------------------------

K = 10


def _splits(per_class: list[int], n_test: int = 50) -> Splits:
    """Labels per_class[c] of class c, shuffled; x encodes each training sample's index."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1)
    ty = torch.arange(n_test) % len(per_class)
    return Splits(x, y, torch.zeros(n_test, 1, 1, 1), ty, len(per_class), (1, 1, 1), (0.0,), (1.0,), "test",
                  tuple(map(str, range(len(per_class)))), kind="mnist")


def _origin(s: Splits) -> torch.Tensor:
    return s.train_x.view(-1).long()


def test_symmetric_noise_changes_exactly_floor_eta_n_training_labels_and_never_the_test_labels():
    clean = hold_out(_splits([100] * K), 0.1, 0)  # 10 of each class held out: 900 training, 100 validation
    out, facts = apply_regime(clean, RegimeConfig(noise="symmetric", noise_rate=0.37), "mnist")
    changed = int((out.train_y != clean.train_y).sum())
    assert changed == 333  # ⌊0.37 · 900⌋ = ⌊333.0⌋
    assert facts.label_noise_rate == 333 / 900
    assert int((out.val_y != clean.val_y).sum()) == 37 and facts.val_label_noise_rate == 37 / 100  # ⌊0.37 · 100⌋
    assert torch.equal(out.test_y, clean.test_y) and out.test_y is clean.test_y
    assert torch.equal(out.train_x, clean.train_x) and torch.equal(out.val_x, clean.val_x)  # samples unchanged
    assert facts.train_size == 900 and sum(facts.train_class_counts) == 900
    assert list(facts.train_class_counts) == torch.bincount(out.train_y, minlength=K).tolist()


def test_validation_is_drawn_from_the_clean_labels_then_corrupted():
    full = _splits([100] * K)
    cell = _cells(regime={"noise": "symmetric", "noise_rate": 0.4}, train={"epochs": 2, "val_fraction": 0.1})[0]
    out, facts = cell_regime_splits(cell, full, TrainConfig(**cell.config["train"]))
    clean = hold_out(full, 0.1, 0)
    assert torch.equal(out.val_x, clean.val_x)  # the same validation samples as without noise
    val_idx = out.val_x.view(-1).long()
    assert torch.equal(clean.val_y, full.train_y[val_idx])  # stratified from the clean labels: 10 per class
    assert torch.bincount(clean.val_y, minlength=K).tolist() == [10] * K
    assert int((out.val_y != clean.val_y).sum()) == 40 and facts.val_label_noise_rate == 0.4


def test_the_seeds_of_the_two_noise_streams_differ():
    assert derived_seed(0, "train") != derived_seed(0, "val")
    assert derived_seed(0, "train") != derived_seed(1, "train")
    assert derived_seed(5, "val") == derived_seed(5, "val")


def test_exp_imbalance_matches_class_sizes_and_keeps_samples_with_their_labels():
    clean = hold_out(_splits([110] * K), 0.1 / 1.1, 0)  # 10 per class held out, 100 per class left
    out, facts = apply_regime(clean, RegimeConfig(imbalance="exp", imbalance_ratio=10), "mnist")
    sizes = class_sizes("exp", 10, K, 100)
    assert sizes == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]  # ⌊100 · 10^(-c/9)⌋
    assert list(facts.train_class_counts) == sizes and facts.train_size == sum(sizes) == 403
    original = _splits([110] * K).train_y
    assert torch.equal(out.train_y, original[_origin(out)])  # each kept sample keeps its own label
    assert facts.label_noise_rate == 0.0
    assert torch.equal(out.val_y, clean.val_y) and torch.equal(out.test_y, clean.test_y)  # validation and test balanced


def test_a_subset_has_its_exact_size_and_is_stratified():
    clean = _splits([60, 40] + [50] * 8)
    out, facts = apply_regime(clean, RegimeConfig(subset=50), "mnist")
    assert facts.train_size == 50 and out.n_train == 50
    assert list(facts.train_class_counts) == [6, 4] + [5] * 8  # 50 · n_c / 500
    assert torch.equal(out.train_y, clean.train_y[_origin(out)])
    assert math.isnan(facts.val_label_noise_rate)  # no validation split


def test_imbalance_then_subset_then_noise():
    clean = _splits([100] * K)
    regime = RegimeConfig(imbalance="step", imbalance_ratio=10, subset=120, noise="pairflip", noise_rate=0.5)
    out, facts = apply_regime(clean, regime, "mnist")
    # step r=10: five classes of 100, five of 10 (550); the subset of 120: ⌊120 · n_c / 550⌋ = 21 or 2 (+ remainders)
    clean_y = clean.train_y[_origin(out)]
    counts = torch.bincount(clean_y, minlength=K).tolist()
    assert sum(counts) == 120 and counts[:5] == [22] * 5 and counts[5:] == [2] * 5  # 21.8 → 22, 2.18 → 2, sum 120
    flipped = out.train_y != clean_y
    assert torch.equal(out.train_y[flipped], (clean_y[flipped] + 1) % K)  # pairflip: c → c + 1
    assert int(flipped.sum()) == 5 * 11 + 5 * 1 and facts.label_noise_rate == 60 / 120  # ⌊0.5 · 22⌋, ⌊0.5 · 2⌋


def test_asymmetric_noise_uses_the_kinds_map():
    clean = _splits([100] * K)
    out, facts = apply_regime(clean, RegimeConfig(noise="asymmetric", noise_rate=0.4), "fashion-mnist")
    cmap = asymmetric_map("fashion-mnist")
    moved = out.train_y != clean.train_y
    assert set(clean.train_y[moved].tolist()) == set(cmap)
    for src, dst in cmap.items():
        assert int(((clean.train_y == src) & (out.train_y == dst)).sum()) == 40
    assert facts.label_noise_rate == 6 * 40 / 1000


def test_the_same_noise_seed_gives_the_same_labels_to_every_loss_and_seed():
    full = _splits([100] * K)
    cells = _cells(regime={"noise": "symmetric", "noise_rate": 0.4}, train={"epochs": 2, "val_fraction": 0.1})
    assert {(c.loss, c.seed) for c in cells} == {("celLoss", 0), ("celLoss", 1), ("milLoss", 0), ("milLoss", 1)}
    labels = [cell_regime_splits(c, full, TrainConfig(**c.config["train"]))[0] for c in cells]
    assert all(torch.equal(s.train_y, labels[0].train_y) and torch.equal(s.val_y, labels[0].val_y) for s in labels)
    other = _cells(regime={"noise": "symmetric", "noise_rate": 0.4, "noise_seed": 1}, train={"epochs": 2, "val_fraction": 0.1})[0]
    again = cell_regime_splits(other, full, TrainConfig(**other.config["train"]))[0]
    assert not torch.equal(again.train_y, labels[0].train_y)
    assert int((again.train_y != hold_out(full, 0.1, 0).train_y).sum()) == 360  # the same count, other labels


def test_without_a_regime_the_splits_come_back_unchanged():
    clean = _splits([20] * K)
    out, facts = apply_regime(clean, RegimeConfig(), "mnist")
    assert out is clean and facts.label_noise_rate == 0.0 and facts.train_size == 200
    assert json.loads(facts.row()["train_class_counts"]) == [20] * K


def test_the_planner_computes_the_labels_a_cell_trains_on():
    full = _splits([100, 90, 80, 120, 100, 100, 70, 100, 100, 110])
    regime = RegimeConfig(imbalance="exp", imbalance_ratio=5, subset=300, noise="symmetric", noise_rate=0.3)
    out, _ = apply_regime(hold_out(full, 0.1, 3), regime, "mnist")
    planned = planned_training_labels(full.train_y.numpy(), 0.1, 3, regime, K, "mnist")
    assert torch.equal(planned, out.train_y)


def test_derived_splits_are_memoised_beside_the_dataset():
    full = _splits([100] * K)
    cells = _cells(regime={"noise": "symmetric", "noise_rate": [0.2, 0.4]}, train={"epochs": 2, "val_fraction": 0.1})
    a, b = (next(c for c in cells if c.variant == v) for v in ("noise_rate=0.2", "noise_rate=0.4"))
    memo = {"dataset": full}
    first = cell_regime_splits(a, full, TrainConfig(**a.config["train"]), memo)
    assert cell_regime_splits(a, full, TrainConfig(**a.config["train"]), memo) is first  # corrupted once
    cell_regime_splits(b, full, TrainConfig(**b.config["train"]), memo)
    assert len(memo) == 2 and memo["dataset"] is full  # one derived copy resident at a time


def test_failed_rows_have_the_regime_columns_with_the_types_of_done_rows():
    cell = _cells(regime={"noise": "symmetric", "noise_rate": 0.4})[0]
    row = failed_outcome(cell, "worker died").row
    assert {k: row[k] for k in UNKNOWN_FACTS}.keys() == UNKNOWN_FACTS.keys()
    assert math.isnan(row["label_noise_rate"]) and math.isnan(row["val_label_noise_rate"])
    assert row["train_size"] == 0 and row["train_class_counts"] == ""
    _, facts = apply_regime(_splits([10] * K), cell.regime, "mnist")
    done = facts.row()
    assert all(type(done[k]) is type(row[k]) for k in UNKNOWN_FACTS), (done, row)


def test_regime_modules_import_without_torch():
    code = ("import sys; import bench.data.regimes, bench.config.cells, bench.config.registry; from bench.plan.planner import check_regimes; "
            "from bench.data.noise import ASYMMETRIC_MAPS; assert 'torch' not in sys.modules, 'torch'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr


def test_every_regime_setting_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name, kind, default, meaning in regime_settings():
        assert f"| `{name}` | {kind} | {default} | {meaning} |" in readme, f"README: regime setting {name}"
    assert {s[0] for s in regime_settings()} == set(RegimeConfig.model_fields)
    from bench.cli.main import app

    help_text = " ".join(CliRunner().invoke(app, ["run", "--help"]).stdout.split())
    for name, kind, default, _ in regime_settings():
        assert f"regime.{name} ({kind}, default {default})" in help_text, name


# ---- the planner's checks and a real run, through the CLI ----------------------------------------------

LOGIT_ADJUSTED = {"target": "losses.imbalance:LogitAdjustedLoss", "params": {"tau": 1.0}}


def _registry(folder: Path, regime, losses=("celLoss",), dataset: str = "mnist", train: dict | None = None) -> Path:
    data = tiny_registry(r={"datasets": [dataset], "architectures": ["mlp"], "losses": list(losses), "seeds": [0, 1],
                            "train": train or {"epochs": 1, "batch_size": 64}, "regime": regime})
    data["losses"]["logit_adjusted"] = LOGIT_ADJUSTED
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# the data_root fixture: 256 MNIST-format training labels, classes 0-5 26 each, 6-9 25 each
BAD = {
    "noise-rate-out-of-range": ({"noise": "symmetric", "noise_rate": 1.0}, (), {}, ["grids.r.regime.noise_rate", "less than 1"]),
    "set-noise-rate-out-of-range": ({}, (), {"set": "regime.noise_rate=-0.1"}, ["regime.noise_rate=-0.1", "greater than or equal to 0"]),
    "noise-rate-without-kind": ({"noise_rate": 0.4}, (), {}, ["grids.r.regime", "without a noise kind"]),
    "asymmetric-without-a-map": ({"noise": "asymmetric", "noise_rate": 0.4}, (), {"dataset": "g"},
                                 ["dataset 'g'", "no class map for dataset 'gauss'", "symmetric"]),
    "imbalance-ratio-below-1": ({"imbalance": "exp", "imbalance_ratio": 0.5}, (), {},
                                ["grids.r.regime.imbalance_ratio", "greater than or equal to 1"]),
    "subset-larger-than-the-split": ({"subset": 240}, (), {"train": {"epochs": 1, "val_fraction": 0.1}},
                                     ["dataset 'mnist'", "subset=240", "larger than the split (226 samples)"]),
    "imbalance-empties-a-class": ({"imbalance": "exp", "imbalance_ratio": 100}, (), {},
                                  ["imbalance_ratio=100", "leaves a class with no sample (n_max = 25)", "ratio <= 25"]),
    "priors-of-an-empty-class": ({"subset": 5}, ("celLoss", "logit_adjusted"), {},
                                 ["subset=5", "no training example", "'logit_adjusted'", "class priors"]),
}


def _invoke(args: list):
    from bench.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_regimes_stop_the_run_with_one_line_and_write_nothing(case, tmp_path, data_root):
    regime, losses, extra, needles = BAD[case]
    reg = _registry(tmp_path, regime, losses or ("celLoss",), extra.get("dataset", "mnist"), extra.get("train"))
    results = tmp_path / "results"
    args = ["run", "--grid", "r", "--registry", reg, "--results", results, "--data-root", data_root, "--plain",
            "--no-report", *(["--set", extra["set"]] if "set" in extra else [])]
    r = _invoke(args)
    assert r.exit_code == 2, (case, r.output)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.stderr
    assert all(n in lines[0] for n in needles), (case, lines[0])
    # no cell, history or run record: at most the decoded-data cache the probe reads through
    assert not results.exists() or {p.name for p in results.iterdir()} == {"cache"}, case


def test_a_bad_regime_through_the_real_console_script(tmp_path, data_root):
    reg = _registry(tmp_path, {"subset": 5}, ("logit_adjusted",))
    r = subprocess.run([str(BENCH), "run", "--grid", "r", "--registry", reg, "--results", tmp_path / "results",
                        "--data-root", data_root], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no training example" in lines[0], r.stderr
    assert {p.name for p in (tmp_path / "results").iterdir()} == {"cache"}


def test_a_noisy_run_stores_what_the_regime_realised(tmp_path, data_root):
    reg = _registry(tmp_path, [{}, {"noise": "symmetric", "noise_rate": 0.35}], ("celLoss",),
                    train={"epochs": 1, "batch_size": 64, "val_fraction": 0.1})
    r = subprocess.run([str(BENCH), "run", "--grid", "r", "--registry", reg, "--results", tmp_path / "results",
                        "--data-root", data_root, "--plain"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "noise_rate=0.35" in r.stdout  # the report's setting column
    from bench.store.results import Store

    rows = Store(tmp_path / "results").cells().set_index("variant")
    assert len(rows) == 4 and (rows["status"] == "done").all()
    # 256 labels, 0.1 held out per class (round(2.6) = 3 of 26, round(2.5) = 3 of 25): 30 validation, 226 training
    noisy, clean = rows.loc["noise=symmetric,noise_rate=0.35"], rows.loc["noise=none,noise_rate=0"]
    assert (noisy["train_size"] == 226).all() and (clean["train_size"] == 226).all()
    assert np.allclose(noisy["label_noise_rate"], 79 / 226)  # ⌊0.35 · 226⌋ = 79
    assert np.allclose(noisy["val_label_noise_rate"], 10 / 30)  # ⌊0.35 · 30⌋ = 10
    assert (clean["label_noise_rate"] == 0.0).all() and (clean["val_label_noise_rate"] == 0.0).all()
    assert (noisy["regime.noise"] == "symmetric").all() and (clean["regime.noise"] == "none").all()
    counts = [json.loads(c) for c in noisy["train_class_counts"]]
    assert counts[0] == counts[1] and sum(counts[0]) == 226  # both seeds trained on the same noisy labels
    assert json.loads(clean["train_class_counts"].iloc[0]) == [23] * 6 + [22] * 4
    assert pd.api.types.is_integer_dtype(rows["train_size"])


def test_hints_name_regime_overrides_as_regime_flags(tmp_path, cli):
    reg = tmp_path / "registry.yaml"
    data = gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                              "train": {"epochs": 1, "batch_size": 256}})
    data["datasets"]["g"]["params"] = {"d": 2, "n_train": 256, "n_test": 64}
    reg.write_text(yaml.safe_dump(data))
    common = ["--grid", "g1", "--registry", reg, "--results", tmp_path / "res"]
    noisy = ["--set", "regime.noise=symmetric", "--set", "regime.noise_rate=0.2"]
    r = cli("run", *common, *noisy, "--plain", "--no-report")
    assert r.exit_code == 0, r.output
    r = cli("report", *common, "--set", "train.epochs=1")  # the clean cell: not trained
    assert r.exit_code == 0, r.output
    assert "train them with: bench run --grid g1" in r.stdout and "--set train.epochs=1" in r.stdout, r.stdout
    assert "show them with: bench report --grid g1 --set regime.noise=symmetric --set regime.noise_rate=0.2" in r.stderr


def test_the_shipped_regime_grids():
    from bench.plan.planner import check_regimes
    from bench.config.registry import load_registry

    reg = load_registry(REPO / "registry.yaml")
    for name in ("noisy-fashion-mnist", "noisy-cifar10"):
        cells = expand_grid(reg, name, validate=False)
        assert len(cells) == 8 * 4 * 3
        assert {c.loss for c in cells} == {"celLoss", "celLossLSR", "celLossLC", "gce", "sce", "nce_rce", "focal", "milLoss"}
        assert {c.variant for c in cells} == {"noise=symmetric,noise_rate=0.2", "noise=symmetric,noise_rate=0.4",
                                              "noise=symmetric,noise_rate=0.6", "noise=asymmetric,noise_rate=0.4"}
        assert {c.train.lr for c in cells} == {0.01} and {c.train.val_fraction for c in cells} == {0.1}
        check_regimes(cells)  # both kinds have an asymmetric map
    for name in ("lt-fashion-mnist", "lt-cifar10"):
        cells = expand_grid(reg, name, validate=False)
        assert len(cells) == 4 * 2 * 3 and {c.variant for c in cells} == {"imbalance_ratio=100", "imbalance_ratio=10"}
        assert {c.regime.imbalance for c in cells} == {"exp"} and len({c.train.lr for c in cells}) == 1
