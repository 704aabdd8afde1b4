"""Tests for bench.report.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.report.stats import PairedDiff, mean_std, paired_diff_ci


def test_hand_computed_example():
    # diffs 1, 2, 3: mean 2, sd 1, CI 2 ± t_{0.975,2} / √3 = 2 ± 4.302653/1.732051
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {0: 0.0, 1: 0.0, 2: 0.0}
    r = paired_diff_ci(a, b)
    assert isinstance(r, PairedDiff)
    assert r.n == 3 and r.mean == pytest.approx(2.0)
    assert r.lo == pytest.approx(-0.484, abs=1e-3)
    assert r.hi == pytest.approx(4.484, abs=1e-3)
    half = 4.302652729749462 / math.sqrt(3)
    assert r.lo == pytest.approx(2 - half, abs=1e-12) and r.hi == pytest.approx(2 + half, abs=1e-12)
    assert r.significant is False
    assert r.note == ""


def test_significant_and_level():
    a = {s: 0.80 + 0.01 * s for s in range(5)}
    b = {s: 0.70 + 0.012 * s for s in range(5)}
    r = paired_diff_ci(a, b, level=0.99)
    d = np.array([a[s] - b[s] for s in range(5)])
    half = stats.t.ppf(0.995, 4) * d.std(ddof=1) / math.sqrt(5)
    assert r.lo == pytest.approx(d.mean() - half) and r.hi == pytest.approx(d.mean() + half)
    assert r.significant is True
    assert paired_diff_ci(b, a).hi < 0 and paired_diff_ci(b, a).significant


def test_unpaired_seeds_dropped():
    a = {0: 1.0, 1: 2.0, 2: 3.0, 7: 100.0}
    b = {0: 0.0, 1: 0.0, 2: 0.0, 9: -100.0}
    r = paired_diff_ci(a, b)
    assert r.n == 3 and r.mean == pytest.approx(2.0)
    assert "unpaired" in r.note and "7" in r.note and "9" in r.note


def test_n_too_small():
    r = paired_diff_ci({0: 0.7, 1: 0.8}, {0: 0.6, 5: 0.1})
    assert r.n == 1 and r.mean == pytest.approx(0.1)
    assert math.isnan(r.lo) and math.isnan(r.hi)
    assert r.significant is False and r.note.startswith("n too small")
    r0 = paired_diff_ci({0: 1.0}, {1: 1.0})
    assert r0.n == 0 and math.isnan(r0.mean) and "n too small" in r0.note


def test_zero_variance_collapses():
    r = paired_diff_ci({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0})
    assert r.n == 2 and r.mean == r.lo == r.hi == pytest.approx(0.5)
    assert r.significant is True and "zero variance" in r.note
    r0 = paired_diff_ci({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert r0.mean == r0.lo == r0.hi == 0.0 and r0.significant is False


def test_non_finite_pairs_dropped():
    r = paired_diff_ci({0: 1.0, 1: 2.0, 2: float("nan"), 3: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0})
    assert r.n == 3 and r.mean == pytest.approx(2.0) and "non-finite" in r.note


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1])
def test_invalid_level(level):
    with pytest.raises(ValueError):
        paired_diff_ci({0: 1.0, 1: 2.0}, {0: 0.0, 1: 0.0}, level=level)


def test_mean_std():
    m, s, n = mean_std([0.676, 0.669, 0.683])
    assert n == 3 and m == pytest.approx(0.676)
    assert s == pytest.approx(np.std([0.676, 0.669, 0.683], ddof=1))
    assert s == pytest.approx(0.007, abs=1e-9)  # paper-style "0.676 ± 0.007"
    m1, s1, n1 = mean_std([0.5])
    assert m1 == 0.5 and math.isnan(s1) and n1 == 1
    m0, s0, n0 = mean_std([])
    assert math.isnan(m0) and math.isnan(s0) and n0 == 0
    assert mean_std({1: 1.0, 2: 3.0}) == (2.0, pytest.approx(math.sqrt(2)), 2)
