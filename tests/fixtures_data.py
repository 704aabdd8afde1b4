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
