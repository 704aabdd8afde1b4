"""bench.data: loading each kind from tiny real-format files, the data-root rule, validation, cache, gauss."""

from __future__ import annotations

import gzip
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import (
    DATA_ROOT_ENV,
    KIND_TABLE,
    KINDS,
    Splits,
    describe_source,
    gauss_params,
    load_splits,
    normalise,
)
from bench.data.provenance import brace_paths
from bench.errors import BenchError
from bench.paper.theory import gauss_delta as theory_delta
from tests.fixtures_data import (
    CIFAR_CLASSES,
    IDX_NAMES,
    idx_bytes,
    make_mnist_arrays,
    write_cifar10_batches,
    write_debian_fashion,
    write_mnist_idx,
)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def no_env_root(monkeypatch):
    """Each test chooses its data root; one set in the environment would make every root explicit."""
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


def gauss_delta(params: dict) -> float:
    p = gauss_params(params)
    return theory_delta(p["mu"], p["sigma2"])


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


def load(kind, root=None, *, params=None, cache=None, debian=None, download=False) -> Splits:
    return load_splits(kind, params or {}, root, download, cache, debian_dir=debian)


def check_images(s: Splits, n_train: int, n_test: int, shape: tuple[int, int, int]) -> None:
    assert s.train_x.shape == (n_train, *shape) and s.test_x.shape == (n_test, *shape)
    assert s.train_x.dtype == s.test_x.dtype == torch.uint8
    assert s.train_y.dtype == s.test_y.dtype == torch.int64
    assert s.train_y.shape == (n_train,) and s.test_y.shape == (n_test,)
    assert s.train_x.is_contiguous() and s.test_x.is_contiguous()
    assert s.num_classes == 10 and len(s.class_names) == 10 and s.in_shape == shape
    assert sorted(s.train_y.unique().tolist()) == list(range(10))
    assert len(s.mean) == len(s.std) == shape[0]
    # mean/std are the training split's per-channel statistics: normalised data is ~N(0, 1)
    z = s.normalise(s.train_x)
    assert z.dtype == torch.float32
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(shape[0]), atol=1e-3)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(shape[0]), atol=1e-3)


# ------------------------------------------------------------------ image kinds


def test_kinds():
    assert KINDS == ("mnist", "fashion-mnist", "cifar10", "gauss", "cifar100", "svhn", "kmnist", "emnist", "imagefolder",
                     "npz", "target")
    assert KINDS == tuple(KIND_TABLE)


def test_registry_kinds_come_from_the_table():
    from typing import get_args

    from bench.config.registry import DatasetSpec

    assert get_args(DatasetSpec.model_fields["kind"].annotation) == KINDS


def test_kinds_table_imports_no_torch():
    # status / report load the registry (and so the table) without ever training
    code = "import sys, bench.config.registry; from bench.data import KINDS; assert 'torch' not in sys.modules, 'torch'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind,family", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_from_data_root(tmp_path, kind, family):
    raw = write_mnist_idx(tmp_path, family, n_train=64, n_test=32, seed=1)
    s = load(kind, tmp_path)
    check_images(s, 64, 32, (1, 28, 28))
    arrays = make_mnist_arrays(64, 32, seed=1)
    assert torch.equal(s.train_x[:, 0], torch.from_numpy(arrays["train_x"]))
    assert torch.equal(s.test_y, torch.from_numpy(arrays["test_y"]).long())
    assert s.source == str(raw) and s.kind == kind


def test_gzipped_idx_in_raw_dir(tmp_path):
    # torchvision reads only the uncompressed files; bench.data decodes .gz ones too
    write_mnist_idx(tmp_path, "FashionMNIST", gz=True)
    s = load("fashion-mnist", tmp_path)
    check_images(s, 64, 32, (1, 28, 28))
    assert s.class_names[0] == "T-shirt/top"


def test_fashion_from_debian_dir_and_precedence(tmp_path, monkeypatch):
    # no explicit data root: ./data first, then the Debian dir
    monkeypatch.chdir(tmp_path)
    deb = write_debian_fashion(tmp_path / "debian", n_train=40, n_test=20, seed=3)
    s = load("fashion-mnist", debian=deb)
    check_images(s, 40, 20, (1, 28, 28))
    assert s.source == str(deb)
    # files under the data root win over the Debian dir
    raw = write_mnist_idx(tmp_path / "data", "FashionMNIST", n_train=64, n_test=32)
    s = load("fashion-mnist", debian=deb)
    assert s.source == str(raw) and s.n_train == 64


def test_cifar10(tmp_path):
    d = write_cifar10_batches(tmp_path, n_per_batch=20, n_test=20, seed=2)
    s = load("cifar10", tmp_path)
    check_images(s, 100, 20, (3, 32, 32))
    assert s.class_names == tuple(CIFAR_CLASSES) and s.source == str(d)
    with open(d / "data_batch_2", "rb") as f:
        b2 = pickle.load(f, encoding="latin1")
    # row layout R|G|B planes -> NCHW, batches concatenated in order
    assert torch.equal(s.train_x[20:40], torch.from_numpy(b2["data"].reshape(20, 3, 32, 32)))
    assert s.train_y[20:40].tolist() == b2["labels"]
    # per-channel normalisation, vectorised, matches the formula
    xb = s.train_x[:8]
    mean = torch.tensor(s.mean).view(1, 3, 1, 1)
    std = torch.tensor(s.std).view(1, 3, 1, 1)
    assert torch.allclose(normalise(xb, s), (xb.float() / 255 - mean) / std, atol=1e-5)
    assert torch.allclose(normalise(xb, {"mean": s.mean, "std": s.std}), s.normalise(xb))


def test_subset_params(tmp_path):
    write_mnist_idx(tmp_path, "MNIST")
    s = load("mnist", tmp_path, params={"n_train": 10, "n_test": 5})
    assert s.n_train == 10 and s.n_test == 5 and s.train_x.shape == (10, 1, 28, 28)
    with pytest.raises(BenchError, match="'n_train' is 100"):
        load("mnist", tmp_path, params={"n_train": 100})
    with pytest.raises(BenchError, match="unknown mnist parameter 'mu'"):
        load("mnist", tmp_path, params={"mu": 1})


# ---------------------------------------------------------------- missing / bad


SUBDIR = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}
LAYOUT = {
    "mnist": "MNIST/raw/{train-images-idx3,train-labels-idx1,t10k-images-idx3,t10k-labels-idx1}-ubyte[.gz]",
    "fashion-mnist": "FashionMNIST/raw/{train-images-idx3,train-labels-idx1,t10k-images-idx3,t10k-labels-idx1}"
                     "-ubyte[.gz]",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
}


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_dataset_message(tmp_path, kind):
    with pytest.raises(BenchError) as ei:
        load(kind, tmp_path / "nowhere", debian=tmp_path / "nodeb")
    msg = one_line(ei.value)
    assert str(tmp_path / "nowhere" / SUBDIR[kind]) in msg and LAYOUT[kind] in msg
    assert "--data-root" in msg and "--download" in msg
    # an explicit root is the only place looked at
    assert str(tmp_path / "nodeb") not in msg and "nothing else is searched" in msg
    if kind == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist and give no --data-root" in msg


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_dataset_message_default_root(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError) as ei:
        load(kind, debian=tmp_path / "nodeb")
    msg = one_line(ei.value)
    assert str(tmp_path / "data" / SUBDIR[kind]) in msg and LAYOUT[kind] in msg
    assert "no --data-root" in msg and "--download" in msg
    if kind == "fashion-mnist":
        assert f"{tmp_path / 'nodeb'} (missing)" in msg and "apt-get install dataset-fashion-mnist" in msg
    else:
        assert str(tmp_path / "nodeb") not in msg


def test_explicit_root_never_falls_back(tmp_path, monkeypatch):
    # ./data and the Debian dir both hold Fashion-MNIST; the explicit root does not
    monkeypatch.chdir(tmp_path)
    write_mnist_idx(tmp_path / "data", "FashionMNIST")
    deb = write_debian_fashion(tmp_path / "debian")
    (tmp_path / "mine").mkdir()
    with pytest.raises(BenchError) as ei:
        load("fashion-mnist", tmp_path / "mine", debian=deb)
    msg = one_line(ei.value)
    assert f"under data root {tmp_path / 'mine'} (from --data-root / ${DATA_ROOT_ENV}" in msg
    for looked in ("FashionMNIST/processed", "FashionMNIST/raw"):
        assert f"{tmp_path / 'mine' / looked} (missing)" in msg
    assert f"{deb} (" not in msg and str(tmp_path / "data") not in msg  # not looked in ...
    assert f"give no --data-root / ${DATA_ROOT_ENV} to use the copy in {deb}" in msg  # ... only pointed to
    # the default root is used (and Debian's copy after it) only without an explicit one; the
    # environment variable is the command line's to read (tests/test_cli_e2e.py), not the loader's
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "mine"))
    assert load("fashion-mnist", debian=deb).source == str(tmp_path / "data" / "FashionMNIST" / "raw")


def test_source_line_names_the_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    deb = write_debian_fashion(tmp_path / "debian")
    s = load("fashion-mnist", debian=deb)
    names = "{train-images-idx3,train-labels-idx1,t10k-images-idx3,t10k-labels-idx1}-ubyte.gz"
    assert describe_source(s) == f"data: fashion-mnist from {deb}/{names}"
    assert s.provenance.files == tuple(str(deb / f"{IDX_NAMES[k]}.gz") for k in IDX_NAMES)
    assert s.provenance.cache == ""
    # plain files under a data root; the second load is answered by the decoded cache, and says so
    raw = write_mnist_idx(tmp_path / "root", "MNIST")
    cache = tmp_path / "cache"
    first = load("mnist", tmp_path / "root", cache=cache)
    plain = "{train-images-idx3,train-labels-idx1,t10k-images-idx3,t10k-labels-idx1}-ubyte"
    assert describe_source(first) == f"data: mnist from {raw}/{plain}"
    second = load("mnist", tmp_path / "root", cache=cache)
    (cfile,) = cache.iterdir()
    assert describe_source(second) == f"data: mnist from {raw}/{plain} via decoded cache {cfile}"
    cifar = load("cifar10", write_cifar10_batches(tmp_path / "c").parent)
    assert describe_source(cifar) == (
        f"data: cifar10 from {tmp_path / 'c' / 'cifar-10-batches-py'}/"
        "{data_batch_1,data_batch_2,data_batch_3,data_batch_4,data_batch_5,test_batch,batches.meta}"
    )
    g = load("gauss", params={"d": 3, "n_train": 20, "n_test": 10})
    assert describe_source(g) == (
        "data: gauss generated (d=3, mu=1.0, sigma2=1.0, prior=0.5, seed=0, n_train=20, n_test=10)"
    )


def test_brace_paths():
    assert brace_paths(["/d/processed/training.pt", "/d/processed/test.pt"]) == "/d/processed/{training,test}.pt"
    assert brace_paths(["/d/a"]) == "/d/a"
    assert brace_paths(["/d/a", "/e/b"]) == "/d/a, /e/b"


def test_partially_present_lists_missing_files(tmp_path):
    raw = write_mnist_idx(tmp_path, "MNIST")
    (raw / IDX_NAMES["test_x"]).unlink()
    with pytest.raises(BenchError, match="lacks t10k-images-idx3-ubyte") as ei:
        load("mnist", tmp_path)
    one_line(ei.value)


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(self):
        raise RuntimeError("Error downloading x.gz:\nTried https://example, got:\n<urlopen error offline>\n")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(BenchError, match="could not download mnist") as ei:
        load("mnist", tmp_path, download=True)
    assert "urlopen error offline" in one_line(ei.value)


def _write(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("damage", ["magic", "truncated", "trailing", "labels"])
def test_corrupt_idx_names_file(tmp_path, gz, damage):
    raw = write_mnist_idx(tmp_path, "MNIST", gz=gz)
    arrays = make_mnist_arrays()
    if damage == "labels":
        bad = arrays["train_y"].copy()
        bad[0] = 11
        target, data = raw / IDX_NAMES["train_y"], idx_bytes(bad)
    else:
        data = idx_bytes(arrays["train_x"])
        target = raw / IDX_NAMES["train_x"]
        if damage == "magic":
            data = (2049).to_bytes(4, "big") + data[4:]
        elif damage == "truncated":
            data = data[:-100]
        else:
            data = data + b"\0" * 7
    path = _write(target, data, gz)
    with pytest.raises(BenchError) as ei:
        load("mnist", tmp_path)
    msg = one_line(ei.value)
    assert str(path) in msg
    expect = {"magic": "magic", "truncated": "truncated", "trailing": "trailing", "labels": "labels range"}[damage]
    assert expect in msg


def test_corrupt_gzip_stream_in_debian_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    deb = write_debian_fashion(tmp_path / "deb")
    path = deb / (IDX_NAMES["train_x"] + ".gz")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(BenchError) as ei:
        load("fashion-mnist", debian=deb)
    assert str(path) in one_line(ei.value)


def test_mismatched_counts(tmp_path):
    raw = write_mnist_idx(tmp_path, "MNIST")
    (raw / IDX_NAMES["test_y"]).write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(BenchError, match="32 images but .* 5 labels") as ei:
        load("mnist", tmp_path)
    one_line(ei.value)


@pytest.mark.parametrize("damage", ["truncated", "shape", "meta"])
def test_corrupt_cifar_names_file(tmp_path, damage):
    d = write_cifar10_batches(tmp_path)
    if damage == "truncated":
        path = d / "data_batch_3"
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "shape":
        path = d / "test_batch"
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        entry["data"] = entry["data"][:, :3000]
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    else:
        path = d / "batches.meta"
        with open(path, "wb") as f:
            pickle.dump({"label_names": ["a", "b"]}, f, protocol=2)
    with pytest.raises(BenchError) as ei:
        load("cifar10", tmp_path)
    assert str(path) in one_line(ei.value)


# ------------------------------------------------------------------------ cache


def test_cache_serves_after_raw_files_are_gone(tmp_path):
    raw = write_mnist_idx(tmp_path / "root", "FashionMNIST")
    cache = tmp_path / "cache"
    first = load("fashion-mnist", tmp_path / "root", cache=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("fashion-mnist-") and files[0].suffix == ".pt"
    for p in raw.iterdir():
        p.unlink()
    second = load("fashion-mnist", tmp_path / "root", cache=cache)
    for k in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, k), getattr(second, k))
    assert (second.mean, second.std, second.class_names, second.source) == (
        first.mean,
        first.std,
        first.class_names,
        first.source,
    )
    assert list(cache.iterdir()) == files  # no temp files left behind


def test_cache_refreshes_when_source_changes(tmp_path):
    cache = tmp_path / "cache"
    write_mnist_idx(tmp_path, "MNIST", seed=0)
    a = load("mnist", tmp_path, cache=cache)
    write_mnist_idx(tmp_path, "MNIST", n_train=50, seed=1)
    b = load("mnist", tmp_path, cache=cache)
    assert a.n_train == 64 and b.n_train == 50


def test_corrupt_cache_is_moved_aside(tmp_path):
    write_cifar10_batches(tmp_path / "root")
    cache = tmp_path / "cache"
    first = load("cifar10", tmp_path / "root", cache=cache)
    (cfile,) = cache.iterdir()
    cfile.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="moved to"):
        again = load("cifar10", tmp_path / "root", cache=cache)
    assert torch.equal(again.train_x, first.train_x)
    (aside,) = (cache / "corrupt").iterdir()
    assert aside.name.startswith(cfile.name) and aside.read_bytes() == b"not a torch file"
    assert cfile.is_file()  # re-written
    assert torch.equal(load("cifar10", tmp_path / "root", cache=cache).test_x, first.test_x)


def test_cache_key_depends_on_source(tmp_path):
    cache = tmp_path / "cache"
    write_mnist_idx(tmp_path / "r1", "MNIST")
    write_mnist_idx(tmp_path / "r2", "MNIST")
    load("mnist", tmp_path / "r1", cache=cache)
    load("mnist", tmp_path / "r2", cache=cache)
    load("mnist", tmp_path / "r2", cache=cache, params={"n_train": 10})  # subsets share the file
    assert len(list(cache.glob("mnist-*.pt"))) == 2


def test_cache_does_not_cross_roots(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    raw = write_mnist_idx(tmp_path / "r1", "MNIST", seed=0)
    load("mnist", tmp_path / "r1", cache=cache)
    for p in raw.iterdir():
        p.unlink()  # r1's entry now answers for r1 alone (its files are gone)
    (tmp_path / "r2").mkdir()
    with pytest.raises(BenchError, match="not found under data root"):
        load("mnist", tmp_path / "r2", cache=cache)
    write_mnist_idx(tmp_path / "r2", "MNIST", n_train=50, seed=1)
    s = load("mnist", tmp_path / "r2", cache=cache)
    assert s.n_train == 50 and s.source == str(tmp_path / "r2" / "MNIST" / "raw") and s.provenance.cache == ""
    # nor does a cached ./data copy answer for an explicit root, or the other way round
    monkeypatch.chdir(tmp_path)
    write_mnist_idx(tmp_path / "data", "MNIST", n_train=40)
    assert load("mnist", cache=cache).n_train == 40
    assert load("mnist", tmp_path / "r2", cache=cache).n_train == 50
    assert load("mnist", tmp_path / "r1", cache=cache).n_train == 64  # r1's own entry still serves


# ------------------------------------------------------------------------ gauss


def test_gauss_shapes_and_determinism():
    p = {"d": 3, "mu": 1.5, "sigma2": 2.0, "n_train": 500, "n_test": 100, "seed": 7}
    a, b = load("gauss", params=p), load("gauss", params=p)
    assert a.train_x.shape == (500, 1, 1, 3) and a.test_x.shape == (100, 1, 1, 3)
    assert a.train_x.dtype == torch.float32 and a.train_y.dtype == torch.int64
    assert a.num_classes == 2 and a.in_shape == (1, 1, 3) and a.mean == (0.0,) and a.std == (1.0,)
    for k in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    c = load("gauss", params={**p, "seed": 8})
    assert not torch.equal(a.train_x, c.train_x)
    # the test split does not depend on n_train
    d = load("gauss", params={**p, "n_train": 50})
    assert torch.equal(a.test_x, d.test_x)
    # gauss batches are only cast, not rescaled
    assert torch.equal(normalise(a.train_x, a), a.train_x)


def test_gauss_statistics():
    p = {"d": 2, "mu": 2.0, "sigma2": 0.25, "prior": 0.3, "n_train": 20000, "n_test": 10, "seed": 1}
    s = load("gauss", params=p)
    x, y = s.train_x.view(-1, 2).double(), s.train_y
    assert set(y.unique().tolist()) == {0, 1}
    assert abs(y.double().mean().item() - 0.3) < 0.015
    m1, m0 = x[y == 1].mean(0), x[y == 0].mean(0)
    assert torch.allclose(m1, torch.tensor([2.0, 0.0], dtype=torch.float64), atol=0.02)
    assert torch.allclose(m0, torch.tensor([-2.0, 0.0], dtype=torch.float64), atol=0.02)
    assert abs(x[y == 1].var(0).mean().item() - 0.25) < 0.02
    assert gauss_delta(p) == pytest.approx(4.0)


def test_gauss_delta_parametrisation():
    assert gauss_delta({}) == 1.0
    p = gauss_params({"delta": 3.0, "sigma2": 4.0})
    assert p["mu"] == pytest.approx(6.0) and "delta" not in p
    assert gauss_delta({"delta": 3.0, "sigma2": 4.0}) == pytest.approx(3.0)
    assert gauss_params({"d": "4", "n_train": 1e3})["n_train"] == 1000


@pytest.mark.parametrize(
    "params,key",
    [
        ({"prior": 0.0}, "prior"),
        ({"prior": 1.0}, "prior"),
        ({"d": 0}, "'d'"),
        ({"sigma2": 0}, "sigma2"),
        ({"sigma2": -1.0}, "sigma2"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": -5}, "n_test"),
        ({"mu": float("nan")}, "mu"),
        ({"d": 2.5}, "'d'"),
        ({"seed": True}, "seed"),
        ({"dd": 3}, "'dd'"),
        ({"mu": 1, "delta": 1}, "delta"),
    ],
)
def test_gauss_bad_params(params, key):
    with pytest.raises(BenchError) as ei:
        load("gauss", params=params)
    assert key in one_line(ei.value)


def test_unknown_kind():
    with pytest.raises(BenchError, match="unknown dataset 'mnsit'.*'mnist'"):
        load("mnsit")


def test_normalise_does_not_touch_float_input():
    x = torch.rand(4, 3, 2, 2)
    y = normalise(x, {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})
    assert torch.allclose(y, (x - 0.5) / 0.25, atol=1e-6)
    assert y.data_ptr() != x.data_ptr()


# ------------------------------------------------------------------- real data


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_debian_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty ./data: Debian's copy is next
    s = load("fashion-mnist", debian=DEBIAN)
    assert s.source == str(DEBIAN)
    assert describe_source(s).startswith(f"data: fashion-mnist from {DEBIAN}/{{train-images-idx3,")
    assert s.n_train == 60000 and s.n_test == 10000
    assert s.in_shape == (1, 28, 28) and s.num_classes == 10
    assert torch.bincount(s.train_y, minlength=10).tolist() == [6000] * 10
    assert math.isclose(s.mean[0], 0.2860, abs_tol=1e-3) and math.isclose(s.std[0], 0.3530, abs_tol=1e-3)
