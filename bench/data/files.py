"""Loading a file-backed kind: try its copies in order, through the cache, then take subsets.

A source module describes its copies as :class:`Candidate` values (where a copy would be,
which files it needs, how to decode it) in the order :mod:`bench.data.roots` allows;
:func:`load_files` takes the first copy that is present (or cached), decodes it once into
uint8 tensors, and applies ``n_train`` / ``n_test`` (the first n samples) after the cache,
so subsets share one cache entry. Nothing found is one BenchError naming every place
looked at and the layout expected there. Sources that read through torchvision's dataset
classes import it with :func:`tv_datasets`, only once a copy is to be decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.data import cache
from bench.data.checks import as_int, as_params, check_keys
from bench.data.kinds import KindSpec, Request
from bench.data.provenance import Provenance
from bench.data.roots import DATA_ROOT_ENV, Places
from bench.data.splits import Splits, channel_stats
from bench.errors import BenchError

SUBSET_PARAMS = ("n_train", "n_test")


@dataclass(frozen=True)
class Decoded:
    """A copy's tensors as decoded: uint8 NCHW images, int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """One place a kind's copy may be.

    ``folder``: shown to users (and :attr:`Splits.source`). ``expected``: the file names the
    layout needs there (``name[.gz]`` where either form counts); with ``folder`` it is the
    cache identity. ``files``: the files present that a decode reads. ``why_absent``: for the
    not-found message ("missing", "lacks ..."); "" when present.
    """

    folder: Path
    expected: tuple[str, ...]
    files: tuple[Path, ...]
    why_absent: str
    decode: Callable[[], Decoded]
    variant: Mapping[str, Any] = field(default_factory=dict)  # parameters that change the decoding (EMNIST's split)

    @property
    def present(self) -> bool:
        return not self.why_absent

    def identity(self) -> dict[str, Any]:
        out = {"folder": str(self.folder), "expected": list(self.expected)}
        if self.variant:  # only when there is one: the built-in kinds' cache entries keep their names
            out["variant"] = dict(self.variant)
        return out


@dataclass(frozen=True)
class FileSource:
    """What a source module hands :func:`load_files`.

    ``layout``: the expected layout under a data root, for the not-found message.
    ``download``: fetches the kind into the data root and returns the copy now present.
    ``hints``: extra fixes for the not-found message.
    """

    candidates: tuple[Candidate, ...]
    layout: str
    download: Callable[[Path], Candidate]
    hints: tuple[str, ...] = ()


def tv_datasets() -> Any:
    """``torchvision.datasets``, or a BenchError saying how to install it."""
    try:
        import torchvision.datasets as tvd
    except Exception as e:  # pragma: no cover - depends on the installation
        raise BenchError(f"torchvision cannot be imported ({e}); install torchvision==0.29.1") from None
    return tvd


def subset_params(kind: str, params: Mapping[str, Any] | None, own: tuple[str, ...] = ()) -> dict[str, int]:
    """An image kind's parameters: optional ``n_train`` / ``n_test`` (> 0); ``own``: the kind's other keys,
    allowed here and checked by its source."""
    p = as_params(params)
    check_keys(kind, p, SUBSET_PARAMS + own)
    out: dict[str, int] = {}
    for key in SUBSET_PARAMS:
        if p.get(key) is not None:
            n = as_int(kind, key, p[key])
            if n <= 0:
                raise BenchError(f"{kind} parameter {key!r} must be > 0, got {n}")
            out[key] = n
    return out


def absent_reason(folder: Path, missing: list[str]) -> str:
    """Why a copy is not usable: "" (it is), "missing" (no folder) or the files it lacks."""
    if not missing:
        return ""
    if not folder.is_dir():
        return "missing"
    return "lacks " + ", ".join(missing)


def not_found(spec: KindSpec, places: Places, source: FileSource) -> BenchError:
    looked = ", ".join(f"{c.folder} ({c.why_absent})" for c in source.candidates)
    root = places.root
    if root.explicit:
        where = (f"{spec.name} not found under data root {root.path} (from {root.origin}, so nothing else "
                 f"is searched): looked in {looked}; expected {source.layout} there")
        fixes = ["pass --data-root DIR holding that layout", "--download where a network exists"]
        if places.skipped is not None and places.skipped.is_dir():
            fixes.append(f"give no --data-root / ${DATA_ROOT_ENV} to use the copy in {places.skipped}")
        elif spec.debian_package:
            fixes.append(f"apt-get install {spec.debian_package} and give no --data-root / ${DATA_ROOT_ENV}")
    else:
        searched = "the default ./data, then Debian's folder, were" if places.system_dir else "the default ./data was"
        where = (f"{spec.name} not found (no --data-root / ${DATA_ROOT_ENV} given, so {searched} searched): "
                 f"looked in {looked}; expected {source.layout} under ./data")
        fixes = ["pass --data-root DIR holding that layout", "--download where a network exists"]
        if spec.debian_package:
            fixes.append(f"apt-get install {spec.debian_package}")
    return BenchError(f"{where}; {', or '.join(fixes)}{''.join('; ' + h for h in source.hints)}")


def _decode_entry(spec: KindSpec, cand: Candidate) -> dict[str, Any]:
    d = cand.decode()
    mean, std = channel_stats(d.train_x)
    tensors = {"train_x": d.train_x, "train_y": d.train_y.to(torch.int64), "test_x": d.test_x,
               "test_y": d.test_y.to(torch.int64)}
    return cache.make_entry(spec.name, cand.identity(), cand.files, tensors, d.class_names, mean, std)


def _find(spec: KindSpec, request: Request, source: FileSource) -> tuple[Candidate, dict[str, Any], str] | None:
    """The first copy (in order) the cache or the files answer for: (copy, entry, cache file or "")."""
    for cand in source.candidates:
        cpath = cache.entry_path(request.cache_dir, spec.name, cand.identity()) if request.cache_dir else None
        if cpath is not None:
            cached = cache.read_entry(cpath, spec.name, cand.identity(), request.write_cache)
            if cached is not None and (not cand.present or cache.is_fresh(cached, cand.files)):
                cached, added = cache.with_fingerprint(cached)
                if added and request.write_cache:  # an entry from before fingerprints: hash it once
                    cache.write_entry(cpath, cached)
                return cand, cached, str(cpath)
        if cand.present:
            entry = _decode_entry(spec, cand)
            if cpath is not None and request.write_cache:
                cache.write_entry(cpath, entry)
            return cand, entry, ""
    return None


def load_files(
    spec: KindSpec, params: Mapping[str, Any] | None, places: Places, request: Request, source: FileSource
) -> Splits:
    """Load a file-backed kind from the first copy found in ``source.candidates``; see the module docstring."""
    subsets = subset_params(spec.name, params, spec.params)
    found = _find(spec, request, source)
    if found is None:
        if not request.download:
            raise not_found(spec, places, source)
        cand = source.download(places.root.path)
        entry = _decode_entry(spec, cand)
        if request.cache_dir is not None and request.write_cache:
            cache.write_entry(cache.entry_path(request.cache_dir, spec.name, cand.identity()), entry)
        found = cand, entry, ""
    cand, entry, cache_file = found

    train_x, train_y, test_x, test_y = (entry[k] for k in cache.TENSORS)
    for split, key, full in (("train", "n_train", train_y.shape[0]), ("test", "n_test", test_y.shape[0])):
        n = subsets.get(key)
        if n is not None and n > full:
            raise BenchError(f"{spec.name} parameter {key!r} is {n}, but the {split} split has only {full} samples")
    if "n_train" in subsets:
        train_x, train_y = train_x[: subsets["n_train"]], train_y[: subsets["n_train"]]
    if "n_test" in subsets:
        test_x, test_y = test_x[: subsets["n_test"]], test_y[: subsets["n_test"]]
    names = tuple(str(c) for c in entry["class_names"])
    return Splits(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=len(names),
        in_shape=tuple(int(v) for v in train_x.shape[1:]),  # type: ignore[arg-type]
        mean=tuple(float(v) for v in entry["mean"]),
        std=tuple(float(v) for v in entry["std"]),
        source=str(cand.folder),
        class_names=names,
        kind=spec.name,
        params=dict(subsets),
        provenance=Provenance(spec.name, cache.entry_files(entry), cache_file, fingerprint=entry["fingerprint"]),
    )
