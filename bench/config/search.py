"""A grid's hyperparameter search: distributions parsed from strings, and seeded draws per (loss, trial).

A grid's ``search:`` block names a number of ``trials`` (the same for every loss of the grid: an
equal tuning budget), a ``seed`` and a ``space`` of distributions over training settings
(``train.lr``) and loss parameters (``milLoss.lam``)::

    loguniform(1e-4, 1e-1)   uniform(0.0, 0.3)   choice(64, 128, 256)   int(1, 5)  (inclusive)

Trial 0 of every loss is its registry defaults (the protocol). Trial ``t > 0`` of loss ``L``
draws from a generator seeded by a hash of (search seed, ``L``, ``t``) alone, so adding a loss or
a trial never changes the others' draws. A loss draws only the settings that apply to it: every
``train.*`` key and its own ``L.*`` keys, in sorted key order.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

KINDS = ("loguniform", "uniform", "choice", "int")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Distribution:
    kind: str  # one of KINDS
    args: tuple[Any, ...]

    @property
    def log(self) -> bool:
        """Whether a plot of this setting wants a log axis."""
        return self.kind == "loguniform"

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "loguniform":
            lo, hi = self.args
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.kind == "uniform":
            return float(rng.uniform(*self.args))
        if self.kind == "int":
            return int(rng.integers(self.args[0], self.args[1], endpoint=True))
        return self.args[int(rng.integers(len(self.args)))]


def parse_distribution(text: Any) -> Distribution:
    """``loguniform(1e-4, 1e-1)`` and the like; raises ValueError with the reason."""
    m = _CALL.match(str(text))
    if not m:
        raise ValueError(f"{text!r}: expected one of {', '.join(k + '(...)' for k in KINDS)}")
    kind, body = m.group(1), m.group(2)
    if kind not in KINDS:
        from bench.errors import closest

        raise ValueError(f"{text!r}: unknown distribution {kind!r}{closest(kind, KINDS)}; use one of {', '.join(KINDS)}")
    args = tuple(_scalar(tok) for tok in body.split(",")) if body.strip() else ()
    if kind == "choice":
        if not args:
            raise ValueError(f"{text!r}: choice needs at least one value")
        return Distribution(kind, args)
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ValueError(f"{text!r}: {kind} takes two numbers (low, high)")
    lo, hi = args
    if kind == "int":
        if not all(isinstance(a, int) for a in args) or lo > hi:
            raise ValueError(f"{text!r}: int takes two integers with low <= high")
        return Distribution(kind, (int(lo), int(hi)))
    if not lo < hi:
        raise ValueError(f"{text!r}: low must be below high (got {lo:g} >= {hi:g})")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{text!r}: loguniform needs positive bounds (got low {lo:g})")
    return Distribution(kind, (float(lo), float(hi)))


def _scalar(token: str) -> Any:
    """A number as Python reads it (YAML's own rules read ``1e-4`` as a string), else YAML's scalar."""
    token = token.strip()
    for cast in (int, float):
        try:
            return cast(token)
        except ValueError:
            pass
    try:
        return yaml.safe_load(token)
    except yaml.YAMLError:
        raise ValueError(f"cannot read the argument {token!r}") from None


def trial_rng(seed: int, loss: str, trial: int) -> np.random.Generator:
    """The generator of one (search seed, loss, trial): a hash of the three, nothing else."""
    digest = hashlib.sha256(f"{seed}\x00{loss}\x00{trial}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def keys_for(loss: str, space: dict[str, Any]) -> list[str]:
    """The searched keys that apply to ``loss``: training settings and its own parameters, sorted."""
    return sorted(k for k in space if k.startswith("train.") or k.split(".", 1)[0] == loss)


def draw_trial(seed: int, loss: str, trial: int, space: dict[str, Distribution]) -> dict[str, Any]:
    """The values of trial ``trial`` of ``loss`` by key; trial 0 is {} (the registry defaults)."""
    if trial == 0:
        return {}
    rng = trial_rng(seed, loss, trial)
    return {k: space[k].draw(rng) for k in keys_for(loss, space)}
