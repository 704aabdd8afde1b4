"""Small statistics helpers for comparing runs over seeds.

* :func:`mean_std` — the paper's "mean ± std" over seeds (sample std, ddof = 1).
* :func:`paired_diff_ci` — t-based confidence interval of the mean paired difference a − b
  over the seeds both runs share.
* :func:`paired_p_value`, :func:`holm` — the paired t test's p-value and Holm–Bonferroni adjustment
  across the losses compared in one row.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import (
    special as _special,  # scipy.stats is slow to import; stdtrit is t.ppf, bit for bit
)

__all__ = ["PairedDiff", "paired_diff_ci", "mean_std", "paired_p_value", "holm"]


@dataclass(frozen=True)
class PairedDiff:
    """Mean paired difference a − b with a two-sided t confidence interval [lo, hi].

    ``significant`` is True when the interval excludes 0.  ``note`` says what was special
    (unpaired seeds dropped, too few pairs, zero variance); "" when nothing was.
    """

    mean: float
    lo: float
    hi: float
    n: int
    significant: bool
    note: str


def paired_diff_ci(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    level: float = 0.95,
) -> PairedDiff:
    """Confidence interval for the mean of d_s = a[s] − b[s] over the common seeds s.

    Only seeds present in both mappings are paired; the others are dropped (and listed in
    ``note``).  Pairs where either value is not finite (NaN/inf, e.g. a diverged run) are
    dropped too.  With n pairs, mean d̄ and sample std s (ddof = 1):

        d̄ ± t_{(1+level)/2, n−1} · s / √n      (Student t quantile, scipy.special.stdtrit, n − 1 degrees of freedom).

    * n < 2: no interval — lo = hi = NaN, significant = False, note starts "n too small"
      (mean is the single difference, or NaN when n = 0).
    * n ≥ 2 and s = 0 (all differences equal): the interval collapses to [d̄, d̄]; it is
      significant iff d̄ ≠ 0.  This is the t-interval's limit, not a statement of certainty
      — with so few seeds identical differences usually mean deterministic runs.

    Raises ValueError unless 0 < level < 1.
    """
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    common = [s for s in a if s in b]
    try:
        common.sort()
    except TypeError:  # mixed, unorderable seed types: keep a's order
        pass
    notes: list[str] = []
    a_only = [s for s in a if s not in b]
    b_only = [s for s in b if s not in a]
    if a_only or b_only:
        notes.append(f"dropped unpaired seeds (a only: {a_only}, b only: {b_only})")
    diffs, bad = [], []
    for s in common:
        x, y = float(a[s]), float(b[s])
        if math.isfinite(x) and math.isfinite(y):
            diffs.append(x - y)
        else:
            bad.append(s)
    if bad:
        notes.append(f"dropped non-finite pairs {bad}")
    d = np.asarray(diffs, dtype=np.float64)
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return PairedDiff(mean, math.nan, math.nan, n, False, "; ".join(["n too small", *notes]))
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        notes.append("zero variance: interval collapses to the mean")
        return PairedDiff(mean, mean, mean, n, mean != 0.0, "; ".join(notes))
    half = float(_special.stdtrit(n - 1, 0.5 + float(level) / 2.0)) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    return PairedDiff(mean, lo, hi, n, bool(lo > 0.0 or hi < 0.0), "; ".join(notes))


def mean_std(values: Iterable[float] | Mapping[Hashable, float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, n) — the paper's "mean ± std" over seeds.

    A Mapping (seed -> value) uses its values.  n = 1 gives std NaN; n = 0 gives (NaN, NaN, 0).
    """
    if isinstance(values, Mapping):
        values = values.values()
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    return mean, std, n


def paired_p_value(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> float:
    """Two-sided p-value of the paired t test of mean(a − b) = 0 over the common finite seeds.

    NaN below two pairs; with zero variance 0.0 when the mean differs from 0, else 1.0 (the
    interval's own limit, see :func:`paired_diff_ci`).
    """
    diffs = [float(a[s]) - float(b[s]) for s in a if s in b and math.isfinite(float(a[s])) and math.isfinite(float(b[s]))]
    n = len(diffs)
    if n < 2:
        return math.nan
    d = np.asarray(diffs, dtype=np.float64)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if float(d.mean()) != 0.0 else 1.0
    t = float(d.mean()) / (sd / math.sqrt(n))
    return float(2.0 * _special.stdtr(n - 1, -abs(t)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN, not counted."""
    idx = sorted((i for i, p in enumerate(p_values) if math.isfinite(p)), key=lambda i: p_values[i])
    m = len(idx)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
