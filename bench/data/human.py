"""Real human label noise: the CIFAR-10N / CIFAR-100N annotations (Wei et al., ICLR 2022).

Their label files are published as ``CIFAR-10_human.pt`` (a ``torch.save``d dict of int64 numpy
arrays of length 50,000: ``clean_label``, ``aggre_label``, ``worse_label``, ``random_label1..3``)
and ``CIFAR-100_human.pt`` (``clean_label``, ``noisy_label``, plus coarse-label lists). A regime
``noise: human`` with ``noise_file:`` and ``noise_labels:`` replaces the training and validation
labels by the chosen annotation (:func:`bench.data.regimes.apply_regime`).

A downloaded file is read with ``torch.load(weights_only=True)``, allowing only the numpy types an
array of labels needs (never a plain unpickle, which would run whatever the file says), and it is
refused unless its ``clean_label`` is the dataset's training labels in order: the annotations are
aligned by position, so a CIFAR-100 file on CIFAR-10, a truncated file or another image order
would silently train on wrong labels.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench.errors import BenchError, exception_line

if TYPE_CHECKING:
    import numpy as np

# noise_labels -> the file's key (the published names; "worse_label" is CIFAR-10N's "worst")
HUMAN_LABELS: Final[dict[str, str]] = {
    "aggre": "aggre_label",
    "worst": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
    "noisy": "noisy_label",
}


def _safe_globals() -> list:
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    # the published files were pickled by numpy 1.x, which names the reconstructor numpy.core.multiarray
    # the integer dtypes a label array can have, and nothing else (numpy >= 1.25 builds them as classes)
    ints = [getattr(np.dtypes, f"{p}Int{b}DType") for p in ("", "U") for b in (8, 16, 32, 64)
            if hasattr(np, "dtypes")]
    return [np.ndarray, np.dtype, *ints, _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct")]


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    """The file's label arrays (int64), keyed as in the file; memoised by path, size and mtime."""
    import numpy as np
    import torch

    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything unreadable is the file's problem
        raise BenchError(f"{path}: cannot be read as a CIFAR-N label file ({exception_line(e, 160)}); "
                         "give the CIFAR-10_human.pt / CIFAR-100_human.pt file as published") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path}: holds a {type(obj).__name__}, expected a dict of label arrays "
                         "(CIFAR-10_human.pt / CIFAR-100_human.pt)")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, (np.ndarray, torch.Tensor, list)):
            arr = np.asarray(value)
            if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
                out[str(key)] = arr.astype(np.int64)
    return out


def human_labels(noise_file: str, noise_labels: str, clean: np.ndarray, num_classes: int) -> np.ndarray:
    """The ``noise_labels`` annotation of ``noise_file`` (int64, aligned with ``clean``), checked:
    ``clean`` (the dataset's whole training labels, in order) must equal the file's ``clean_label``."""
    import numpy as np

    path = Path(noise_file)
    try:
        st = path.stat()
    except OSError as e:
        raise BenchError(f"{path}: label file not found ({e.strerror or e}); give regime noise_file as a path "
                         "relative to the registry file's folder, or absolute") from None
    arrays = _read(str(path), st.st_mtime_ns, st.st_size)
    key = HUMAN_LABELS.get(noise_labels)
    if key is None:
        raise BenchError(f"{path}: noise_labels {noise_labels!r} is not one of {', '.join(HUMAN_LABELS)}")
    for need in ("clean_label", key):
        if need not in arrays:
            have = ", ".join(sorted(arrays)) or "no label arrays"
            raise BenchError(f"{path}: has no {need!r} array (it holds {have}); "
                             f"noise_labels {noise_labels!r} reads {key!r}")
    ref, chosen = arrays["clean_label"], arrays[key]
    clean = np.asarray(clean, dtype=np.int64)
    if len(ref) != len(clean) or len(chosen) != len(clean):
        raise BenchError(f"{path}: holds {len(ref)} clean and {len(chosen)} {key} labels, but the dataset's training "
                         f"split has {len(clean)}: the file is truncated or of another dataset")
    if not np.array_equal(ref, clean):
        first = int(np.flatnonzero(ref != clean)[0])
        raise BenchError(f"{path}: clean_label differs from the dataset's training labels at {int((ref != clean).sum())} "
                         f"of {len(clean)} positions (first at index {first}): the file belongs to another dataset "
                         "or another image order")
    if chosen.size and (chosen.min() < 0 or chosen.max() >= num_classes):
        raise BenchError(f"{path}: {key} ranges over [{chosen.min()}, {chosen.max()}], "
                         f"expected [0, {num_classes - 1}]")
    return chosen
