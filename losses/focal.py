"""Losses that reweight cross entropy by the target-class probability: focal and Poly-1.

Notation: logits z ∈ R^K, p = softmax(z), p_y the probability of the target class, natural
logarithms; each loss is the batch mean of its per-example formula. p_y and 1 - p_y come from
``log_softmax`` (1 - p_y = -expm1(log p_y)), which keeps 1 - p_y accurate as p_y → 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Loss, check_real, prepare


def target_logprob(logits: Tensor, targets: Tensor) -> Tensor:
    """log p_y for each row, shape (n,), from ``log_softmax``."""
    logprobs = F.log_softmax(logits, dim=-1)
    return logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)


class FocalLoss(Loss):
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"), default γ = 2.

    ℓ = -(1 - p_y)^γ log p_y. γ = 0 is cross entropy; the class weight α_y of the paper is not
    used (all classes weigh 1). Mukhoti et al. 2020 ("Calibrating Deep Neural Networks using
    Focal Loss") use γ = 3 for calibration.
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = check_real("gamma", gamma, low=0.0)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logp_y = target_logprob(logits, targets)
        # Floored at the smallest normal number: for γ < 1 the derivative of (1 - p_y)^γ is
        # infinite at p_y = 1 and autograd would turn inf · 0 into NaN.
        one_minus_p = (-torch.expm1(logp_y)).clamp_min(torch.finfo(logp_y.dtype).tiny)
        return (-(one_minus_p ** self.gamma) * logp_y).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class Poly1Loss(Loss):
    """Poly-1 loss (Leng et al. 2022, "PolyLoss: A Polynomial Expansion Perspective of
    Classification Loss Functions"), default ε = 1.

    ℓ = -log p_y + ε (1 - p_y): cross entropy with its first polynomial coefficient moved by ε.
    ε = 0 is cross entropy; ε ≥ -1 keeps the leading coefficient non-negative. The paper tunes ε
    per task; 1 is its common default.
    """

    def __init__(self, epsilon: float = 1.0) -> None:
        super().__init__()
        self.epsilon = check_real("epsilon", epsilon, low=-1.0)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logp_y = target_logprob(logits, targets)
        return (-logp_y - self.epsilon * torch.expm1(logp_y)).mean()

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
