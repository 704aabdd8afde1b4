"""Cross-entropy (conditional entropy learning) losses of the paper's Table 1.

Notation: a batch of n pairs (x_i, y_i), K classes, p_θ(k|x) = softmax(logits)_k, one-hot
e_y, natural logarithms. Each loss maps ``logits`` (n, K) and integer ``targets`` (n,) to the
batch mean. ``F.nll_loss(logprobs, targets)`` is -(1/n) Σ_i logprobs[i, y_i].
"""

from __future__ import annotations

import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Loss, check_real, prepare, progress_fraction

SCHEDULES: Final[tuple[str, ...]] = ("fixed", "progressive")


class CelLoss(Loss):
    """celLoss, plain cross entropy: L = -(1/n) Σ_i log p_θ(y_i|x_i)."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logprobs = F.log_softmax(logits, dim=-1)
        return F.nll_loss(logprobs, targets)


class CelLossLSR(Loss):
    """celLossLSR, label smoothing (Szegedy et al. 2016), default ε = 0.1.

    t_i = (1-ε) e_{y_i} + ε/K;  L = -(1/n) Σ_i Σ_k t_ik log p_θ(k|x_i)
                                  = (1-ε) celLoss - ε (1/n) Σ_i (1/K) Σ_k log p_θ(k|x_i).
    ε is spread over all K classes, the true one included: PyTorch's
    ``F.cross_entropy(..., label_smoothing=ε)`` convention.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = check_real("epsilon", epsilon, low=0.0, high=1.0)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logprobs = F.log_softmax(logits, dim=-1)
        nll = F.nll_loss(logprobs, targets)
        smooth = -logprobs.mean(dim=-1).mean()
        return (1.0 - self.epsilon) * nll + self.epsilon * smooth

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


class CelLossCP(Loss):
    """celLossCP, confidence penalty (Pereyra et al. 2017), default β = 0.1.

    L = celLoss - β (1/n) Σ_i H(p_θ(·|x_i)),  H(p) = -Σ_k p_k log p_k.
    p_k log p_k is formed from ``log_softmax``, so it is 0, not NaN, where p_k underflows.
    """

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        self.beta = check_real("beta", beta, low=0.0)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logprobs = F.log_softmax(logits, dim=-1)
        nll = F.nll_loss(logprobs, targets)
        entropy = -(logprobs.exp() * logprobs).sum(dim=-1).mean()
        return nll - self.beta * entropy

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


def proselflc_global_trust(progress: float, sharpness: float = 16.0) -> float:
    """ProSelfLC's global trust g = 1 / (1 + exp(-B (t/Γ - 1/2))), with progress = t/Γ ∈ [0, 1].

    Wang et al. 2021 (ProSelfLC), B = ``sharpness`` (their default 16): g rises from
    ~0 at the start of training through 1/2 at mid-training to ~1 at the end.
    """
    return 1.0 / (1.0 + math.exp(-sharpness * (progress - 0.5)))


class CelLossLC(Loss):
    """celLossLC, label correction (ProSelfLC, Wang et al. 2021), default ε = 0.1, fixed.

    t_i = (1-ε) e_{y_i} + ε · stopgrad(p_θ(·|x_i));  L = -(1/n) Σ_i Σ_k t_ik log p_θ(k|x_i).
    No gradient flows through the target: ∂L/∂logits_i = (p_θ(·|x_i) - t_i) / n.

    ``schedule="fixed"`` (the paper's setting): ε = ``epsilon`` throughout.
    ``schedule="progressive"``: ε_t = ``epsilon`` · g(t/Γ), g = :func:`proselflc_global_trust`
    with B = ``sharpness``; progress t/Γ = epoch / total_epochs is set only through
    :meth:`set_progress` (before any call, progress is 0). This is ProSelfLC's global
    trust scaled by ``epsilon``; its per-sample local (entropy) trust is not used.
    """

    _eps: Tensor

    def __init__(
        self, epsilon: float = 0.1, schedule: str = "fixed", sharpness: float = 16.0
    ) -> None:
        super().__init__()
        self.epsilon = check_real("epsilon", epsilon, low=0.0, high=1.0)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.schedule = schedule
        self.sharpness = check_real("sharpness", sharpness, low=0.0)
        if self.sharpness == 0.0:
            raise ValueError("sharpness must be > 0, got 0.0")
        self._eps_value = 0.0
        # The effective ε lives in a buffer, updated in place, so a changing ε neither
        # syncs the host nor invalidates torch.compile guards; it is not saved in state_dict.
        self.register_buffer("_eps", torch.zeros(()), persistent=False)
        self._set_effective(self._epsilon_at(0.0))

    def _epsilon_at(self, progress: float) -> float:
        if self.schedule == "fixed":
            return self.epsilon
        return self.epsilon * proselflc_global_trust(progress, self.sharpness)

    def _set_effective(self, value: float) -> None:
        self._eps_value = value
        self._eps.fill_(value)

    @property
    def effective_epsilon(self) -> float:
        """The ε the next forward uses (a Python float; no device sync)."""
        return self._eps_value

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Set ε for the epoch about to run (only changes it under ``schedule="progressive"``)."""
        self._set_effective(self._epsilon_at(progress_fraction(epoch, total_epochs)))

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logprobs = F.log_softmax(logits, dim=-1)
        eps = self._eps.to(dtype=logprobs.dtype)
        nll = F.nll_loss(logprobs, targets)
        soft = -(logprobs.detach().exp() * logprobs).sum(dim=-1).mean()  # stopgrad(p) as the target
        return (1.0 - eps) * nll + eps * soft

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, schedule={self.schedule!r}, sharpness={self.sharpness}"
