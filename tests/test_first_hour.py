"""A new user's first hour: the README's "Adding a loss" followed literally, broken losses, exit codes.

The main paths run the real ``bench`` console script in a subprocess from a temp folder, as a user does;
the many bad-input cases beside them run the same app in this process (:func:`inproc`), each with a
loss module of its own name, since an imported module stays in ``sys.modules`` for the next case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, bench_inprocess, gauss_registry

BENCH = Path(sys.executable).with_name("bench")

FOCAL = '''
import torch
import torch.nn.functional as F


class FocalLoss(torch.nn.Module):
    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits, targets):
        logp = F.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** self.gamma * logp).mean()
'''

BROKEN = '''
import torch
import torch.nn.functional as F


class NeedsGamma(torch.nn.Module):
    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)


class PerSample(torch.nn.Module):
    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets, reduction="none")


class ReturnsFloat(torch.nn.Module):
    def forward(self, logits, targets):
        return float(F.cross_entropy(logits, targets))


class Detached(torch.nn.Module):
    def forward(self, logits, targets):
        return F.cross_entropy(logits.detach(), targets)


class Raises(torch.nn.Module):
    def forward(self, logits, targets):
        return logits[:, 99].mean()


class Typed(torch.nn.Module):
    def __init__(self, gamma: float = 2.0, mode: str = "mean"):
        super().__init__()
        self.gamma, self.mode = gamma, mode

    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)


class FailsLater(torch.nn.Module):
    """Passes the one-batch check, then raises in training (its third call)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, logits, targets):
        self.calls += 1
        if self.calls == 3:
            raise ValueError("the third batch is bad")
        return F.cross_entropy(logits, targets)


class NanLater(torch.nn.Module):
    """Passes the one-batch check, then returns NaN in training."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, logits, targets):
        self.calls += 1
        loss = F.cross_entropy(logits, targets)
        return loss * float("nan") if self.calls >= 2 else loss
'''


def bench(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOSSBENCH_REGISTRY", "LOSSBENCH_RESULTS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(REPO)  # this checkout's code, as the installed console script would import it
    return subprocess.run([str(BENCH), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def inproc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bench ARGS`` through the app in this process, answered as :func:`bench` answers."""
    return bench_inprocess(*args, cwd=cwd)


def broken_module(folder: Path, name: str) -> str:
    """BROKEN written as ``folder/<name>.py``; returns the module name."""
    (folder / f"{name}.py").write_text(BROKEN)
    return name


def write_registry(folder: Path, losses: dict, grid_losses: list, epochs: int = 2) -> Path:
    reg = gauss_registry(mine={"datasets": ["g"], "architectures": ["mlp"], "losses": grid_losses, "seeds": [0],
                               "train": {"epochs": epochs, "batch_size": 256}})
    reg["datasets"]["g"]["params"] = {"d": 2, "n_train": 1024, "n_test": 256}
    reg["losses"].update(losses)
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(reg, sort_keys=False))
    return path


def test_bench_console_script_exists():
    assert BENCH.is_file(), f"{BENCH}: run scripts/setup.sh"


def test_a_loss_module_beside_the_registry_or_in_the_working_folder_imports(tmp_path):
    """One run from another folder than the registry's: my_losses is found beside registry.yaml, wd_losses
    (beside no registry) in the working folder."""
    project = tmp_path / "project"
    project.mkdir()
    reg = write_registry(project, {"focal": {"target": "my_losses:FocalLoss", "params": {"gamma": 2.0}},
                                   "wd": {"target": "wd_losses:FocalLoss"}},
                         ["celLoss", {"focal": {"gamma": [1.0, 2.0]}}, "wd"])
    (project / "my_losses.py").write_text(FOCAL)
    (tmp_path / "wd_losses.py").write_text(FOCAL)
    r = bench("run", "--grid", "mine", "--registry", reg, "--results", tmp_path / "results", "--no-report",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "results" / "cells")
    assert sorted(rows["loss"]) == ["celLoss", "focal(gamma=1)", "focal(gamma=2)", "wd"]
    assert set(rows["status"]) == {"done"}


def test_an_unimportable_module_names_where_it_looked(tmp_path):
    # through the app in this process: a module name no folder of the suite holds
    reg = write_registry(tmp_path, {"focal": {"target": "my_missing_losses:FocalLoss"}}, ["focal"])
    r = inproc("run", "--grid", "mine", "--registry", reg, "--results", tmp_path / "results", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: loss target 'my_missing_losses:FocalLoss'")
    assert str(tmp_path) in r.stderr


# the loss module is named after the case: {module} in the target and the messages
BROKEN_CASES = {
    "missing-argument": ({"target": "{module}:NeedsGamma"}, ["missing required parameter 'gamma'",
                                                             "losses.bad.params.gamma"]),
    "wrong-type": ({"target": "{module}:Typed", "params": {"gamma": "two"}}, ["gamma='two' is a str", "expects float"]),
    "wrong-type-str": ({"target": "{module}:Typed", "params": {"mode": 3}}, ["mode=3 is a int", "expects str"]),
    "unknown-parameter": ({"target": "{module}:Typed", "params": {"gama": 1.0}}, ["unknown parameter 'gama'", "gamma"]),
    "per-sample": ({"target": "{module}:PerSample"}, ["tensor of shape (8,)", "0-dim tensor", ".mean()"]),
    "float": ({"target": "{module}:ReturnsFloat"}, ["returned a float, not a tensor"]),
    "detached": ({"target": "{module}:Detached"}, ["does not depend on the logits"]),
    "raises": ({"target": "{module}:Raises"}, ["forward(logits, targets) raised IndexError", "at {module}.py:"]),
}
BROKEN_AS_A_USER = "raises"  # this case runs the console script; the others, the same app in this process


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_a_broken_loss_is_one_error_line_before_any_training(tmp_path, case):
    spec, expected = BROKEN_CASES[case]
    module = broken_module(tmp_path, "broken_" + case.replace("-", "_"))
    spec = {**spec, "target": spec["target"].format(module=module)}
    reg = write_registry(tmp_path, {"bad": spec}, ["celLoss", "bad"])
    results = tmp_path / "results"
    run = bench if case == BROKEN_AS_A_USER else inproc
    r = run("run", "--grid", "mine", "--registry", reg, "--results", results, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    expected = [text.format(module=module) for text in expected]
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: loss 'bad'"), r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr
    assert not (results / "cells").exists(), "nothing may be trained, not even the good loss"


@pytest.fixture(scope="module")
def failed_later(tmp_path_factory):
    """A grid whose second loss raises in training, run once by the console script: (folder, registry, run args)."""
    folder = tmp_path_factory.mktemp("fails-later")
    broken_module(folder, "broken_fails_later")
    reg = write_registry(folder, {"later": {"target": "broken_fails_later:FailsLater"}}, ["celLoss", "later"])
    args = ("run", "--grid", "mine", "--registry", reg, "--results", folder / "results", "--no-report")
    r = bench(*args, cwd=folder)
    assert r.returncode == 1, (r.stdout, r.stderr)
    return folder, reg, args


def test_a_loss_that_raises_in_training_keeps_its_traceback(failed_later):
    tmp_path, reg, _ = failed_later
    results = tmp_path / "results"
    rows = pd.read_parquet(results / "cells").set_index("loss")
    assert rows.loc["celLoss", "status"] == "done", "the grid goes on"
    message = rows.loc["later", "message"]
    line = BROKEN.splitlines().index('            raise ValueError("the third batch is bad")') + 1
    assert rows.loc["later", "status"] == "failed"
    assert message == f"ValueError: the third batch is bad at broken_fails_later.py:{line}"
    tb = results / "logs" / f"{rows.loc['later', 'cell_id']}.traceback.txt"
    assert "Traceback (most recent call last)" in tb.read_text() and "broken_fails_later.py" in tb.read_text()
    s = inproc("status", "--grid", "mine", "--registry", reg, "--results", results, cwd=tmp_path)
    assert f"at broken_fails_later.py:{line}" in s.stdout and str(tb.relative_to(tmp_path)) in s.stdout, s.stdout


def test_a_loss_that_returns_nan_is_reported_as_the_loss_value(tmp_path):
    module = broken_module(tmp_path, "broken_nan_later")
    reg = write_registry(tmp_path, {"nanny": {"target": f"{module}:NanLater"}}, ["nanny"])
    results = tmp_path / "results"
    r = inproc("run", "--grid", "mine", "--registry", reg, "--results", results, "--no-report", cwd=tmp_path)
    assert r.returncode == 1
    row = pd.read_parquet(results / "cells").iloc[0]
    assert row["status"] == "diverged"
    assert row["message"].startswith("loss 'nanny': non-finite training loss in epoch 1: the loss returned nan")


def test_registering_a_loss_does_not_grow_the_paper_grids(tmp_path):
    """The cells `bench list` counts, from the planner: listing the whole shipped registry checks every
    architecture on the meta device, which tests/test_architectures.py runs as a user does."""
    from bench.config.cells import expand_grid
    from bench.config.registry import load_registry

    reg = yaml.safe_load((REPO / "registry.yaml").read_text())
    reg["losses"]["focal"] = {"target": "my_losses_paper_grids:FocalLoss"}
    (tmp_path / "my_losses_paper_grids.py").write_text(FOCAL)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(reg, sort_keys=False))
    registry = load_registry(path)
    assert "focal" in registry.loss_names()
    counts = {g: len(expand_grid(registry, g, validate=False)) for g in ("quick", "mnist", "fashion-mnist", "cifar10")}
    assert counts == {"quick": 15, "mnist": 30, "fashion-mnist": 30, "cifar10": 75}


def test_a_grid_holding_failed_cells_exits_1_even_when_they_are_skipped(failed_later, tmp_path):
    # its first run, the console script, exited 1; the second runs through the app, on a copy of the store
    shutil.copytree(failed_later[0], tmp_path / "p")
    reg, results = tmp_path / "p" / "registry.yaml", tmp_path / "p" / "results"
    again = inproc("run", "--grid", "mine", "--registry", reg, "--results", results, "--no-report", cwd=tmp_path / "p")
    assert again.returncode == 1, again.stdout
    assert "--retry-failed" in again.stdout + again.stderr


def test_list_validates_everything_before_printing(tmp_path):
    module = broken_module(tmp_path, "broken_listed")
    reg = write_registry(tmp_path, {"bad": {"target": f"{module}:PerSample"}}, ["celLoss", "bad"])
    r = inproc("list", "--registry", reg, "--results", tmp_path / "results", "--no-params", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.startswith("error: loss 'bad'") and r.stderr.count("\n") == 1


def test_list_shows_descriptions_and_where_a_dataset_was_looked_for(tmp_path):
    reg = write_registry(tmp_path, {}, ["celLoss"])
    data = yaml.safe_load(reg.read_text())
    data["datasets"]["m"] = {"kind": "mnist", "description": "handwritten digits"}
    data["losses"]["celLoss"]["description"] = "plain cross entropy"
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    r = inproc("list", "--registry", reg, "--results", tmp_path / "results", "--data-root", tmp_path / "nowhere",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "handwritten digits" in r.stdout and "plain cross entropy" in r.stdout
    assert "not found" in r.stdout and str(tmp_path / "nowhere") in r.stdout
    assert not (tmp_path / "results").exists(), "bench list is read-only"


def test_every_training_setting_is_documented_in_run_help_and_the_readme(tmp_path):
    from bench.config.registry import TrainConfig, train_settings

    r = bench("run", "--help", cwd=tmp_path)
    assert r.returncode == 0
    readme = (REPO / "README.md").read_text()
    for name, kind, default, meaning in train_settings():
        assert f"train.{name} ({kind}, default {default})" in " ".join(r.stdout.split()), name
        assert f"| `{name}` | {kind} | {default} | {meaning} |" in readme, f"README: training setting {name}"
    assert {s[0] for s in train_settings()} == set(TrainConfig.model_fields)
    assert "0-based" in readme.split("set_progress", 1)[1][:300], "README: set_progress gets a 0-based epoch"


@pytest.mark.parametrize("command", ["status", "report"])
def test_read_only_commands_refuse_a_missing_results_folder_and_create_nothing(tmp_path, command):
    reg = write_registry(tmp_path, {}, ["celLoss"])
    before = sorted(p.name for p in tmp_path.iterdir())
    r = inproc(command, "--grid", "mine", "--registry", reg, "--results", tmp_path / "results2", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: --results ") and "no such folder" in r.stderr and r.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_read_only_commands_write_no_cache(tmp_path, data_root):
    reg = tmp_path / "registry.yaml"
    from tests.conftest import tiny_registry

    data = tiny_registry(two={"datasets": ["mnist"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                              "train": {"epochs": 1, "batch_size": 64}, "fallback_dataset": "g"})
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    results = tmp_path / "results"
    results.mkdir()
    for args in (["status"], ["report"], ["run", "--dry-run"], ["list", "--no-params"]):
        r = inproc(*args, "--grid", "two", "--registry", reg, "--results", results, "--data-root", data_root,
                   cwd=tmp_path) if args[0] != "list" else inproc(*args, "--registry", reg, "--results", results,
                                                                   "--data-root", data_root, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)
        assert list(results.iterdir()) == [], (args, list(results.rglob("*")))
