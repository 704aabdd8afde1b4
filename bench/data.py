"""Datasets: whole splits as tensors, read once, normalised per batch on the device.

``load_splits(kind, params, data_root, download, cache_dir)`` returns a :class:`Splits`
holding the four tensors of a data set (no per-sample transforms, no DataLoader):

* images (``mnist``, ``fashion-mnist``, ``cifar10``): uint8, NCHW; labels int64.
* ``gauss`` (the paper's binary Gaussian model): float32 of shape (N, 1, 1, d); labels
  int64 in {0, 1} (0 for y = -1, 1 for y = +1).

Normalisation happens later, on a batch already on the training device:
``splits.normalise(xb)`` (or :func:`normalise`) computes ``(x / 255 - mean) / std`` per
channel for uint8 batches and ``(x - mean) / std`` for float batches (gauss: mean 0,
std 1, so the batch is only cast). ``mean``/``std`` are the per-channel statistics of the
full training split (for the real data sets they equal the usual published constants,
e.g. MNIST 0.1307 / 0.3081).

Where the image data sets are looked for, in this order (the first that has all four
files / all batches wins; local sources are always tried before a download):

* data root = ``data_root`` argument, else ``$LOSSBENCH_DATA_ROOT``, else ``./data``.
* ``mnist`` / ``fashion-mnist``: ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``,
  exactly where ``torchvision.datasets.MNIST`` / ``FashionMNIST`` look. torchvision reads
  only the *uncompressed* idx files there (``train-images-idx3-ubyte`` ...; its download
  keeps the ``.gz`` beside them) and also its legacy ``processed/{training,test}.pt``.
  When all four uncompressed files (or the legacy files) are there the torchvision class
  reads them; when some are present only as ``.gz``, lossbench's own idx reader decodes
  them in place (torchvision would call that "not found").
* ``fashion-mnist`` only: then ``debian_dir`` (default ``/usr/share/datasets/fashion-mnist``,
  Debian's ``dataset-fashion-mnist`` package, gzipped idx files), decoded directly with
  lossbench's idx reader; nothing is copied or staged.
* ``cifar10``: ``<root>/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``) read by a ``torchvision.datasets.CIFAR10`` subclass whose integrity
  check tests existence only: torchvision's md5 check would reject re-pickled copies of
  the data, so lossbench validates dtype, shapes, label range and class names itself.
  (These files are Python pickles, as in torchvision: only load data you trust.)
* with ``download=True`` and nothing found locally, the torchvision class downloads into
  the data root (needs a network; a failure is a one-line :class:`BenchError`).

Every idx file is checked before use: magic number (2051 images / 2049 labels, uint8),
dimensions, exact file size (after decompression), matching sample counts and label range;
a bad file is a one-line :class:`BenchError` naming it.

Disk cache (``cache_dir`` not None; image kinds only, ``gauss`` is regenerated, which is
faster than reading it): ``<cache_dir>/<kind>-<16 hex of sha256(kind, decode params,
source dir)>.pt``, written atomically (temp file in the same directory + ``os.replace``)
and read with ``torch.load(weights_only=True)``. It also stores size and mtime of the
source files: when the source files are present and changed, the data is decoded again;
when they are gone, the cache still serves the data. A cache file that cannot be read is
renamed to ``*.corrupt`` (with a warning) and the data decoded again. A cache directory
that cannot be written only warns. ``n_train`` / ``n_test`` (take the first n samples of
a split) are applied after the cache, so they share one cache file.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
import pickle
import tempfile
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError, unknown

KINDS = ("mnist", "fashion-mnist", "cifar10", "gauss")
DATA_ROOT_ENV = "LOSSBENCH_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("data")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

# torchvision's class (by name) and file names for the MNIST family.
_TV_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
_MNIST_CLASSES = {  # torchvision.datasets.MNIST.classes / FashionMNIST.classes
    "mnist": ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
              "8 - eight", "9 - nine"),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
}
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # uint8 images (2051) / uint8 labels (2049)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_META = "batches.meta"
_CIFAR_TARBALL = "cifar-10-python.tar.gz"

_CACHE_FORMAT = "lossbench-data"
_CACHE_VERSION = 1

_IMAGE_PARAMS = ("n_train", "n_test")
_GAUSS_DEFAULTS: dict[str, Any] = {
    "d": 2,
    "mu": 1.0,
    "sigma2": 1.0,
    "prior": 0.5,
    "n_train": 10000,
    "n_test": 2000,
    "seed": 0,
}
_GAUSS_PARAMS = tuple(_GAUSS_DEFAULTS) + ("delta",)


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True, eq=False)
class Splits:
    """A data set's train and test split as whole tensors plus what a model needs to know.

    ``train_x``/``test_x``: uint8 NCHW images, or float32 (N, 1, 1, d) for gauss.
    ``train_y``/``test_y``: int64 class indices in ``[0, num_classes)``.
    ``mean``/``std``: per-channel constants used by :meth:`normalise`.
    ``source``: where the data came from (a directory) or how it was generated.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    class_names: tuple[str, ...]
    kind: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_y.shape[0])

    def normalise(self, xb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Normalise a batch (on any device); see :func:`normalise`."""
        return normalise(xb, self, dtype)


@functools.lru_cache(maxsize=64)
def _affine_consts(
    mean: tuple[float, ...], std: tuple[float, ...], scale: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.tensor([1.0 / (scale * s) for s in std], dtype=torch.float64)
    b = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float64)
    shape = (1, len(mean), 1, 1)
    return a.to(dtype).view(shape).to(device), b.to(dtype).view(shape).to(device)


def normalise(x: torch.Tensor, meta: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return ``(x / 255 - mean) / std`` (uint8 ``x``) or ``(x - mean) / std`` (float ``x``).

    ``meta`` is a :class:`Splits` or anything with ``mean``/``std`` (attributes or mapping
    keys). Works on a batch already on its device, vectorised, without changing ``x``;
    channels are dim 1 of an NCHW batch. The result has ``dtype`` (default float32).
    """
    if isinstance(meta, Mapping):
        mean, std = tuple(meta["mean"]), tuple(meta["std"])
    else:
        mean, std = tuple(meta.mean), tuple(meta.std)
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean {mean} and std {std} must be non-empty and of equal length")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    if scale == 1.0 and all(m == 0.0 for m in mean) and all(s == 1.0 for s in std):
        return x.to(dtype)
    if len(mean) == 1:
        a, b = 1.0 / (scale * std[0]), mean[0] / std[0]
    else:
        if x.dim() != 4 or x.shape[1] != len(mean):
            raise ValueError(f"batch of shape {tuple(x.shape)} does not have {len(mean)} channels in dim 1")
        a, b = _affine_consts(mean, std, scale, x.device, dtype)
    y = x.to(dtype)
    if y is x or y.data_ptr() == x.data_ptr():  # same tensor: stay out of place
        return y * a - b
    return y.mul_(a).sub_(b)


# ------------------------------------------------------------------------- params


def _as_int(kind: str, key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise BenchError(f"{kind} parameter {key!r} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        if isinstance(value, str):
            value = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
            if isinstance(value, int):
                return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    except (ValueError, OverflowError):
        pass
    raise BenchError(f"{kind} parameter {key!r} must be an integer, got {value!r}")


def _as_float(kind: str, key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise BenchError(f"{kind} parameter {key!r} must be a number, got {value!r}")
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise BenchError(f"{kind} parameter {key!r} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise BenchError(f"{kind} parameter {key!r} must be finite, got {value!r}")
    return out


def _check_keys(kind: str, params: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    for key in params:
        if key not in valid:
            raise unknown(f"{kind} parameter", str(key), valid)


def _as_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise BenchError(f"dataset parameters must be a mapping of name to value, got {type(params).__name__}")
    return dict(params)


def gauss_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``gauss`` parameters and return them resolved (defaults filled in).

    ``d`` (dimension, >= 1, default 2), ``mu`` (>= 0, default 1: class means are
    ``±mu·e_1``) or instead ``delta`` (>= 0: ``mu = delta·sqrt(sigma2)``), ``sigma2``
    (> 0, default 1: ``Σ = sigma2·I``), ``prior`` (P(y=+1) in (0, 1), default 0.5),
    ``n_train`` / ``n_test`` (> 0, defaults 10000 / 2000), ``seed`` (>= 0, default 0).
    The result never holds ``delta``; it always holds ``mu``.
    """
    p = _as_params(params)
    _check_keys("gauss", p, _GAUSS_PARAMS)
    if "delta" in p and "mu" in p:
        raise BenchError("gauss parameters 'mu' and 'delta' both given; give one (delta = mu / sqrt(sigma2))")
    out = dict(_GAUSS_DEFAULTS)
    for key in ("d", "n_train", "n_test", "seed"):
        if key in p:
            out[key] = _as_int("gauss", key, p[key])
    for key in ("mu", "sigma2", "prior"):
        if key in p:
            out[key] = _as_float("gauss", key, p[key])
    if out["d"] < 1:
        raise BenchError(f"gauss parameter 'd' must be >= 1, got {out['d']}")
    for key in ("n_train", "n_test"):
        if out[key] <= 0:
            raise BenchError(f"gauss parameter {key!r} must be > 0, got {out[key]}")
    if out["seed"] < 0:
        raise BenchError(f"gauss parameter 'seed' must be >= 0, got {out['seed']}")
    if out["sigma2"] <= 0:
        raise BenchError(f"gauss parameter 'sigma2' must be > 0, got {out['sigma2']}")
    if not 0.0 < out["prior"] < 1.0:
        raise BenchError(f"gauss parameter 'prior' must be in (0, 1), got {out['prior']}")
    if "delta" in p:
        delta = _as_float("gauss", "delta", p["delta"])
        if delta < 0:
            raise BenchError(f"gauss parameter 'delta' must be >= 0, got {delta}")
        out["mu"] = delta * math.sqrt(out["sigma2"])
    if out["mu"] < 0:
        raise BenchError(f"gauss parameter 'mu' must be >= 0, got {out['mu']}")
    out["d"], out["n_train"], out["n_test"], out["seed"] = (int(out[k]) for k in ("d", "n_train", "n_test", "seed"))
    out["mu"], out["sigma2"], out["prior"] = (float(out[k]) for k in ("mu", "sigma2", "prior"))
    return out


def gauss_delta(params: Mapping[str, Any] | None = None) -> float:
    """δ = sqrt(μᵀ Σ⁻¹ μ) = mu / sqrt(sigma2) of the ``gauss`` model with these parameters."""
    p = gauss_params(params)
    return p["mu"] / math.sqrt(p["sigma2"])


def _image_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = _as_params(params)
    _check_keys(kind, p, _IMAGE_PARAMS)
    out: dict[str, Any] = {}
    for key in _IMAGE_PARAMS:
        if p.get(key) is not None:
            n = _as_int(kind, key, p[key])
            if n <= 0:
                raise BenchError(f"{kind} parameter {key!r} must be > 0, got {n}")
            out[key] = n
    return out


def canonical_kind(kind: str) -> str:
    """Return the canonical dataset kind for ``kind`` or raise a :class:`BenchError`."""
    k = str(kind).strip().lower()
    k = _ALIASES.get(k, k)
    if k not in KINDS:
        raise unknown("dataset", str(kind), KINDS)
    return k


def resolve_data_root(data_root: Path | str | None) -> tuple[Path, str]:
    """Return ``(root, origin)``: the explicit root, else ``$LOSSBENCH_DATA_ROOT``, else ``./data``."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser().resolve(), "--data-root"
    env = os.environ.get(DATA_ROOT_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve(), f"${DATA_ROOT_ENV}"
    return DEFAULT_DATA_ROOT.resolve(), "default ./data"


# -------------------------------------------------------------------- idx format


def _idx_header(head: bytes, path: Path, ndim: int, size: int) -> tuple[int, ...]:
    """Validate an idx header against the (decompressed) file ``size``; return the dims."""
    expected_magic = _IDX_MAGIC[ndim]
    what = "images" if ndim == 3 else "labels"
    hint = "the file is corrupt or not an MNIST-format idx file; replace it"
    if len(head) < 4:
        raise BenchError(f"{path}: only {size} bytes, not an idx {what} file; {hint}")
    magic = int.from_bytes(head[:4], "big")
    if magic != expected_magic:
        raise BenchError(
            f"{path}: bad magic number 0x{magic:08x} (expected 0x{expected_magic:08x} = "
            f"{expected_magic}, uint8 {what}); {hint}"
        )
    hdr = 4 + 4 * ndim
    if len(head) < hdr:
        raise BenchError(f"{path}: truncated idx header ({size} bytes); {hint}")
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(n == 0 for n in dims):
        raise BenchError(f"{path}: idx dimensions {'x'.join(map(str, dims))} hold no data; {hint}")
    expected = hdr + math.prod(dims)
    if size != expected:
        state = "truncated" if size < expected else "has trailing bytes"
        raise BenchError(
            f"{path}: {size} bytes but its header says {'x'.join(map(str, dims))} {what} "
            f"({expected} bytes): {state}; {hint}"
        )
    return dims


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Read an uint8 idx file (``.gz`` or plain) with ``ndim`` dimensions, fully validated."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise BenchError(f"{path}: cannot be read ({msg}); the file is corrupt or truncated, replace it") from None
    dims = _idx_header(data[: 4 + 4 * ndim], path, ndim, len(data))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()
    return torch.from_numpy(arr)


def _idx_dims_plain(path: Path, ndim: int) -> tuple[int, ...]:
    """Validate an uncompressed idx file from its header and size alone."""
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
        size = os.stat(path).st_size
    except OSError as e:
        raise BenchError(f"{path}: cannot be read ({e.strerror or e})") from None
    return _idx_header(head, path, ndim, size)


def _check_idx_dims(files: Mapping[str, Path], dims: Mapping[str, tuple[int, ...]]) -> None:
    for split in ("train", "test"):
        nx, ny = dims[f"{split}_x"][0], dims[f"{split}_y"][0]
        if nx != ny:
            raise BenchError(
                f"{files[f'{split}_x']} holds {nx} images but {files[f'{split}_y']} holds {ny} labels; "
                "the files do not belong together, replace them"
            )
    if dims["train_x"][1:] != dims["test_x"][1:]:
        raise BenchError(
            f"{files['train_x']} has {'x'.join(map(str, dims['train_x'][1:]))} images but {files['test_x']} "
            f"has {'x'.join(map(str, dims['test_x'][1:]))}; the files do not belong together"
        )


def _check_labels(y: torch.Tensor, num_classes: int, where: Path | str) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise BenchError(
            f"{where}: labels range over [{int(y.min())}, {int(y.max())}], expected [0, {num_classes - 1}]; "
            "the file is corrupt or of another data set"
        )


# ------------------------------------------------------------------- sources


@dataclass
class _Raw:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]


@dataclass
class _Source:
    label: str  # directory, shown to users and part of the cache key
    files: list[Path]  # the files whose size/mtime the cache remembers
    present: bool
    why_absent: str  # "missing" / "lacks x, y" (for the not-found message)
    decode: Callable[[], _Raw]


def _tv_datasets():
    try:
        import torchvision.datasets as tvd
    except Exception as e:  # pragma: no cover - depends on the installation
        raise BenchError(f"torchvision cannot be imported ({e}); install torchvision==0.29.1") from None
    return tvd


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:240] + "...") if len(text) > 240 else (text or type(e).__name__)


def _idx_dir_files(d: Path, allow_gz: bool = True) -> tuple[dict[str, Path], list[str]]:
    found, missing = {}, []
    for key, name in _IDX_FILES.items():
        if (d / name).is_file():
            found[key] = d / name
        elif allow_gz and (d / f"{name}.gz").is_file():
            found[key] = d / f"{name}.gz"
        else:
            missing.append(name + ("[.gz]" if allow_gz else ""))
    return found, missing


def _absent(d: Path, missing: list[str]) -> str:
    if not d.is_dir():
        return "missing"
    return "lacks " + ", ".join(missing)


def _decode_idx_dir(files: dict[str, Path], class_names: tuple[str, ...]) -> _Raw:
    t = {key: read_idx(path, 3 if key.endswith("_x") else 1) for key, path in files.items()}
    return _checked_raw(t, files, class_names)


def _checked_raw(t: dict[str, torch.Tensor], files: dict[str, Path], class_names: tuple[str, ...]) -> _Raw:
    """Check decoded idx tensors (shapes agree, labels in 0-9; errors name ``files``) and add the channel axis."""
    _check_idx_dims(files, {k: tuple(v.shape) for k, v in t.items()})
    for split in ("train", "test"):
        _check_labels(t[f"{split}_y"], 10, files[f"{split}_y"])
    return _Raw(
        t["train_x"].unsqueeze(1),
        t["train_y"].long(),
        t["test_x"].unsqueeze(1),
        t["test_y"].long(),
        class_names,
    )


def _mnist_tv_read(kind: str, root: Path, download: bool) -> _Raw:
    """Read through torchvision's MNIST/FashionMNIST class (after validating raw files)."""
    tvd = _tv_datasets()
    cls = getattr(tvd, _TV_CLASS[kind])
    raw_dir = root / cls.__name__ / "raw"
    try:
        parts = [cls(str(root), train=train, download=download) for train in (True, False)]
    except BenchError:
        raise
    except Exception as e:
        if download:
            raise BenchError(
                f"could not download {kind} into {raw_dir}: {_first_line(e)}; without a network pass "
                f"--data-root DIR holding {cls.__name__}/raw/"
                + (" or apt-get install dataset-fashion-mnist" if kind == "fashion-mnist" else "")
            ) from None
        raise BenchError(f"{raw_dir}: torchvision could not read {kind} ({_first_line(e)}); replace the files") from None
    (tr, te) = parts
    t = {"train_x": tr.data, "train_y": tr.targets, "test_x": te.data, "test_y": te.targets}
    for key, v in t.items():
        want = (torch.uint8, 3) if key.endswith("_x") else (None, 1)
        if not isinstance(v, torch.Tensor) or (want[0] and v.dtype != want[0]) or v.dim() != want[1]:
            raise BenchError(f"{raw_dir}: torchvision returned unexpected {key} data; replace the files")
    names = {k: raw_dir / n for k, n in _IDX_FILES.items()}
    return _checked_raw(t, names, tuple(str(c) for c in cls.classes))


def _mnist_sources(kind: str, root: Path, debian_dir: Path | None) -> list[_Source]:
    # torchvision's folder names, file names and class names, without importing torchvision
    # (~2 s: it pulls in torch._dynamo); they must match torchvision.datasets.MNIST / FashionMNIST
    cls_name = _TV_CLASS[kind]
    class_names = _MNIST_CLASSES[kind]
    raw_dir = root / cls_name / "raw"
    proc_dir = root / cls_name / "processed"
    legacy = [proc_dir / "training.pt", proc_dir / "test.pt"]
    sources: list[_Source] = []

    if all(p.is_file() for p in legacy):
        # torchvision's backwards-compatible processed/*.pt files win over raw/ in torchvision too.
        sources.append(_Source(str(raw_dir), legacy, True, "", lambda: _mnist_tv_read(kind, root, False)))
    else:
        found, missing = _idx_dir_files(raw_dir)
        present = not missing
        all_plain = present and all(p.suffix != ".gz" for p in found.values())

        def decode_raw(found=found, all_plain=all_plain) -> _Raw:
            if all_plain:  # the layout torchvision reads: validate headers, then let it read
                dims = {k: _idx_dims_plain(p, 3 if k.endswith("_x") else 1) for k, p in found.items()}
                _check_idx_dims(found, dims)
                return _mnist_tv_read(kind, root, False)
            return _decode_idx_dir(found, class_names)

        sources.append(_Source(str(raw_dir), list(found.values()), present, _absent(raw_dir, missing), decode_raw))

    if kind == "fashion-mnist" and debian_dir is not None:
        ddir = Path(debian_dir).expanduser()
        found_d, missing_d = _idx_dir_files(ddir)
        sources.append(
            _Source(
                str(ddir),
                list(found_d.values()),
                not missing_d,
                _absent(ddir, missing_d),
                lambda: _decode_idx_dir(found_d, class_names),
            )
        )
    return sources


@functools.lru_cache(maxsize=1)
def _cifar_class():
    tvd = _tv_datasets()

    class CIFAR10Unchecked(tvd.CIFAR10):
        """torchvision's CIFAR10 with an existence-only integrity check (no md5).

        Users' copies may be re-pickled (other md5); lossbench validates the content.
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


def _cifar_diagnose(d: Path) -> None:
    """Find the first bad CIFAR-10 file in ``d`` and raise a BenchError naming it."""
    hint = "the file is corrupt or truncated; re-extract cifar-10-python.tar.gz"
    for name in _CIFAR_TRAIN + _CIFAR_TEST + (_CIFAR_META,):
        path = d / name
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
        except Exception as e:
            raise BenchError(f"{path}: cannot be unpickled ({_first_line(e)}); {hint}") from None
        if not isinstance(entry, dict):
            raise BenchError(f"{path}: holds a {type(entry).__name__}, expected a dict; {hint}")
        if name == _CIFAR_META:
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


def _cifar_read(root: Path, download: bool) -> _Raw:
    cls = _cifar_class()
    d = root / _CIFAR_DIR
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=False)
        xs = [np.asarray(tr.data), np.asarray(te.data)]
        ys = [np.asarray(tr.targets, dtype=np.int64), np.asarray(te.targets, dtype=np.int64)]
        classes = tuple(str(c) for c in tr.classes)
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
        if download and not all((d / n).is_file() for n in _CIFAR_TRAIN + _CIFAR_TEST + (_CIFAR_META,)):
            raise BenchError(
                f"could not download cifar10 into {root}: {_first_line(err)}; without a network pass "
                f"--data-root DIR holding {_CIFAR_DIR}/ (from {_CIFAR_TARBALL})"
            ) from None
        _cifar_diagnose(d)
        raise BenchError(f"{d}: CIFAR-10 batches could not be read ({_first_line(err)}); re-extract them")
    to_nchw = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return _Raw(to_nchw(xs[0]), torch.from_numpy(ys[0]), to_nchw(xs[1]), torch.from_numpy(ys[1]), classes)


def _cifar_sources(root: Path) -> list[_Source]:
    d = root / _CIFAR_DIR
    names = _CIFAR_TRAIN + _CIFAR_TEST + (_CIFAR_META,)
    missing = [n for n in names if not (d / n).is_file()]
    files = [d / n for n in names if (d / n).is_file()]
    return [_Source(str(d), files, not missing, _absent(d, missing), lambda: _cifar_read(root, False))]


def _not_found(kind: str, root: Path, origin: str, sources: list[_Source]) -> BenchError:
    looked = "; ".join(f"{s.label} ({s.why_absent})" for s in sources)
    if kind == "cifar10":
        where = f"--data-root DIR holding {_CIFAR_DIR}/ (extracted from {_CIFAR_TARBALL})"
        tarball = root / _CIFAR_TARBALL
        extra = f"; {tarball} exists: extract it there (tar xzf) or pass --download" if tarball.is_file() else ""
    else:
        where = f"--data-root DIR holding {_TV_CLASS[kind]}/raw/ (idx files, plain or .gz)"
        extra = ""
    fix = f"pass {where}, or --download where a network exists"
    if kind == "fashion-mnist":
        fix += ", or apt-get install dataset-fashion-mnist"
    return BenchError(f"{kind} not found: looked in {looked} (data root {root} from {origin}); {fix}{extra}")


# ---------------------------------------------------------------------- cache


def _signature(files: list[Path]) -> list[list[Any]]:
    out = []
    for p in files:
        st = os.stat(p)
        out.append([str(p), int(st.st_size), int(st.st_mtime_ns)])
    return out


def _cache_path(cache_dir: Path, kind: str, decode_params: Mapping[str, Any], source: str) -> Path:
    key = json.dumps(
        {"v": _CACHE_VERSION, "kind": kind, "params": dict(decode_params), "source": source}, sort_keys=True
    )
    return Path(cache_dir) / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _move_aside(path: Path, why: str) -> None:
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
        warnings.warn(f"data cache {path} is unreadable ({why}); moved it to {aside} and decoding again", stacklevel=3)
    except OSError:
        warnings.warn(f"data cache {path} is unreadable ({why}) and could not be moved aside", stacklevel=3)


def _cache_load(path: Path, kind: str, source: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        ok = (
            isinstance(obj, dict)
            and obj.get("format") == _CACHE_FORMAT
            and obj.get("version") == _CACHE_VERSION
            and obj.get("kind") == kind
            and obj.get("source") == source
        )
        if ok:
            for split in ("train", "test"):
                x, y = obj[f"{split}_x"], obj[f"{split}_y"]
                ok = ok and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
                ok = ok and x.dtype == torch.uint8 and x.dim() == 4 and y.dtype == torch.int64 and y.dim() == 1
                ok = ok and x.shape[0] == y.shape[0]
            ok = ok and obj["train_x"].shape[1:] == obj["test_x"].shape[1:]
            c = obj["train_x"].shape[1]
            ok = ok and len(obj["mean"]) == c and len(obj["std"]) == c and len(obj["class_names"]) >= 2
        if not ok:
            raise ValueError("unexpected content")
        return obj
    except Exception as e:
        _move_aside(path, _first_line(e))
        return None


def _cache_save(path: Path, payload: dict[str, Any]) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        warnings.warn(f"could not write data cache {path} ({e.strerror or e}); continuing without it", stacklevel=3)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------------- stats


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 NCHW images scaled to [0, 1] (float64, chunked)."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    ss = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], 4096):
        chunk = x[i : i + 4096].to(torch.float64).div_(255.0)
        s += chunk.sum(dim=(0, 2, 3))
        ss += chunk.square_().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    var = (ss / count - mean.square()).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant channel: do not divide by 0
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


# ----------------------------------------------------------------------- load


def _load_images(
    kind: str,
    params: dict[str, Any],
    data_root: Path | str | None,
    download: bool,
    cache_dir: Path | str | None,
    debian_dir: Path | None,
) -> Splits:
    root, origin = resolve_data_root(data_root)
    sources = _cifar_sources(root) if kind == "cifar10" else _mnist_sources(kind, root, debian_dir)
    decode_params: dict[str, Any] = {}  # nothing in params changes the decode (subsets come after)

    payload = None
    for src in sources:
        cpath = _cache_path(Path(cache_dir), kind, decode_params, src.label) if cache_dir is not None else None
        if cpath is not None:
            cached = _cache_load(cpath, kind, src.label)
            if cached is not None and (not src.present or cached.get("signature") == _signature(src.files)):
                payload = cached
                break
        if src.present:
            payload = _payload(kind, src.label, src.files, src.decode())
            if cpath is not None:
                _cache_save(cpath, payload)
            break
    if payload is None:
        if not download:
            raise _not_found(kind, root, origin, sources)
        raw = _cifar_read(root, True) if kind == "cifar10" else _mnist_tv_read(kind, root, True)
        src = (_cifar_sources(root) if kind == "cifar10" else _mnist_sources(kind, root, None))[0]
        payload = _payload(kind, src.label, src.files, raw)
        if cache_dir is not None:
            _cache_save(_cache_path(Path(cache_dir), kind, decode_params, src.label), payload)

    train_x, train_y, test_x, test_y = (payload[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    for split, key, full in (("train", "n_train", train_y.shape[0]), ("test", "n_test", test_y.shape[0])):
        n = params.get(key)
        if n is not None and n > full:
            raise BenchError(f"{kind} parameter {key!r} is {n}, but the {split} split has only {full} samples")
    if "n_train" in params:
        train_x, train_y = train_x[: params["n_train"]], train_y[: params["n_train"]]
    if "n_test" in params:
        test_x, test_y = test_x[: params["n_test"]], test_y[: params["n_test"]]
    names = tuple(str(c) for c in payload["class_names"])
    return Splits(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=len(names),
        in_shape=tuple(int(v) for v in train_x.shape[1:]),  # type: ignore[arg-type]
        mean=tuple(float(v) for v in payload["mean"]),
        std=tuple(float(v) for v in payload["std"]),
        source=str(payload["source"]),
        class_names=names,
        kind=kind,
        params=dict(params),
    )


def _payload(kind: str, source: str, files: list[Path], raw: _Raw) -> dict[str, Any]:
    mean, std = _channel_stats(raw.train_x)
    return {
        "format": _CACHE_FORMAT,
        "version": _CACHE_VERSION,
        "kind": kind,
        "source": source,
        "signature": _signature(files),
        "train_x": raw.train_x.contiguous(),
        "train_y": raw.train_y.to(torch.int64).contiguous(),
        "test_x": raw.test_x.contiguous(),
        "test_y": raw.test_y.to(torch.int64).contiguous(),
        "class_names": [str(c) for c in raw.class_names],
        "mean": list(mean),
        "std": list(std),
    }


def _gauss_seed(seed: int, split: str) -> int:
    digest = hashlib.sha256(f"lossbench-gauss/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _gauss_split(p: Mapping[str, Any], n: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(_gauss_seed(p["seed"], split))
    y = (torch.rand(n, generator=g, dtype=torch.float64) < p["prior"]).to(torch.int64)
    x = torch.randn(n, p["d"], generator=g, dtype=torch.float64).mul_(math.sqrt(p["sigma2"]))
    x[:, 0] += (2 * y - 1).to(torch.float64) * p["mu"]
    return x.to(torch.float32).view(n, 1, 1, p["d"]).contiguous(), y


def _load_gauss(params: Mapping[str, Any] | None) -> Splits:
    p = gauss_params(params)
    train_x, train_y = _gauss_split(p, p["n_train"], "train")
    test_x, test_y = _gauss_split(p, p["n_test"], "test")
    desc = ", ".join(f"{k}={p[k]}" for k in ("d", "mu", "sigma2", "prior", "seed"))
    return Splits(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=2,
        in_shape=(1, 1, p["d"]),
        mean=(0.0,),
        std=(1.0,),
        source=f"generated: gauss({desc})",
        class_names=("y=-1", "y=+1"),
        kind="gauss",
        params=p,
    )


_IMAGE_SHAPES = {"mnist": ((1, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


def dataset_shape(kind: str, params: Mapping[str, Any] | None = None) -> tuple[tuple[int, int, int], int]:
    """(input shape, number of classes) of a dataset, known without reading its data; validates ``params``."""
    k = canonical_kind(kind)
    if k == "gauss":
        return (1, 1, gauss_params(params)["d"]), 2
    _image_params(k, params)
    return _IMAGE_SHAPES[k]


def load_splits(
    kind: str,
    params: Mapping[str, Any] | None = None,
    data_root: Path | str | None = None,
    download: bool = False,
    cache_dir: Path | str | None = None,
    debian_dir: Path | str | None = DEBIAN_FASHION_DIR,
) -> Splits:
    """Load (or generate) the train and test split of ``kind``; see the module docstring.

    ``params``: ``gauss`` takes :func:`gauss_params`' keys; the image kinds take optional
    ``n_train`` / ``n_test`` (first n samples). ``debian_dir``: where Debian's Fashion-MNIST
    is looked for (None: not at all). Every user-facing problem is a one-line BenchError.
    """
    k = canonical_kind(kind)
    if k == "gauss":
        return _load_gauss(params)
    if debian_dir == DEBIAN_FASHION_DIR and os.environ.get("LOSSBENCH_DEBIAN_FASHION_DIR"):
        debian_dir = os.environ["LOSSBENCH_DEBIAN_FASHION_DIR"]  # lets tests and users point elsewhere
    return _load_images(
        k,
        _image_params(k, params),
        data_root,
        bool(download),
        cache_dir,
        Path(debian_dir) if debian_dir is not None else None,
    )
