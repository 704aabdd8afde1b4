"""Shared fixtures: tiny real-format datasets and registries, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.fixtures_data import write_cifar10_batches, write_mnist_idx

pytest_plugins = ["tests.ci_skips"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny-tensor tests: intra-op threads only add overhead there
    (and stall under CPU contention); the thread count is restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def gauss_registry(**grids) -> dict:
    """A registry over the gauss model (and Fashion-MNIST, named but not read): mlp x celLoss, milLoss."""
    return {
        "datasets": {"g": {"kind": "gauss", "params": {"d": 2}}, "fm": {"kind": "fashion-mnist"}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}},
        "losses": {
            "celLoss": {"target": "losses.cross_entropy:CelLoss"},
            "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 50.0}},
        },
        "grids": grids,
    }


def tiny_registry(**grids) -> dict:
    """A registry over tiny real-format MNIST/CIFAR-10 files and the gauss model."""
    return {
        "datasets": {
            "mnist": {"kind": "mnist"},
            "cifar10": {"kind": "cifar10"},
            "g": {"kind": "gauss", "params": {"d": 4, "n_train": 512, "n_test": 256, "seed": 0}},
        },
        "architectures": {
            "mlp": {"source": "native", "name": "mlp"},
            "cnn": {"source": "native", "name": "cnn"},
        },
        "losses": {
            "celLoss": {"target": "losses.cross_entropy:CelLoss"},
            "celLossLSR": {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1}},
            "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 5.0}},
        },
        "grids": grids or {
            "two": {"datasets": ["mnist"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0],
                    "train": {"epochs": 3, "batch_size": 32}},
        },
    }


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_mnist_idx(root, "MNIST", n_train=256, n_test=64, seed=0)
    write_cifar10_batches(root, n_per_batch=20, n_test=20, seed=0)
    return root


@pytest.fixture()
def workspace(tmp_path: Path, data_root: Path):
    """(registry path, results path, data root); write a different registry with ``write``."""
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(tiny_registry(), sort_keys=False))
    return reg, tmp_path / "results", data_root


@pytest.fixture()
def cli():
    from bench.cli.main import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def bench_subprocess(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None):
    """Run the real console script in a child process (for kills and signals)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)


def bench_inprocess(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The same command through the typer app in this process, answered as :func:`bench_subprocess` answers.

    For setup runs and repeated checks of a path a test already runs as a user does: a new interpreter
    costs seconds (torch, pandas), the command itself often less. Modules a command imports from a
    user's folder stay in ``sys.modules``: give them names no other in-process test uses."""
    import contextlib

    from bench.cli import app

    with contextlib.chdir(cwd or REPO):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)



@pytest.fixture(autouse=True, scope="session")
def _own_thread_slots(tmp_path_factory):
    """The suite's training processes share cores among themselves only (bench.run.threads keeps its
    slots under $XDG_RUNTIME_DIR): another lossbench run on this machine must not change the thread
    count, and so the last bits, of the suite's bitwise comparisons."""
    folder = tmp_path_factory.mktemp("xdg-runtime")
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(folder)
    yield
    if saved is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = saved
