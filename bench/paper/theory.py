"""Information-theoretic quantities and bounds from "Mutual Information Learned Classifiers".

Pure functions, float64, numpy/scipy only.  Formulas as in docs/theory.md
(the paper's Theorem 4 / Theorem 10, Appendix F; Theorem 5 / Theorem 12 and Corollary 1 /
Corollary 2, Appendix G).

Conventions
-----------
* Natural logarithms (nats) unless a ``unit`` argument says ``"bits"``.
* Scalar inputs give a Python ``float``; array-like inputs give a float64 ``ndarray``
  (element-wise, with numpy broadcasting).
* Error-probability bounds are lower bounds on the misclassification probability
  P_e = P(Ŷ ≠ Y) of *any* classifier, for the Markov chain Y → X → Ŷ.

Binary Gaussian model
---------------------
y ∈ {−1, +1}, P(y = +1) = π, x | y ~ N(y μ, Σ) in R^d.  With δ = sqrt(μᵀ Σ⁻¹ μ) the
whitened projection s = μᵀΣ⁻¹x / δ is a sufficient statistic for y and s | y ~ N(y δ, 1),
while the d − 1 orthogonal whitened coordinates are N(0, I) independently of y.  Hence
I(X;Y), the Bayes error and every other label-related quantity depend on (μ, Σ) only
through δ (and π), and are computed on the reduced 1-D model x ~ N(y δ, 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import special  # scipy.integrate (slow to import) only where the gauss integral needs it; no
# scipy.optimize (0.3 s to import, a sixth of a report on 100,000 cells): Fano's bound is found by bisection

__all__ = [
    "binary_entropy",
    "theorem4_bound",
    "fano_bound",
    "gauss_delta",
    "gauss_mi",
    "gauss_bayes_error",
    "gauss_mi_upper",
    "gauss_mi_lower",
    "Corollary1",
    "corollary1_bounds",
    "gauss_table",
    "GAUSS_TABLE_COLUMNS",
]

LN2 = math.log(2.0)
_UNITS = ("nats", "bits")


# --------------------------------------------------------------------------- helpers


def _check_unit(unit: str) -> None:
    if unit not in _UNITS:
        raise ValueError(f"unit must be 'nats' or 'bits', got {unit!r}")


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ValueError(f"k (number of classes) must be an integer >= 2, got {k!r}")
    if int(k) < 2:
        raise ValueError(f"k (number of classes) must be an integer >= 2, got {k!r}")
    return int(k)


def _check_prior(prior: Any) -> np.ndarray:
    p = np.asarray(prior, dtype=np.float64)
    if np.any(np.isnan(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError(f"prior must lie in [0, 1], got {prior!r}")
    return p


def _check_delta(delta: Any) -> np.ndarray:
    d = np.asarray(delta, dtype=np.float64)
    if np.any(np.isnan(d)) or np.any(d < 0.0):
        raise ValueError(f"delta must be >= 0 (it is a Mahalanobis norm), got {delta!r}")
    return d


def _out(x: np.ndarray) -> float | np.ndarray:
    """0-d result -> Python float, otherwise a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def _elementwise(func, *arrays: np.ndarray) -> np.ndarray:
    """Apply a scalar function element-wise over broadcast float64 arrays."""
    b = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
    out = np.empty(b[0].shape, dtype=np.float64)
    for idx in np.ndindex(out.shape):
        out[idx] = func(*(float(a[idx]) for a in b))
    return out


def _to_bits(x: Any, unit: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / LN2 if unit == "nats" else x


# --------------------------------------------------------------------------- entropy


def binary_entropy(p: Any, unit: str = "nats") -> float | np.ndarray:
    """Binary entropy h(p) = −p log p − (1 − p) log(1 − p), with h(0) = h(1) = 0.

    ``unit="nats"`` uses natural logs, ``unit="bits"`` uses log2 (h(½) = 1 bit).
    Raises ValueError for p outside [0, 1] or an unknown unit.
    """
    _check_unit(unit)
    p = np.asarray(p, dtype=np.float64)
    if np.any(np.isnan(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("binary_entropy: p must lie in [0, 1]")
    h = special.entr(p) + special.entr(1.0 - p)  # entr(x) = −x ln x, entr(0) = 0
    if unit == "bits":
        h = h / LN2
    return _out(h)


def _h_bits(p: float) -> float:
    return float((special.entr(p) + special.entr(1.0 - p)) / LN2)


# --------------------------------------------------------------------------- Theorem 4


def theorem4_bound(h_y: Any, mi: Any, k: int, unit: str = "nats") -> float | np.ndarray:
    """Closed-form error lower bound of Theorem 4 (Appendix F, Theorem 10).

    Fano: b := H(Y) − I(X;Y) ≤ h(P_e) + P_e·a with a = log2(K − 1), all in bits.
    The paper relaxes h(p) ≤ 2√(p(1 − p)) (Lemma 9) and solves the resulting quadratic
    (a² + 4) p² − (2ab + 4) p + b² ≤ 0 for its smaller root:

        P_e ≥ [2 + a b − 2 √(1 + a b − b²)] / (a² + 4),    and P_e ≥ 0 where b ≤ 0.

    K = 2 gives a = 0 and P_e ≥ (1 − √(1 − b²)) / 2.

    Negative radicand: 1 + ab − b² < 0 exactly when b > (a + √(a² + 4))/2, the maximum over
    p ∈ [0, 1] of the relaxed right-hand side 2√(p(1−p)) + a p.  Since that maximum is
    ≥ max_p [h(p) + a p] = log2 K ≥ H(Y) ≥ b, this cannot happen for consistent inputs; it
    only arises when H(Y) is over-estimated (e.g. a cross-entropy estimate H_θ(Y) > log K,
    a negative MI estimate, or the wrong unit).  The radicand is then clipped at 0, which
    returns the vertex (2 + ab)/(a² + 4), i.e. the p where the relaxed bound is largest,
    instead of NaN.  The result is finally clipped to [0, 1].

    Parameters
    ----------
    h_y, mi : label entropy H(Y) and mutual information I(X;Y) (scalars or arrays), in
        ``unit``; "nats" inputs are converted to bits before applying the formula.
    k : number of classes, an integer ≥ 2.
    unit : "nats" (default) or "bits".
    """
    _check_unit(unit)
    k = _check_k(k)
    b = _to_bits(h_y, unit) - _to_bits(mi, unit)
    a = math.log2(k - 1)
    rad = np.clip(1.0 + a * b - b * b, 0.0, None)
    pe = (2.0 + a * b - 2.0 * np.sqrt(rad)) / (a * a + 4.0)
    pe = np.where(b <= 0.0, 0.0, np.clip(pe, 0.0, 1.0))
    pe = np.where(np.isnan(b), np.nan, pe)
    return _out(pe)


def _fano_scalar(b: float, a: float, k: int) -> float:
    if math.isnan(b):
        return math.nan
    if b <= 0.0:
        return 0.0
    pmax = 1.0 - 1.0 / k
    if b >= math.log2(k):
        return pmax
    # g(p) = h(p) + a p is continuous and increasing on [0, 1 − 1/K]
    # (g'(p) = log2((1 − p)(K − 1)/p) ≥ 0 there), g(0) = 0 < b < log2 K = g(1 − 1/K):
    # bisection until lo and hi are adjacent floats leaves hi the smallest float p with g(p) ≥ b
    lo, hi = 0.0, pmax
    while True:
        mid = lo + 0.5 * (hi - lo)
        if mid <= lo or mid >= hi:
            return hi
        if _h_bits(mid) + a * mid >= b:
            hi = mid
        else:
            lo = mid


def fano_bound(h_y: Any, mi: Any, k: int, unit: str = "nats") -> float | np.ndarray:
    """Exact Fano error lower bound (no relaxation).

    With b = H(Y) − I(X;Y) and a = log2(K − 1) in bits, returns the smallest
    p ∈ [0, 1 − 1/K] with h(p) + p·a ≥ b (h in bits), found by bisection (to adjacent floats)
    on the increasing function g(p) = h(p) + p a:

    * 0 where b ≤ 0;
    * 1 − 1/K where b ≥ log2 K (the random-guessing error; g's maximum on [0, 1] is log2 K).

    It is never smaller than :func:`theorem4_bound` (h(p) ≤ 2√(p(1−p)) makes the relaxed
    feasible set larger).  Arguments as for :func:`theorem4_bound`.
    """
    _check_unit(unit)
    k = _check_k(k)
    b = _to_bits(h_y, unit) - _to_bits(mi, unit)
    a = math.log2(k - 1)
    return _out(_elementwise(lambda bb: _fano_scalar(bb, a, k), b))


# --------------------------------------------------------------------------- Gaussian model


def gauss_delta(mu: Any, sigma: Any) -> float:
    """Mahalanobis separation δ = sqrt(μᵀ Σ⁻¹ μ) of the binary Gaussian model.

    ``sigma`` is the class-conditional **covariance** Σ (a variance σ², not a standard
    deviation, when scalar):

    * ``mu`` scalar, ``sigma`` scalar: δ = |μ| / √σ²  (d = 1);
    * ``mu`` vector, ``sigma`` scalar s: Σ = s·I;
    * ``mu`` vector, ``sigma`` 1-D of the same length: Σ = diag(sigma);
    * ``mu`` vector, ``sigma`` (d, d) matrix: Σ itself (must be symmetric positive definite).

    Raises ValueError for shape mismatches or a Σ that is not positive definite.
    """
    m = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    if m.ndim != 1:
        raise ValueError(f"mu must be a scalar or a 1-D vector, got shape {np.shape(mu)}")
    d = m.shape[0]
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 0:
        s = float(s) * np.eye(d)
    elif s.ndim == 1:
        if s.shape[0] != d:
            raise ValueError(f"sigma diagonal has length {s.shape[0]}, mu has length {d}")
        s = np.diag(s)
    elif s.ndim == 2:
        if s.shape != (d, d):
            raise ValueError(f"sigma has shape {s.shape}, expected ({d}, {d})")
        if not np.allclose(s, s.T, rtol=1e-10, atol=1e-12):
            raise ValueError("sigma must be symmetric")
    else:
        raise ValueError(f"sigma must be a scalar, vector or matrix, got shape {s.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
        raise ValueError("mu and sigma must be finite")
    try:
        chol = np.linalg.cholesky(s)
    except np.linalg.LinAlgError as exc:
        raise ValueError("sigma must be positive definite") from exc
    w = np.linalg.solve(chol, m)  # L w = μ  ⇒  wᵀw = μᵀ Σ⁻¹ μ
    return float(np.sqrt(w @ w))


def _entropy_y(prior: np.ndarray) -> np.ndarray:
    """H(Y) in nats for a binary label with P(y=+1) = prior."""
    return special.entr(prior) + special.entr(1.0 - prior)


def _gauss_cond_entropy_scalar(delta: float, prior: float) -> float:
    """H(Y|X) in nats of the reduced model (see :func:`gauss_mi`)."""
    if prior == 0.0 or prior == 1.0 or math.isinf(delta):
        return 0.0
    h_y = float(_entropy_y(np.float64(prior)))
    if delta == 0.0:
        return h_y
    lr = math.log1p(-prior) - math.log(prior)  # log((1 − π)/π)
    two_d2 = 2.0 * delta * delta

    # H(Y|X) = Σ_y π_y E_{x|y}[−log p(y|x)].  With x = yδ + z, z ~ N(0, 1) (and z → −z for
    # y = −1, using y² = 1):  −log p(y|x) = log(1 + (π_{−y}/π_y) e^{u}),  u = −2δ² − 2δz,
    # a softplus evaluated with logaddexp(0, ·): no overflow, and full relative accuracy
    # when H(Y|X) is tiny (large δ), which I = H(Y) − H(Y|X) would otherwise lose.
    def integrand(z: float) -> float:
        u = -two_d2 - 2.0 * delta * z
        val = prior * np.logaddexp(0.0, lr + u) + (1.0 - prior) * np.logaddexp(0.0, -lr + u)
        return float(val) * math.exp(-0.5 * z * z)

    # φ(z)·integrand < 1e-40 beyond |z| = 14 unless δ is astronomically large; breakpoints
    # at 0 (peak of φ) and −δ (the softplus knee) help quad.
    lim = 14.0
    pts = sorted({0.0, max(-lim + 1e-9, -delta)})
    from scipy import integrate

    val, _ = integrate.quad(integrand, -lim, lim, points=pts, epsabs=1e-300, epsrel=1e-12, limit=200)
    hyx = val / math.sqrt(2.0 * math.pi)
    return float(min(max(hyx, 0.0), h_y))


def _gauss_mi_scalar(delta: float, prior: float) -> float:
    if delta == 0.0 or prior == 0.0 or prior == 1.0:
        return 0.0
    h_y = float(_entropy_y(np.float64(prior)))
    return float(min(max(h_y - _gauss_cond_entropy_scalar(delta, prior), 0.0), h_y))


def gauss_mi(delta: Any, prior: Any = 0.5) -> float | np.ndarray:
    """Exact I(X;Y) (nats) of the binary Gaussian model, by 1-D quadrature.

    On the reduced model x ~ N(yδ, 1), P(y=+1) = π, p(x) = π N(x; δ, 1) + (1−π) N(x; −δ, 1):

        I(X;Y) = Σ_y π_y ∫ N(x; yδ, 1) log[N(x; yδ, 1) / p(x)] dx = H(Y) − H(Y|X),
        H(Y|X) = (1/√(2π)) ∫ e^{−z²/2} [ π log(1 + ((1−π)/π) e^{−2δ²−2δz})
                                       + (1−π) log(1 + (π/(1−π)) e^{−2δ²−2δz}) ] dz,

    after substituting x = yδ + z (and z → −z for y = −1), since
    log p(x|y) − log p(x) = −log p(y|x) + log π_y.  The logs are softplus terms evaluated
    with ``logaddexp`` (no overflow for large δ|z|); integrating H(Y|X) rather than I keeps
    full accuracy when H(Y|X) is tiny.  The z-range is [−14, 14] (Gaussian tail outside
    below 1e−40).  δ = 0 or π ∈ {0, 1} give 0; the result is clipped into [0, H(Y)].
    """
    d = _check_delta(delta)
    p = _check_prior(prior)
    return _out(_elementwise(_gauss_mi_scalar, d, p))


def gauss_bayes_error(delta: Any, prior: Any = 0.5) -> float | np.ndarray:
    """Bayes (minimum) error of the binary Gaussian model.

    The Bayes rule predicts +1 iff π N(x; δ, 1) > (1−π) N(x; −δ, 1), i.e. iff x > t with
    t = log((1−π)/π) / (2δ), so

        P_e* = π Φ(t − δ) + (1 − π) Φ(−t − δ).

    π = ½ gives Φ(−δ); δ = 0 gives min(π, 1 − π) (always predict the majority class);
    π ∈ {0, 1} gives 0.
    """
    d = _check_delta(delta)
    p = _check_prior(prior)

    def one(dd: float, pp: float) -> float:
        if pp == 0.0 or pp == 1.0:
            return 0.0
        if dd == 0.0:
            return min(pp, 1.0 - pp)
        if math.isinf(dd):
            return 0.0
        t = (math.log1p(-pp) - math.log(pp)) / (2.0 * dd)
        return float(pp * special.ndtr(t - dd) + (1.0 - pp) * special.ndtr(-t - dd))

    return _out(_elementwise(one, d, p))


def gauss_mi_upper(delta: Any, prior: Any = 0.5) -> float | np.ndarray:
    """Upper bound on I(X;Y) (nats), Theorem 5 / Theorem 12:

        I ≤ min{ H(Y), ½ log(1 + 4π(1 − π) δ²) }.

    The second term is h(Gaussian with Cov X = Σ + 4π(1−π) μμᵀ) − h(X|Y) (a Gaussian
    maximises entropy for a given covariance), which by the matrix determinant lemma equals
    ½ log(1 + 4π(1−π) μᵀΣ⁻¹μ).
    """
    d = _check_delta(delta)
    p = _check_prior(prior)
    with np.errstate(over="ignore"):
        gauss = 0.5 * np.log1p(4.0 * p * (1.0 - p) * d * d)
    return _out(np.minimum(_entropy_y(p), gauss))


def gauss_mi_lower(delta: Any, prior: Any = 0.5, d: int = 1) -> float | np.ndarray:
    """Lower bound on I(X;Y) (nats), Theorem 5 / Theorem 12 (Jensen):

        I ≥ max{ 0, −log ∫ p(x)² dx − h(X|Y) },   with
        ∫ p² = (4π_c)^{−d/2} |Σ|^{−1/2} S,   S = π² + (1 − π)² + 2π(1 − π) e^{−δ²},
        h(X|Y) = ½ log((2π_c e)^d |Σ|),

    (π_c = 3.14159…).  Substituting, |Σ| cancels exactly:

        −log ∫ p² − h(X|Y) = (d/2) log(2/e) − log S.

    So the bound depends on Σ only through δ, and there is no ``det_sigma`` argument.  It
    *does* depend on d: each dimension adds ½ log(2/e) ≈ −0.153 nats, the gap between the
    Rényi-2 entropy ½ log(4π_c) and the Shannon entropy ½ log(2π_c e) of an N(0, 1)
    coordinate.  Because the whitened reduction makes the d-dimensional problem's I(X;Y)
    equal to the 1-D one's, applying the theorem to the 1-D reduced model is valid for
    every d and is the tightest choice; that is the default ``d=1``.  Pass the data
    dimension ``d`` only to reproduce the paper's literal (looser) d-dimensional bound.
    """
    if isinstance(d, bool) or not isinstance(d, Integral) or int(d) < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    dl = _check_delta(delta)
    p = _check_prior(prior)
    s = p * p + (1.0 - p) ** 2 + 2.0 * p * (1.0 - p) * np.exp(-dl * dl)
    val = 0.5 * int(d) * math.log(2.0 / math.e) - np.log(s)
    return _out(np.maximum(0.0, val))


@dataclass(frozen=True)
class Corollary1:
    """Mutual-information and error quantities of the binary Gaussian model at one (δ, π).

    ``err_lb_thm4`` / ``err_lb_fano`` are the Corollary-1 bounds: Theorem 4 / exact Fano
    evaluated at the MI **upper** bound, valid for every classifier.  The ``*_exact``
    variants use the exact MI (the tightest information-theoretic bound for the model).
    All entropies and informations are in nats.
    """

    delta: float
    prior: float
    h_y: float
    mi_exact: float
    mi_lower: float
    mi_upper: float
    bayes_error: float
    err_lb_thm4: float
    err_lb_fano: float
    err_lb_thm4_exact: float
    err_lb_fano_exact: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def corollary1_bounds(delta: float, prior: float = 0.5) -> Corollary1:
    """Corollary 1 (Corollary 2 in Appendix G): error lower bounds for the Gaussian model.

    Direction: both error bounds are non-increasing in I(X;Y) (b = H(Y) − I shrinks as I
    grows, and the bounds are non-decreasing in b).  Since I ≤ I_upper,
        bound(I_upper) ≤ bound(I) ≤ P_e   for every classifier,
    so the valid lower bound on the error uses the MI **upper** bound.  Plugging in the MI
    lower bound would give a number ≥ bound(I) that may exceed the Bayes error, i.e. no
    bound at all.  This matches the paper's Corollary, whose bound is written in terms of
    μᵀΣ⁻¹μ (the quantity inside ½ log(1 + 4π(1−π)δ²)) and which the text reads as "larger
    μ / smaller Σ ⇒ lower error lower bound".  K = 2 here.
    """
    if isinstance(delta, np.ndarray) or isinstance(prior, np.ndarray):
        raise ValueError("corollary1_bounds takes scalar delta and prior")
    if not isinstance(delta, Real) or not isinstance(prior, Real):
        raise ValueError("delta and prior must be real numbers")
    dl = float(_check_delta(delta))
    p = float(_check_prior(prior))
    h_y = float(_entropy_y(np.float64(p)))
    mi = float(gauss_mi(dl, p))
    lo = float(gauss_mi_lower(dl, p))
    up = float(gauss_mi_upper(dl, p))
    return Corollary1(
        delta=dl,
        prior=p,
        h_y=h_y,
        mi_exact=mi,
        mi_lower=lo,
        mi_upper=up,
        bayes_error=float(gauss_bayes_error(dl, p)),
        err_lb_thm4=float(theorem4_bound(h_y, up, 2)),
        err_lb_fano=float(fano_bound(h_y, up, 2)),
        err_lb_thm4_exact=float(theorem4_bound(h_y, mi, 2)),
        err_lb_fano_exact=float(fano_bound(h_y, mi, 2)),
    )


GAUSS_TABLE_COLUMNS = (
    "sigma2",
    "delta",
    "mi_exact",
    "mi_lower",
    "mi_upper",
    "bayes_error",
    "err_lb_thm4",
    "err_lb_fano",
)


def gauss_table(
    sigma2: Any = None,
    *,
    deltas: Any = None,
    mu: float = 1.0,
    prior: float = 0.5,
) -> list[dict[str, float]]:
    """Rows for the paper's Figures 12–13 setting: d = 1, mean ±μ, variance σ², δ = |μ|/σ.

    Give either ``sigma2`` (variances; default 1, 2, …, 100 as in the paper) or ``deltas``
    (then σ² = (μ/δ)², +inf for δ = 0).  Each row has the keys ``GAUSS_TABLE_COLUMNS``:
    sigma2, delta, mi_exact, mi_lower, mi_upper (nats), bayes_error, and the Corollary-1
    error lower bounds err_lb_thm4 / err_lb_fano (computed from the MI upper bound).
    """
    if sigma2 is not None and deltas is not None:
        raise ValueError("give sigma2 or deltas, not both")
    mu = float(mu)
    if not math.isfinite(mu) or mu == 0.0:
        raise ValueError(f"mu must be finite and non-zero, got {mu!r}")
    if deltas is not None:
        ds = np.atleast_1d(_check_delta(deltas)).astype(np.float64)
        with np.errstate(divide="ignore"):
            s2 = (mu / ds) ** 2
    else:
        s2 = np.arange(1, 101, dtype=np.float64) if sigma2 is None else np.atleast_1d(
            np.asarray(sigma2, dtype=np.float64)
        )
        if s2.ndim != 1 or np.any(~(s2 > 0.0)):
            raise ValueError("sigma2 must be a 1-D list of positive variances")
        ds = np.abs(mu) / np.sqrt(s2)
    rows = []
    for v, dl in zip(s2, ds):
        c = corollary1_bounds(float(dl), prior)
        rows.append(
            {
                "sigma2": float(v),
                "delta": c.delta,
                "mi_exact": c.mi_exact,
                "mi_lower": c.mi_lower,
                "mi_upper": c.mi_upper,
                "bayes_error": c.bayes_error,
                "err_lb_thm4": c.err_lb_thm4,
                "err_lb_fano": c.err_lb_fano,
            }
        )
    return rows
