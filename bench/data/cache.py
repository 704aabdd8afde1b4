"""The decoded-split cache: one ``.pt`` file per decoded copy of a data set.

``<cache_dir>/<kind>-<16 hex of sha256(kind, identity)>.pt``. The identity names the copy:
its folder and the files its layout needs (so a cache never answers for another data root
or another copy), plus any parameter that changes the decoding. Files are written atomically
(temp file in the same directory + ``os.replace``) and read with
``torch.load(weights_only=True)``.

An entry also records size and mtime of the files it was decoded from: when those files are
present and changed, the data is decoded again; when they are gone, the entry still serves.
An unreadable entry is moved to ``<cache_dir>/corrupt/`` (:func:`bench.fileio.move_aside`, with
a warning) and the data decoded again; a cache directory that cannot be written only warns.

An entry keeps the data's content fingerprint (:mod:`bench.data.fingerprint`) beside the
tensors, so a cached read never hashes; an entry written before fingerprints has none, and
:func:`with_fingerprint` adds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.data.fingerprint import data_fingerprint
from bench.errors import exception_line
from bench.fileio import move_aside

FORMAT = "lossbench-data"
VERSION = 2  # 2: the identity names the copy's expected files, not only its folder
TENSORS = ("train_x", "train_y", "test_x", "test_y")


def signature(files: Sequence[Path]) -> list[list[Any]]:
    """Path, size and mtime of each file: what tells a stale entry from a fresh one."""
    out = []
    for p in files:
        st = os.stat(p)
        out.append([str(p), int(st.st_size), int(st.st_mtime_ns)])
    return out


def entry_path(cache_dir: Path | str, kind: str, identity: Mapping[str, Any]) -> Path:
    key = json.dumps({"v": VERSION, "kind": kind, "identity": dict(identity)}, sort_keys=True)
    return Path(cache_dir) / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def make_entry(
    kind: str,
    identity: Mapping[str, Any],
    files: Sequence[Path],
    tensors: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
) -> dict[str, Any]:
    """A cache entry (also what :func:`bench.data.files.load_files` builds its splits from)."""
    entry = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "identity": dict(identity),
        "signature": signature(files),
        **{k: tensors[k].contiguous() for k in TENSORS},
        "class_names": [str(c) for c in class_names],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
    }
    return with_fingerprint(entry)[0]


def with_fingerprint(entry: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``entry`` with its data fingerprint, and whether it had to be computed now (an older entry)."""
    if isinstance(entry.get("fingerprint"), str) and entry["fingerprint"]:
        return entry, False
    return {**entry, "fingerprint": data_fingerprint(*(entry[k] for k in TENSORS), entry["class_names"])}, True


def entry_files(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """The files an entry was decoded from."""
    return tuple(str(row[0]) for row in entry["signature"])


def _warn(line: str) -> None:
    # the data package is a library: it reports through the warnings module, shown as its caller
    # chooses (the command line prints each on one line); stacklevel: past move_aside and
    # read_entry, at the loader that asked for the entry
    warnings.warn(line, stacklevel=5)


def _valid(obj: Any, kind: str, identity: Mapping[str, Any]) -> bool:
    ok = (
        isinstance(obj, dict)
        and obj.get("format") == FORMAT
        and obj.get("version") == VERSION
        and obj.get("kind") == kind
        and obj.get("identity") == dict(identity)
        and isinstance(obj.get("signature"), list)
        and isinstance(obj.get("fingerprint", ""), str)
    )
    if not ok:
        return False
    for split in ("train", "test"):
        x, y = obj[f"{split}_x"], obj[f"{split}_y"]
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            return False
        if not (x.dtype == torch.uint8 and x.dim() == 4 and y.dtype == torch.int64 and y.dim() == 1):
            return False
        if x.shape[0] != y.shape[0]:
            return False
    c = obj["train_x"].shape[1]
    return (
        obj["train_x"].shape[1:] == obj["test_x"].shape[1:]
        and len(obj["mean"]) == c
        and len(obj["std"]) == c
        and len(obj["class_names"]) >= 2
    )


def read_entry(path: Path, kind: str, identity: Mapping[str, Any], writable: bool = True) -> dict[str, Any] | None:
    """The entry at ``path`` if it is a valid one for this copy; None when absent or unreadable
    (moved aside, unless not ``writable``: a read-only command changes no file)."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not _valid(obj, kind, identity):
            raise ValueError("unexpected content")
        return obj
    except Exception as e:
        if not writable:
            return None
        move_aside(path, path.parent / "corrupt", exception_line(e), what="data cache", then="decoding it again",
                   warn=_warn)
        return None


def is_fresh(entry: Mapping[str, Any], files: Sequence[Path]) -> bool:
    """Whether ``entry`` was decoded from exactly these files as they are now."""
    return entry.get("signature") == signature(files)


def write_entry(path: Path, entry: Mapping[str, Any]) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(entry), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        warnings.warn(f"could not write data cache {path} ({e.strerror or e}); continuing without it", stacklevel=4)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
