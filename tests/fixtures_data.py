"""Tiny data sets in the real on-disk formats, for tests (shared; not a test module).

* :func:`write_mnist_idx`: MNIST-format idx files where torchvision looks for them
  (``<root>/<family>/raw/``), plain or gzipped.
* :func:`write_debian_fashion`: gzipped idx files named as in Debian's
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).
* :func:`write_cifar10_batches`: CIFAR-10's python pickles under
  ``<root>/cifar-10-batches-py/`` with the keys and dtypes torchvision reads. Their md5
  differs from the real files', so torchvision's own ``CIFAR10`` rejects them;
  ``bench.data`` reads CIFAR-10 through a subclass without the md5 check.

Images are class dependent: class k has a bright band at rows 2k, 2k+1 (idx) or a bright
band at rows 3k..3k+2 in channel k % 3 (CIFAR) over low noise, so a tiny MLP learns them in
a few epochs. Labels cover all 10 classes (n >= 10).
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

IDX_NAMES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array (1-D labels or 3-D images) in the idx format (big-endian header)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = 0x00000800 | arr.ndim
    head = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return head + arr.tobytes()


def make_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """n labels covering all 10 classes (when n >= 10), shuffled."""
    return rng.permutation(np.arange(n) % 10).astype(np.uint8)


def make_mnist_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        x[i, 2 * k : 2 * k + 2, 2:26] = rng.integers(200, 256, size=(2, 24), dtype=np.uint8)
    return x


def make_mnist_arrays(n_train: int = 64, n_test: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays :func:`write_mnist_idx` writes, keyed train_x/train_y/test_x/test_y."""
    rng = np.random.default_rng(seed)
    train_y, test_y = make_labels(n_train, rng), make_labels(n_test, rng)
    return {
        "train_x": make_mnist_images(train_y, rng),
        "train_y": train_y,
        "test_x": make_mnist_images(test_y, rng),
        "test_y": test_y,
    }


def _write_idx_set(d: Path, arrays: dict[str, np.ndarray], gz: bool) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        data = idx_bytes(arrays[key])
        if gz:
            # mtime=0: byte-identical output for identical input
            (d / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (d / name).write_bytes(data)
    return d


def write_mnist_idx(
    root: Path,
    family: str = "FashionMNIST",
    n_train: int = 64,
    n_test: int = 32,
    seed: int = 0,
    gz: bool = False,
) -> Path:
    """Write the four idx files to ``<root>/<family>/raw/`` and return that directory.

    ``family``: "MNIST" or "FashionMNIST" (torchvision's class names). ``gz=True`` writes
    only ``*.gz`` files (which torchvision itself does not read; bench.data does).
    """
    if family not in ("MNIST", "FashionMNIST"):
        raise ValueError(f"family must be 'MNIST' or 'FashionMNIST', not {family!r}")
    return _write_idx_set(Path(root) / family / "raw", make_mnist_arrays(n_train, n_test, seed), gz)


def write_debian_fashion(d: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """Write gzipped idx files named as Debian's dataset-fashion-mnist into ``d``; return ``d``."""
    return _write_idx_set(Path(d), make_mnist_arrays(n_train, n_test, seed), gz=True)


def make_cifar_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 rows as in CIFAR-10's pickles: 1024 R, then 1024 G, then 1024 B (row-major 32x32)."""
    x = rng.integers(0, 60, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    for i, k in enumerate(labels):
        x[i, k % 3, 3 * k : 3 * k + 3, 2:30] = rng.integers(200, 256, size=(3, 28), dtype=np.uint8)
    return x.reshape(len(labels), 3072)


def write_cifar10_batches(root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """Write CIFAR-10's python batches to ``<root>/cifar-10-batches-py/``; return that directory.

    Each batch is a dict pickled as in the original (protocol 2): 'batch_label' (str),
    'labels' (list of int), 'data' (uint8 ndarray (N, 3072)), 'filenames' (list of str);
    batches.meta: 'num_cases_per_batch', 'label_names' (10 str), 'num_vis' (3072).
    """
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i}", f"training batch {i} of 5", n_per_batch) for i in range(1, 6)]
    batches.append(("test_batch", "testing batch 1 of 1", n_test))
    for fname, label, n in batches:
        labels = make_labels(n, rng)
        entry = {
            "batch_label": label,
            "labels": [int(v) for v in labels],
            "data": make_cifar_images(labels, rng),
            "filenames": [f"img_{fname}_{j:05d}.png" for j in range(n)],
        }
        with open(d / fname, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"num_cases_per_batch": n_per_batch, "label_names": list(CIFAR_CLASSES), "num_vis": 3072}
    with open(d / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return d


# ---- the loss literature's datasets and a user's own, in their real on-disk formats -------------

def make_rgb_images(labels: np.ndarray, rng: np.random.Generator, k_bands: int = 10) -> np.ndarray:
    """(N, 32, 32, 3) uint8 (HWC, as CIFAR's torchvision arrays and PNGs are): class k a bright band at
    rows 3(k % k_bands).. in channel k % 3, over low noise."""
    x = rng.integers(0, 60, size=(len(labels), 32, 32, 3), dtype=np.uint8)
    for i, k in enumerate(labels):
        band = int(k) % k_bands
        x[i, 3 * band : 3 * band + 3, 2:30, int(k) % 3] = rng.integers(200, 256, size=(3, 28), dtype=np.uint8)
    return x


def write_cifar100(root: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """CIFAR-100's python pickles under ``<root>/cifar-100-python/`` (train, test, meta) with fine and coarse
    labels: coarse labels cycle over superclasses 0-9, the fine label is 5 x coarse (the first class of its
    block of 5), and the image's band encodes the coarse label, so both label sets are learnable."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        coarse = rng.permutation(np.arange(n) % 10).astype(np.int64)
        fine = coarse * 5  # class 5c: the first fine class of superclass c (in Patrini's blocks of 5)
        x = make_rgb_images(coarse, rng).transpose(0, 3, 1, 2).reshape(n, 3072)
        entry = {"filenames": [f"{name}_{i}.png" for i in range(n)], "batch_label": f"{name} batch",
                 "fine_labels": [int(v) for v in fine], "coarse_labels": [int(v) for v in coarse], "data": x}
        with open(d / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    with open(d / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return d


def write_svhn(root: Path, n_train: int = 60, n_test: int = 30, seed: int = 0, extra: int = 0) -> Path:
    """SVHN's ``{train,test[,extra]}_32x32.mat`` in ``root`` (torchvision's keys: X (32, 32, 3, N) uint8,
    y (N, 1) with 10 for the digit 0)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test), ("extra", extra)):
        if n == 0:
            continue
        digits = make_labels(n, rng).astype(np.int64)
        x = make_rgb_images(digits, rng).transpose(1, 2, 3, 0)  # (32, 32, 3, N)
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(Path(root) / f"{name}_32x32.mat", {"X": x, "y": y})
    return Path(root)


def write_idx_family(root: Path, folder: str, names: dict[str, str], n_train: int = 64, n_test: int = 32,
                     seed: int = 0, label_offset: int = 0) -> Path:
    """Uncompressed idx files under ``<root>/<folder>/raw/`` named by ``names`` (train_x, ...), as torchvision's
    KMNIST / EMNIST classes read them; labels 0-9 plus ``label_offset``."""
    a = make_mnist_arrays(n_train, n_test, seed)
    d = Path(root) / folder / "raw"
    d.mkdir(parents=True, exist_ok=True)
    for key, name in names.items():
        arr = a[key] + label_offset if key.endswith("_y") else a[key]
        (d / name).write_bytes(idx_bytes(arr))
    return d


def write_kmnist(root: Path, **kw) -> Path:
    return write_idx_family(root, "KMNIST", IDX_NAMES, **kw)


def write_emnist(root: Path, split: str = "balanced", **kw) -> Path:
    names = {k: f"emnist-{split}-{'train' if k.startswith('train') else 'test'}-"
                f"{'images-idx3' if k.endswith('_x') else 'labels-idx1'}-ubyte" for k in IDX_NAMES}
    return write_idx_family(root, "EMNIST", names, label_offset=1 if split == "letters" else 0, **kw)


def write_imagefolder(root: Path, n_train: int = 8, n_test: int = 4, classes: int = 4, seed: int = 0,
                      split: bool = True, grey: bool = False) -> Path:
    """PNGs in torchvision's ImageFolder layout: ``root/train/<class>/`` and ``root/test/<class>/`` (or one
    ``root/<class>/`` tree with ``split=False``); ``n_train`` / ``n_test`` images per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, n in ((("train", n_train), ("test", n_test)) if split else (("", n_train + n_test),)):
        for k in range(classes):
            d = Path(root) / part / f"class_{k}" if part else Path(root) / f"class_{k}"
            d.mkdir(parents=True, exist_ok=True)
            x = make_rgb_images(np.full(n, k), rng)
            for i in range(n):
                img = Image.fromarray(x[i, :, :, 0] if grey else x[i], "L" if grey else "RGB")
                img.save(d / f"img_{i:04d}.png")
    return Path(root)


def write_npz(path: Path, n_train: int = 100, n_test: int = 40, seed: int = 0, layout: str = "nhwc", **override) -> Path:
    """An ``.npz`` with x_train, y_train, x_test, y_test (images in ``layout``: nhw, nhwc, nchw; or feat: float
    [N, D] features with the class in feature k); ``override`` replaces or (None) drops arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = make_labels(n, rng).astype(np.int64)
        if layout == "feat":
            x = rng.normal(0, 0.3, size=(n, 12)).astype(np.float32)
            x[np.arange(n), y] += 2.0
        else:
            x = make_rgb_images(y, rng)
            x = {"nhw": x.max(axis=3), "nhwc": x, "nchw": x.transpose(0, 3, 1, 2)}[layout]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    for k, v in override.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    np.savez(path, **arrays)
    return Path(path)


def write_cifar_n(path: Path, clean: np.ndarray, rate: float = 0.3, seed: int = 0, cifar100: bool = False,
                  keys: tuple[str, ...] | None = None, numpy1_names: bool = True) -> dict[str, np.ndarray]:
    """A label file in the CIFAR-N format (``torch.save`` of a dict of int64 numpy arrays): ``clean_label`` and
    the annotations (CIFAR-10N: aggre_label, worse_label, random_label1-3; CIFAR-100N: noisy_label), each a copy
    of ``clean`` with a ``rate`` fraction moved to the next class. Returns the arrays written."""
    import torch

    rng = np.random.default_rng(seed)
    k = int(clean.max()) + 1
    names = ("noisy_label",) if cifar100 else ("aggre_label", "worse_label", "random_label1", "random_label2",
                                                 "random_label3")
    out = {"clean_label": np.asarray(clean, dtype=np.int64)}
    for name in names:
        noisy = out["clean_label"].copy()
        flip = rng.random(len(noisy)) < rate
        noisy[flip] = (noisy[flip] + 1) % max(k, 2)
        out[name] = noisy
    if keys is not None:
        out = {key: out[key] for key in keys if key in out}
    torch.save(dict(out), path)
    return out
