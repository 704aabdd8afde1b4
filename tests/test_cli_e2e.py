"""End to end through the CLI on tiny real-format data: run, skip, resume, report."""

from __future__ import annotations

import gc
import io
import math
import re
import shlex
import textwrap

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from bench.store.results import Store
from tests import faults
from tests.conftest import bench_subprocess, tiny_registry

CELL_COLUMNS = {
    "cell_id", "attempt_id", "dataset", "architecture", "loss", "loss_name", "seed", "variant", "config_json",
    "train.epochs", "train.batch_size", "train.optimizer", "train.lr", "train.momentum", "train.weight_decay",
    "train.precision", "dataset.kind", "architecture.source", "architecture.name", "loss.target", "loss.params",
    "status", "message", "epochs_done", "final_test_acc", "final_test_loss", "final_train_loss", "final_train_acc",
    "final_test_mi", "final_test_h_cond", "final_test_h_marg", "test_label_entropy", "wall_time", "device",
    "torch_version", "started_at", "finished_at", "written_at",
}
HISTORY_COLUMNS = {"cell_id", "attempt_id", "epoch", "train_loss", "train_acc", "test_acc", "test_loss",
                   "test_h_cond", "test_h_marg", "test_mi", "epoch_time"}


def run_args(reg, results, data_root, *extra):
    return ["run", "--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root, "--plain", *extra]


def test_run_store_skip_and_report(workspace, cli, tmp_path):
    reg, results, data_root = workspace
    r = cli(*run_args(reg, results, data_root))
    assert r.exit_code == 0, r.output
    assert "trained 2 (2 done);" in r.output
    assert "| mnist" in r.output  # the report printed at the end

    store = Store(results)
    cells = store.cells()
    assert len(cells) == 2 and set(cells["status"]) == {"done"}
    assert CELL_COLUMNS <= set(cells.columns), CELL_COLUMNS - set(cells.columns)
    assert set(cells["loss"]) == {"celLoss", "milLoss"}
    assert (cells["epochs_done"] == 3).all() and (cells["train.batch_size"] == 32).all()
    assert cells["final_test_acc"].between(0, 1).all()
    assert all(math.isfinite(v) for v in cells["final_test_mi"])
    assert (cells["final_test_mi"] - (cells["final_test_h_marg"] - cells["final_test_h_cond"])).abs().max() < 1e-9
    assert cells["test_label_entropy"].between(0, math.log(10) + 1e-9).all()
    assert set(cells["device"]) == {"cpu"}
    hist = store.history(cells["attempt_id"])
    assert HISTORY_COLUMNS <= set(hist.columns)
    assert len(hist) == 6 and sorted(hist["epoch"].unique()) == [1, 2, 3]
    last = hist[hist["epoch"] == 3].set_index("cell_id")["test_acc"]
    assert (last.sort_index() == cells.set_index("cell_id")["final_test_acc"].sort_index()).all()
    # every parquet file is a complete file with the expected schema
    for p in (results / "cells").glob("*.parquet"):
        assert CELL_COLUMNS <= set(pq.read_schema(p).names)
    assert not list((results / "checkpoints").glob("*.pt")), "checkpoints are removed when a cell finishes"

    r = cli(*run_args(reg, results, data_root))
    assert r.exit_code == 0 and "trained 0" in r.output and "skipped 2 finished" in r.output

    r = cli(*run_args(reg, results, data_root, "--force", "--filter", "loss=milLoss", "--no-report"))
    assert "trained 1 (1 done" in r.output
    assert len(Store(results).cells()) == 2  # the retrained cell replaces its row

    assert gc.isenabled()
    r = cli("status", "--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root)
    assert "1 cells of its last run (--filter loss=milLoss; --all: the whole grid): 1 done" in r.output
    r = cli("status", "--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root, "--all")
    assert "2 done, 0 running, 0 failed, 0 diverged, 0 pending" in r.output
    assert gc.isenabled(), "status pauses the cyclic GC only while it runs"

    out = tmp_path / "report"
    for fmt, needle in [("markdown", "| mnist"), ("latex", "\\toprule"), ("csv", "acc_mean")]:
        r = cli("report", "--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root,
                "--format", fmt, "--out", out)
        assert r.exit_code == 0, r.output
        assert needle in r.output
    assert (out / "two" / "report.md").exists() and (out / "two" / "report.tex").exists()
    assert gc.isenabled(), "report pauses the cyclic GC only while it runs"
    csv = pd.read_csv(out / "two" / "report.csv")  # long form: one row per (selection rule, row, loss)
    last = csv[csv["select"] == "last"]
    assert list(last["loss"]) == ["celLoss", "milLoss"] and (last["n"] == 1).all()


def test_cell_resumes_from_checkpoint_with_identical_metrics(workspace, tmp_path):
    reg, results, data_root = workspace
    ref = tmp_path / "reference"
    common = ["--registry", reg, "--data-root", data_root, "--grid", "two", "--plain", "--no-report"]
    r = bench_subprocess("run", "--results", ref, *common)
    assert r.returncode == 0, r.stderr
    reference = Store(ref).cells().set_index("loss")

    # kill -9 the run right after the milLoss cell checkpointed epoch 1
    mil_id = reference.loc["milLoss", "cell_id"]
    r = faults.faulty_subprocess("run", "--results", results, *common, fault=f"kill:{mil_id}:1")
    assert r.returncode == -9, (r.returncode, r.stdout, r.stderr)
    assert (results / "checkpoints" / f"{mil_id}.pt").exists()
    assert Store(results).statuses().get(mil_id) is None

    r = bench_subprocess("run", "--results", results, *common)
    assert r.returncode == 0, r.stderr
    assert "resumed from epoch 1" in r.stdout
    resumed = Store(results).cells().set_index("loss")
    assert resumed.loc["milLoss", "resumed_from_epoch"] == 1
    for col in ["final_test_acc", "final_test_loss", "final_train_loss", "final_test_mi"]:
        assert resumed.loc["milLoss", col] == reference.loc["milLoss", col], col  # bitwise on CPU
    cols = ["epoch", "train_loss", "train_acc", "test_acc", "test_loss", "test_mi"]
    h_ref = Store(ref).history([reference.loc["milLoss", "attempt_id"]]).sort_values("epoch")[cols]
    h_res = Store(results).history([resumed.loc["milLoss", "attempt_id"]]).sort_values("epoch")[cols]
    assert len(h_res) == 3
    assert h_res.reset_index(drop=True).equals(h_ref.reset_index(drop=True))


def test_same_seed_gives_identical_history(workspace, cli, tmp_path):
    reg, results, data_root = workspace
    for sub in ("a", "b"):
        r = cli(*run_args(reg, tmp_path / sub, data_root, "--filter", "loss=celLoss", "--no-report"))
        assert r.exit_code == 0, r.output
    a = Store(tmp_path / "a").history().sort_values("epoch")
    b = Store(tmp_path / "b").history().sort_values("epoch")
    cols = ["train_loss", "train_acc", "test_acc", "test_loss", "test_mi"]
    assert a[cols].reset_index(drop=True).equals(b[cols].reset_index(drop=True))


def test_cifar10_pickles_and_cnn(tmp_path, data_root, cli):
    grids = {"c": {"datasets": ["cifar10"], "architectures": ["cnn"], "losses": ["celLossLSR"], "seeds": [0, 1],
                   "train": {"epochs": 1, "batch_size": 16}}}
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump(tiny_registry(**grids)))
    r = cli("run", "--grid", "c", "--registry", reg, "--results", tmp_path / "res", "--data-root", data_root, "--plain")
    assert r.exit_code == 0, r.output
    cells = Store(tmp_path / "res").cells()
    assert len(cells) == 2 and set(cells["dataset.kind"]) == {"cifar10"} and set(cells["status"]) == {"done"}
    assert "± " in r.output  # two seeds give a std


def test_a_loss_defined_only_in_the_test(tmp_path, data_root, cli, monkeypatch):
    (tmp_path / "my_losses.py").write_text(textwrap.dedent("""
        import torch
        import torch.nn.functional as F

        class FocalLoss(torch.nn.Module):
            def __init__(self, gamma: float = 2.0):
                super().__init__()
                self.gamma = gamma

            def forward(self, logits, targets):
                logp = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
                return (-(1 - logp.exp()) ** self.gamma * logp).mean()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tiny_registry(f={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", {"focal": {"gamma": [1.0, 3.0]}}],
                            "seeds": [0], "train": {"epochs": 2, "batch_size": 64}})
    data["losses"]["focal"] = {"target": "my_losses:FocalLoss", "params": {"gamma": 2.0}}
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump(data))
    r = cli("run", "--grid", "f", "--registry", reg, "--results", tmp_path / "res", "--plain")
    assert r.exit_code == 0, r.output
    cells = Store(tmp_path / "res").cells()
    assert set(cells["loss"]) == {"celLoss", "focal(gamma=1)", "focal(gamma=3)"}
    assert set(cells["status"]) == {"done"}
    assert "focal(gamma=3)" in r.output


def test_dry_run_trains_nothing(workspace, cli):
    reg, results, data_root = workspace
    r = cli(*run_args(reg, results, data_root, "--dry-run"))
    assert r.exit_code == 0 and "2 cells on cpu; 0 done" in r.output
    assert Store(results).cells().empty


def test_list_shows_registry(workspace, cli):
    reg, results, data_root = workspace
    r = cli("list", "--registry", reg, "--results", results, "--data-root", data_root)
    assert r.exit_code == 0, r.output
    assert "mnist" in r.output and "256" in r.output  # dataset with its size
    assert "0.055M" in r.output  # the paper's MLP has 55,050 parameters
    assert "two" in r.output and "lam=5.0" in r.output


def test_failed_and_diverged_cells_are_recorded_and_grid_goes_on(workspace, cli):
    reg, results, data_root = workspace
    # every cell's loss turns NaN in epoch 0
    r = faults.invoke("nan::0", *run_args(reg, results, data_root, "--filter", "loss=celLoss", "--no-report"))
    assert r.exit_code == 1
    r = faults.invoke("oom::0", *run_args(reg, results, data_root, "--filter", "loss=milLoss", "--no-report"))
    assert r.exit_code == 1
    cells = Store(results).cells().set_index("loss")
    assert cells.loc["celLoss", "status"] == "diverged" and "non-finite" in cells.loc["celLoss", "message"]
    assert cells.loc["milLoss", "status"] == "failed"
    assert "out of memory" in cells.loc["milLoss", "message"] and "train.batch_size=16" in cells.loc["milLoss", "message"]
    r = cli(*run_args(reg, results, data_root, "--no-report"))
    assert "skipped 2 failed/diverged" in r.output
    r = cli("status", "--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root)
    assert "1 failed, 1 diverged" in r.output and "out of memory" in r.output
    r = cli(*run_args(reg, results, data_root, "--retry-failed", "--no-report"))
    assert r.exit_code == 0 and "trained 2 (2 done" in r.output


def test_quick_falls_back_to_gauss_without_fashion_mnist(tmp_path, cli, monkeypatch):
    from tests.conftest import REPO

    monkeypatch.setenv("LOSSBENCH_DEBIAN_FASHION_DIR", str(tmp_path / "no-debian"))
    monkeypatch.setenv("LOSSBENCH_DATA_ROOT", str(tmp_path / "empty"))
    r = cli("run", "--registry", REPO / "registry.yaml", "--results", tmp_path / "res", "--plain",
            "--set", "train.epochs=1", "--filter", "seed=0")
    assert r.exit_code == 0, r.output
    assert "dataset 'fashion-mnist' unavailable" in r.output and "falls back to 'gauss'" in r.output
    cells = Store(tmp_path / "res").cells()
    assert len(cells) == 5 and set(cells["dataset"]) == {"gauss"} and set(cells["status"]) == {"done"}
    assert "exact I(X;Y)" in r.output  # the report shows the generating distribution's truth


def test_quick_grid_report_with_figures(tmp_path, cli):
    """The shipped default grid end to end (1 epoch), then every report format and figure."""
    from tests.conftest import REPO

    common = ["--registry", REPO / "registry.yaml", "--results", tmp_path / "res", "--set", "train.epochs=1"]
    r = cli("run", *common, "--plain", "--no-report")
    assert r.exit_code == 0, r.output
    assert "trained 15 (15 done" in r.output
    out = tmp_path / "report"
    r = cli("report", *common, "--figures", "--out", out)
    assert r.exit_code == 0, r.output
    figs = sorted(p.name for p in (out / "quick" / "figures").iterdir())
    dataset = Store(tmp_path / "res").cells()["dataset"].iloc[0]  # fashion-mnist, or gauss where it is missing
    stems = [f"curves-{dataset}-mlp", "mi-vs-error", f"reliability-{dataset}-mlp", f"ece-vs-acc-{dataset}-mlp"]
    assert figs == sorted(f"{stem}.{ext}" for stem in stems for ext in ("png", "pdf"))
    md = (out / "quick" / "report.md").read_text()
    assert f"![figures/curves-{dataset}-mlp.png](figures/curves-{dataset}-mlp.png)" in md
    assert "| celLoss" in md or "celLoss |" in md
    for p in (out / "quick" / "figures").iterdir():
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")


def test_gc_paused_while_a_read_only_command_runs():
    from bench.cli.main import gc_paused

    @gc_paused
    def probe() -> bool:
        return gc.isenabled()

    assert gc.isenabled() and probe() is False and gc.isenabled()

    @gc_paused
    def fails() -> None:
        raise RuntimeError("boom")

    try:
        fails()
    except RuntimeError:
        pass
    assert gc.isenabled(), "re-enabled when the command raises too"


def test_report_of_nothing_says_how_to_run_it_then_filters_and_notes_figures(workspace, cli, tmp_path):
    """As a user would: report an untrained grid, run the command it prints, report again (filtered, with figures)."""
    reg, results, data_root = workspace
    results.mkdir()  # an empty results folder (a missing one is an error of its own)
    common = ["--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root]
    r = cli("report", *common, "--filter", "loss=celLoss")
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    line = r.output.strip()
    assert line.startswith(f"grid 'two': no finished cell in {results} (1 cell: 1 pending); train them with: bench run")
    command = shlex.split(line.split("train them with: ", 1)[1])
    assert command[:4] == ["bench", "run", "--grid", "two"] and command[-2:] == ["--filter", "loss=celLoss"]

    r = cli(*command[1:])  # the printed command, as typed
    assert r.exit_code == 0, r.output
    summary = [ln for ln in r.output.splitlines() if ln.startswith("grid 'two'")]
    assert len(summary) == 1 and re.fullmatch(r"grid 'two': 1 cell; trained 1 \(1 done\); [\d.]+ s", summary[0]), summary
    assert Store(results).statuses() and set(Store(results).statuses().values()) == {"done"}

    r = cli("report", *common, "--filter", "loss=celLoss")
    assert r.exit_code == 0 and "| celLoss" in r.output and "milLoss" not in r.output, r.output
    r = cli("report", *common)  # unfiltered: the untrained loss shows as not run yet
    assert "milLoss" in r.output and "Cells: 1 done, 1 pending." in r.output
    r = cli("report", *common, "--filter", "los=celLoss")
    assert r.exit_code == 2 and r.stderr.startswith("error: --filter los: unknown key") and "loss" in r.stderr

    r = cli("report", *common, "--figures", "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == ["note: lambda sweep: the grid sweeps no λ",
                                     "note: batch-size sweep: the grid sweeps no batch size"]
    assert sorted(p.name for p in (tmp_path / "rep" / "two" / "figures").glob("*.png")) == [
        "curves-mnist-mlp.png", "ece-vs-acc-mnist-mlp.png", "mi-vs-error.png", "reliability-mnist-mlp.png"]


def test_the_grid_names_its_baseline_and_the_data_root_comes_from_the_environment(workspace, cli, monkeypatch):
    """``baseline:`` in a grid is what ``bench report`` compares with; ``$LOSSBENCH_DATA_ROOT`` is read
    by the command line and travels to the cells as an argument, the environment left untouched."""
    import os

    reg, results, data_root = workspace
    data = tiny_registry()
    data["grids"]["two"].update(baseline="milLoss", train={"epochs": 1, "batch_size": 32})
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("LOSSBENCH_DATA_ROOT", str(data_root))
    ours = lambda: {k: v for k, v in os.environ.items() if k.startswith("LOSSBENCH_")}  # noqa: E731 (torch sets its own)
    before = ours()
    r = cli("run", "--grid", "two", "--registry", reg, "--results", results, "--plain", "--no-report")
    assert r.exit_code == 0 and "trained 2 (2 done" in r.output, r.output
    assert ours() == before
    acc = Store(results).cells().set_index("loss")["final_test_acc"]
    for flags, base, other in (([], "milLoss", "celLoss"), (["--baseline", "celLoss"], "celLoss", "milLoss")):
        r = cli("report", "--grid", "two", "--registry", reg, "--results", results, "--format", "csv", *flags)
        assert r.exit_code == 0, r.output
        table = pd.read_csv(io.StringIO(r.stdout))
        rows = table[table["select"] == "last"].set_index("loss")
        assert math.isnan(rows.loc[base, "diff_vs_baseline"])
        assert rows.loc[other, "diff_vs_baseline"] == pytest.approx(acc[other] - acc[base], abs=1e-9)


@pytest.mark.parametrize("losses, baseline, needle", [
    (["celLoss", "milLoss"], "celLos", "grids.two.baseline: 'celLos' is not a loss of the grid; name one it lists without parameter overrides: "
                                "celLoss, milLoss"),
    (["celLoss", {"milLoss": {"lam": [1, 5]}}], "milLoss", "name one it lists without parameter overrides: celLoss"),
])
def test_a_baseline_outside_the_grid_is_one_line(workspace, cli, losses, baseline, needle):
    reg, results, data_root = workspace
    data = tiny_registry()
    data["grids"]["two"].update(losses=losses, baseline=baseline)
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    for args in (["list"], ["run", "--grid", "two", "--dry-run"], ["report", "--grid", "two"]):
        r = cli(*args, "--registry", reg, "--results", results, "--data-root", data_root)
        assert r.exit_code == 2 and r.stdout == "", (args, r.output)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {reg}: ") and needle in r.stderr, r.stderr


def test_the_default_baseline_is_celloss_where_the_grid_lists_it():
    from bench.config.registry import GridSpec

    names = ["celLoss", "milLoss", "focal"]
    grid = {"datasets": ["d"], "architectures": ["a"], "seeds": [0]}
    assert GridSpec(**grid).baseline_loss(names) == "celLoss"
    assert GridSpec(**grid, losses=["milLoss", "focal"]).baseline_loss(names) is None
    assert GridSpec(**grid, losses=[{"celLoss": {"x": 1}}, "milLoss"]).baseline_loss(names) is None
    assert GridSpec(**grid, losses=["milLoss", "focal"], baseline="focal").baseline_loss(names) == "focal"


BROKEN_LOSSES = '''
import torch


class PerSample(torch.nn.Module):
    def forward(self, logits, targets):
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


class Detached(torch.nn.Module):
    def forward(self, logits, targets):
        return torch.nn.functional.cross_entropy(logits, targets).detach()
'''


def test_list_names_every_broken_loss_as_run_does(workspace, cli, tmp_path):
    """Losses in no grid are probed too, each broken one its own ``error:`` line, in run's words."""
    reg, results, data_root = workspace
    (tmp_path / "listbroken.py").write_text(BROKEN_LOSSES)
    data = tiny_registry()
    data["losses"].update(persample={"target": "listbroken:PerSample"}, detached={"target": "listbroken:Detached"},
                          missing={"target": "listbroken:Nowhere"})
    data["grids"]["bad"] = {**data["grids"]["two"], "losses": ["celLoss", "persample"]}
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    r = cli("list", "--registry", reg, "--results", results, "--data-root", data_root, "--no-params")
    assert r.exit_code == 2 and r.stdout == "", r.output
    lines = r.stderr.splitlines()
    assert [line.split("'")[1] for line in lines] == ["persample", "detached", "listbroken:Nowhere"], lines
    assert all(line.startswith("error: ") for line in lines)
    run = cli("run", "--grid", "bad", "--registry", reg, "--results", results, "--data-root", data_root, "--dry-run")
    assert run.exit_code == 2 and run.stderr.splitlines() == [lines[0]]  # the same words as the run's
    assert "has no 'Nowhere'" in lines[2]
