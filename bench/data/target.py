"""Source of ``target``: a user's own function returning the splits (``params: {target: module:function}``).

The function takes no arguments and returns a mapping (or an object with these attributes):

* ``train_x``, ``test_x``: uint8 images ``[N, C, H, W]`` or float feature vectors ``[N, D]``
  (numpy arrays or torch tensors);
* ``train_y``, ``test_y``: int64 labels ``[N]`` in ``[0, K)``;
* ``class_names``: K names;
* optionally ``mean`` and ``std`` (per channel; default: the training split's).

A flip is not assumed to keep a user's classes: the kind's flip policy says no, and
``train.force_flip`` asks for one anyway (bench/config/augment_policy.py).

The module is found like a loss target: the installed packages, then beside the registry file,
then the working folder (the registry turns a module found beside it into its file's path). The
planner calls the function once and checks shapes, dtypes, the label range and both splits before
anything trains; each problem is one BenchError naming the target.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.checks import as_params, check_keys
from bench.data.kinds import KindSpec, Request
from bench.data.provenance import Provenance
from bench.data.splits import Splits, channel_stats
from bench.errors import BenchError, exception_line

KEYS = ("train_x", "train_y", "test_x", "test_y", "class_names")


def _function(target: str) -> Any:
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise BenchError(f"dataset target {target!r}: expected module:function")
    try:
        if module_name.endswith(".py"):  # a file the registry found beside itself
            spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's module
        raise BenchError(f"dataset target {target!r}: cannot import {module_name} ({exception_line(e)})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise BenchError(f"dataset target {target!r}: {module_name} has no function {attr!r}")
    return fn


def _tensor(target: str, key: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous()
    raise BenchError(f"dataset target {target!r}: {key} is a {type(value).__name__}, expected a numpy array or tensor")


@functools.lru_cache(maxsize=2)
def splits_of(target: str) -> Splits:
    """Call the function once per process and check what it returned."""
    try:
        out = _function(target)()
    except BenchError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's function failing
        raise BenchError(f"dataset target {target!r} raised {exception_line(e)}") from None
    get = (lambda k: out.get(k)) if isinstance(out, Mapping) else (lambda k: getattr(out, k, None))
    missing = [k for k in KEYS if get(k) is None]
    if missing:
        raise BenchError(f"dataset target {target!r}: returned no {', '.join(missing)}; return a dict with "
                         f"{', '.join(KEYS)} (bench/data/target.py)")
    xs = {k: _tensor(target, k, get(k)) for k in ("train_x", "test_x")}
    ys = {k: _tensor(target, k, get(k)) for k in ("train_y", "test_y")}
    names = tuple(str(c) for c in get("class_names"))
    for k, x in xs.items():
        ok = (x.dtype == torch.uint8 and x.dim() == 4) or (x.is_floating_point() and x.dim() == 2)
        if not ok:
            raise BenchError(f"dataset target {target!r}: {k} is {x.dtype} {tuple(x.shape)}; expected uint8 "
                             "[N, C, H, W] images or float [N, D] features")
    if xs["train_x"].shape[1:] != xs["test_x"].shape[1:] or xs["train_x"].dtype != xs["test_x"].dtype:
        raise BenchError(f"dataset target {target!r}: train_x {tuple(xs['train_x'].shape)} and test_x "
                         f"{tuple(xs['test_x'].shape)} differ in sample shape or dtype")
    k = len(names)
    if k < 2:
        raise BenchError(f"dataset target {target!r}: {k} class name(s); give at least 2")
    for split in ("train", "test"):
        y, n = ys[f"{split}_y"], xs[f"{split}_x"].shape[0]
        if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != n:
            raise BenchError(f"dataset target {target!r}: {split}_y is {y.dtype} {tuple(y.shape)}; expected int64 "
                             f"[{n}] (one label per {split}_x sample)")
        if n == 0:
            raise BenchError(f"dataset target {target!r}: the {split} split is empty")
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise BenchError(f"dataset target {target!r}: {split}_y ranges over [{int(y.min())}, {int(y.max())}], "
                             f"outside the {k} classes [0, {k - 1}]")
    train_x, test_x = xs["train_x"], xs["test_x"]
    if train_x.is_floating_point():
        train_x, test_x = (x.float().reshape(x.shape[0], 1, 1, x.shape[1]) for x in (train_x, test_x))
        mean, std = (float(train_x.mean()),), (float(train_x.std()) or 1.0,)
    else:
        mean, std = channel_stats(train_x)
    if get("mean") is not None or get("std") is not None:
        mean, std = tuple(float(v) for v in get("mean")), tuple(float(v) for v in get("std"))
        if len(mean) != train_x.shape[1] or len(std) != len(mean) or min(std) <= 0:
            raise BenchError(f"dataset target {target!r}: mean/std need {train_x.shape[1]} values each, std > 0")
    return Splits(train_x, ys["train_y"], test_x, ys["test_y"], k, tuple(int(v) for v in train_x.shape[1:]),  # type: ignore[arg-type]
                  mean, std, target, names, kind="target", params={"target": target},
                  provenance=Provenance("target", generated=f"by {target}"))


def _target(spec: KindSpec, params: Mapping[str, Any] | None) -> str:
    p = as_params(params)
    check_keys(spec.name, p, spec.params)
    if not isinstance(p.get("target"), str) or ":" not in p["target"]:
        raise BenchError("dataset kind target needs params.target: module:function (a function returning the splits)")
    return p["target"]


def check_params(spec: KindSpec, params: Mapping[str, Any] | None) -> tuple[tuple[int, int, int], int]:
    s = splits_of(_target(spec, params))
    return s.in_shape, s.num_classes


def load(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    return splits_of(_target(spec, params))
