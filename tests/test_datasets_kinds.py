"""The loss literature's datasets and a user's own, end to end through the real ``bench`` command.

Each test writes a tiny data set in its real on-disk format (tests/fixtures_data.py), trains one cell
with ``bench run`` in a subprocess and checks the stored row: the cell must beat chance clearly on the
learnable pattern, so a loader that scrambles labels (or images) fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO
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


def test_cifar100_fine_and_coarse_labels_train(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "data", n_train=200, n_test=60)
    row = trained(tmp_path, write_registry(tmp_path, {"kind": "cifar100"}), tmp_path / "data")
    assert row["final_test_acc"] > 0.6  # 10 fine classes present of 100: chance 0.1
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    row = trained(coarse, write_registry(coarse, {"kind": "cifar100", "params": {"labels": "coarse"}}), tmp_path / "data")
    assert row["final_test_acc"] > 0.6


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


def test_svhn_mat_files_train_and_label_10_is_digit_0(tmp_path: Path) -> None:
    import scipy.io

    from bench.data import load_splits

    write_svhn(tmp_path / "data", n_train=200, n_test=60, extra=40)
    mat = scipy.io.loadmat(tmp_path / "data" / "train_32x32.mat")
    s = load_splits("svhn", None, tmp_path / "data")
    y = mat["y"].reshape(-1).astype(np.int64)
    assert s.train_y.tolist() == np.where(y == 10, 0, y).tolist() and 0 in s.train_y.tolist()
    assert s.train_x.shape == (200, 3, 32, 32) and s.train_x[5].permute(1, 2, 0).numpy().tolist() == mat["X"][..., 5].tolist()
    assert load_splits("svhn", {"extra": True}, tmp_path / "data").n_train == 240
    row = trained(tmp_path, write_registry(tmp_path, {"kind": "svhn"}), tmp_path / "data")
    assert row["final_test_acc"] > 0.6


@pytest.mark.parametrize("kind, params, writer", [
    ("kmnist", {}, write_kmnist),
    ("emnist", {"split": "balanced"}, write_emnist),
    ("emnist", {"split": "letters"}, lambda root, **kw: write_emnist(root, split="letters", **kw)),
])
def test_kmnist_and_emnist_idx_files_train(tmp_path: Path, kind: str, params: dict, writer) -> None:
    from bench.data import dataset_shape, load_splits

    writer(tmp_path / "data", n_train=300, n_test=60)
    s = load_splits(kind, params, tmp_path / "data")
    expected_classes = {"kmnist": 10, "balanced": 47, "letters": 26}[params.get("split", kind)]
    assert s.num_classes == expected_classes == dataset_shape(kind, params)[1] and int(s.train_y.min()) == 0
    if params.get("split") == "letters":
        assert s.class_names[0] == "a"  # 1-26 shifted to 0-25: no empty class
    row = trained(tmp_path, write_registry(tmp_path, {"kind": kind, "params": params}), tmp_path / "data")
    assert row["final_test_acc"] > 0.6


def test_imagefolder_of_pngs_trains_relative_to_the_registry_and_is_cached(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_imagefolder(project / "pics", n_train=40, n_test=10, classes=4)
    reg = write_registry(project, {"kind": "imagefolder", "params": {"path": "pics"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([*BENCH, "run", "--grid", "g", "--registry", str(reg), "--results", str(elsewhere / "results"),
                        "--plain", "--threads", "1"], capture_output=True, text=True, cwd=elsewhere, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"data: imagefolder from {project / 'pics'} (200 files, sha256 " in r.stdout + r.stderr
    row = stored_row(elsewhere)
    assert row["status"] == "done" and row["final_test_acc"] > 0.6  # 4 classes: chance 0.25
    assert list((elsewhere / "results" / "cache").glob("imagefolder-*.pt"))  # decoded once into the uint8 cache
    listing = subprocess.run([*BENCH, "list", "--registry", str(reg), "--results", str(elsewhere / "results")],
                             capture_output=True, text=True, cwd=elsewhere, env=ENV, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert f"dataset 'd' imagefolder from {project / 'pics'} (200 files" in listing.stdout


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
def test_npz_trains(tmp_path: Path, layout: str) -> None:
    write_npz(tmp_path / "arrays.npz", n_train=200, n_test=60, layout=layout)
    row = trained(tmp_path, write_registry(tmp_path, {"kind": "npz", "params": {"path": "arrays.npz"}}))
    assert row["final_test_acc"] > 0.6


def test_target_function_trains(tmp_path: Path) -> None:
    (tmp_path / "my_data.py").write_text(
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
    row = trained(tmp_path, write_registry(tmp_path, {"kind": "target", "params": {"target": "my_data:splits"}}))
    assert row["final_test_acc"] > 0.8  # chance 1/3


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
