"""The planner, run records and code fingerprints, as a user meets them through the CLI."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import yaml

from bench.errors import BenchError
from bench.plan.planner import fallbacks, make_plan, plan_from_runs
from bench.config.registry import parse_registry
from tests.conftest import bench_inprocess, gauss_registry
from tests.test_first_hour import bench

LOSS_V1 = '''
import torch
import torch.nn.functional as F


class MyLoss(torch.nn.Module):
    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)


class Other(torch.nn.Module):
    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)
'''


def inproc(*args, cwd):
    """``bench ARGS`` through the app in this process: setup runs and follow-up checks of a path the
    console script runs elsewhere in this file."""
    return bench_inprocess(*args, cwd=cwd)


def _loss_file(tmp_path):
    """The folder's loss module, under a name of its own: in-process runs share sys.modules and sys.path,
    where another folder's module of the same name (edited, in the staleness test) would be found first."""
    return tmp_path / f"user_losses_{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]}.py"


def _registry(tmp_path, **grid):
    reg = gauss_registry(mine={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "mine"],
                               "seeds": [0, 1], "train": {"epochs": 3, "batch_size": 256}, **grid})
    reg["datasets"]["g"]["params"] = {"d": 2, "n_train": 512, "n_test": 128}
    reg["losses"]["mine"] = {"target": f"{_loss_file(tmp_path).stem}:MyLoss"}
    _loss_file(tmp_path).write_text(LOSS_V1)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(reg, sort_keys=False))
    return path


def test_report_after_a_run_with_overrides_shows_its_cells_without_the_flags(tmp_path):
    reg, results = _registry(tmp_path), tmp_path / "results"
    r = bench("run", "--grid", "mine", "--registry", reg, "--results", results, "--set", "train.epochs=2",
              "--no-report", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    s = inproc("status", "--grid", "mine", "--registry", reg, "--results", results, cwd=tmp_path)
    assert "grid 'mine': 4 cells: 4 done, 0 running, 0 failed, 0 diverged, 0 pending" in s.stdout, s.stdout
    rep = inproc("report", "--grid", "mine", "--registry", reg, "--results", results, "--format", "csv", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "celLoss" in rep.stdout and "mine" in rep.stdout and "nan" not in rep.stdout.split("\n", 1)[1][:200]
    # asking for the registry's settings: those cells are pending, and the store's other cells are named
    s = inproc("status", "--grid", "mine", "--registry", reg, "--results", results, "--set", "train.epochs=3",
               cwd=tmp_path)
    assert "4 cells: 0 done" in s.stdout and "4 pending" in s.stdout
    assert "the store also holds 4 finished cells of grid 'mine' from runs with other settings" in s.stdout
    assert "bench report --grid mine --set train.epochs=2" in s.stdout
    rep = bench("report", "--grid", "mine", "--registry", reg, "--results", results, "--set", "train.epochs=3",
                cwd=tmp_path)
    assert "note: the store also holds 4 finished cells of grid 'mine' from runs with other settings" in rep.stderr


def test_editing_a_loss_makes_its_cells_stale_until_rerun(tmp_path):
    reg, results = _registry(tmp_path), tmp_path / "results"
    args = ("run", "--grid", "mine", "--registry", reg, "--results", results, "--no-report")
    assert inproc(*args, cwd=tmp_path).returncode == 0  # the setup; what follows each edit runs as a user runs it
    before = pd.read_parquet(results / "cells").set_index("loss")
    # an edit to another class of the same file leaves MyLoss's cells alone
    _loss_file(tmp_path).write_text(LOSS_V1.replace("class Other(torch.nn.Module):\n    def forward",
                                                              "class Other(torch.nn.Module):\n    def forward "))
    s = bench("status", "--grid", "mine", "--registry", reg, "--results", results, cwd=tmp_path)
    assert "stale" not in s.stdout, s.stdout
    _loss_file(tmp_path).write_text(LOSS_V1.replace("return F.cross_entropy(logits, targets)\n\n\nclass Other",
                                                              "return F.cross_entropy(logits, targets) * 1.0\n\n\nclass Other"))
    s = bench("status", "--grid", "mine", "--registry", reg, "--results", results, cwd=tmp_path)
    assert "2 done, 0 running, 0 failed, 0 diverged, 0 pending, 2 stale" in s.stdout, s.stdout
    assert "--rerun-stale" in s.stdout
    r = bench(*args, cwd=tmp_path)
    assert r.returncode == 0 and "2 finished cells ran an older version" in r.stderr and "trained 0" in r.stdout
    r = bench(*args, "--rerun-stale", cwd=tmp_path)
    assert r.returncode == 0 and "trained 2" in r.stdout, r.stdout
    after = pd.read_parquet(results / "cells").sort_values("written_at").groupby("cell_id").tail(1).set_index("loss")
    assert not set(after.loc["mine", "code_fingerprint"]) & set(before.loc["mine", "code_fingerprint"])
    assert set(after.loc["celLoss", "code_fingerprint"]) == set(before.loc["celLoss", "code_fingerprint"])
    s = bench("status", "--grid", "mine", "--registry", reg, "--results", results, cwd=tmp_path)
    assert "stale" not in s.stdout


def test_cells_record_what_auto_resolved_to_and_the_code_they_ran(tmp_path):
    reg, results = _registry(tmp_path), tmp_path / "results"
    assert inproc("run", "--grid", "mine", "--registry", reg, "--results", results, "--no-report", "--filter", "seed=0",
                  cwd=tmp_path).returncode == 0
    rows = pd.read_parquet(results / "cells")
    assert set(rows["train.precision"]) == {"auto"} and set(rows["precision_used"]) == {"fp32"}
    assert set(rows["channels_last_used"]) == {"on"}
    assert rows["code_fingerprint"].str.len().eq(12).all() and rows["code_version"].str.startswith("lossbench").all()


def test_a_misspelt_architecture_parameter_is_one_error_before_training(tmp_path):
    reg = _registry(tmp_path)
    data = yaml.safe_load(reg.read_text())
    data["architectures"]["mlp"]["params"] = {"hiden": [8]}
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    r = inproc("run", "--grid", "mine", "--registry", reg, "--results", tmp_path / "results", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "architectures.mlp" in r.stderr and "'hiden'" in r.stderr and "hidden" in r.stderr
    assert not (tmp_path / "results" / "cells").exists()


def _reg() -> object:
    data = gauss_registry(fb={"datasets": ["fm"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                              "fallback_dataset": "g", "train": {"epochs": 1}})
    return parse_registry(data)


def test_plan_is_a_pure_function_of_its_inputs():
    reg = _reg()
    a = make_plan(reg, "fb", {"epochs": 2}, None, {"fm": "g"}, validate=False)
    b = make_plan(reg, "fb", {"epochs": 2}, None, {"fm": "g"}, validate=False)
    assert a.cell_ids == b.cell_ids and [c.dataset for c in a.cells] == ["g"]
    assert a.record() == {"grid": "fb", "overrides": {"epochs": 2}, "filters": {}, "substitutions": {"fm": "g"},
                          "cell_ids": a.cell_ids}
    # the fallback is decided by the caller's probe, not by reading data in the planner
    assert fallbacks(reg, "fb", lambda name, ds: "missing" if name == "fm" else None) == {"fm": "g"}
    assert fallbacks(reg, "fb", lambda name, ds: None) == {}


def test_readers_rebuild_the_last_runs_cells_from_its_record():
    reg = _reg()
    run = make_plan(reg, "fb", {"epochs": 2}, None, {"fm": "g"}, validate=False)
    read = plan_from_runs(reg, "fb", [run.record()], None, None)
    assert read.plan.cell_ids == run.cell_ids and read.plan.substitutions == {"fm": "g"} and not read.other_runs
    other = plan_from_runs(reg, "fb", [run.record()], {"epochs": 1}, None)
    assert other.plan.cell_ids != run.cell_ids and other.other_runs == [run.record()]


def test_plan_checks_dataset_parameters_without_reading_data():
    data = gauss_registry(bad={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0]})
    data["datasets"]["g"]["params"] = {"d": 0}
    with pytest.raises(BenchError, match="datasets.g: gauss parameter 'd' must be >= 1"):
        make_plan(parse_registry(data), "bad")
