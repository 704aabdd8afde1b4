"""The table of dataset kinds: each kind's source, and :func:`load_splits`, which dispatches through it.

:data:`KINDS` (the registry's allowed ``kind`` values) is derived from :data:`KIND_TABLE`,
so adding a kind is one entry here plus its source module. A source module exposes
``load(spec, params, request) -> Splits``; it is named, not imported, so that reading the
table (the registry does, in commands that never train) imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bench.data.roots import DEBIAN_FASHION_DIR
from bench.errors import unknown

if TYPE_CHECKING:
    from bench.data.splits import Splits


@dataclass(frozen=True)
class KindSpec:
    """One dataset kind. ``folder``: its folder under a data root (torchvision's name).
    ``class_names``: as torchvision names them, where the files do not say. ``debian_package``:
    the Debian package that ships a copy in :class:`Request`'s ``debian_dir`` ("" when none).
    """

    name: str
    module: str
    folder: str = ""
    class_names: tuple[str, ...] = ()
    debian_package: str = ""
    in_shape: tuple[int, int, int] | None = None  # (C, H, W) when fixed; None: the source's shape(spec, params)
    num_classes: int = 0  # 0: the source's shape(spec, params) says
    params: tuple[str, ...] = ()  # the kind's own parameters besides n_train / n_test
    on_disk: bool = False  # read from a path of the user's (params.path), not from the data root
    generated: bool = False  # made from its parameters alone (which a cell's identity holds), no file read


@dataclass(frozen=True)
class Request:
    """What the caller of :func:`load_splits` asked for, besides the kind and its parameters.
    ``write_cache``: False for a read-only command, which reads the cache but writes nothing."""

    data_root: Path | str | None
    download: bool
    cache_dir: Path | None
    debian_dir: Path | None
    write_cache: bool = True


_MNIST_CLASSES = tuple(f"{i} - {w}" for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")))
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot")

KIND_TABLE: Mapping[str, KindSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        KindSpec("mnist", "bench.data.mnist", "MNIST", _MNIST_CLASSES, in_shape=(1, 28, 28), num_classes=10),
        KindSpec("fashion-mnist", "bench.data.mnist", "FashionMNIST", _FASHION_CLASSES, "dataset-fashion-mnist",
                 (1, 28, 28), 10),
        KindSpec("cifar10", "bench.data.cifar", "cifar-10-batches-py", in_shape=(3, 32, 32), num_classes=10),
        KindSpec("gauss", "bench.data.gauss", num_classes=2, generated=True),
        KindSpec("cifar100", "bench.data.cifar", "cifar-100-python", in_shape=(3, 32, 32), params=("labels",)),
        KindSpec("svhn", "bench.data.svhn", "", in_shape=(3, 32, 32), num_classes=10, params=("extra",)),
        KindSpec("kmnist", "bench.data.mnist", "KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
                 in_shape=(1, 28, 28), num_classes=10),
        KindSpec("emnist", "bench.data.mnist", "EMNIST", in_shape=(1, 28, 28), params=("split",)),
        KindSpec("imagefolder", "bench.data.ondisk", params=("path", "size", "holdout", "holdout_seed", "mean", "std"),
                 on_disk=True),
        KindSpec("npz", "bench.data.ondisk", params=("path", "mean", "std"), on_disk=True),
        KindSpec("target", "bench.data.target", params=("target",)),
    )
})
KINDS: tuple[str, ...] = tuple(KIND_TABLE)


def kind_spec(kind: str) -> KindSpec:
    """The table entry of ``kind`` or a BenchError naming the closest kinds."""
    spec = KIND_TABLE.get(str(kind))
    if spec is None:
        raise unknown("dataset", str(kind), KINDS)
    return spec


def dataset_shape(kind: str, params: Mapping[str, Any] | None = None) -> tuple[tuple[int, int, int], int]:
    """(input shape, number of classes) of a dataset, known without reading it; validates ``params``."""
    spec = kind_spec(kind)
    if spec.name == "gauss":
        from bench.data.gauss import gauss_params

        return (1, 1, gauss_params(params)["d"]), 2
    if spec.in_shape is None or not spec.num_classes:  # known from the parameters, or a look at the files
        return importlib.import_module(spec.module).check_params(spec, params)
    from bench.data.files import subset_params

    subset_params(kind, params, spec.params)
    return spec.in_shape, spec.num_classes


def load_splits(
    kind: str,
    params: Mapping[str, Any] | None = None,
    data_root: Path | str | None = None,
    download: bool = False,
    cache_dir: Path | str | None = None,
    debian_dir: Path | str | None = DEBIAN_FASHION_DIR,
    write_cache: bool = True,
) -> Splits:
    """Load (or generate) the train and test split of ``kind``.

    ``params``: the kind's parameters (``gauss``: :func:`~bench.data.gauss.gauss_params`' keys;
    image kinds: optional ``n_train`` / ``n_test``, the first n samples). ``data_root``,
    ``download``: see :mod:`bench.data.roots`. ``cache_dir``: the decoded-split cache
    (:mod:`bench.data.cache`; None: none). ``debian_dir``: where Debian's copy is looked for
    when no data root is given explicitly (None: not at all). ``write_cache``: False reads the
    cache but neither writes nor moves a file (read-only commands). ``splits.provenance`` says
    which files were read, and the data's content fingerprint. Every user-facing problem is a
    one-line BenchError.
    """
    spec = kind_spec(kind)
    request = Request(
        data_root,
        bool(download),
        Path(cache_dir) if cache_dir is not None else None,
        Path(debian_dir) if debian_dir is not None else None,
        bool(write_cache),
    )
    return importlib.import_module(spec.module).load(spec, params, request)
