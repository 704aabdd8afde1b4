"""Source of ``svhn``: the Street View House Numbers ``.mat`` files in torchvision's layout.

``<root>/train_32x32.mat`` and ``<root>/test_32x32.mat`` (torchvision's ``SVHN`` keeps them
directly in the root; keys ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1), label 10 for the digit 0),
read by a ``torchvision.datasets.SVHN`` subclass whose integrity check tests existence only (as
for CIFAR: this module validates the content). ``extra: true`` adds ``extra_32x32.mat`` (531,131
easier digits) to the training split, as the SVHN literature's "train+extra" does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.checks import as_params
from bench.data.files import Candidate, Decoded, FileSource, absent_reason, load_files, subset_params, tv_datasets
from bench.data.kinds import KindSpec, Request
from bench.data.roots import search_places
from bench.data.splits import Splits
from bench.errors import BenchError, exception_line

CLASSES = tuple(str(i) for i in range(10))


def use_extra(params: Mapping[str, Any] | None) -> bool:
    value = as_params(params).get("extra", False)
    if not isinstance(value, bool):
        raise BenchError(f"svhn parameter 'extra' must be true or false, got {value!r}")
    return value


def _files(extra: bool) -> tuple[str, ...]:
    return ("train_32x32.mat", "test_32x32.mat") + (("extra_32x32.mat",) if extra else ())


def _read(root: Path, download: bool, extra: bool) -> Decoded:
    tvd = tv_datasets()

    class SVHNUnchecked(tvd.SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

    parts = {}
    for split in ("train", "test") + (("extra",) if extra else ()):
        path = root / f"{split}_32x32.mat"
        try:
            ds = SVHNUnchecked(str(root), split=split, download=download)
            x, y = np.asarray(ds.data), np.asarray(ds.labels, dtype=np.int64).reshape(-1)
        except Exception as e:  # noqa: BLE001 - any failure is the file's
            raise BenchError(f"{path}: cannot be read as SVHN ({exception_line(e)}); it needs keys X (32, 32, 3, N) "
                             "uint8 and y (N, 1) with labels 1-10; replace the file") from None
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or x.shape[0] != y.shape[0]:
            raise BenchError(f"{path}: X is {x.dtype} {tuple(x.shape)} for {y.shape[0]} labels, expected uint8 "
                             "(32, 32, 3, N) with one label each; replace the file")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise BenchError(f"{path}: labels range over [{y.min() or 10}, {y.max()}], expected 1-10 (10: the digit 0)")
        parts[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    train_x, train_y = parts["train"]
    if extra:
        train_x, train_y = torch.cat([train_x, parts["extra"][0]]), torch.cat([train_y, parts["extra"][1]])
    return Decoded(train_x, train_y, parts["test"][0], parts["test"][1], CLASSES)


def _candidate(root: Path, extra: bool) -> Candidate:
    names = _files(extra)
    missing = [n for n in names if not (root / n).is_file()]
    files = tuple(root / n for n in names if n not in missing)
    return Candidate(root, names, files, absent_reason(root, missing), lambda: _read(root, False, extra))


def load(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    subset_params(spec.name, params, spec.params)
    extra = use_extra(params)
    places = search_places(request.data_root, None)
    root = places.root.path

    def download(r: Path) -> Candidate:
        decoded = _read(r, True, extra)
        return dataclasses.replace(_candidate(r, extra), decode=lambda: decoded)

    layout = "{" + ",".join(_files(extra)) + "} (torchvision's SVHN files, directly in the data root)"
    return load_files(spec, params, places, request, FileSource((_candidate(root, extra),), layout, download))
