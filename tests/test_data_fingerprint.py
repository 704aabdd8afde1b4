"""The data's content fingerprint: of the decoded splits, stable across processes, kept in the decoded
cache (a cached read does not hash), read without writing by read-only commands, and what makes a
finished cell stale when its data changed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.data import DATA_ROOT_ENV, KIND_TABLE, load_splits
from bench.data import cache as data_cache
from bench.data.fingerprint import data_fingerprint
from bench.plan.data_fingerprint import data_stale_cells, read_only_data
from bench.run.runner import RunSummary, select_cells
from tests.conftest import REPO
from tests.fixtures_data import make_mnist_arrays, write_mnist_idx


@pytest.fixture(autouse=True)
def no_env_root(monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


def load(root, cache=None, write_cache=True, params=None):
    return load_splits("mnist", params or {}, root, False, cache, debian_dir=None, write_cache=write_cache)


def expected(arrays: dict[str, np.ndarray], class_names) -> str:
    """The documented layout, hashed with hashlib from the arrays the files were written from."""
    h = hashlib.sha256(b"lossbench-data/1")
    for key in ("train_x", "train_y", "test_x", "test_y"):
        a = arrays[key]
        a = a[:, None, :, :].astype(np.uint8) if key.endswith("_x") else a.astype(np.int64)
        h.update(json.dumps([key, "torch." + str(a.dtype), list(a.shape)]).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(list(class_names)).encode())
    return h.hexdigest()[:16]


def test_the_fingerprint_is_of_the_decoded_splits(tmp_path):
    write_mnist_idx(tmp_path, "MNIST", n_train=40, n_test=20, seed=3)
    s = load(tmp_path)
    assert s.provenance.fingerprint == expected(make_mnist_arrays(40, 20, 3), KIND_TABLE["mnist"].class_names)
    # a subset (n_train / n_test) is taken after the cache: the copy's fingerprint, not the subset's
    assert load(tmp_path, params={"n_train": 10}).provenance.fingerprint == s.provenance.fingerprint


def test_the_same_data_gives_the_same_fingerprint_in_another_process(tmp_path):
    write_mnist_idx(tmp_path / "a", "MNIST", n_train=40, n_test=20, seed=0)
    write_mnist_idx(tmp_path / "b", "MNIST", n_train=40, n_test=20, seed=0)  # another folder, the same content
    code = ("import sys; from bench.data import load_splits; "
            "print(load_splits('mnist', {}, sys.argv[1], False, None, debian_dir=None).provenance.fingerprint)")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True,
                           timeout=120, env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "1"})
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == load(tmp_path / "a").provenance.fingerprint


def test_one_pixel_one_label_or_a_class_name_changes_it():
    arrays = {k: torch.from_numpy(v.astype(np.int64) if k.endswith("_y") else v[:, None])
              for k, v in make_mnist_arrays(40, 20, 0).items()}
    names = KIND_TABLE["mnist"].class_names
    base = data_fingerprint(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], names)
    pixel = arrays["test_x"].clone()
    pixel[7, 0, 13, 13] ^= 1
    label = arrays["train_y"].clone()
    label[5] = (label[5] + 1) % 10
    changed = {
        data_fingerprint(arrays["train_x"], arrays["train_y"], pixel, arrays["test_y"], names),
        data_fingerprint(arrays["train_x"], label, arrays["test_x"], arrays["test_y"], names),
        data_fingerprint(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], (*names[:-1], "9")),
        # the same bytes in another layout: test images read as training images
        data_fingerprint(arrays["test_x"], arrays["train_y"], arrays["train_x"], arrays["test_y"], names),
    }
    assert base not in changed and len(changed) == 4


def test_a_cached_read_returns_the_stored_fingerprint_without_hashing(tmp_path, monkeypatch):
    write_mnist_idx(tmp_path / "root", "MNIST", n_train=40, n_test=20, seed=0)
    cache = tmp_path / "cache"
    first = load(tmp_path / "root", cache)
    (entry,) = cache.iterdir()
    assert torch.load(entry, weights_only=True)["fingerprint"] == first.provenance.fingerprint

    def no_hashing(*args, **kwargs):
        raise AssertionError("a cached read hashed the data")

    monkeypatch.setattr(data_cache, "data_fingerprint", no_hashing)
    second = load(tmp_path / "root", cache)
    assert second.provenance.cache == str(entry) and second.provenance.fingerprint == first.provenance.fingerprint


def test_an_entry_from_before_fingerprints_gets_one_once_and_read_only_writes_none(tmp_path):
    write_mnist_idx(tmp_path / "root", "MNIST", n_train=40, n_test=20, seed=0)
    cache = tmp_path / "cache"
    want = load(tmp_path / "root", cache).provenance.fingerprint
    (entry,) = cache.iterdir()
    old = torch.load(entry, weights_only=True)
    del old["fingerprint"]
    torch.save(old, entry)
    before = entry.read_bytes()
    assert load(tmp_path / "root", cache, write_cache=False).provenance.fingerprint == want
    assert entry.read_bytes() == before and list(cache.iterdir()) == [entry]  # read-only: nothing written
    assert load(tmp_path / "root", cache).provenance.fingerprint == want
    assert torch.load(entry, weights_only=True)["fingerprint"] == want  # written back by a writing command


def test_read_only_loads_write_no_cache_and_move_nothing(tmp_path):
    write_mnist_idx(tmp_path / "root", "MNIST", n_train=40, n_test=20, seed=0)
    cache = tmp_path / "cache"
    current = read_only_data(tmp_path / "root", cache)
    fp = current("mnist", {"kind": "mnist", "params": {}})
    assert fp == load(tmp_path / "root").provenance.fingerprint and not cache.exists()
    cache.mkdir()
    bad = data_cache.entry_path(cache, "mnist", {"folder": str(tmp_path / "root" / "MNIST" / "raw"),
                                                 "expected": ["x"]})
    bad.write_bytes(b"not a cache entry")
    assert data_cache.read_entry(bad, "mnist", {}, writable=False) is None
    assert bad.read_bytes() == b"not a cache entry" and not (cache / "corrupt").exists()
    # a dataset that cannot be read is not judged
    assert read_only_data(tmp_path / "nowhere", None)("mnist", {"kind": "mnist", "params": {}}) is None


def test_gauss_fingerprints_its_generated_arrays():
    a = load_splits("gauss", {"d": 3, "n_train": 50, "n_test": 20, "seed": 1})
    b = load_splits("gauss", {"d": 3, "n_train": 50, "n_test": 20, "seed": 1})
    c = load_splits("gauss", {"d": 3, "n_train": 50, "n_test": 20, "seed": 2})
    assert a.provenance.fingerprint == b.provenance.fingerprint != c.provenance.fingerprint
    assert a.provenance.fingerprint == data_fingerprint(a.train_x, a.train_y, a.test_x, a.test_y, a.class_names)


def cell(cell_id: str, dataset: str = "d"):
    return SimpleNamespace(cell_id=cell_id, dataset=dataset, config={"dataset": {"kind": "mnist", "params": {}}})


def test_stale_cells_are_those_whose_stored_fingerprint_differs():
    cells = [cell("same"), cell("other"), cell("old_row"), cell("unreadable", "gone")]
    stored = {"same": "aaaa", "other": "bbbb", "unreadable": "cccc"}  # old_row: a row from before fingerprints
    asked = []

    def current(name, dataset):
        asked.append(name)
        return None if name == "gone" else "aaaa"

    assert data_stale_cells(cells, stored, current) == ["other"]
    assert "old_row" not in asked and len(asked) == 3


def test_a_run_counts_stale_cells_apart_from_finished_ones():
    cells = [cell("a"), cell("b"), cell("c")]
    statuses = {"a": "done", "b": "done", "c": "done"}
    summary = RunSummary(total=3)
    assert select_cells(cells, statuses, False, False, summary, stale={"b"}) == []
    assert summary.line("t", 0.1) == "grid 't': 3 cells; trained 0; skipped 2 finished, 1 stale (--rerun-stale retrains them); 0.1 s"
    summary = RunSummary(total=3)
    assert [c.cell_id for c in select_cells(cells, statuses, False, False, summary, rerun={"b"}, stale={"b"})] == ["b"]


def test_read_only_commands_do_not_judge_generated_data_and_import_no_torch(tmp_path):
    """A generated dataset (gauss) is made from its parameters alone, which the cell's identity holds: `bench
    status` does not rebuild it to compare (and so imports no torch); `bench run` still compares what it builds."""
    import subprocess
    import sys

    import yaml

    from bench.plan.data_fingerprint import read_only_data

    assert read_only_data(None, None)("g", {"kind": "gauss", "params": {"d": 2}}) is None
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump({
        "datasets": {"g": {"kind": "gauss", "params": {"d": 2, "n_train": 128, "n_test": 64}}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}},
        "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"}},
        "grids": {"t": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                        "train": {"epochs": 1}}}}))
    code = ("import sys; from bench.cli import app\n"
            "try:\n    app(['{cmd}', '--grid', 't'], prog_name='bench')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code.format(cmd="run")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    status = subprocess.run([sys.executable, "-c", code.format(cmd="status")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert status.returncode == 0 and status.stdout.strip().splitlines()[-1] == "False", status.stdout + status.stderr
