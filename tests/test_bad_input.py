"""Bad input through the CLI, table driven: each case exits with code 2 and one line ``error: ...`` on
stderr naming the input and the expected form (the closest valid names for an unknown name), prints
no traceback, and changes no file of an existing results folder."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, tiny_registry
from tests.fixtures_data import IDX_NAMES, write_mnist_idx


@dataclass
class Workspace:
    root: Path
    registry: Path
    results: Path
    data_root: Path

    def registry_with(self, name: str, change: Callable[[dict], None]) -> Path:
        data = copy.deepcopy(REGISTRY)
        change(data)
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def text_registry(self, name: str, text: str) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(text)
        return path

    def data_with(self, name: str, damage: Callable[[Path], None]) -> Path:
        root = self.root / f"data-{name}"
        raw = write_mnist_idx(root, "MNIST", n_train=64, n_test=32, seed=0)
        damage(raw)
        return root


GRID = {"two": {"datasets": ["mnist"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0],
                "train": {"epochs": 1, "batch_size": 64}},
        "lsr": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLossLSR"], "seeds": [0],
                "train": {"epochs": 1}}}
REGISTRY = tiny_registry(**GRID)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("bad-input")
    data_root = root / "data"
    write_mnist_idx(data_root, "MNIST", n_train=64, n_test=32, seed=0)
    reg = root / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    w = Workspace(root, reg, root / "results", data_root)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = invoke(w.run("--grid", "two"))  # a results folder with finished cells, which no bad input may touch
    finally:
        torch.set_num_threads(saved)
    assert r.exit_code == 0, r.output
    return w


def _run(self: Workspace, *extra, registry: Path | None = None, data_root: Path | None = None) -> list:
    return ["run", "--grid", "two", "--registry", registry or self.registry, "--results", self.results, "--data-root",
            data_root or self.data_root, "--plain", "--no-report", *extra]  # a later --grid wins


def _cmd(self: Workspace, command: str, *extra, registry: Path | None = None) -> list:
    return [command, "--registry", registry or self.registry, "--results", self.results, "--data-root",
            self.data_root, *extra]


Workspace.run = _run
Workspace.cmd = _cmd


def invoke(args: list):
    from bench.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def set_in(path: str, value):
    """A registry change: set the value at a dotted path (keys may not contain dots)."""
    def change(data: dict) -> None:
        keys = path.split(".")
        node = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


def truncate(name: str, keep: int):
    def damage(raw: Path) -> None:
        p = raw / IDX_NAMES[name]
        p.write_bytes(p.read_bytes()[:keep])
    return damage


def garbage(name: str):
    def damage(raw: Path) -> None:
        (raw / IDX_NAMES[name]).write_bytes(b"<html>not an idx file</html>\n" * 40)
    return damage


# id -> (arguments, substrings the one line must contain)
CASES: dict[str, tuple[Callable[[Workspace], list], list[str]]] = {
    "malformed-yaml": (lambda w: w.run(registry=w.text_registry("malformed", "datasets: [mnist\nlosses: {")),
                       ["malformed.yaml", "line", "malformed YAML"]),
    "yaml-python-tag": (lambda w: w.run(registry=w.text_registry(
        "tag", f"datasets: !!python/object/apply:os.system ['touch {w.root / 'pwned'}']\n")),
        ["tag.yaml", "malformed YAML", "constructor"]),
    "registry-not-a-mapping": (lambda w: w.run(registry=w.text_registry("list", "- datasets\n- grids\n")),
                               ["list.yaml", "expected a mapping"]),
    "registry-missing": (lambda w: w.run(registry=w.root / "nope.yaml"), ["nope.yaml", "not found", "--registry"]),
    "unknown-section": (lambda w: w.run(registry=w.registry_with(
        "section", lambda d: d.__setitem__("architectues", {}))),
        ["unknown key 'architectues'", "closest: 'architectures'"]),
    "unknown-grid": (lambda w: w.run("--grid", "tow"), ["unknown grid 'tow'", "closest: 'two'"]),
    "unknown-dataset": (lambda w: w.run(registry=w.registry_with("ds", set_in("grids.two.datasets", ["mnsit"]))),
                        ["grids.two.datasets[0]", "unknown dataset 'mnsit'", "closest: 'mnist'"]),
    "unknown-architecture": (lambda w: w.run(registry=w.registry_with("arch", set_in("grids.two.architectures", ["mpl"]))),
                             ["grids.two.architectures[0]", "unknown architecture 'mpl'", "closest: 'mlp'"]),
    "unknown-loss": (lambda w: w.run(registry=w.registry_with("loss", set_in("grids.two.losses", ["celLos"]))),
                     ["grids.two.losses[0]", "unknown loss 'celLos'", "closest: 'celLoss'"]),
    "unknown-dataset-kind": (lambda w: w.run(registry=w.registry_with("kind", set_in("datasets.mnist.kind", "mnits"))),
                             ["datasets.mnist.kind", "'mnits'", "'mnist'"]),
    "loss-module-missing": (lambda w: w.run(registry=w.registry_with(
        "mod", set_in("losses.celLoss.target", "losses.nope:CelLoss"))), ["losses.nope:CelLoss", "cannot import module"]),
    "loss-class-missing": (lambda w: w.run(registry=w.registry_with(
        "cls", set_in("losses.celLoss.target", "losses.cross_entropy:CelLos"))),
        ["losses.cross_entropy:CelLos", "has no 'CelLos'", "closest: 'CelLoss'"]),
    "loss-not-a-loss": (lambda w: w.run(registry=w.registry_with(
        "notloss", set_in("losses.celLoss.target", "json:dumps"))), ["json:dumps", "not a torch.nn.Module"]),
    "loss-target-form": (lambda w: w.run(registry=w.registry_with(
        "form", set_in("losses.celLoss.target", "losses.cross_entropy.CelLoss"))),
        ["losses.celLoss.target", "package.module:ClassName"]),
    "loss-unknown-param": (lambda w: w.run(registry=w.registry_with(
        "param", set_in("losses.celLoss.params", {"gama": 2.0}))), ["celLoss", "'gama'"]),
    "negative-lr": (lambda w: w.run(registry=w.registry_with("lr", set_in("grids.two.train.lr", -0.1))),
                    ["grids.two.train.lr", "greater than 0", "-0.1"]),
    "zero-batch-size": (lambda w: w.run("--set", "train.batch_size=0"), ["train.batch_size=0", "greater than 0"]),
    "epsilon-out-of-range": (lambda w: w.run("--grid", "lsr", registry=w.registry_with(
        "eps", set_in("losses.celLossLSR.params", {"epsilon": 1.5}))), ["celLossLSR", "epsilon", "[0, 1)", "1.5"]),
    "negative-lambda": (lambda w: w.run(registry=w.registry_with("lam", set_in("losses.milLoss.params", {"lam": -1.0}))),
                        ["milLoss", "lam", "-1"]),
    "empty-seeds": (lambda w: w.run(registry=w.registry_with("seeds", set_in("grids.two.seeds", []))),
                    ["grids.two.seeds", "at least 1"]),
    "duplicate-seeds": (lambda w: w.run(registry=w.registry_with("dupseeds", set_in("grids.two.seeds", [0, 0]))),
                        ["grids.two.seeds", "unique"]),
    "duplicate-name": (lambda w: w.run(registry=w.text_registry(
        "dupname", w.registry.read_text().replace("architectures:\n", "architectures:\n  mlp: {source: native, name: cnn}\n", 1))),
        ["dupname.yaml", "duplicate key 'mlp'"]),
    "wrong-type": (lambda w: w.run(registry=w.registry_with("type", set_in("grids.two.train.epochs", "many"))),
                   ["grids.two.train.epochs", "integer", "many"]),
    "unknown-train-key": (lambda w: w.run(registry=w.registry_with("tkey", set_in("grids.two.train", {"epoch": 2}))),
                          ["unknown training setting 'epoch'", "closest: 'epochs'"]),
    "unknown-set-key": (lambda w: w.run("--set", "train.lrr=0.1"), ["--set train.lrr", "closest: 'train.lr'"]),
    "set-without-value": (lambda w: w.run("--set", "train.lr"), ["--set 'train.lr'", "key=value"]),
    "set-wrong-type": (lambda w: w.run("--set", "train.epochs=abc"), ["train.epochs=abc", "integer"]),
    "momentum-out-of-range": (lambda w: w.run("--set", "train.momentum=1.5"), ["train.momentum=1.5", "less than 1"]),
    "precision-needs-cuda": (lambda w: w.run("--set", "train.precision=bf16", "--device", "cpu"),
                             ["bf16", "CUDA", "train.precision=fp32"]),
    "filter-syntax": (lambda w: w.run("--filter", "loss"), ["--filter 'loss'", "key=value", "loss_name"]),
    "filter-unknown-key": (lambda w: w.run("--filter", "los=celLoss"), ["--filter los", "closest: 'loss'"]),
    "filter-no-match": (lambda w: w.run("--filter", "loss=celLos"), ["loss=celLos", "matches no cell", "closest: 'celLoss'"]),
    "missing-data-root": (lambda w: w.run(data_root=w.root / "no-such-data"), ["mnist", "not found", "no-such-data"]),
    "data-wrong-format": (lambda w: w.run(data_root=w.data_with("format", garbage("train_x"))),
                          [IDX_NAMES["train_x"], "idx"]),
    "data-wrong-size": (lambda w: w.run(data_root=w.data_with("size", truncate("train_x", 16 + 28 * 28 * 10))),
                        [IDX_NAMES["train_x"]]),
    "data-wrong-count": (lambda w: w.run(data_root=w.data_with("count", lambda raw: (raw / IDX_NAMES["train_y"]).write_bytes(
        (raw / IDX_NAMES["test_y"]).read_bytes()))), [IDX_NAMES["train_y"]]),
    "gauss-bad-param": (lambda w: w.run("--grid", "lsr", registry=w.registry_with("gauss", set_in("datasets.g.params.prior", 2.0))),
                        ["prior", "(0, 1)", "2"]),
    "results-is-a-file": (lambda w: ["run", "--registry", w.registry, "--results", w.registry, "--data-root", w.data_root],
                          ["registry.yaml", "is a file", "--results"]),
    "unwritable-report-path": (lambda w: w.cmd("report", "--grid", "two", "--out", w.registry / "sub"),
                               ["--out", "registry.yaml", "writable"]),
    "format-unsupported": (lambda w: w.cmd("report", "--grid", "two", "--format", "html"),
                           ["--format 'html'", "markdown, latex, csv"]),
    "unknown-baseline": (lambda w: w.cmd("report", "--grid", "two", "--baseline", "celLos"),
                         ["--baseline 'celLos'", "closest: 'celLoss'"]),
    "status-unknown-grid": (lambda w: w.cmd("status", "--grid", "tow"), ["unknown grid 'tow'", "closest: 'two'"]),
    "unknown-option": (lambda w: w.run("--fro"), ["No such option: --fro", "--force"]),
    "unknown-command": (lambda w: ["trian"], ["No such command 'trian'"]),
    "jobs-zero": (lambda w: w.run("--jobs", "0"), ["--jobs", "greater than or equal to 1"]),
    "device-unknown": (lambda w: w.run("--device", "tpu"), ["--device 'tpu'", "cpu, cuda or cuda:N"]),
    "launcher-unknown": (lambda w: w.run("--launcher", "k8s"), ["--launcher 'k8s'", "local, ray or slurm"]),
}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(ws, case):
    build, needles = CASES[case]
    args = build(ws)
    before = snapshot(ws.results)
    r = invoke(args)
    assert r.exit_code == 2, (case, r.exit_code, r.output)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, (case, r.stderr)
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in r.output
    for needle in needles:
        assert needle in line, (case, needle, line)
    assert snapshot(ws.results) == before, case
    assert not (ws.root / "pwned").exists()  # the registry is read with a safe YAML loader


@pytest.mark.parametrize("case", ["unknown-loss", "loss-module-missing", "loss-not-a-loss", "epsilon-out-of-range",
                                  "unknown-set-key", "precision-needs-cuda", "filter-unknown-key", "data-wrong-format"])
def test_bad_input_creates_no_results_folder(ws, case, tmp_path):
    build, _ = CASES[case]
    fresh = tmp_path / "fresh-results"
    args = [str(a) for a in build(ws)]
    args[args.index(str(ws.results))] = str(fresh)
    r = invoke(args)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert not fresh.exists()


@pytest.mark.parametrize("case", ["malformed-yaml", "unknown-option", "loss-module-missing"])
def test_bad_input_through_the_real_console_script(ws, case):
    build, needles = CASES[case]
    before = snapshot(ws.results)
    r = subprocess.run([sys.executable, "-m", "bench.cli", *map(str, build(ws))], capture_output=True, text=True,
                       cwd=REPO, timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    assert snapshot(ws.results) == before
