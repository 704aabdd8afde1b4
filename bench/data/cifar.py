"""Source of ``cifar10`` and ``cifar100``: CIFAR's python batches in torchvision's layout.

``<root>/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``) is
read by a ``torchvision.datasets.CIFAR10`` subclass whose integrity check tests existence
only: torchvision's md5 check would reject re-pickled copies of the data, so this module
validates dtype, shapes, label range and class names itself. (These files are Python
pickles, as in torchvision: only load data you trust.) With ``download``, torchvision
downloads into the data root.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


from bench.data.files import Candidate, Decoded, FileSource, absent_reason, load_files, tv_datasets
from bench.data.kinds import KindSpec, Request
from bench.data.roots import search_places
from bench.data.splits import Splits
from bench.errors import BenchError, exception_line

TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = ("test_batch",)
META = "batches.meta"
TARBALL = "cifar-10-python.tar.gz"
FILES = TRAIN + TEST + (META,)


@functools.lru_cache(maxsize=1)
def _cifar_class() -> type:
    # built on first use: subclassing needs torchvision imported
    tvd = tv_datasets()

    class CIFAR10Unchecked(tvd.CIFAR10):
        """torchvision's CIFAR10 with an existence-only integrity check (no md5).

        Users' copies may be re-pickled (other md5); this module validates the content.
        """

        def _check_integrity(self) -> bool:
            return all(
                os.path.isfile(os.path.join(self.root, self.base_folder, name))
                for name, _ in self.train_list + self.test_list
            )

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            if not os.path.isfile(path):
                raise RuntimeError(f"Dataset metadata file {path} not found")
            with open(path, "rb") as infile:
                data = pickle.load(infile, encoding="latin1")
            self.classes = data[self.meta["key"]]
            self.class_to_idx = {_class: i for i, _class in enumerate(self.classes)}

    return CIFAR10Unchecked


def _diagnose(d: Path) -> None:
    """Find the first bad CIFAR-10 file in ``d`` and raise a BenchError naming it."""
    hint = f"the file is corrupt or truncated; re-extract {TARBALL}"
    for name in FILES:
        path = d / name
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
        except Exception as e:
            raise BenchError(f"{path}: cannot be unpickled ({exception_line(e)}); {hint}") from None
        if not isinstance(entry, dict):
            raise BenchError(f"{path}: holds a {type(entry).__name__}, expected a dict; {hint}")
        if name == META:
            names = entry.get("label_names")
            if not isinstance(names, (list, tuple)) or len(names) != 10:
                raise BenchError(f"{path}: 'label_names' is not a list of 10 class names; {hint}")
            continue
        data = entry.get("data")
        labels = entry.get("labels", entry.get("fine_labels"))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise BenchError(f"{path}: 'data' is {desc}, expected uint8 (N, 3072); {hint}")
        if labels is None or len(labels) != data.shape[0]:
            raise BenchError(f"{path}: 'labels' missing or not one per image; {hint}")
        lab = np.asarray(labels)
        if lab.size and (lab.min() < 0 or lab.max() > 9):
            raise BenchError(f"{path}: labels range over [{lab.min()}, {lab.max()}], expected [0, 9]; {hint}")


def _arrays(tr: Any, te: Any) -> tuple[list[np.ndarray], list[np.ndarray], tuple[str, ...]]:
    """A torchvision CIFAR dataset pair's images, labels and class names, as numpy arrays."""
    xs = [np.asarray(tr.data), np.asarray(te.data)]
    ys = [np.asarray(tr.targets, dtype=np.int64), np.asarray(te.targets, dtype=np.int64)]
    return xs, ys, tuple(str(c) for c in tr.classes)


def _read(spec: KindSpec, root: Path, download: bool) -> Decoded:
    cls = _cifar_class()
    d = root / spec.folder
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=False)
        xs, ys, classes = _arrays(tr, te)
        ok = (
            all(x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (32, 32, 3) for x in xs)
            and all(x.shape[0] == y.shape[0] for x, y in zip(xs, ys))
            and all(y.size == 0 or (y.min() >= 0 and y.max() <= 9) for y in ys)
            and len(classes) == 10
        )
        err: BaseException | None = None if ok else ValueError("unexpected content")
    except Exception as e:
        err = e
    if err is not None:
        if download and not all((d / n).is_file() for n in FILES):
            raise BenchError(
                f"could not download {spec.name} into {root}: {exception_line(err)}; without a network pass "
                f"--data-root DIR holding {spec.folder}/ (from {TARBALL})"
            ) from None
        _diagnose(d)
        raise BenchError(f"{d}: CIFAR-10 batches could not be read ({exception_line(err)}); re-extract them")

    def to_nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    return Decoded(to_nchw(xs[0]), torch.from_numpy(ys[0]), to_nchw(xs[1]), torch.from_numpy(ys[1]), classes)


def _candidate(spec: KindSpec, root: Path) -> Candidate:
    d = root / spec.folder
    missing = [n for n in FILES if not (d / n).is_file()]
    files = tuple(d / n for n in FILES if n not in missing)
    return Candidate(d, FILES, files, absent_reason(d, missing), lambda: _read(spec, root, False))


def _download(spec: KindSpec, root: Path) -> Candidate:
    decoded = _read(spec, root, True)
    return dataclasses.replace(_candidate(spec, root), decode=lambda: decoded)


def load(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    if spec.name == "cifar100":
        return _load100(spec, params, request)
    places = search_places(request.data_root, None)  # no distribution ships CIFAR-10
    root = places.root.path
    tarball = root / TARBALL
    hints = (f"{tarball} exists: extract it there (tar xzf) or pass --download",) if tarball.is_file() else ()
    layout = f"{spec.folder}/{{data_batch_1..5,test_batch,{META}}} (extracted from {TARBALL})"
    source = FileSource((_candidate(spec, root),), layout, lambda r: _download(spec, r), hints)
    return load_files(spec, params, places, request, source)


# CIFAR-100: ``<root>/cifar-100-python/{train,test,meta}``; fine labels (100 classes) or, with
# ``labels: coarse``, the 20 superclasses. torchvision's CIFAR100 reads the fine labels; the coarse
# ones are read from the same pickles (as trusted as torchvision's read of them).
C100_TRAIN, C100_TEST, C100_META = "train", "test", "meta"
C100_FILES = (C100_TRAIN, C100_TEST, C100_META)
C100_TARBALL = "cifar-100-python.tar.gz"


def cifar100_labels(params: Mapping[str, Any] | None) -> str:
    from bench.data.checks import as_params

    value = str(as_params(params).get("labels", "fine"))
    if value not in ("fine", "coarse"):
        raise BenchError(f"cifar100 parameter 'labels' must be 'fine' (100 classes) or 'coarse' (20 superclasses), "
                         f"got {value!r}")
    return value


def check_params(spec: KindSpec, params: Mapping[str, Any] | None) -> tuple[tuple[int, int, int], int]:
    from bench.data.files import subset_params

    subset_params(spec.name, params, spec.params)
    return (3, 32, 32), 20 if cifar100_labels(params) == "coarse" else 100


def _read100(spec: KindSpec, root: Path, download: bool, which: str) -> Decoded:
    tvd = tv_datasets()
    d = root / spec.folder

    class CIFAR100Unchecked(tvd.CIFAR100):  # existence-only integrity check, as for CIFAR-10
        def _check_integrity(self) -> bool:
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, n)) for n, _ in self.train_list + self.test_list)

        _load_meta = _cifar_class()._load_meta  # existence-only too (the meta file's md5 is not checked)

    try:
        tr = CIFAR100Unchecked(str(root), train=True, download=download)
        te = CIFAR100Unchecked(str(root), train=False, download=False)
        xs, ys, classes = _arrays(tr, te)
        if which == "coarse":
            ys, names = [], None
            for name in (C100_TRAIN, C100_TEST):
                with open(d / name, "rb") as f:
                    ys.append(np.asarray(pickle.load(f, encoding="latin1")["coarse_labels"], dtype=np.int64))
            with open(d / C100_META, "rb") as f:
                names = pickle.load(f, encoding="latin1")["coarse_label_names"]
            classes = tuple(str(c) for c in names)
    except Exception as e:  # noqa: BLE001 - any failure is the files'
        if download and not all((d / n).is_file() for n in C100_FILES):
            raise BenchError(f"could not download cifar100 into {root}: {exception_line(e)}; without a network pass "
                             f"--data-root DIR holding {spec.folder}/ (from {C100_TARBALL})") from None
        raise BenchError(f"{d}: CIFAR-100 files could not be read ({exception_line(e)}); re-extract {C100_TARBALL}") from None
    k = 20 if which == "coarse" else 100
    for x, y, name in zip(xs, ys, (C100_TRAIN, C100_TEST)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.shape[0] != y.shape[0]:
            raise BenchError(f"{d / name}: images {x.dtype} {x.shape} with {y.shape[0]} labels, expected uint8 "
                             f"(N, 32, 32, 3) and one label each; re-extract {C100_TARBALL}")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise BenchError(f"{d / name}: {which} labels range over [{y.min()}, {y.max()}], expected [0, {k - 1}]")
    if len(classes) != k:
        raise BenchError(f"{d / C100_META}: {len(classes)} {which} class names, expected {k}")

    def to_nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    return Decoded(to_nchw(xs[0]), torch.from_numpy(ys[0]), to_nchw(xs[1]), torch.from_numpy(ys[1]), classes)


def _candidate100(spec: KindSpec, root: Path, which: str) -> Candidate:
    d = root / spec.folder
    missing = [n for n in C100_FILES if not (d / n).is_file()]
    files = tuple(d / n for n in C100_FILES if n not in missing)
    variant = {"labels": which} if which != "fine" else {}
    return Candidate(d, C100_FILES, files, absent_reason(d, missing), lambda: _read100(spec, root, False, which), variant)


def _load100(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    which = cifar100_labels(params)
    places = search_places(request.data_root, None)
    root = places.root.path
    tarball = root / C100_TARBALL
    hints = (f"{tarball} exists: extract it there (tar xzf) or pass --download",) if tarball.is_file() else ()

    def download(r: Path) -> Candidate:
        decoded = _read100(spec, r, True, which)
        return dataclasses.replace(_candidate100(spec, r, which), decode=lambda: decoded)

    source = FileSource((_candidate100(spec, root, which),), f"{spec.folder}/{{train,test,meta}} (from {C100_TARBALL})",
                        download, hints)
    return load_files(spec, params, places, request, source)
