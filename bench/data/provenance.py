"""Where a data set's tensors came from, and the one line that tells a user.

A :class:`Provenance` travels with every :class:`~bench.data.splits.Splits` that
:func:`~bench.data.load_splits` returns; :func:`describe_source` renders it, e.g.
``data: fashion-mnist from /usr/share/datasets/fashion-mnist/{train-images-idx3,...}-ubyte.gz``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.data.splits import Splits

_SEPARATORS = "-_."


@dataclass(frozen=True)
class Provenance:
    """``files``: the files decoded (or whose decoding the cache holds), absolute paths.
    ``cache``: the decoded-split cache file the tensors were read from; "" when decoded now.
    ``generated``: how generated data was made ("" for data read from files).
    ``fingerprint``: the decoded data's content fingerprint (:mod:`bench.data.fingerprint`).
    """

    kind: str
    files: tuple[str, ...] = ()
    cache: str = ""
    generated: str = ""
    fingerprint: str = ""


def _common_prefix(names: list[str]) -> str:
    prefix = os.path.commonprefix(names)
    # cut at a separator so that the braces hold whole words ("t{raining,est}.pt" reads badly)
    cut = max(prefix.rfind(c) for c in _SEPARATORS) + 1
    return prefix[:cut]


def _common_suffix(names: list[str]) -> str:
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1]
    cuts = [i for i, c in enumerate(suffix) if c in _SEPARATORS]
    return suffix[cuts[0] :] if cuts else ""


def brace_paths(paths: tuple[str, ...] | list[str]) -> str:
    """Files of one directory as ``dir/pre{a,b,c}suf`` (shell brace syntax); others comma-joined."""
    if not paths:
        return ""
    if len(paths) == 1:
        return str(paths[0])
    dirs = {os.path.dirname(p) for p in paths}
    if len(dirs) != 1:
        return ", ".join(paths)
    names = [os.path.basename(p) for p in paths]
    pre = _common_prefix(names)
    suf = _common_suffix([n[len(pre) :] for n in names])
    middles = [n[len(pre) : len(n) - len(suf)] for n in names]
    return os.path.join(dirs.pop(), f"{pre}{{{','.join(middles)}}}{suf}")


def describe_source(splits: Splits) -> str:
    """One line naming what a data set was read from: its files, and the cache file if one answered.

    ``data: mnist from /d/MNIST/raw/{train-images-idx3,...}-ubyte`` (decoded now),
    ``data: mnist from /d/MNIST/raw/{...}-ubyte via decoded cache /r/cache/mnist-<hash>.pt``,
    ``data: gauss generated (d=2, mu=1.0, ...)``.
    """
    p = splits.provenance
    kind = splits.kind or (p.kind if p else "") or "data set"
    if p is None:
        return f"data: {kind} from {splits.source}"  # built by hand (benchmarks, tests): no files known
    if p.generated:
        return f"data: {kind} generated ({p.generated})"
    line = f"data: {kind} from {brace_paths(p.files) or splits.source}"
    return line + (f" via decoded cache {p.cache}" if p.cache else "")
