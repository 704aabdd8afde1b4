"""Losses robust to label noise: GCE, MAE, SCE, NCE+RCE, Taylor cross entropy.

Notation: logits z ∈ R^K, p = softmax(z), y the (possibly noisy) label, p_y its probability,
e_y the one-hot vector, natural logarithms; each loss is the batch mean of its per-example
formula. p_y comes from ``log_softmax``; 1 - p_y = -expm1(log p_y) stays accurate as p_y → 1.

Reverse cross entropy (Wang et al. 2019) swaps the roles of p and e_y: RCE = -Σ_k p_k log e_yk,
which needs a value A for log 0. The paper uses A = -4; its reference code clamps the one-hot at
1e-4, i.e. A = ln 1e-4 ≈ -9.21, and this module follows the code (``clamp=1e-4``). Then
RCE = -A (1 - p_y). The reference code also clamps p to [1e-7, 1]; here p is not clamped (the
closed form needs no log of p).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Loss, check_real, prepare
from losses.focal import target_logprob

RCE_CLAMP = 1e-4  # the reference code's floor on the one-hot, A = ln 1e-4


def reverse_ce(logp_y: Tensor, clamp: float) -> Tensor:
    """Per-example RCE = -ln(clamp) · (1 - p_y) from log p_y (shape (n,))."""
    return -math.log(clamp) * -torch.expm1(logp_y)


def _check_clamp(clamp: float) -> float:
    value = check_real("clamp", clamp, low=0.0, high=1.0)
    if value == 0.0:
        raise ValueError("clamp must be in (0, 1) (log 0 is undefined), got 0.0")
    return value


class GCELoss(Loss):
    """Generalized cross entropy L_q (Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for
    Training Deep Neural Networks with Noisy Labels"), default q = 0.7.

    ℓ = (1 - p_y^q) / q, q ∈ (0, 1]: q → 0 is cross entropy, q = 1 is 1 - p_y (half of MAE).
    The truncated variant of the paper (a threshold k with sample pruning) is not included.
    """

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        self.q = check_real("q", q, low=0.0, high=1.0, high_inclusive=True)
        if self.q == 0.0:
            raise ValueError("q must be in (0, 1] (q -> 0 is cross entropy: use celLoss), got 0.0")

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logp_y = target_logprob(logits, targets)
        return (-torch.expm1(self.q * logp_y) / self.q).mean()  # (1 - p_y^q) / q

    def extra_repr(self) -> str:
        return f"q={self.q}"


class MAELoss(Loss):
    """Mean absolute error on the softmax (Ghosh et al. 2017, "Robust Loss Functions under Label
    Noise for Deep Neural Networks"), no hyperparameter.

    ℓ = Σ_k |e_yk - p_k| = 2 (1 - p_y), the L1 distance itself. The APL reference code of Ma et
    al. 2020 uses 1 - p_y (half of this), which halves the effective learning rate.
    """

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logp_y = target_logprob(logits, targets)
        return (-2.0 * torch.expm1(logp_y)).mean()


class _WeightedRCE(Loss):
    """α · (an active term) + β · RCE, RCE with the one-hot clamped at ``clamp``: the weights and
    the clamp that SCE and NCE+RCE share (each gives its own defaults and active term)."""

    def __init__(self, alpha: float, beta: float, clamp: float = RCE_CLAMP) -> None:
        super().__init__()
        self.alpha = check_real("alpha", alpha, low=0.0)
        self.beta = check_real("beta", beta, low=0.0)
        self.clamp = _check_clamp(clamp)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, clamp={self.clamp}"


class SCELoss(_WeightedRCE):
    """Symmetric cross entropy (Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning
    with Noisy Labels"), defaults α = 0.1, β = 1.0 (the paper's CIFAR-10 setting; CIFAR-100:
    α = 6.0, β = 0.1).

    ℓ = α CE + β RCE = -α log p_y - β ln(clamp) (1 - p_y), one-hot clamped at ``clamp`` = 1e-4
    as in the reference code (the module docstring explains the choice).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, clamp: float = RCE_CLAMP) -> None:
        super().__init__(alpha, beta, clamp)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logp_y = target_logprob(logits, targets)
        return (-self.alpha * logp_y + self.beta * reverse_ce(logp_y, self.clamp)).mean()


class NCERCELoss(_WeightedRCE):
    """NCE+RCE, the "active-passive" loss of Ma et al. 2020 ("Normalized Loss Functions for Deep
    Learning with Noisy Labels"), defaults α = 1, β = 1 (CIFAR-10; CIFAR-100: α = 10, β = 0.1).

    NCE = log p_y / Σ_j log p_j (cross entropy normalised by its sum over all labels, in [0, 1]);
    ℓ = α NCE + β RCE, RCE with the one-hot clamped at ``clamp`` = 1e-4 as in the reference code.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, clamp: float = RCE_CLAMP) -> None:
        super().__init__(alpha, beta, clamp)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logprobs = F.log_softmax(logits, dim=-1)
        logp_y = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
        nce = logp_y / logprobs.sum(dim=-1)
        return (self.alpha * nce + self.beta * reverse_ce(logp_y, self.clamp)).mean()


class TaylorCELoss(Loss):
    """Taylor cross entropy (Feng et al. 2020, "Can Cross Entropy Loss Be Robust to Label
    Noise?"), default order t = 2.

    ℓ = Σ_{k=1..t} (1 - p_y)^k / k, the order-t Taylor series of -log p_y around p_y = 1:
    t = 1 is 1 - p_y (half of MAE), t → ∞ is cross entropy. Not the "Taylor softmax".
    """

    def __init__(self, order: int = 2) -> None:
        super().__init__()
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        self.order = order

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        one_minus_p = -torch.expm1(target_logprob(logits, targets))
        terms = [one_minus_p ** k / k for k in range(1, self.order + 1)]
        return torch.stack(terms).sum(dim=0).mean()

    def extra_repr(self) -> str:
        return f"order={self.order}"
