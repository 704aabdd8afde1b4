"""Sources of ``imagefolder`` and ``npz``: a user's own data on disk, decoded once into the uint8 cache.

``imagefolder`` (``params: {path: DIR}``): torchvision's ``ImageFolder`` layout, one subfolder per
class holding its images, either as ``DIR/train/<class>/`` and ``DIR/test/<class>/`` (the same
classes in both), or as one ``DIR/<class>/`` tree split by a seeded stratified holdout
(``holdout``, default 0.2, and ``holdout_seed``). Images are decoded with PIL (grey images stay one
channel, anything else becomes RGB); they must share one size unless ``size`` (an int, or
``[height, width]``) is given, to which every image is resized (bilinear). Class names are the
sorted subfolder names, as torchvision's ``ImageFolder`` numbers them.

``npz`` (``params: {path: FILE}``): arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``, and
optionally ``class_names``. Images are uint8 ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``
(C = 1 or 3); float feature vectors ``[N, D]`` are kept as float32 ``(N, 1, 1, D)`` like ``gauss``.
Labels are integers in ``[0, K)``, K the length of ``class_names`` or one more than the largest
training label.

A relative ``path`` is relative to the registry file's folder (the registry resolves it). The
normalisation statistics are the training split's unless ``mean`` and ``std`` are given. The
provenance line names the folder or file, how many files were decoded and a sha256 of the decoded
tensors. Every problem is one BenchError naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.checks import as_float, as_int, as_params, check_keys
from bench.data.files import Candidate, Decoded, FileSource, load_files
from bench.data.kinds import KindSpec, Request
from bench.data.provenance import Provenance
from bench.data.roots import resolve_data_root, Places
from bench.data.splits import Splits
from bench.errors import BenchError, exception_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _path(spec: KindSpec, params: Mapping[str, Any]) -> Path:
    if not params.get("path"):
        raise BenchError(f"{spec.name} needs params.path (the {'folder' if spec.name == 'imagefolder' else '.npz file'}, "
                         "relative to the registry file's folder)")
    return Path(str(params["path"])).expanduser().resolve()


def _size(params: Mapping[str, Any]) -> tuple[int, int] | None:
    value = params.get("size")
    if value is None:
        return None
    hw = value if isinstance(value, (list, tuple)) else [value, value]
    if len(hw) != 2:
        raise BenchError(f"imagefolder parameter 'size' must be an int or [height, width], got {value!r}")
    out = (as_int("imagefolder", "size", hw[0]), as_int("imagefolder", "size", hw[1]))
    if min(out) < 1:
        raise BenchError(f"imagefolder parameter 'size' must be positive, got {value!r}")
    return out


def _stats(spec: KindSpec, params: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if params.get("mean") is None and params.get("std") is None:
        return None
    if params.get("mean") is None or params.get("std") is None:
        raise BenchError(f"{spec.name}: give both 'mean' and 'std' (per channel), or neither to use the training split's")
    mean, std = ([as_float(spec.name, k, v) for v in (params[k] if isinstance(params[k], list) else [params[k]])]
                 for k in ("mean", "std"))
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise BenchError(f"{spec.name}: 'mean' and 'std' need one value per channel, std > 0; got {mean} and {std}")
    return tuple(mean), tuple(std)


# ---- imagefolder --------------------------------------------------------------------------------

def _class_dirs(d: Path) -> dict[str, list[Path]]:
    if not d.is_dir():
        raise BenchError(f"{d}: folder not found; imagefolder expects <path>/train/<class>/ and <path>/test/<class>/, "
                         "or <path>/<class>/")
    classes = sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BenchError(f"{d}: has no class subfolders; put each class's images in <path>/train/<class>/ and "
                         "<path>/test/<class>/ (or <path>/<class>/)")
    out = {}
    for c in classes:
        # os.walk (scandir): a Path per listed file, not per stat, as rglob + is_file would cost on 50k images
        files = sorted(Path(top, name) for top, _, names in os.walk(d / c) for name in names
                       if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES)
        if not files:
            raise BenchError(f"{d / c}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        out[c] = files
    return out


def _layout(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None]:
    """(train classes, test classes or None for one tree to split)."""
    if (root / "train").is_dir() or (root / "test").is_dir():
        train, test = _class_dirs(root / "train"), _class_dirs(root / "test")
        missing = [c for c in train if c not in test]
        extra = [c for c in test if c not in train]
        if missing or extra:
            what = (f"classes {', '.join(missing)} missing from test/" if missing else
                    f"test/ has classes {', '.join(extra)} that train/ lacks")
            raise BenchError(f"{root}: {what}; train/ and test/ need the same class subfolders")
        return train, test
    return _class_dirs(root), None


def _decode_images(files: list[Path], size: tuple[int, int] | None, grey: bool) -> np.ndarray:
    from PIL import Image

    out = None
    first: tuple[Path, tuple[int, int]] | None = None
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if grey else "RGB")
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - an unreadable image is the file's problem
            raise BenchError(f"{f}: cannot be decoded as an image ({exception_line(e)}); replace or remove it") from None
        if first is None:
            first = (f, a.shape[:2])
            out = np.empty((len(files), *a.shape), dtype=np.uint8)
        elif a.shape[:2] != first[1]:
            raise BenchError(f"{f}: is {a.shape[1]}x{a.shape[0]} but {first[0]} is {first[1][1]}x{first[1][0]}; "
                             "images of different sizes need params.size (e.g. size: 32) to resize them to")
        out[i] = a
    assert out is not None
    return out[:, None] if grey else out.transpose(0, 3, 1, 2)


def _is_grey(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode in ("L", "1", "I;16", "I", "F")
    except Exception as e:  # noqa: BLE001
        raise BenchError(f"{path}: cannot be decoded as an image ({exception_line(e)}); replace or remove it") from None


def _holdout(params: Mapping[str, Any]) -> tuple[float, int]:
    frac = as_float("imagefolder", "holdout", params.get("holdout", 0.2))
    if not 0 < frac < 1:
        raise BenchError(f"imagefolder parameter 'holdout' must be in (0, 1), got {frac:g}")
    return frac, as_int("imagefolder", "holdout_seed", params.get("holdout_seed", 0))


def _split_tree(tree: dict[str, list[Path]], frac: float, seed: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """A stratified holdout of each class's files (sorted, then permuted by ``seed``): at least one each side."""
    rng = np.random.Generator(np.random.PCG64(seed))
    train, test = {}, {}
    for c, files in tree.items():
        if len(files) < 2:
            raise BenchError(f"{files[0].parent}: class {c!r} has {len(files)} image; a holdout needs 2 or more per class "
                             "(or give train/ and test/ folders)")
        n_test = min(len(files) - 1, max(1, round(frac * len(files))))
        order = rng.permutation(len(files))
        test[c] = sorted(files[i] for i in order[:n_test])
        train[c] = sorted(files[i] for i in order[n_test:])
    return train, test


def _imagefolder_parts(params: Mapping[str, Any], root: Path):
    train, test = _layout(root)
    if test is None:
        train, test = _split_tree(train, *_holdout(params))
    return train, test


def _decode_folder(params: Mapping[str, Any], root: Path) -> Decoded:
    train, test = _imagefolder_parts(params, root)
    size = _size(params)
    classes = tuple(train)
    grey = _is_grey(next(iter(train.values()))[0])
    parts = []
    for tree in (train, test):
        files = [f for c in classes for f in tree[c]]
        labels = np.concatenate([np.full(len(tree[c]), k, dtype=np.int64) for k, c in enumerate(classes)])
        parts.append((torch.from_numpy(_decode_images(files, size, grey)), torch.from_numpy(labels)))
    (tx, ty), (vx, vy) = parts
    if tx.shape[1:] != vx.shape[1:]:
        raise BenchError(f"{root}: train images are {tuple(tx.shape[1:])} but test images {tuple(vx.shape[1:])}; "
                         "give params.size to resize both")
    return Decoded(tx, ty, vx, vy, classes)


def _folder_shape(params: Mapping[str, Any], root: Path) -> tuple[tuple[int, int, int], int]:
    from PIL import Image

    train, test = _layout(root)
    first = next(iter(train.values()))[0]
    size = _size(params)
    if size is None:
        with Image.open(first) as im:
            size = (im.size[1], im.size[0])
    return (1 if _is_grey(first) else 3, *size), len(train)


# ---- npz -----------------------------------------------------------------------------------------

def _npz_member_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    try:
        with zipfile.ZipFile(path) as z:
            out = {}
            for name in z.namelist():
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)  # the header only, not the data
                out[name.removesuffix(".npy")] = (tuple(shape), dtype)
            return out
    except Exception as e:  # noqa: BLE001
        raise BenchError(f"{path}: cannot be read as an .npz archive ({exception_line(e)}); "
                         "write it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from None


def _image_layout(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> str:
    """'feat' (float [N, D]), 'nhw', 'nhwc' or 'nchw'; BenchError for anything else."""
    if len(shape) == 2 and np.issubdtype(dtype, np.floating):
        return "feat"
    if dtype != np.uint8:
        raise BenchError(f"{path}: {key} is {dtype} {shape}; expected uint8 images [N, H, W], [N, H, W, C] or "
                         "[N, C, H, W], or float feature vectors [N, D]")
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4 and shape[-1] in (1, 3):
        return "nhwc"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "nchw"
    raise BenchError(f"{path}: {key} has shape {shape}; expected uint8 images [N, H, W], [N, H, W, C] or "
                     "[N, C, H, W] with C = 1 or 3, or float feature vectors [N, D]")


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    shapes = _npz_member_shapes(path)
    missing = [k for k in NPZ_KEYS if k not in shapes]
    if missing:
        raise BenchError(f"{path}: has no {', '.join(missing)} (it holds {', '.join(sorted(shapes)) or 'nothing'}); "
                         f"an npz dataset needs arrays {', '.join(NPZ_KEYS)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in (*NPZ_KEYS, *(["class_names"] if "class_names" in shapes else []))}
    except Exception as e:  # noqa: BLE001
        raise BenchError(f"{path}: cannot be read ({exception_line(e)}); write it with numpy.savez and no object arrays") from None


def _npz_check(path: Path, shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]],
               labels: Mapping[str, np.ndarray], names: np.ndarray | None) -> tuple[str, int]:
    layouts = {k: _image_layout(path, k, *shapes[k]) for k in ("x_train", "x_test")}
    if len(set(layouts.values())) != 1:
        raise BenchError(f"{path}: x_train is {shapes['x_train'][0]} and x_test {shapes['x_test'][0]}: not one layout")
    for split in ("train", "test"):
        y = labels[f"y_{split}"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise BenchError(f"{path}: y_{split} is {y.dtype} {y.shape}; expected integer class labels [N]")
        if y.shape[0] != shapes[f"x_{split}"][0][0]:
            raise BenchError(f"{path}: x_{split} holds {shapes[f'x_{split}'][0][0]} samples but y_{split} "
                             f"{y.shape[0]} labels; one label per sample")
    k = len(names) if names is not None else int(labels["y_train"].max()) + 1 if labels["y_train"].size else 0
    if k < 2:
        raise BenchError(f"{path}: {k} class(es); a classification dataset needs at least 2")
    for split in ("train", "test"):
        y = labels[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= k):
            raise BenchError(f"{path}: y_{split} ranges over [{y.min()}, {y.max()}], outside the {k} classes [0, {k - 1}]"
                             + ("" if names is not None else " (K from y_train; add class_names to declare more)"))
    return layouts["x_train"], k


def _npz_decoded(path: Path) -> tuple[Decoded, str]:
    arrays = _npz_arrays(path)
    shapes = {k: (arrays[k].shape, arrays[k].dtype) for k in ("x_train", "x_test")}
    names = arrays.get("class_names")
    layout, k = _npz_check(path, shapes, arrays, names)

    def images(x: np.ndarray) -> torch.Tensor:
        if layout == "feat":
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(x.shape[0], 1, 1, x.shape[1])
        if layout == "nhw":
            x = x[:, None]
        elif layout == "nhwc":
            x = x.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(x))

    classes = tuple(str(c) for c in names) if names is not None else tuple(str(i) for i in range(k))
    d = Decoded(images(arrays["x_train"]), torch.from_numpy(arrays["y_train"].astype(np.int64)),
                images(arrays["x_test"]), torch.from_numpy(arrays["y_test"].astype(np.int64)), classes)
    return d, layout


def _npz_shape(path: Path) -> tuple[tuple[int, int, int], int]:
    shapes = _npz_member_shapes(path)
    missing = [k for k in NPZ_KEYS if k not in shapes]
    if missing:
        raise BenchError(f"{path}: has no {', '.join(missing)} (it holds {', '.join(sorted(shapes)) or 'nothing'}); "
                         f"an npz dataset needs arrays {', '.join(NPZ_KEYS)}")
    arrays = _npz_arrays(path)  # labels are needed for the class count; the read is what a cell does anyway
    layout, k = _npz_check(path, {k: shapes[k] for k in ("x_train", "x_test")}, arrays, arrays.get("class_names"))
    s = shapes["x_train"][0]
    shape = {"feat": lambda: (1, 1, s[-1]), "nhw": lambda: (1, s[1], s[2]), "nhwc": lambda: (s[3], s[1], s[2]),
             "nchw": lambda: tuple(s[1:])}[layout]()
    return shape, k  # type: ignore[return-value]


# ---- the kinds' entry points --------------------------------------------------------------------

def check_params(spec: KindSpec, params: Mapping[str, Any] | None) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes) from a look at the files; the parameters validated."""
    p = as_params(params)
    check_keys(spec.name, p, ("n_train", "n_test", *spec.params))
    _stats(spec, p)
    path = _path(spec, p)
    if spec.name == "imagefolder":
        _size(p)
        return _folder_shape(p, path)
    if not path.is_file():
        raise BenchError(f"{path}: npz file not found; params.path is relative to the registry file's folder")
    return _npz_shape(path)


def _checksum(d: Decoded) -> str:
    h = hashlib.sha256()
    for t in (d.train_x, d.train_y, d.test_x, d.test_y):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _with_stats(spec: KindSpec, params: Mapping[str, Any], splits: Splits, what: str) -> Splits:
    stats = _stats(spec, params)
    if stats is not None and len(stats[0]) != splits.in_shape[0]:
        raise BenchError(f"{spec.name}: {len(stats[0])} mean/std values for {splits.in_shape[0]} channels")
    prov = splits.provenance
    summary = Provenance(spec.name, (what,), prov.cache if prov else "")
    out = dataclasses.replace(splits, provenance=summary, params=dict(params))
    return dataclasses.replace(out, mean=stats[0], std=stats[1]) if stats is not None else out


def load(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    p = as_params(params)
    check_keys(spec.name, p, ("n_train", "n_test", *spec.params))
    _stats(spec, p)
    path = _path(spec, p)
    if spec.name == "npz":
        d, layout = _npz_decoded(path)
        if layout == "feat":  # float features: not the uint8 cache's format, and reading them is as fast
            x = d.train_x
            mean, std = float(x.mean()), float(x.std()) or 1.0
            splits = Splits(d.train_x, d.train_y, d.test_x, d.test_y, len(d.class_names),
                            tuple(int(v) for v in d.train_x.shape[1:]), (mean,), (std,), str(path), d.class_names,
                            kind=spec.name, params=dict(p), provenance=Provenance(spec.name, (str(path),)))
            return _with_stats(spec, p, splits, f"{path} (1 file, sha256 {_checksum(d)[:12]})")
        files: tuple[Path, ...] = (path,)
        identity_extra = {"size": None}
        decode = lambda: d  # noqa: E731 - already decoded: the archive is read once either way
    else:
        _size(p)
        train, test = _imagefolder_parts(p, path)  # listed once: a cached load's cost is this and the stat calls
        files = tuple(f for tree in (train, test) for c in tree for f in tree[c])
        identity_extra = {"size": list(_size(p)) if _size(p) else None,
                          **({} if (path / "train").is_dir() else {"holdout": list(_holdout(p))})}
        decode = lambda: _decode_folder(p, path)  # noqa: E731
    checksum: list[str] = []

    def decoded() -> Decoded:
        out = decode()
        checksum.append(_checksum(out))
        return out

    cand = Candidate(path, (path.name,), files, "", decoded, identity_extra)
    places = Places(resolve_data_root(None), None)
    source = FileSource((cand,), str(path), lambda r: cand)
    splits = load_files(spec, {k: p[k] for k in ("n_train", "n_test") if k in p}, places,
                        Request(request.data_root, False, request.cache_dir, None), source)
    n = len(files)
    what = f"{path} ({n} file{'s' if n != 1 else ''}" + (f", sha256 {checksum[0][:12]})" if checksum else ")")
    return _with_stats(spec, p, splits, what)
