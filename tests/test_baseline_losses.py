"""Tests of the baseline losses (losses/focal.py, robust.py, imbalance.py, hooks.py).

Hand values: a fixed 3-sample, 3-class batch. Its softmax, computed in numpy float64 (and
checked below against a plain-Python recomputation), is

    p = [[0.6652409557748219, 0.24472847105479764, 0.09003057317038046],
         [0.21194155761708547, 0.5761168847658291, 0.21194155761708547],
         [0.11419519938459448, 0.04201006613406605, 0.8437947344813395]]

so with targets [0, 2, 2], p_y = [0.6652409557748219, 0.21194155761708547, 0.8437947344813395]
and Σ_j log p_j = [-4.222817893333141, -3.654334141796153, -5.509538058668857]. Each expected
loss below is the batch mean of the paper's per-example formula on these numbers, written out.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch

from losses import (
    HOOKS,
    PRIORS_HOOK,
    PROGRESS_HOOK,
    CelLoss,
    FocalLoss,
    GCELoss,
    LogitAdjustedLoss,
    MAELoss,
    NCERCELoss,
    Poly1Loss,
    SCELoss,
    TaylorCELoss,
    class_priors,
)
from losses.hooks import give_class_priors

LOGITS = [[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]]
TARGETS = [0, 2, 2]
P = [[0.6652409557748219, 0.24472847105479764, 0.09003057317038046],
     [0.21194155761708547, 0.5761168847658291, 0.21194155761708547],
     [0.11419519938459448, 0.04201006613406605, 0.8437947344813395]]
P_Y = [0.6652409557748219, 0.21194155761708547, 0.8437947344813395]
SUM_LOG_P = [-4.222817893333141, -3.654334141796153, -5.509538058668857]
A = math.log(1e-4)  # RCE's log 0, the reference code's one-hot clamp
TOL = 1e-9
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, dtype=dtype), torch.tensor(TARGETS)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_hand_softmax_is_right() -> None:
    for row, probs in zip(LOGITS, P, strict=True):
        s = sum(math.exp(v) for v in row)
        assert [math.exp(v) / s for v in row] == pytest.approx(probs, abs=1e-15)
        assert sum(math.log(math.exp(v) / s) for v in row) == pytest.approx(
            SUM_LOG_P[LOGITS.index(row)], abs=1e-12)


# (loss, expected value on the hand batch: the formula on P_Y, and the same number written out)
HAND = [
    pytest.param(FocalLoss(), mean([-(1 - p) ** 2 * math.log(p) for p in P_Y]), 0.3377750813810989,
                 id="focal"),
    pytest.param(Poly1Loss(), mean([-math.log(p) + (1 - p) for p in P_Y]), 1.1359731500198234, id="poly1"),
    pytest.param(GCELoss(), mean([(1 - p ** 0.7) / 0.7 for p in P_Y]), 0.4870313106635457, id="gce"),
    pytest.param(MAELoss(), mean([2 * (1 - p) for p in P_Y]), 0.8526818347511688, id="mae"),
    pytest.param(SCELoss(), mean([-0.1 * math.log(p) - A * (1 - p) for p in P_Y]), 3.997708186794131,
                 id="sce"),
    pytest.param(NCERCELoss(), mean([math.log(p) / s - A * (1 - p) for p, s in zip(P_Y, SUM_LOG_P)]),
                 4.110712127417457, id="nce_rce"),
    pytest.param(TaylorCELoss(), mean([(1 - p) + (1 - p) ** 2 / 2 for p in P_Y]), 0.5525908859218004,
                 id="taylor_ce"),
]


@pytest.mark.parametrize(("loss", "formula", "written"), HAND)
def test_hand_values(loss: torch.nn.Module, formula: float, written: float) -> None:
    assert formula == pytest.approx(written, abs=1e-12)
    assert loss(*batch()).item() == pytest.approx(written, abs=TOL)
    assert loss(*batch(torch.float32)).item() == pytest.approx(written, abs=1e-5)


def test_logit_adjusted_hand() -> None:
    # priors π = [0.5, 0.3, 0.2]: CE on z + log π, softmax recomputed by hand
    priors = [0.5, 0.3, 0.2]
    expected = 0.0
    for row, y in zip(LOGITS, TARGETS, strict=True):
        adj = [z + math.log(pi) for z, pi in zip(row, priors, strict=True)]
        expected -= (adj[y] - math.log(sum(math.exp(a) for a in adj))) / 3
    assert expected == pytest.approx(0.871246437922886, abs=1e-12)
    loss = LogitAdjustedLoss()
    loss.set_class_priors(torch.tensor(priors, dtype=torch.float64))
    assert loss(*batch()).item() == pytest.approx(0.871246437922886, abs=TOL)
    half = LogitAdjustedLoss(tau=0.5)
    half.set_class_priors(torch.tensor(priors, dtype=torch.float64))
    expected_half = 0.0
    for row, y in zip(LOGITS, TARGETS, strict=True):
        adj = [z + 0.5 * math.log(pi) for z, pi in zip(row, priors, strict=True)]
        expected_half -= (adj[y] - math.log(sum(math.exp(a) for a in adj))) / 3
    assert half(*batch()).item() == pytest.approx(expected_half, abs=TOL)


def _priored(loss: LogitAdjustedLoss, k: int) -> LogitAdjustedLoss:
    loss.set_class_priors(torch.linspace(1.0, 2.0, k, dtype=torch.float64) / torch.linspace(1.0, 2.0, k).sum())
    return loss


GRAD = [
    pytest.param(lambda k: FocalLoss(), id="focal"),
    pytest.param(lambda k: FocalLoss(gamma=0.5), id="focal-0.5"),
    pytest.param(lambda k: Poly1Loss(), id="poly1"),
    pytest.param(lambda k: GCELoss(), id="gce"),
    pytest.param(lambda k: MAELoss(), id="mae"),
    pytest.param(lambda k: SCELoss(), id="sce"),
    pytest.param(lambda k: NCERCELoss(), id="nce_rce"),
    pytest.param(lambda k: TaylorCELoss(), id="taylor_ce"),
    pytest.param(lambda k: TaylorCELoss(order=5), id="taylor_ce-5"),
    pytest.param(lambda k: _priored(LogitAdjustedLoss(), k), id="logit_adjusted"),
]


@pytest.mark.parametrize("make", GRAD)
def test_gradcheck(make) -> None:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    targets = torch.tensor([0, 1, 3, 3, 2])
    loss = make(4)
    assert torch.autograd.gradcheck(lambda z: loss(z, targets), (logits,))
    hand = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: make(3)(z, torch.tensor(TARGETS)), (hand,))


def test_mae_gradient_by_hand() -> None:
    # ∂[2(1 - p_y)]/∂z_k = -2 p_y (1[k=y] - p_k), divided by n = 3 for the batch mean
    logits, targets = batch()
    logits.requires_grad_(True)
    MAELoss()(logits, targets).backward()
    expected = [[-2 * P_Y[i] * ((1.0 if k == TARGETS[i] else 0.0) - P[i][k]) / 3 for k in range(3)]
                for i in range(3)]
    torch.testing.assert_close(logits.grad, torch.tensor(expected, dtype=torch.float64))


def test_limits() -> None:
    logits, targets = batch()
    ce = CelLoss()(logits, targets)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, targets), ce)
    torch.testing.assert_close(Poly1Loss(epsilon=0.0)(logits, targets), ce)
    torch.testing.assert_close(SCELoss(alpha=1.0, beta=0.0)(logits, targets), ce)
    torch.testing.assert_close(TaylorCELoss(order=1)(logits, targets), MAELoss()(logits, targets) / 2)
    torch.testing.assert_close(GCELoss(q=1.0)(logits, targets), MAELoss()(logits, targets) / 2)
    assert GCELoss(q=1e-6)(logits, targets).item() == pytest.approx(ce.item(), abs=1e-5)
    assert TaylorCELoss(order=200)(logits, targets).item() == pytest.approx(ce.item(), abs=1e-6)
    uniform = LogitAdjustedLoss()
    uniform.set_class_priors(torch.full((3,), 1 / 3))
    torch.testing.assert_close(uniform(logits, targets), ce)
    no_shift = LogitAdjustedLoss(tau=0.0)
    no_shift.set_class_priors(torch.tensor([0.7, 0.2, 0.1]))
    torch.testing.assert_close(no_shift(logits, targets), ce)


def test_defaults_match_the_papers() -> None:
    def defaults(cls: type) -> dict[str, object]:
        return {n: p.default for n, p in inspect.signature(cls).parameters.items()}
    assert defaults(FocalLoss) == {"gamma": 2.0}
    assert defaults(Poly1Loss) == {"epsilon": 1.0}
    assert defaults(GCELoss) == {"q": 0.7}
    assert defaults(SCELoss) == {"alpha": 0.1, "beta": 1.0, "clamp": 1e-4}
    assert defaults(NCERCELoss) == {"alpha": 1.0, "beta": 1.0, "clamp": 1e-4}
    assert "__init__" not in vars(MAELoss)  # no hyperparameter
    assert defaults(TaylorCELoss) == {"order": 2}
    assert defaults(LogitAdjustedLoss) == {"tau": 1.0}


def test_registry_entries() -> None:
    from bench.config.registry import import_target, load_registry

    reg = load_registry(REPO / "registry.yaml")
    expected = {"focal": {"gamma": 2.0}, "poly1": {"epsilon": 1.0}, "gce": {"q": 0.7},
                "sce": {"alpha": 0.1, "beta": 1.0}, "nce_rce": {"alpha": 1.0, "beta": 1.0}, "mae": {},
                "taylor_ce": {"order": 2}, "logit_adjusted": {"tau": 1.0}}
    for name, params in expected.items():
        spec = reg.losses[name]
        assert dict(spec.params) == params and spec.description
        assert isinstance(import_target(spec.target)(**params), torch.nn.Module)
    for gname in ("quick", "mnist", "fashion-mnist", "cifar10"):
        named = [gl.name for gl in reg.grids[gname].grid_losses(list(reg.losses))]
        assert named == ["celLoss", "celLossLSR", "celLossCP", "celLossLC", "milLoss"]


@pytest.mark.parametrize(("cls", "kwargs"), [
    (FocalLoss, {"gamma": -1.0}), (Poly1Loss, {"epsilon": -1.5}), (GCELoss, {"q": 0.0}),
    (GCELoss, {"q": 1.5}), (SCELoss, {"alpha": -0.1}), (SCELoss, {"clamp": 0.0}),
    (NCERCELoss, {"beta": float("nan")}), (NCERCELoss, {"clamp": 1.0}), (TaylorCELoss, {"order": 0}),
    (TaylorCELoss, {"order": 2.0}), (LogitAdjustedLoss, {"tau": -1.0}),
])
def test_bad_hyperparameters(cls: type, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


def test_logit_adjusted_needs_priors() -> None:
    loss = LogitAdjustedLoss()
    with pytest.raises(ValueError, match="trainer must call set_class_priors"):
        loss(*batch())
    for bad, match in [(torch.tensor([0.5, 0.5, 0.0]), "> 0"), (torch.tensor([0.5, 0.6, 0.1]), "sum to 1"),
                       (torch.tensor([[0.5, 0.5]]), "shape"), (torch.tensor([1.0]), "shape")]:
        with pytest.raises(ValueError, match=match):
            loss.set_class_priors(bad)
    loss.set_class_priors(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="2 classes but logits have 3"):
        loss(*batch())
    assert "priors" not in "".join(loss.state_dict())  # recomputed per run, not checkpointed


def test_hooks_in_one_place() -> None:
    assert (PROGRESS_HOOK, PRIORS_HOOK) == ("set_progress", "set_class_priors")
    assert HOOKS == (PROGRESS_HOOK, PRIORS_HOOK)
    assert hasattr(LogitAdjustedLoss(), PRIORS_HOOK) and not hasattr(FocalLoss(), PRIORS_HOOK)
    y = torch.tensor([0, 0, 1, 2, 2, 2, 2, 0, 0, 0])
    torch.testing.assert_close(class_priors(y, 4), torch.tensor([0.5, 0.1, 0.4, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="num_classes"):
        class_priors(y, 2)
    la = LogitAdjustedLoss()
    assert give_class_priors(la, y, 3) and la.priors_set
    assert not give_class_priors(FocalLoss(), y, 3)


@pytest.mark.parametrize("make", GRAD)
def test_low_precision_and_extreme_logits(make) -> None:
    loss = make(3)
    logits, targets = batch(torch.bfloat16)
    out = loss(logits, targets)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    big = torch.tensor([[80.0, -80.0, 0.0], [-80.0, 80.0, 0.0]], dtype=torch.float32, requires_grad=True)
    out = loss(big, torch.tensor([0, 0]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(big.grad).all()
