"""Tests of losses/: hand-computed values, gradients, stability, hyperparameter checks, SplitMI."""

from __future__ import annotations

import math

import pytest
import torch

from losses import (
    CelLoss,
    CelLossCP,
    CelLossLC,
    CelLossLSR,
    Loss,
    MilLoss,
    SplitMI,
    mi_terms,
)
from losses.cross_entropy import proselflc_global_trust
from losses.mutual_information import label_counts

# A fixed 3-sample, 3-class batch; class 1 is absent from the targets.
LOGITS = [[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]]
TARGETS = [0, 2, 2]
K = 3
N = 3
TOL = 1e-6


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


# ---------- plain-Python reference formulas ----------


def log_softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


LOGP = [log_softmax_row(r) for r in LOGITS]
PROB = [[math.exp(v) for v in r] for r in LOGP]


def ref_cel() -> float:
    return -sum(LOGP[i][TARGETS[i]] for i in range(N)) / N


def ref_soft_ce(targets_dist: list[list[float]]) -> float:
    """-(1/n) Σ_i Σ_k t_ik log p_ik."""
    return -sum(targets_dist[i][k] * LOGP[i][k] for i in range(N) for k in range(K)) / N


def one_hot(i: int, k: int) -> float:
    return 1.0 if TARGETS[i] == k else 0.0


def ref_lsr(eps: float) -> float:
    return ref_soft_ce([[(1 - eps) * one_hot(i, k) + eps / K for k in range(K)] for i in range(N)])


def ref_cp(beta: float) -> float:
    entropies = [-sum(PROB[i][k] * LOGP[i][k] for k in range(K)) for i in range(N)]
    return ref_cel() - beta * sum(entropies) / N


def ref_lc(eps: float) -> float:
    return ref_soft_ce([[(1 - eps) * one_hot(i, k) + eps * PROB[i][k] for k in range(K)] for i in range(N)])


def ref_h_marg() -> float:
    p_hat = [sum(one_hot(i, k) for i in range(N)) / N for k in range(K)]
    p_theta = [sum(PROB[i][k] for i in range(N)) / N for k in range(K)]
    return -sum(p_hat[k] * math.log(p_theta[k]) for k in range(K) if p_hat[k] > 0)


def batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, dtype=dtype), torch.tensor(TARGETS)


def random_batch(
    n: int = 8, k: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64, scale: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=dtype) * scale
    targets = torch.randint(0, k - 1, (n,), generator=g)  # class k-1 never appears
    return logits, targets


ALL_LOSSES = [
    pytest.param(CelLoss, {}, id="cel"),
    pytest.param(CelLossLSR, {}, id="lsr"),
    pytest.param(CelLossCP, {}, id="cp"),
    pytest.param(CelLossLC, {}, id="lc"),
    pytest.param(CelLossLC, {"schedule": "progressive"}, id="lc-progressive"),
    pytest.param(MilLoss, {}, id="mil"),
]


# ---------- values against hand computation ----------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cel_hand(dtype: torch.dtype) -> None:
    assert CelLoss()(*batch(dtype)).item() == pytest.approx(ref_cel(), abs=TOL)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_lsr_hand(eps: float) -> None:
    assert CelLossLSR(eps)(*batch()).item() == pytest.approx(ref_lsr(eps), abs=TOL)


def test_lsr_default_is_manual_smoothed_ce() -> None:
    logits, targets = random_batch(seed=3)
    eps = 0.1
    t = (1 - eps) * torch.nn.functional.one_hot(targets, logits.shape[1]) + eps / logits.shape[1]
    manual = -(t * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(CelLossLSR()(logits, targets), manual)


@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_cp_hand(beta: float) -> None:
    assert CelLossCP(beta)(*batch()).item() == pytest.approx(ref_cp(beta), abs=TOL)


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_lc_hand(eps: float) -> None:
    assert CelLossLC(eps)(*batch()).item() == pytest.approx(ref_lc(eps), abs=TOL)


@pytest.mark.parametrize("lam", [50.0, 1.5])
def test_mil_hand(lam: float) -> None:
    loss = MilLoss(lam)
    logits, targets = batch()
    assert loss(logits, targets).item() == pytest.approx(ref_cel() + lam * ref_h_marg(), abs=TOL)
    terms = mi_terms(logits, targets)
    assert terms["h_cond"].item() == pytest.approx(ref_cel(), abs=TOL)
    assert terms["h_marg"].item() == pytest.approx(ref_h_marg(), abs=TOL)
    assert terms["mi"].item() == pytest.approx(ref_h_marg() - ref_cel(), abs=TOL)


# ---------- reductions to celLoss ----------


@pytest.mark.parametrize(
    "loss",
    [CelLossCP(beta=0.0), CelLossLSR(epsilon=0.0), CelLossLC(epsilon=0.0), MilLoss(lam=0.0)],
    ids=["cp-beta0", "lsr-eps0", "lc-eps0", "mil-lam0"],
)
def test_reduces_to_cel(loss: Loss) -> None:
    logits, targets = random_batch(seed=1)
    torch.testing.assert_close(loss(logits, targets), CelLoss()(logits, targets))


# ---------- gradients ----------


def test_lc_gradient_uses_fixed_target() -> None:
    eps = 0.3
    logits, targets = random_batch(seed=2)
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(CelLossLC(eps)(logits, targets), logits)

    onehot = torch.nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)
    x = logits.detach().clone().requires_grad_(True)
    fixed_t = (1 - eps) * onehot + eps * torch.softmax(x, dim=1).detach()
    manual = -(fixed_t * torch.log_softmax(x, dim=1)).sum(dim=1).mean()
    (grad_fixed,) = torch.autograd.grad(manual, x)
    torch.testing.assert_close(grad, grad_fixed)
    # closed form: (p - t) / n
    torch.testing.assert_close(grad, (torch.softmax(x, 1).detach() - fixed_t) / x.shape[0])

    y = logits.detach().clone().requires_grad_(True)
    live_t = (1 - eps) * onehot + eps * torch.softmax(y, dim=1)
    live = -(live_t * torch.log_softmax(y, dim=1)).sum(dim=1).mean()
    (grad_live,) = torch.autograd.grad(live, y)
    torch.testing.assert_close(live.detach(), manual.detach())  # same value...
    assert (grad - grad_live).abs().max().item() > 1e-3  # ...different gradient


@pytest.mark.parametrize(
    "loss",
    [CelLoss(), CelLossLSR(0.2), CelLossCP(0.3), MilLoss(50.0), MilLoss(0.5)],
    ids=["cel", "lsr", "cp", "mil", "mil-small-lam"],
)
def test_gradcheck(loss: Loss) -> None:
    logits, targets = random_batch(n=6, k=4, seed=4)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, targets), (logits,))


def test_mil_terms_gradcheck() -> None:
    logits, targets = random_batch(n=5, k=4, seed=5)
    logits.requires_grad_(True)
    for key in ("h_cond", "h_marg", "mi"):
        assert torch.autograd.gradcheck(lambda x, key=key: mi_terms(x, targets)[key], (logits,))


# ---------- numerical stability ----------


@pytest.mark.parametrize(("cls", "kwargs"), ALL_LOSSES)
def test_finite_at_large_logits(cls: type[Loss], kwargs: dict) -> None:
    g = torch.Generator().manual_seed(6)
    signs = torch.randint(0, 2, (16, 10), generator=g).float() * 2 - 1
    logits = (signs * 1e4).requires_grad_(True)
    targets = torch.randint(0, 4, (16,), generator=g)  # classes 4..9 missing
    value = cls(**kwargs)(logits, targets)
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(("cls", "kwargs"), ALL_LOSSES)
def test_finite_with_missing_classes(cls: type[Loss], kwargs: dict) -> None:
    logits = torch.randn(4, 6, requires_grad=True)
    targets = torch.zeros(4, dtype=torch.long)  # only class 0
    value = cls(**kwargs)(logits, targets)
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_mil_absent_class_with_minus_inf_marginal() -> None:
    logits = torch.tensor([[1.0, -math.inf, 0.0], [0.5, -math.inf, 2.0]])
    targets = torch.tensor([0, 2])
    terms = mi_terms(logits, targets)
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(MilLoss()(logits, targets))


def test_mil_single_class_batch() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    targets = torch.tensor([1, 1])
    p1 = torch.softmax(logits, 1)[:, 1].mean()
    torch.testing.assert_close(mi_terms(logits, targets)["h_marg"], -torch.log(p1))


# ---------- mi_terms ----------


def test_terms_consistent() -> None:
    logits, targets = random_batch(seed=7)
    loss = MilLoss(lam=3.0)
    t = mi_terms(logits, targets)
    assert set(t) == {"h_cond", "h_marg", "mi"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in t.values())
    torch.testing.assert_close(t["mi"], t["h_marg"] - t["h_cond"])
    torch.testing.assert_close(t["h_cond"], CelLoss()(logits, targets))
    torch.testing.assert_close(loss(logits, targets), t["h_cond"] + 3.0 * t["h_marg"])


def test_h_marg_matches_bincount_and_mean_softmax() -> None:
    logits, targets = random_batch(n=20, k=6, seed=8)
    p_hat = torch.bincount(targets, minlength=6) / 20
    torch.testing.assert_close(label_counts(targets, 6), torch.bincount(targets, minlength=6))
    log_p_theta = torch.log(torch.softmax(logits, 1).mean(0))
    expected = -(p_hat * log_p_theta).sum()
    torch.testing.assert_close(mi_terms(logits, targets)["h_marg"], expected)


def test_low_precision_logits_upcast() -> None:
    logits, targets = random_batch(seed=9, dtype=torch.float32)
    value = MilLoss()(logits.bfloat16(), targets)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, MilLoss()(logits.bfloat16().float(), targets))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="targets"):
        CelLoss()(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        MilLoss()(torch.zeros(3), torch.zeros(3, dtype=torch.long))


# ---------- hyperparameter validation ----------


@pytest.mark.parametrize(
    "make",
    [
        lambda: CelLossLSR(epsilon=-0.1),
        lambda: CelLossLSR(epsilon=1.0),
        lambda: CelLossLSR(epsilon=float("nan")),
        lambda: CelLossLC(epsilon=1.5),
        lambda: CelLossLC(epsilon=True),
        lambda: CelLossLC(epsilon="0.1"),
        lambda: CelLossLC(schedule="linear"),
        lambda: CelLossLC(sharpness=0.0),
        lambda: CelLossCP(beta=-0.1),
        lambda: CelLossCP(beta=float("inf")),
        lambda: MilLoss(lam=-1.0),
    ],
)
def test_bad_hyperparameters(make) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(("epoch", "total"), [(-1, 10), (11, 10), (0, 0), (1.5, 10)])
def test_bad_progress(epoch, total) -> None:
    with pytest.raises(ValueError):
        CelLossLC(schedule="progressive").set_progress(epoch, total)


# ---------- set_progress hook ----------


def test_progressive_schedule_changes_epsilon() -> None:
    loss = CelLossLC(epsilon=0.2, schedule="progressive")
    assert loss.effective_epsilon == pytest.approx(0.2 * proselflc_global_trust(0.0))
    assert loss.effective_epsilon < 1e-3
    seen = []
    for epoch in range(0, 11):
        loss.set_progress(epoch, 10)
        seen.append(loss.effective_epsilon)
    assert seen == sorted(seen) and seen[0] < 1e-3 and seen[-1] > 0.199
    loss.set_progress(5, 10)
    assert loss.effective_epsilon == pytest.approx(0.1)
    assert loss(*batch()).item() == pytest.approx(ref_lc(0.1), abs=TOL)
    loss.set_progress(0, 10)
    assert loss(*batch()).item() == pytest.approx(ref_lc(loss.effective_epsilon), abs=TOL)


def test_fixed_schedule_ignores_progress() -> None:
    loss = CelLossLC(epsilon=0.2)
    before = loss(*batch()).item()
    for epoch in (0, 3, 10):
        loss.set_progress(epoch, 10)
        assert loss.effective_epsilon == 0.2
    assert loss(*batch()).item() == before


@pytest.mark.parametrize(("cls", "kwargs"), ALL_LOSSES)
def test_every_loss_has_hook(cls: type[Loss], kwargs: dict) -> None:
    loss = cls(**kwargs)
    assert isinstance(loss, Loss)
    assert loss.set_progress(1, 4) is None


def test_lc_epsilon_not_in_state_dict() -> None:
    assert "_eps" not in CelLossLC(schedule="progressive").state_dict()


# ---------- SplitMI ----------


def test_split_mi_matches_concatenated_batch() -> None:
    logits, targets = random_batch(n=30, k=5, seed=10, scale=3.0)
    acc = SplitMI()
    for chunk_l, chunk_t in zip(logits.split([7, 13, 10]), targets.split([7, 13, 10]), strict=True):
        acc.update(chunk_l.float(), chunk_t)
    got = acc.compute()
    want = mi_terms(logits.float().double(), targets)
    assert set(got) == {"h_cond", "h_marg", "mi"}
    assert all(isinstance(v, float) for v in got.values())
    for key in got:
        assert got[key] == pytest.approx(want[key].item(), abs=1e-9)


def test_split_mi_reset_and_errors() -> None:
    acc = SplitMI()
    with pytest.raises(ValueError):
        acc.compute()
    logits, targets = random_batch(n=6, k=4, seed=11)
    acc.update(logits, targets)
    with pytest.raises(ValueError):
        acc.update(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    acc.reset()
    acc.update(logits, targets)
    assert acc.compute()["h_cond"] == pytest.approx(CelLoss()(logits, targets).item(), abs=1e-12)


def test_split_mi_does_not_track_grad() -> None:
    logits, targets = random_batch(n=6, k=4, seed=12)
    acc = SplitMI()
    acc.update(logits.requires_grad_(True), targets)
    assert acc.compute()["mi"] == pytest.approx(mi_terms(logits, targets)["mi"].item(), abs=1e-12)


# ---------- every loss against its term-by-term (n, K) formula ----------


def _reference_value(loss: Loss, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each loss written out in the (n, K) layout, term by term."""
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    nll = -logp.gather(1, targets.unsqueeze(1)).mean()
    if isinstance(loss, MilLoss):
        t = mi_terms(logits, targets)
        return t["h_cond"] + loss.lam * t["h_marg"]
    if isinstance(loss, CelLossLSR):
        k = logits.shape[1]
        onehot = torch.nn.functional.one_hot(targets, k).to(logp.dtype)
        smoothed = (1 - loss.epsilon) * onehot + loss.epsilon / k
        return -(smoothed * logp).sum(dim=1).mean()
    if isinstance(loss, CelLossCP):
        return nll + loss.beta * (p * logp).sum(dim=1).mean()
    if isinstance(loss, CelLossLC):
        eps = loss._eps.item()  # the float32 buffer the loss reads
        return (1 - eps) * nll - eps * (p.detach() * logp).sum(dim=1).mean()
    return nll


@pytest.mark.parametrize(
    ("n", "k"),
    [(8, 10), (300, 10), (1100, 2), (600, 3), (300, 16)],
    ids=["n8-k10", "n300-k10", "n1100-k2", "n600-k3", "n300-k16"],
)
@pytest.mark.parametrize(
    "loss",
    [CelLoss(), CelLossLSR(0.2), CelLossCP(0.3), CelLossLC(0.4), MilLoss(50.0), MilLoss(0.0)],
    ids=["cel", "lsr", "cp", "lc", "mil", "mil-lam0"],
)
def test_value_and_gradient_match_formula(loss: Loss, n: int, k: int) -> None:
    logits, targets = random_batch(n=n, k=k, seed=21, scale=3.0)
    x = logits.clone().requires_grad_(True)
    y = logits.clone().requires_grad_(True)
    value = loss(x, targets)
    want = _reference_value(loss, y, targets)
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    (gx,) = torch.autograd.grad(value, x)
    (gy,) = torch.autograd.grad(want, y)
    torch.testing.assert_close(gx, gy, rtol=1e-10, atol=1e-14)


def test_mil_gradcheck_larger_batch() -> None:
    logits, targets = random_batch(n=120, k=10, seed=22)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: MilLoss(7.0)(x, targets), (logits,), fast_mode=True)


def test_mil_float32_matches_float64() -> None:
    logits, targets = random_batch(n=512, k=10, seed=23, scale=5.0)
    got = MilLoss(50.0)(logits.float(), targets)
    t = mi_terms(logits, targets)
    assert got.item() == pytest.approx((t["h_cond"] + 50.0 * t["h_marg"]).item(), rel=1e-5)


def test_split_mi_uneven_batches_match_mi_terms() -> None:
    logits, targets = random_batch(n=700, k=10, seed=24, scale=4.0)
    acc = SplitMI()
    for chunk_l, chunk_t in zip(logits.split(300), targets.split(300), strict=True):
        acc.update(chunk_l, chunk_t)  # batches of 300, 300 and 100 rows
    want = mi_terms(logits, targets)
    for key, value in acc.compute().items():
        assert value == pytest.approx(want[key].item(), abs=1e-10)
