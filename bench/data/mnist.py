"""Source of the MNIST family (``mnist``, ``fashion-mnist``, ``kmnist``, ``emnist``): idx files in torchvision's layout.

EMNIST's files are named by its split (``emnist-<split>-train-images-idx3-ubyte``, ...; the
``split`` parameter, default ``balanced``); its ``letters`` split labels 1-26, shifted here to 0-25
(torchvision keeps an empty class 0, which label noise would move labels into).

Copies, in the order :mod:`bench.data.roots` allows:

* ``<root>/<MNIST|FashionMNIST>/processed/{training,test}.pt``: torchvision's legacy files,
  which win over ``raw/`` in torchvision too; read by torchvision's class.
* ``<root>/<MNIST|FashionMNIST>/raw/``, exactly where ``torchvision.datasets.MNIST`` /
  ``FashionMNIST`` look. torchvision reads only the *uncompressed* idx files there (its
  download keeps the ``.gz`` beside them): when all four are uncompressed, their headers are
  validated and the torchvision class reads them; when some are present only as ``.gz``,
  :mod:`bench.data.idx` decodes them in place (torchvision would call that "not found").
* the kind's Debian folder (fashion-mnist: ``dataset-fashion-mnist``, gzipped idx files),
  only without an explicit data root; decoded directly, nothing copied or staged.
* with ``download``, torchvision's class downloads into ``<root>/<family>/raw``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


from bench.data.checks import as_params
from bench.data.files import Candidate, Decoded, FileSource, absent_reason, load_files, subset_params, tv_datasets
from bench.data.idx import check_idx_set, idx_dims, ndim_of, read_idx
from bench.data.kinds import KindSpec, Request
from bench.data.provenance import brace_paths
from bench.data.roots import search_places
from bench.data.splits import Splits
from bench.errors import BenchError, exception_line

# torchvision's file names, spelled out so that finding a copy needs no torchvision import
# (it pulls in torch._dynamo); they must match torchvision.datasets.MNIST's resources
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
LEGACY_FILES = ("training.pt", "test.pt")
_EXPECTED = tuple(f"{name}[.gz]" for name in IDX_FILES.values())

# EMNIST's splits and their class counts (torchvision's EMNIST.classes_split_dict; letters without its empty class 0)
EMNIST_SPLITS = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}


@dataclasses.dataclass(frozen=True)
class Layout:
    """The idx files of one kind (and EMNIST split): their names, the class count, torchvision's keyword."""

    names: Mapping[str, str]
    num_classes: int
    tv_kwargs: Mapping[str, Any]
    variant: Mapping[str, Any]  # what changes the decoding beyond the files (part of the cache identity)

    @property
    def expected(self) -> tuple[str, ...]:
        return tuple(f"{name}[.gz]" for name in self.names.values())


def emnist_split(params: Mapping[str, Any] | None) -> str:
    split = str(as_params(params).get("split", "balanced"))
    if split not in EMNIST_SPLITS:
        from bench.errors import unknown

        raise unknown("emnist split", split, tuple(EMNIST_SPLITS))
    return split


def layout(spec: KindSpec, params: Mapping[str, Any] | None) -> Layout:
    if spec.name != "emnist":
        return Layout(IDX_FILES, spec.num_classes, {}, {})
    split = emnist_split(params)
    names = {k: f"emnist-{split}-{'train' if k.startswith('train') else 'test'}-"
                f"{'images-idx3' if k.endswith('_x') else 'labels-idx1'}-ubyte" for k in IDX_FILES}
    return Layout(names, EMNIST_SPLITS[split], {"split": split}, {"split": split})


def check_params(spec: KindSpec, params: Mapping[str, Any] | None) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes), the parameters validated (EMNIST takes ``split``)."""
    extra = ("split",) if spec.name == "emnist" else ()
    subset_params(spec.name, params, extra)
    return (1, 28, 28), layout(spec, params).num_classes


def _emnist_classes(split: str) -> tuple[str, ...]:
    classes = list(tv_datasets().EMNIST.classes_split_dict[split])
    return tuple(classes[1:] if split == "letters" else classes)


def _letters_shift(d: Decoded, lay: Layout) -> Decoded:
    if lay.tv_kwargs.get("split") != "letters":
        return d
    return dataclasses.replace(d, train_y=d.train_y - 1, test_y=d.test_y - 1, class_names=_emnist_classes("letters"))


def _check_labels(y: torch.Tensor, num_classes: int, where: Path) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise BenchError(
            f"{where}: labels range over [{int(y.min())}, {int(y.max())}], expected [0, {num_classes - 1}]; "
            "the file is corrupt or of another data set"
        )


def _checked(t: Mapping[str, torch.Tensor], files: Mapping[str, Path], class_names: tuple[str, ...],
             lay: Layout | None = None) -> Decoded:
    """Check decoded idx tensors (shapes agree, labels in range; errors name ``files``) and add the channel axis."""
    check_idx_set(files, {k: tuple(v.shape) for k, v in t.items()})
    letters = lay is not None and lay.tv_kwargs.get("split") == "letters"
    for split in ("train", "test"):
        y = t[f"{split}_y"] - 1 if letters else t[f"{split}_y"]
        _check_labels(y, lay.num_classes if lay else 10, files[f"{split}_y"])
    return Decoded(t["train_x"].unsqueeze(1), t["train_y"].long(), t["test_x"].unsqueeze(1), t["test_y"].long(),
                   class_names)


def _decode_idx(files: Mapping[str, Path], class_names: tuple[str, ...], lay: Layout | None = None) -> Decoded:
    d = _checked({key: read_idx(path, ndim_of(key)) for key, path in files.items()}, files, class_names, lay)
    return _letters_shift(d, lay) if lay is not None else d


def _tv_read(spec: KindSpec, root: Path, download: bool, lay: Layout | None = None) -> Decoded:
    """Read through torchvision's MNIST/FashionMNIST class (after the caller validated the raw files)."""
    cls = getattr(tv_datasets(), spec.folder)
    raw_dir = root / spec.folder / "raw"
    try:
        kwargs = dict(lay.tv_kwargs) if lay else {}
        tr, te = (cls(str(root), train=train, download=download, **kwargs) for train in (True, False))
    except BenchError:
        raise
    except Exception as e:
        if download:
            raise BenchError(
                f"could not download {spec.name} into {raw_dir}: {exception_line(e)}; without a network pass "
                f"--data-root DIR holding {spec.folder}/raw/"
                + (f" or apt-get install {spec.debian_package}" if spec.debian_package else "")
            ) from None
        raise BenchError(
            f"{raw_dir}: torchvision could not read {spec.name} ({exception_line(e)}); replace the files"
        ) from None
    t = {"train_x": tr.data, "train_y": tr.targets, "test_x": te.data, "test_y": te.targets}
    for key, v in t.items():
        want_dtype = torch.uint8 if key.endswith("_x") else None
        if not isinstance(v, torch.Tensor) or (want_dtype and v.dtype != want_dtype) or v.dim() != ndim_of(key):
            raise BenchError(f"{raw_dir}: torchvision returned unexpected {key} data; replace the files")
    names = lay.names if lay else IDX_FILES
    classes = tuple(str(c) for c in (tr.classes if hasattr(tr, "classes") else cls.classes))
    d = _checked(t, {k: raw_dir / n for k, n in names.items()}, classes, lay)
    return _letters_shift(d, lay) if lay is not None else d


def _idx_files(d: Path, names: Mapping[str, str] = IDX_FILES) -> tuple[dict[str, Path], list[str]]:
    """The four idx files in ``d`` (plain preferred over .gz) and the names of those missing."""
    found, missing = {}, []
    for key, name in names.items():
        if (d / name).is_file():
            found[key] = d / name
        elif (d / f"{name}.gz").is_file():
            found[key] = d / f"{name}.gz"
        else:
            missing.append(f"{name}[.gz]")
    return found, missing


def _legacy(spec: KindSpec, root: Path) -> Candidate:
    d = root / spec.folder / "processed"
    missing = [n for n in LEGACY_FILES if not (d / n).is_file()]
    files = tuple(d / n for n in LEGACY_FILES if n not in missing)
    return Candidate(d, LEGACY_FILES, files, absent_reason(d, missing), lambda: _tv_read(spec, root, False))


def _raw(spec: KindSpec, root: Path, lay: Layout) -> Candidate:
    d = root / spec.folder / "raw"
    found, missing = _idx_files(d, lay.names)

    def decode() -> Decoded:
        if all(p.suffix != ".gz" for p in found.values()):  # the layout torchvision reads: validate, then let it
            check_idx_set(found, {k: idx_dims(p, ndim_of(k)) for k, p in found.items()})
            return _tv_read(spec, root, False, lay)
        names = spec.class_names or _emnist_classes(str(lay.tv_kwargs["split"]))
        return _decode_idx(found, names, lay)

    return Candidate(d, lay.expected, tuple(found.values()), absent_reason(d, missing), decode, dict(lay.variant))


def _debian(spec: KindSpec, d: Path) -> Candidate:
    found, missing = _idx_files(d)
    return Candidate(d, _EXPECTED, tuple(found.values()), absent_reason(d, missing),
                     lambda: _decode_idx(found, spec.class_names))


def _download(spec: KindSpec, root: Path, lay: Layout) -> Candidate:
    decoded = _tv_read(spec, root, True, lay)
    return dataclasses.replace(_raw(spec, root, lay), decode=lambda: decoded)


def load(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    check_params(spec, params)
    lay = layout(spec, params)
    places = search_places(request.data_root, request.debian_dir if spec.debian_package else None)
    root = places.root.path
    # torchvision's legacy processed/ files exist for MNIST and Fashion-MNIST only
    candidates = [] if spec.name in ("kmnist", "emnist") else [_legacy(spec, root)]
    candidates.append(_raw(spec, root, lay))
    if places.system_dir is not None:
        candidates.append(_debian(spec, places.system_dir))
    where = f"{spec.folder}/raw/{brace_paths(lay.expected)} (idx files, plain or .gz)"
    source = FileSource(tuple(candidates), where, lambda r: _download(spec, r, lay))
    return load_files(spec, params, places, request, source)
