"""Architectures as plugins (``source: target``): the README's recipe run as written from another
folder, the planner's meta-device check of the logits' shape, and an edited model shown as stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, bench_inprocess, tiny_registry

README = REPO / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _env(cwd: Path) -> dict[str, str]:
    # no Fashion-MNIST: the grid falls back to gauss
    return {"LOSSBENCH_DEBIAN_FASHION_DIR": str(cwd / "no-debian"), "LOSSBENCH_DATA_ROOT": str(cwd / "no-data")}


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **_env(cwd)}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A project folder outside the repository: the shipped registry plus the README's two blocks, as written."""
    proj = tmp_path_factory.mktemp("my-project")
    section = _section("Adding an architecture")
    (code,), (fragment,) = _blocks(section, "python"), _blocks(section, "yaml")
    assert code.startswith("# my_models.py, beside registry.yaml")
    (proj / "my_models.py").write_text(code)
    registry = yaml.safe_load((REPO / "registry.yaml").read_text())
    for key, entries in yaml.safe_load(fragment).items():  # "add to the sections already there"
        registry[key].update(entries)
    (proj / "registry.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    return proj


def test_readme_recipe_trains_lists_and_goes_stale_when_edited(recipe, monkeypatch):
    r = _bench(recipe, "run", "--grid", "my_arch", "--results", "res", "--plain", "--no-report",
               "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr + r.stdout
    from bench.store.results import Store

    cells = Store(recipe / "res").cells()
    assert sorted(cells["architecture"]) == ["mlp", "mlp", "small_net", "small_net"]
    assert set(cells["status"]) == {"done"}
    mine = cells[cells["architecture"] == "small_net"]
    assert set(mine["architecture.source"]) == {"target"} and set(mine["architecture.name"]) == {"my_models:SmallNet"}
    # gauss (d=2, 2 classes) is learnable: the perceptron clearly beats chance
    assert (mine["final_test_acc"] > 0.6).all()

    for name, value in _env(recipe).items():  # the listing runs through the app, in this process
        monkeypatch.setenv(name, value)
    listed = bench_inprocess("list", cwd=recipe)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "small_net" in line)
    assert "target" in row and "my_models:SmallNet" in row
    # parameters at fashion-mnist's shape, the grid's first dataset: 784*128+128 + 128*10+10
    assert f"{(784 * 128 + 128 + 128 * 10 + 10) / 1e6:.3f}M" in row

    # before the edit, through the app (it found my_models beside the registry above); after it, as a user
    status = bench_inprocess("status", "--grid", "my_arch", "--results", "res", cwd=recipe)
    assert status.returncode == 0 and "stale" not in status.stdout, status.stdout + status.stderr
    model = recipe / "my_models.py"
    model.write_text(model.read_text().replace("torch.nn.GELU()", "torch.nn.ReLU()"))
    status = _bench(recipe, "status", "--grid", "my_arch", "--results", "res")
    assert status.returncode == 0, status.stderr
    assert "2 finished cells ran an older version of their loss or model code (stale)" in status.stdout
    rerun = _bench(recipe, "run", "--grid", "my_arch", "--results", "res", "--plain", "--no-report",
                   "--set", "train.epochs=1", "--rerun-stale")
    assert rerun.returncode == 0, rerun.stderr
    assert "stale" not in _bench(recipe, "status", "--grid", "my_arch", "--results", "res").stdout


def _registry_with(tmp_path: Path, module: str, code: str, arch: dict) -> Path:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(code))
    data = tiny_registry(a={"datasets": ["g"], "architectures": ["mine"], "losses": ["celLoss"], "seeds": [0],
                            "train": {"epochs": 1, "batch_size": 64}})
    data["architectures"]["mine"] = arch
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(data))
    return reg


NET = """
    import math
    import torch

    class Net(torch.nn.Module):
        def __init__(self, in_shape, num_classes, extra: int = 0):
            super().__init__()
            self.fc = torch.nn.Linear(math.prod(in_shape), num_classes + extra)

        def forward(self, x):
            return self.fc(x.flatten(1))

    def squeezed(in_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.LazyLinear(num_classes))

    def conv_only(in_shape, num_classes):
        return torch.nn.Conv2d(in_shape[0] + 1, num_classes, 1)

    def not_a_module(in_shape, num_classes):
        return "a string"
"""


@pytest.mark.parametrize("module, arch, expected", [
    ("arch_wide", {"source": "target", "target": "arch_wide:Net", "params": {"extra": 1}},
     "architectures.mine: the model maps a batch of shape [2, 1, 1, 4] (dataset 'g') to [2, 3], not to [2, 2] logits"),
    ("arch_param", {"source": "target", "target": "arch_param:Net", "params": {"depth": 3}},
     "architecture target 'arch_param:Net' cannot take in_shape, num_classes and params ['depth']"),
    ("arch_conv", {"source": "target", "target": "arch_conv:conv_only"},
     "architectures.mine: the model fails on a batch of shape [2, 1, 1, 4] (dataset 'g'): RuntimeError"),
    ("arch_str", {"source": "target", "target": "arch_str:not_a_module"},
     "architecture target 'arch_str:not_a_module' returned a str, not a torch.nn.Module"),
    ("arch_missing", {"source": "target", "target": "arch_missing:Nett"},
     "architecture target 'arch_missing:Nett': module 'arch_missing' has no 'Nett' (closest: 'Net')"),
    ("arch_nomod", {"source": "target", "target": "no_such_models:Net"},
     "architecture target 'no_such_models:Net': cannot import module 'no_such_models'"),
    ("arch_notarget", {"source": "target", "name": "x"}, "architectures.mine: source 'target' needs target: module:Class"),
    ("arch_both", {"source": "native", "name": "mlp", "target": "arch_both:Net"},
     "architectures.mine: target is for source 'target'; source 'native' takes a name"),
    ("arch_pattern", {"source": "target", "target": "arch_pattern.Net"},
     "architectures.mine.target: expected package.module:ClassName, got 'arch_pattern.Net'"),
])
def test_a_bad_architecture_is_one_error_line_and_nothing_trains(tmp_path, cli, module, arch, expected):
    reg = _registry_with(tmp_path, module, NET, arch)
    r = cli("run", "--grid", "a", "--registry", reg, "--results", tmp_path / "res", "--plain")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.output
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("*.parquet"))


def test_a_builder_function_with_params_trains(tmp_path, cli):
    code = """
        import torch

        def build(in_shape, num_classes, hidden=16):
            c, h, w = in_shape
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, num_classes))
    """
    reg = _registry_with(tmp_path, "arch_builder", code,
                         {"source": "target", "target": "arch_builder:build", "params": {"hidden": 8}})
    r = cli("run", "--grid", "a", "--registry", reg, "--results", tmp_path / "res", "--plain", "--no-report")
    assert r.exit_code == 0, r.output
    from bench.store.results import Store

    row = Store(tmp_path / "res").cells().iloc[0]
    assert row["status"] == "done" and row["architecture.name"] == "arch_builder:build"
