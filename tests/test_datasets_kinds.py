"""The loss literature's datasets and a user's own, end to end through the real ``bench`` command.

Each kind's tiny data set is written in its real on-disk format (tests/fixtures_data.py) into one
project, whose grid trains one cell per data set in a single ``bench run`` subprocess (a process per
kind would add a new interpreter each); each test checks its kind's stored row: the cell must beat
chance clearly on the learnable pattern, so a loader that scrambles labels (or images) fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, bench_inprocess
from tests.fixtures_data import (write_cifar100, write_emnist, write_imagefolder, write_kmnist, write_npz,
                                 write_svhn)

BENCH = [sys.executable, "-m", "bench.cli"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def write_registry(folder: Path, dataset: dict, epochs: int = 3, arch: str = "mlp", regime: dict | None = None,
                   lr: float = 0.05, batch_size: int = 16, **train) -> Path:
    grid = {"datasets": ["d"], "architectures": [arch], "losses": ["celLoss"], "seeds": [0],
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, **train}}
    if regime:
        grid["regime"] = regime
    data = {"datasets": {"d": dataset}, "architectures": {arch: {"source": "native", "name": arch}},
            "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"}}, "grids": {"g": grid}}
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_bench(folder: Path, registry: Path, data_root: Path | None = None, *extra: str) -> subprocess.CompletedProcess:
    cmd = [*BENCH, "run", "--grid", "g", "--registry", str(registry), "--results", str(folder / "results"),
           "--plain", "--threads", "1", *extra]
    if data_root is not None:
        cmd += ["--data-root", str(data_root)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=folder, env=ENV, timeout=300)


def stored_row(folder: Path) -> dict:
    from bench.store.results import Store

    cells = Store(folder / "results").cells()
    assert len(cells) == 1
    return cells.iloc[0].to_dict()


def trained(folder: Path, registry: Path, data_root: Path | None = None, *extra: str) -> dict:
    r = run_bench(folder, registry, data_root, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    row = stored_row(folder)
    assert row["status"] == "done", row
    return row


MY_DATA = (
    "import numpy as np\n"
    "def splits():\n"
    "    rng = np.random.default_rng(0)\n"
    "    def part(n):\n"
    "        y = rng.integers(0, 3, n)\n"
    "        x = rng.normal(0, 0.3, (n, 6)).astype(np.float32)\n"
    "        x[np.arange(n), y] += 2\n"
    "        return x, y.astype(np.int64)\n"
    "    (tx, ty), (vx, vy) = part(300), part(90)\n"
    "    return {'train_x': tx, 'train_y': ty, 'test_x': vx, 'test_y': vy, 'class_names': ['a', 'b', 'c']}\n")

# each data set the project's grid trains: its registry entry (paths relative to the registry)
KINDS = {
    "cifar100": {"kind": "cifar100"},
    "cifar100-coarse": {"kind": "cifar100", "params": {"labels": "coarse"}},
    "svhn": {"kind": "svhn"},
    "kmnist": {"kind": "kmnist", "params": {}},
    "emnist-balanced": {"kind": "emnist", "params": {"split": "balanced"}},
    "emnist-letters": {"kind": "emnist", "params": {"split": "letters"}},
    "npz-nhwc": {"kind": "npz", "params": {"path": "nhwc.npz"}},
    "npz-feat": {"kind": "npz", "params": {"path": "feat.npz"}},
    "target": {"kind": "target", "params": {"target": "my_data:splits"}},
    "imagefolder": {"kind": "imagefolder", "params": {"path": "pics"}},
}


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> SimpleNamespace:
    """Every kind's files in a project folder (the registry beside them, the image data under data/), trained by
    one `bench run` started from another folder, as each kind's cell was trained alone (3 epochs, batch 16)."""
    root = tmp_path_factory.mktemp("kinds")
    project, elsewhere = root / "project", root / "elsewhere"
    data = project / "data"
    write_cifar100(data, n_train=200, n_test=60)
    write_svhn(data, n_train=200, n_test=60, extra=40)
    write_kmnist(data, n_train=300, n_test=60)
    write_emnist(data, n_train=300, n_test=60)
    write_emnist(data, split="letters", n_train=300, n_test=60)
    for layout in ("nhwc", "feat"):
        write_npz(project / f"{layout}.npz", n_train=200, n_test=60, layout=layout)
    (project / "my_data.py").write_text(MY_DATA)
    write_imagefolder(project / "pics", n_train=40, n_test=10, classes=4)
    elsewhere.mkdir()
    reg = write_registry(project, KINDS["cifar100"])
    registry = yaml.safe_load(reg.read_text())
    registry["datasets"] = KINDS
    registry["grids"]["g"]["datasets"] = list(KINDS)
    reg.write_text(yaml.safe_dump(registry, sort_keys=False))
    r = subprocess.run([*BENCH, "run", "--grid", "g", "--registry", str(reg), "--results", str(elsewhere / "results"),
                        "--data-root", str(data), "--plain", "--threads", "1"], capture_output=True, text=True,
                       cwd=elsewhere, env=ENV, timeout=600)
    from bench.store.results import Store

    rows = Store(elsewhere / "results").cells().set_index("dataset") if (elsewhere / "results").is_dir() else None
    return SimpleNamespace(project=project, data=data, elsewhere=elsewhere, registry=reg, run=r, rows=rows)


def kind_row(kinds: SimpleNamespace, name: str) -> dict:
    """The stored row of data set ``name``'s cell, which must have finished."""
    assert kinds.rows is not None and name in kinds.rows.index, kinds.run.stdout + kinds.run.stderr
    row = kinds.rows.loc[name].to_dict()
    assert row["status"] == "done", row
    return row


def test_cifar100_fine_and_coarse_labels_train(kinds) -> None:
    assert kind_row(kinds, "cifar100")["final_test_acc"] > 0.6  # 10 fine classes present of 100: chance 0.1
    assert kind_row(kinds, "cifar100-coarse")["final_test_acc"] > 0.6


def test_cifar100_splits_hold_the_files_labels_and_the_superclass_map(tmp_path: Path) -> None:
    from bench.data import load_splits
    from bench.data.noise import asymmetric_map

    d = write_cifar100(tmp_path, n_train=30, n_test=20)
    import pickle

    entry = pickle.load(open(d / "train", "rb"), encoding="latin1")
    fine = load_splits("cifar100", None, tmp_path)
    coarse = load_splits("cifar100", {"labels": "coarse"}, tmp_path)
    assert fine.num_classes == 100 and coarse.num_classes == 20 and coarse.class_names[3] == "coarse3"
    assert fine.train_y.tolist() == entry["fine_labels"] and coarse.train_y.tolist() == entry["coarse_labels"]
    assert fine.train_x[0].permute(1, 2, 0).reshape(-1).tolist() != entry["data"][0].tolist()  # CHW rows ...
    assert fine.train_x[0].reshape(-1).tolist() == entry["data"][0].tolist()  # ... are the pickle's R, G, B planes
    m = asymmetric_map("cifar100")
    assert m[0] == 1 and m[4] == 0 and m[99] == 95 and all(m[c] // 5 == c // 5 and m[c] != c for c in range(100))


def test_svhn_mat_files_train_and_label_10_is_digit_0(kinds) -> None:
    import scipy.io

    from bench.data import load_splits

    mat = scipy.io.loadmat(kinds.data / "train_32x32.mat")
    s = load_splits("svhn", None, kinds.data)
    y = mat["y"].reshape(-1).astype(np.int64)
    assert s.train_y.tolist() == np.where(y == 10, 0, y).tolist() and 0 in s.train_y.tolist()
    assert s.train_x.shape == (200, 3, 32, 32) and s.train_x[5].permute(1, 2, 0).numpy().tolist() == mat["X"][..., 5].tolist()
    assert load_splits("svhn", {"extra": True}, kinds.data).n_train == 240
    assert kind_row(kinds, "svhn")["final_test_acc"] > 0.6


@pytest.mark.parametrize("name", ["kmnist", "emnist-balanced", "emnist-letters"])
def test_kmnist_and_emnist_idx_files_train(kinds, name: str) -> None:
    from bench.data import dataset_shape, load_splits

    kind, params = KINDS[name]["kind"], KINDS[name]["params"]
    s = load_splits(kind, params, kinds.data)
    expected_classes = {"kmnist": 10, "balanced": 47, "letters": 26}[params.get("split", kind)]
    assert s.num_classes == expected_classes == dataset_shape(kind, params)[1] and int(s.train_y.min()) == 0
    if params.get("split") == "letters":
        assert s.class_names[0] == "a"  # 1-26 shifted to 0-25: no empty class
    assert kind_row(kinds, name)["final_test_acc"] > 0.6


def test_imagefolder_of_pngs_trains_relative_to_the_registry_and_is_cached(kinds) -> None:
    project, elsewhere, r = kinds.project, kinds.elsewhere, kinds.run
    assert r.returncode == 0, r.stdout + r.stderr  # every kind's cell finished
    assert f"data: imagefolder from {project / 'pics'} (200 files, sha256 " in r.stdout + r.stderr
    assert kind_row(kinds, "imagefolder")["final_test_acc"] > 0.6  # 4 classes: chance 0.25
    assert list((elsewhere / "results" / "cache").glob("imagefolder-*.pt"))  # decoded once into the uint8 cache
    listing = bench_inprocess("list", "--registry", kinds.registry, "--results", elsewhere / "results", cwd=elsewhere)
    assert listing.returncode == 0, listing.stderr
    assert f"dataset 'imagefolder' imagefolder from {project / 'pics'} (200 files" in listing.stdout


def test_imagefolder_one_tree_is_split_by_a_stratified_holdout(tmp_path: Path) -> None:
    from bench.data import load_splits

    write_imagefolder(tmp_path / "one", n_train=8, n_test=2, classes=3, split=False, grey=True)
    s = load_splits("imagefolder", {"path": str(tmp_path / "one"), "holdout": 0.2, "size": 16}, None)
    assert s.in_shape == (1, 16, 16) and s.class_names == ("class_0", "class_1", "class_2")
    assert np.bincount(s.test_y.numpy()).tolist() == [2, 2, 2] and np.bincount(s.train_y.numpy()).tolist() == [8, 8, 8]


def test_npz_image_layouts_decode_to_the_same_nchw_tensor(tmp_path: Path) -> None:
    from bench.data import dataset_shape, load_splits

    got = {}
    for layout in ("nhwc", "nchw"):
        write_npz(tmp_path / f"{layout}.npz", n_train=20, n_test=10, layout=layout)
        got[layout] = load_splits("npz", {"path": str(tmp_path / f"{layout}.npz")}, None)
        assert dataset_shape("npz", {"path": str(tmp_path / f"{layout}.npz")}) == ((3, 32, 32), 10)
    assert np.array_equal(got["nhwc"].train_x.numpy(), got["nchw"].train_x.numpy())
    write_npz(tmp_path / "nhw.npz", n_train=20, n_test=10, layout="nhw")
    assert load_splits("npz", {"path": str(tmp_path / "nhw.npz")}, None).in_shape == (1, 32, 32)


@pytest.mark.parametrize("layout", ["nhwc", "feat"])
def test_npz_trains(kinds, layout: str) -> None:
    assert kind_row(kinds, f"npz-{layout}")["final_test_acc"] > 0.6


def test_target_function_trains(kinds) -> None:
    assert kind_row(kinds, "target")["final_test_acc"] > 0.8  # chance 1/3


def _readme_block(section: str, lang: str) -> str:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_the_readme_adding_a_dataset_recipe_works_as_written_from_another_folder(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "my_data.py").write_text(_readme_block("Adding a dataset", "python"))
    (project / "registry.yaml").write_text(_readme_block("Adding a dataset", "yaml"))
    r = subprocess.run([*BENCH, "run", "--grid", "blobs", "--registry", str(project / "registry.yaml"), "--plain",
                        "--threads", "1"], capture_output=True, text=True, cwd=elsewhere, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    row = stored_row(elsewhere)
    assert row["status"] == "done" and row["final_test_acc"] > 0.8  # 3 classes: chance 1/3


def test_the_imagefolder_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    import json

    out = tmp_path / "fig.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "imagefolder_decode.py"), "--n", "100", "--rounds", "1",
                        "--json", str(out)], capture_output=True, text=True, cwd=REPO / "benchmarks", env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    fig = json.loads(out.read_text())
    assert fig["n"] == 100 and fig["decode_s"] > 0 and fig["cached_median_s"] > 0 and "cached load" in r.stdout
