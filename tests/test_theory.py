"""Tests for bench.paper.theory against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bench.paper import theory as T

DELTAS = np.linspace(0.0, 4.0, 41)
PRIORS = (0.5, 0.3, 0.1)


def h_y_nats(prior: float) -> float:
    return -sum(p * math.log(p) for p in (prior, 1.0 - prior) if p > 0)


# ----------------------------------------------------------------- independent references


def mc_mi_1d(delta: float, prior: float, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo E[log p(x|y) − log p(x)] on x ~ N(yδ, 1); returns (estimate, std error)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < prior, 1.0, -1.0)
    x = y * delta + rng.standard_normal(n)
    lp_pos = stats.norm.logpdf(x, loc=delta) + math.log(prior)
    lp_neg = stats.norm.logpdf(x, loc=-delta) + math.log(1.0 - prior)
    log_px = np.logaddexp(lp_pos, lp_neg)
    log_pxy = stats.norm.logpdf(x, loc=y * delta)
    v = log_pxy - log_px
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n))


def quad_bayes_error(delta: float, prior: float) -> float:
    """Bayes error = ∫ min(π N(x; δ), (1−π) N(x; −δ)) dx, by quadrature (no threshold)."""
    f = lambda x: min(prior * stats.norm.pdf(x, delta), (1 - prior) * stats.norm.pdf(x, -delta))  # noqa: E731
    val, _ = integrate.quad(f, -delta - 12, delta + 12, points=[-delta, 0.0, delta], limit=200, epsabs=1e-13)
    return val


def relaxed_bound_grid(b_bits: float, k: int, n: int = 2_000_001) -> float:
    """Smallest p on a fine grid with 2√(p(1−p)) + p log2(K−1) ≥ b (Lemma 9 relaxation)."""
    p = np.linspace(0.0, 1.0, n)
    ok = 2 * np.sqrt(p * (1 - p)) + p * math.log2(k - 1) >= b_bits
    return float(p[np.argmax(ok)]) if ok.any() else math.nan


# ----------------------------------------------------------------- binary entropy


def test_binary_entropy_values_and_units():
    assert T.binary_entropy(0.5, "bits") == pytest.approx(1.0, abs=1e-15)
    assert T.binary_entropy(0.5) == pytest.approx(math.log(2), abs=1e-15)
    assert T.binary_entropy(0.0) == 0.0 and T.binary_entropy(1.0) == 0.0
    p = 0.11
    ref = -p * math.log(p) - (1 - p) * math.log(1 - p)
    assert T.binary_entropy(p) == pytest.approx(ref, rel=1e-14)
    assert T.binary_entropy(p, unit="bits") == pytest.approx(ref / math.log(2), rel=1e-14)
    arr = T.binary_entropy([0.1, 0.9])
    assert isinstance(arr, np.ndarray) and arr[0] == pytest.approx(arr[1])


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_binary_entropy_rejects_bad_p(bad):
    with pytest.raises(ValueError):
        T.binary_entropy(bad)


def test_binary_entropy_rejects_bad_unit():
    with pytest.raises(ValueError):
        T.binary_entropy(0.3, unit="dits")


# ----------------------------------------------------------------- Theorem 4 / Fano


def test_paper_k100_check():
    h = math.log(100)
    assert T.theorem4_bound(h, 0.0, 100) == pytest.approx(0.9206, abs=1e-4)
    assert T.fano_bound(h, 0.0, 100) == pytest.approx(0.99, abs=1e-12)
    # just below log2 K the root finder must land next to 1 − 1/K
    # (g has zero slope there, so a 1e-9 deficit in b moves p by ~sqrt(2·1.4e-9/146) ≈ 4e-6)
    assert T.fano_bound(h - 1e-9, 0.0, 100) == pytest.approx(0.99, abs=1e-5)


@pytest.mark.parametrize("k", [2, 3, 10, 100])
@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7, 0.95])
def test_theorem4_matches_relaxed_inequality_grid(k, frac):
    b_bits = frac * math.log2(k)
    got = T.theorem4_bound(b_bits, 0.0, k, unit="bits")
    assert got == pytest.approx(relaxed_bound_grid(b_bits, k), abs=2e-6)


@pytest.mark.parametrize("k", [2, 3, 10, 100])
@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7, 0.95])
def test_fano_solves_fano_equation(k, frac):
    b_bits = frac * math.log2(k)
    p = T.fano_bound(b_bits, 0.0, k, unit="bits")
    assert 0 < p < 1 - 1 / k
    lhs = T.binary_entropy(p, "bits") + p * math.log2(k - 1)
    assert lhs == pytest.approx(b_bits, abs=1e-12)
    # and it is the smallest such p: g is increasing, so slightly smaller p falls short
    q = p * (1 - 1e-6)
    assert T.binary_entropy(q, "bits") + q * math.log2(k - 1) < b_bits


def test_closed_form_never_exceeds_fano():
    for k in (2, 3, 10, 100):
        for b in np.linspace(0, math.log2(k), 50):
            assert T.theorem4_bound(b, 0, k, "bits") <= T.fano_bound(b, 0, k, "bits") + 1e-12


def test_k2_closed_form():
    b = 0.6
    assert T.theorem4_bound(b, 0, 2, "bits") == pytest.approx((1 - math.sqrt(1 - b * b)) / 2, abs=1e-15)
    # b = 1 bit (H(Y) = 1 bit, no information): closed form 1/2 = Fano 1/2
    assert T.theorem4_bound(1.0, 0, 2, "bits") == pytest.approx(0.5, abs=1e-15)
    assert T.fano_bound(1.0, 0, 2, "bits") == pytest.approx(0.5, abs=1e-15)


def test_information_at_least_entropy_gives_zero():
    for k in (2, 10):
        for mi in (1.0, 1.5):
            assert T.theorem4_bound(1.0, mi, k) == 0.0
            assert T.fano_bound(1.0, mi, k) == 0.0


def test_negative_radicand_is_clipped_not_nan():
    # H(Y) over-estimated beyond log2 K (e.g. a cross-entropy estimate): b = 3 bits, K = 2.
    v = T.theorem4_bound(3.0, 0.0, 2, "bits")
    assert math.isfinite(v) and 0.0 <= v <= 1.0
    assert T.fano_bound(3.0, 0.0, 2, "bits") == 0.5


def test_bits_vs_nats_consistency():
    ln2 = math.log(2)
    for k in (2, 5, 100):
        for h, i in [(1.0, 0.2), (math.log2(k), 0.0), (2.0, 1.9)]:
            assert T.theorem4_bound(h * ln2, i * ln2, k) == pytest.approx(
                T.theorem4_bound(h, i, k, unit="bits"), abs=1e-14
            )
            assert T.fano_bound(h * ln2, i * ln2, k) == pytest.approx(
                T.fano_bound(h, i, k, unit="bits"), abs=1e-12
            )


def test_bounds_vectorise():
    mi = np.array([0.0, 0.5, 1.0, 5.0])
    th = T.theorem4_bound(math.log(10), mi, 10)
    fa = T.fano_bound(math.log(10), mi, 10)
    assert th.shape == fa.shape == (4,)
    assert np.all(np.diff(th) <= 0) and np.all(np.diff(fa) <= 0)
    assert th[-1] == fa[-1] == 0.0


@pytest.mark.parametrize("k", [1, 0, -3, 2.0, 2.5, "10", True, None])
def test_invalid_k(k):
    with pytest.raises(ValueError):
        T.theorem4_bound(1.0, 0.0, k)
    with pytest.raises(ValueError):
        T.fano_bound(1.0, 0.0, k)


def test_invalid_unit():
    with pytest.raises(ValueError):
        T.theorem4_bound(1.0, 0.0, 10, unit="nat")
    with pytest.raises(ValueError):
        T.fano_bound(1.0, 0.0, 10, unit="Bits")


def test_numpy_integer_k_accepted():
    assert T.theorem4_bound(1.0, 0.0, np.int64(10)) == T.theorem4_bound(1.0, 0.0, 10)


# ----------------------------------------------------------------- Gaussian model


def test_gauss_delta_forms():
    assert T.gauss_delta(1.0, 4.0) == pytest.approx(0.5)  # sigma is a variance
    assert T.gauss_delta([3.0, 4.0], 1.0) == pytest.approx(5.0)
    assert T.gauss_delta([1.0, 2.0], [1.0, 4.0]) == pytest.approx(math.sqrt(2.0))
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 4))
    S = A @ A.T + 4 * np.eye(4)
    mu = rng.standard_normal(4)
    assert T.gauss_delta(mu, S) == pytest.approx(math.sqrt(mu @ np.linalg.inv(S) @ mu), rel=1e-12)


@pytest.mark.parametrize(
    "mu,sigma",
    [([1.0, 2.0], np.eye(3)), ([1.0, 2.0], [1.0]), (1.0, -1.0), ([1.0, 1.0], [[1.0, 2.0], [2.0, 1.0]]),
     ([1.0, 1.0], [[1.0, 0.5], [0.0, 1.0]])],
)
def test_gauss_delta_invalid(mu, sigma):
    with pytest.raises(ValueError):
        T.gauss_delta(mu, sigma)


@pytest.mark.parametrize("delta,prior", [(0.3, 0.5), (1.0, 0.5), (2.0, 0.5), (1.0, 0.3), (1.5, 0.1), (3.0, 0.3)])
def test_gauss_mi_matches_monte_carlo(delta, prior):
    est, se = mc_mi_1d(delta, prior, seed=int(100 * delta + 10 * prior))
    assert abs(T.gauss_mi(delta, prior) - est) < 3 * se


def test_gauss_mi_reduction_in_3d_monte_carlo():
    """I(X;Y) of a correlated 3-D model equals the 1-D model's at δ = sqrt(μᵀΣ⁻¹μ)."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((3, 3))
    S = A @ A.T + np.eye(3)
    mu = np.array([0.5, -0.3, 0.8])
    prior, n = 0.3, 200_000
    y = np.where(rng.random(n) < prior, 1.0, -1.0)
    x = y[:, None] * mu + rng.multivariate_normal(np.zeros(3), S, size=n)
    lp_pos = stats.multivariate_normal.logpdf(x, mean=mu, cov=S)
    lp_neg = stats.multivariate_normal.logpdf(x, mean=-mu, cov=S)
    log_px = np.logaddexp(lp_pos + math.log(prior), lp_neg + math.log(1 - prior))
    v = np.where(y > 0, lp_pos, lp_neg) - log_px
    est, se = v.mean(), v.std(ddof=1) / math.sqrt(n)
    assert abs(T.gauss_mi(T.gauss_delta(mu, S), prior) - est) < 3 * se


def test_gauss_mi_limits():
    for p in PRIORS:
        assert T.gauss_mi(0.0, p) == 0.0
        assert T.gauss_mi(12.0, p) == pytest.approx(h_y_nats(p), abs=1e-12)
    assert T.gauss_mi(1.0, 0.0) == 0.0 and T.gauss_mi(1.0, 1.0) == 0.0
    # small δ: I ≈ ½ · 4π(1−π) δ² (first order of the upper bound)
    assert T.gauss_mi(1e-3, 0.5) == pytest.approx(0.5e-6, rel=1e-3)


@pytest.mark.parametrize("prior", PRIORS)
def test_bayes_error_matches_quadrature(prior):
    for d in (0.0, 0.2, 1.0, 2.5, 4.0):
        assert T.gauss_bayes_error(d, prior) == pytest.approx(quad_bayes_error(d, prior), abs=1e-10)


def test_bayes_error_special_cases():
    assert T.gauss_bayes_error(1.3) == pytest.approx(stats.norm.cdf(-1.3), abs=1e-15)
    for p in PRIORS:
        assert T.gauss_bayes_error(0.0, p) == pytest.approx(min(p, 1 - p))
    assert T.gauss_bayes_error(1.0, 0.0) == 0.0


def test_mi_bounds_formulas():
    d, p = 0.7, 0.3
    assert 0.5 * math.log(1 + 4 * p * (1 - p) * d * d) < h_y_nats(p)
    assert T.gauss_mi_upper(d, p) == pytest.approx(0.5 * math.log(1 + 4 * p * (1 - p) * d * d))
    assert T.gauss_mi_upper(10.0, p) == pytest.approx(h_y_nats(p))
    # lower bound from the paper's literal expression (docs/theory.md), with |Σ| = 2.5 and d = 1 / 3
    # (δ = 1.7 keeps both strictly positive, so the max{0, ·} does not hide the formula):
    d = 1.7
    for dim in (1, 3):
        det = 2.5
        int_p2 = (4 * math.pi) ** (-dim / 2) * det**-0.5 * (
            p * p + (1 - p) ** 2 + 2 * p * (1 - p) * math.exp(-d * d)
        )
        h_xy = 0.5 * math.log((2 * math.pi * math.e) ** dim * det)
        assert T.gauss_mi_lower(d, p, d=dim) == pytest.approx(max(0.0, -math.log(int_p2) - h_xy), abs=1e-14)
    assert T.gauss_mi_lower(3.0, 0.5, d=3) < T.gauss_mi_lower(3.0, 0.5)


@pytest.mark.parametrize("prior", PRIORS)
def test_mi_lower_le_exact_le_upper(prior):
    for d in DELTAS:
        lo, mi, up = T.gauss_mi_lower(d, prior), T.gauss_mi(d, prior), T.gauss_mi_upper(d, prior)
        assert lo <= mi + 1e-12 and mi <= up + 1e-12


@pytest.mark.parametrize("prior", PRIORS)
def test_closed_form_le_fano_le_bayes(prior):
    h = h_y_nats(prior)
    for d in DELTAS:
        mi = T.gauss_mi(d, prior)
        th, fa = T.theorem4_bound(h, mi, 2), T.fano_bound(h, mi, 2)
        be = T.gauss_bayes_error(d, prior)
        assert th <= fa + 1e-12
        assert fa <= be + 1e-12
        c = T.corollary1_bounds(d, prior)  # Corollary 1 (from the MI upper bound) is lower still
        assert c.err_lb_thm4 <= c.err_lb_fano + 1e-12 <= fa + 2e-12
        assert c.err_lb_fano_exact == pytest.approx(fa, abs=1e-12)


@pytest.mark.parametrize("prior", PRIORS)
def test_monotone_in_delta(prior):
    rows = [T.corollary1_bounds(float(d), prior) for d in DELTAS]
    for key in ("err_lb_thm4", "err_lb_fano", "err_lb_thm4_exact", "err_lb_fano_exact", "bayes_error"):
        v = np.array([getattr(r, key) for r in rows])
        assert np.all(np.diff(v) <= 1e-12), key
    for key in ("mi_exact", "mi_lower", "mi_upper"):
        v = np.array([getattr(r, key) for r in rows])
        assert np.all(np.diff(v) >= -1e-12), key


def test_corollary1_k2_delta0():
    c = T.corollary1_bounds(0.0, 0.3)
    assert c.mi_exact == 0.0 and c.mi_upper == 0.0 and c.mi_lower == 0.0
    assert c.bayes_error == pytest.approx(0.3)
    assert c.err_lb_fano == pytest.approx(0.3, abs=1e-12)  # h(P_e) ≥ H(Y) ⇒ P_e ≥ min(π, 1−π)
    assert set(c.as_dict()) >= {"mi_exact", "bayes_error", "err_lb_thm4", "err_lb_fano"}


@pytest.mark.parametrize(
    "call",
    [
        lambda: T.gauss_mi(-1.0),
        lambda: T.gauss_mi(1.0, 1.5),
        lambda: T.gauss_bayes_error(1.0, -0.1),
        lambda: T.gauss_mi_upper(float("nan")),
        lambda: T.gauss_mi_lower(1.0, 0.5, d=0),
        lambda: T.corollary1_bounds(-0.5, 0.5),
        lambda: T.gauss_table([1.0, -2.0]),
        lambda: T.gauss_table([1.0], deltas=[1.0]),
    ],
)
def test_gauss_invalid_inputs(call):
    with pytest.raises(ValueError):
        call()


def test_gauss_table_paper_setting():
    rows = T.gauss_table()
    assert len(rows) == 100
    assert tuple(rows[0]) == T.GAUSS_TABLE_COLUMNS
    assert rows[0]["sigma2"] == 1.0 and rows[-1]["sigma2"] == 100.0
    assert rows[3]["delta"] == pytest.approx(0.5)  # σ² = 4
    assert rows[0]["bayes_error"] == pytest.approx(stats.norm.cdf(-1.0))
    mi = [r["mi_exact"] for r in rows]
    assert all(np.diff(mi) < 0)  # larger variance, less information
    for r in rows:
        assert r["mi_lower"] <= r["mi_exact"] <= r["mi_upper"]
        assert r["err_lb_thm4"] <= r["err_lb_fano"] <= r["bayes_error"]
    by_delta = T.gauss_table(deltas=[0.0, 1.0], mu=2.0)
    assert by_delta[0]["sigma2"] == math.inf and by_delta[0]["mi_exact"] == 0.0
    assert by_delta[1]["sigma2"] == pytest.approx(4.0)
