"""Numbers a reader can trust at a glance: each case a new user met, through the real ``bench`` command.

1. a report never overwrites a folder rendered from another source; 2. a shortened run says so in every
format; 3. an incomplete search withholds its verdicts; 4. a closed pipe never fails a cell; 5. other
data under the same identity is stale, never reused silently; 6. stale cells are marked in a report;
7. an interrupted cell shows in ``bench status``, which exits 1 on failed cells; 9. the smaller cases:
``--select tuned`` on a grid without a search, the quick start's install. (8, the figures, is tested
with the figures.)

The console script runs in a child process where a process is the point (a closed pipe, a signal, a
loss module edited after its cells ran, a refused report); the other commands run the same app in this
process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, bench_inprocess
from tests.fixtures_data import write_mnist_idx
from tests.test_reliability import Run

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

LOSS_FILE = '''import torch.nn.functional as F
from torch import nn


class MyLoss(nn.Module):
    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)
'''


def bench(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def inproc(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The same command in this process: for a case's setup runs and follow-up checks, so that only the
    command under test pays a new interpreter (the suite's time)."""
    return bench_inprocess(*args, cwd=cwd)


def loss_module(folder: Path) -> str:
    """The name of ``folder``'s loss module: its own, since in-process runs share ``sys.modules`` and
    ``sys.path``, where another folder's ``trust_losses`` (perhaps edited since) would be found first."""
    return "trust_losses_" + hashlib.sha256(str(folder).encode()).hexdigest()[:10]


def loss_file(folder: Path) -> Path:
    return folder / f"{loss_module(folder)}.py"


def registry(folder: Path, epochs: int = 2, search: bool = False, dataset: str = "g", **train) -> Path:
    grid = {"datasets": [dataset], "architectures": ["mlp"], "losses": ["celLoss", "mine"], "seeds": [0, 1],
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, **train}}
    if search:
        grid["train"]["val_fraction"] = 0.2
        grid["search"] = {"trials": 2, "seed": 0, "space": {"train.lr": "loguniform(1e-3, 1e-1)"}}
    data = {
        "datasets": {"g": {"kind": "gauss", "params": {"d": 4, "n_train": 512, "n_test": 256, "seed": 0}},
                     "mnist": {"kind": "mnist"}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}},
        "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"},
                   "mine": {"target": f"{loss_module(folder)}:MyLoss"}},
        "grids": {"t": grid},
    }
    loss_file(folder).write_text(LOSS_FILE)
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def trained(folder: Path, *extra: str) -> Path:
    registry(folder)
    r = inproc("run", "--grid", "t", "--plain", "--no-report", *extra, cwd=folder)
    assert r.returncode == 0, r.stdout + r.stderr
    return folder


# ----------------------------------------------------------------------------- 1. overwriting a report
def test_report_without_out_writes_no_file(tmp_path):
    trained(tmp_path)
    before = files(tmp_path)
    r = inproc("report", "--grid", "t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert files(tmp_path) == before, "bench report without --out wrote files"
    r = inproc("report", "--grid", "t", "--figures", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "--out" in r.stderr, r.stderr
    assert files(tmp_path) == before


def test_report_refuses_a_folder_rendered_from_another_source(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    trained(a)
    registry(b, epochs=1)
    assert inproc("run", "--grid", "t", "--plain", "--no-report", "--filter", "seed=0", cwd=b).returncode == 0
    out = tmp_path / "site"
    r = inproc("report", "--grid", "t", "--out", out, cwd=a)
    assert r.returncode == 0, r.stderr
    rendered = files(out)
    assert any(name.startswith("t/report") for name in rendered)
    # the same source re-renders in place
    assert inproc("report", "--grid", "t", "--out", out, "--format", "csv", cwd=a).returncode == 0
    rendered = files(out)
    r = bench("report", "--grid", "t", "--out", out, cwd=b)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "--out" in lines[0]
    assert files(out) == rendered, "a refused report changed the folder"


def test_report_refuses_a_folder_with_a_report_of_unknown_source(tmp_path):
    trained(tmp_path)
    old = tmp_path / "report" / "t"
    old.mkdir(parents=True)
    (old / "report.md").write_text("# a two-hour table made elsewhere\n")
    r = inproc("report", "--grid", "t", "--out", "report", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error:"), r.stderr
    assert (old / "report.md").read_text() == "# a two-hour table made elsewhere\n"


# ----------------------------------------------------------------------------- 2. a shortened run
def test_a_shortened_run_says_so_in_every_format(tmp_path):
    import io

    import pandas as pd

    trained(tmp_path, "--set", "train.epochs=1")
    for fmt in ("markdown", "latex", "csv"):
        r = inproc("report", "--grid", "t", "--format", fmt, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        if fmt == "csv":
            df = pd.read_csv(io.StringIO(r.stdout))
            assert "overrides" in df.columns and set(df["overrides"]) == {"train.epochs=1 (the grid's 2)"}, df.columns
        else:
            title = next(line for line in r.stdout.splitlines() if line.startswith(("## ", "\\caption{")))
            assert "train.epochs=1" in title, title
            assert "the grid's 2" in r.stdout.replace("grid’s", "grid's"), r.stdout


# ----------------------------------------------------------------------------- 3. an incomplete search
def test_an_incomplete_search_withholds_its_verdicts(tmp_path):
    registry(tmp_path, search=True)
    assert inproc("run", "--grid", "t", "--plain", "--no-report", "--filter", "trial=0", cwd=tmp_path).returncode == 0
    r = inproc("report", "--grid", "t", "--select", "tuned", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "incomplete search" in r.stdout
    assert "1 of 2 trials" in r.stdout
    for verdict in ("better (", "worse (", "no difference ("):
        assert verdict not in r.stdout
    r = inproc("report", "--grid", "t", "--select", "tuned", "--accept-incomplete", cwd=tmp_path)
    assert r.returncode == 0 and "incomplete search" in r.stdout.lower() and "no difference" in r.stdout, r.stdout


# ----------------------------------------------------------------------------- 4. a closed pipe
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_closed_pipe_never_fails_a_cell(tmp_path, stream):
    registry(tmp_path, epochs=3, dataset="mnist")
    # mnist is absent from the empty data root: the fallback's note is a first stderr line, before any training
    reg = yaml.safe_load((tmp_path / "registry.yaml").read_text())
    reg["grids"]["t"]["fallback_dataset"] = "g"
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(reg, sort_keys=False))
    (tmp_path / "no-data").mkdir()
    p = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--grid", "t", "--plain", "--data-root", "no-data"],
                         cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pipe = getattr(p, stream)
    other = p.stderr if stream == "stdout" else p.stdout
    assert pipe.readline()
    pipe.close()  # as `| head -1` does
    out = other.read()
    rc = p.wait(timeout=300)
    s = inproc("status", "--grid", "t", cwd=tmp_path)
    assert "4 done" in s.stdout and "0 failed" in s.stdout, s.stdout
    assert rc == 0, out
    if stream == "stderr":  # the display, the summary and the report still reach stdout whole
        assert out.count(" started") == 4 and "trained 4 (4 done)" in out and "| mlp " in out, out
    else:
        assert "Traceback" not in out and "BrokenPipe" not in out, out


def test_a_display_that_raises_leaves_the_cells_done(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.run.progress import PlainDisplay

    def broken(self, cell, p):
        raise RuntimeError("terminal gone")

    monkeypatch.setattr(PlainDisplay, "step", broken)
    monkeypatch.chdir(tmp_path)
    registry(tmp_path)
    r = CliRunner().invoke(app, ["run", "--grid", "t", "--plain", "--no-report", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning: the progress display stopped (RuntimeError: terminal gone)") == 1, r.output
    assert "trained 4 (4 done)" in r.output, r.output
    s = inproc("status", "--grid", "t", cwd=tmp_path)
    assert "4 done" in s.stdout and "0 failed" in s.stdout, s.stdout


# ----------------------------------------------------------------------------- 5. other data, same identity
def test_other_data_makes_finished_cells_stale(tmp_path):
    registry(tmp_path, dataset="mnist")
    one, two = tmp_path / "one", tmp_path / "two"
    write_mnist_idx(one, "MNIST", n_train=128, n_test=64, seed=0)
    write_mnist_idx(two, "MNIST", n_train=128, n_test=64, seed=1)
    r = inproc("run", "--grid", "t", "--plain", "--no-report", "--data-root", one, "--filter", "seed=0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = inproc("run", "--grid", "t", "--plain", "--no-report", "--data-root", one, "--filter", "seed=0", cwd=tmp_path)
    assert "trained 0" in r.stdout and "stale" not in r.stdout + r.stderr
    s = inproc("status", "--grid", "t", "--data-root", two, cwd=tmp_path)
    assert "stale" in s.stdout and "data" in s.stdout, s.stdout
    r = inproc("run", "--grid", "t", "--plain", "--no-report", "--data-root", two, "--filter", "seed=0", cwd=tmp_path)
    assert "stale" in r.stdout + r.stderr, r.stdout + r.stderr
    r = inproc("run", "--grid", "t", "--plain", "--no-report", "--data-root", two, "--filter", "seed=0",
               "--rerun-stale", cwd=tmp_path)
    assert r.returncode == 0 and "trained 2" in r.stdout, r.stdout
    s = inproc("status", "--grid", "t", "--data-root", two, cwd=tmp_path)
    assert "stale" not in s.stdout, s.stdout


# ----------------------------------------------------------------------------- 6. stale cells in a report
def test_a_report_marks_stale_cells(tmp_path):
    trained(tmp_path)
    loss_file(tmp_path).write_text(LOSS_FILE.replace("F.cross_entropy(logits, targets)",
                                                     "F.cross_entropy(logits, targets) * 1.0"))
    assert "2 finished cells ran an older version" in bench("status", "--grid", "t", cwd=tmp_path).stdout
    r = bench("report", "--grid", "t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "stale" in r.stdout and "--rerun-stale" in r.stdout, r.stdout


# ----------------------------------------------------------------------------- 7. an interrupted run
def test_status_shows_an_interrupted_cell_and_the_last_runs_cells(tmp_path):
    registry(tmp_path, epochs=60)
    r = Run("run", "--grid", "t", "--plain", "--no-report", "--filter", "loss=celLoss", "--registry",
            tmp_path / "registry.yaml", "--results", tmp_path / "results", "--threads", "1")
    assert r.wait_for(r"^  epoch ", count=2)
    r.signal(signal.SIGINT)
    assert r.finish() == 130
    s = inproc("status", "--grid", "t", cwd=tmp_path)
    assert s.stdout.splitlines()[0].startswith("grid 't': 2 cells"), s.stdout  # the run's cells, not the grid's 4
    assert "interrupted" in s.stdout and "checkpointed at epoch" in s.stdout and "of 60" in s.stdout, s.stdout
    head = s.stdout.splitlines()[0]
    assert "of its last run (--filter loss=celLoss; --all: the whole grid)" in head and "1 interrupted" in head, head
    assert "bench run --grid t --filter loss=celLoss" in s.stdout and s.returncode == 0, s.stdout
    s = inproc("status", "--grid", "t", "--all", cwd=tmp_path)
    assert s.stdout.startswith("grid 't': 4 cells: ") and "3 pending, 1 interrupted" in s.stdout, s.stdout
    [checkpoint] = (tmp_path / "results" / "checkpoints").glob("*.pt")
    checkpoint.write_bytes(b"not a checkpoint")
    s = inproc("status", "--grid", "t", cwd=tmp_path)
    assert "its checkpoint cannot be read, so the next run trains it from the start" in s.stdout, s.stdout


def test_status_exits_1_when_the_grid_holds_failed_cells(tmp_path):
    registry(tmp_path)
    loss_file(tmp_path).write_text(LOSS_FILE.replace(
        "        return F.cross_entropy(logits, targets)",
        "        self.calls = getattr(self, 'calls', 0) + 1\n"
        "        if self.calls > 3:  # past the one-batch check before training\n"
        "            raise RuntimeError('boom')\n"
        "        return F.cross_entropy(logits, targets)"))
    inproc("run", "--grid", "t", "--plain", "--no-report", cwd=tmp_path)
    s = inproc("status", "--grid", "t", cwd=tmp_path)
    assert "2 failed" in s.stdout, s.stdout + s.stderr
    assert s.returncode == 1


# ----------------------------------------------------------------------------- 9. smaller cases
def test_select_tuned_without_a_search_names_the_missing_search(tmp_path):
    trained(tmp_path)  # neither a search nor a validation split: the search is what is missing first
    r = inproc("report", "--grid", "t", "--select", "tuned", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: --select tuned: grid 't' has no search: block"), r.stderr
    assert "search: {trials:" in r.stderr and "val_fraction" in r.stderr and "--select last" in r.stderr, r.stderr
    trained(tmp_path, "--set", "train.val_fraction=0.2")
    r = inproc("report", "--grid", "t", "--select", "tuned", cwd=tmp_path)
    assert r.returncode == 2 and "no search: block" in r.stderr and "validation split" not in r.stderr, r.stderr
    assert "--select val" in r.stderr, r.stderr


def test_the_quick_start_installs_no_cluster_extras():
    r = subprocess.run(["bash", "scripts/setup.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    quick = [line for line in r.stdout.splitlines() if "pip install" in line]
    assert quick and not any("ray" in line or "slurm" in line for line in quick), r.stdout
    r = subprocess.run(["bash", "scripts/setup.sh", "--test", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and any("ray" in line and "slurm" in line and "test" in line
                                     for line in r.stdout.splitlines() if "pip install" in line), r.stdout
