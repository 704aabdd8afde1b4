"""Datasets: whole splits as tensors, read once, normalised per batch on the device.

``load_splits(kind, params, data_root, download, cache_dir)`` returns a :class:`Splits`
(no per-sample transforms, no DataLoader); :func:`describe_source` names the files it was
read from. One module per job:

* :mod:`~bench.data.splits`: the :class:`Splits` tensors and their normalisation;
* :mod:`~bench.data.kinds`: the table of kinds (the registry's allowed kinds) and
  :func:`load_splits`, which dispatches through it to one source per kind:
  :mod:`~bench.data.mnist` (mnist, fashion-mnist), :mod:`~bench.data.cifar`,
  :mod:`~bench.data.gauss` (the generator);
* :mod:`~bench.data.roots`: where file-backed kinds are looked for (the data-root rule);
* :mod:`~bench.data.files`: loading a file-backed kind through the cache;
* :mod:`~bench.data.idx`: the idx reader; :mod:`~bench.data.cache`: the decoded-split cache;
* :mod:`~bench.data.provenance`: what was read; :mod:`~bench.data.checks`: parameter checks.
* :mod:`~bench.data.fingerprint`: the decoded data's content fingerprint, stored with each row.

Training regimes that change the splits (validation split, label noise, imbalance,
subsets) belong in their own module here, applied to the decoded splits.

The names below resolve on first use, so that importing one submodule (the registry reads
:data:`KINDS`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Splits": "bench.data.splits",
    "normalise": "bench.data.splits",
    "Provenance": "bench.data.provenance",
    "describe_source": "bench.data.provenance",
    "KINDS": "bench.data.kinds",
    "KIND_TABLE": "bench.data.kinds",
    "load_splits": "bench.data.kinds",
    "dataset_shape": "bench.data.kinds",
    "DATA_ROOT_ENV": "bench.data.roots",
    "DEFAULT_DATA_ROOT": "bench.data.roots",
    "DEBIAN_FASHION_DIR": "bench.data.roots",
    "resolve_data_root": "bench.data.roots",
    "read_idx": "bench.data.idx",
    "gauss_params": "bench.data.gauss",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from bench.data.gauss import gauss_params
    from bench.data.idx import read_idx
    from bench.data.kinds import KIND_TABLE, KINDS, dataset_shape, load_splits
    from bench.data.provenance import Provenance, describe_source
    from bench.data.roots import DATA_ROOT_ENV, DEBIAN_FASHION_DIR, DEFAULT_DATA_ROOT, resolve_data_root
    from bench.data.splits import Splits, normalise


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
