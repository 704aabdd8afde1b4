"""Source of ``gauss``: the paper's binary Gaussian model, generated from a seed.

y ∈ {-1, +1} with P(y = +1) = ``prior``; x | y ~ N(y·mu·e_1, sigma2·I) in R^d. The splits are
float32 of shape (N, 1, 1, d) with int64 labels in {0, 1} (0 for y = -1). Each split has
its own generator seeded from (seed, split name), so the test split does not depend on
``n_train``. Nothing is cached: regenerating is cheaper than reading a file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch

from bench.data.checks import as_float, as_int, as_params, check_keys
from bench.data.fingerprint import data_fingerprint
from bench.data.kinds import KindSpec, Request
from bench.data.provenance import Provenance
from bench.data.splits import Splits
from bench.errors import BenchError

DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "d": 2,
    "mu": 1.0,
    "sigma2": 1.0,
    "prior": 0.5,
    "n_train": 10000,
    "n_test": 2000,
    "seed": 0,
})
PARAMS = (*DEFAULTS, "delta")
_CLASS_NAMES = ("y=-1", "y=+1")


def gauss_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``gauss`` parameters and return them resolved (defaults filled in).

    ``d`` (dimension, >= 1, default 2), ``mu`` (>= 0, default 1: class means are
    ``±mu·e_1``) or instead ``delta`` (>= 0: ``mu = delta·sqrt(sigma2)``), ``sigma2``
    (> 0, default 1: ``Σ = sigma2·I``), ``prior`` (P(y=+1) in (0, 1), default 0.5),
    ``n_train`` / ``n_test`` (> 0, defaults 10000 / 2000), ``seed`` (>= 0, default 0).
    The result never holds ``delta``; it always holds ``mu``
    (δ is :func:`bench.paper.theory.gauss_delta` of ``mu`` and ``sigma2``).
    """
    p = as_params(params)
    check_keys("gauss", p, PARAMS)
    if "delta" in p and "mu" in p:
        raise BenchError("gauss parameters 'mu' and 'delta' both given; give one (delta = mu / sqrt(sigma2))")
    out = dict(DEFAULTS)
    for key in ("d", "n_train", "n_test", "seed"):
        if key in p:
            out[key] = as_int("gauss", key, p[key])
    for key in ("mu", "sigma2", "prior"):
        if key in p:
            out[key] = as_float("gauss", key, p[key])
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
        delta = as_float("gauss", "delta", p["delta"])
        if delta < 0:
            raise BenchError(f"gauss parameter 'delta' must be >= 0, got {delta}")
        out["mu"] = delta * math.sqrt(out["sigma2"])
    if out["mu"] < 0:
        raise BenchError(f"gauss parameter 'mu' must be >= 0, got {out['mu']}")
    out["d"], out["n_train"], out["n_test"], out["seed"] = (int(out[k]) for k in ("d", "n_train", "n_test", "seed"))
    out["mu"], out["sigma2"], out["prior"] = (float(out[k]) for k in ("mu", "sigma2", "prior"))
    return out


def _split_seed(seed: int, split: str) -> int:
    digest = hashlib.sha256(f"lossbench-gauss/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _split(p: Mapping[str, Any], n: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(_split_seed(p["seed"], split))
    y = (torch.rand(n, generator=g, dtype=torch.float64) < p["prior"]).to(torch.int64)
    x = torch.randn(n, p["d"], generator=g, dtype=torch.float64).mul_(math.sqrt(p["sigma2"]))
    x[:, 0] += (2 * y - 1).to(torch.float64) * p["mu"]
    return x.to(torch.float32).view(n, 1, 1, p["d"]).contiguous(), y


def load(spec: KindSpec, params: Mapping[str, Any] | None, request: Request) -> Splits:
    """Generate the splits; ``request`` (data root, cache) does not apply to generated data."""
    p = gauss_params(params)
    train_x, train_y = _split(p, p["n_train"], "train")
    test_x, test_y = _split(p, p["n_test"], "test")
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
        class_names=_CLASS_NAMES,
        kind=spec.name,
        params=p,
        provenance=Provenance(spec.name, generated=f"{desc}, n_train={p['n_train']}, n_test={p['n_test']}",
                              fingerprint=data_fingerprint(train_x, train_y, test_x, test_y, _CLASS_NAMES)),
    )
