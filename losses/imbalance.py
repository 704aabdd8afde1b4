"""Losses for class-imbalanced training data: logit-adjusted cross entropy.

Class priors hook: a loss that needs the training labels' class frequencies defines
``set_class_priors(priors: Tensor) -> None`` (name in :data:`losses.hooks.PRIORS_HOOK`); the
trainer calls it once, before the first training step, with the K frequencies π_k = n_k / n of
the training labels as the loss will see them (after noise, imbalance and subsetting), e.g.
``losses.hooks.give_class_priors(criterion, train_y, K)``. Nothing reaches a loss through
globals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Loss, check_real, prepare


class LogitAdjustedLoss(Loss):
    """Logit-adjusted cross entropy (Menon et al. 2021, "Long-tail learning via logit
    adjustment"), default τ = 1, π = the training class priors.

    ℓ = -log softmax(z + τ log π)_y: cross entropy on logits shifted by τ log π_j, which
    demands a larger margin for rare classes. Predictions use the plain logits z (the
    adjustment is training-only), so nothing changes at evaluation time. τ = 0 is cross entropy.

    π must be given through :meth:`set_class_priors` before the first forward; a forward
    without it raises ``ValueError``.
    """

    _log_priors: Tensor | None

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = check_real("tau", tau, low=0.0)
        # A buffer, so .to(device) moves it with the loss; not in state_dict, since it is
        # recomputed from the training labels on every run.
        self.register_buffer("_log_priors", None, persistent=False)

    def set_class_priors(self, priors: Tensor) -> None:
        """Set π: K positive class frequencies of the training labels summing to 1 (within 1e-6).

        Called once by the trainer; reads ``priors`` on the host (validation) and keeps log π
        in float64 on the host; the first forward moves it to the logits' device once.
        """
        p = torch.as_tensor(priors).detach().to("cpu", torch.float64)
        if p.ndim != 1 or p.shape[0] < 2:
            raise ValueError(f"priors must have shape (K,) with K >= 2, got {tuple(p.shape)}")
        if not bool(torch.isfinite(p).all()) or bool((p <= 0).any()):
            raise ValueError("priors must be finite and > 0 for every class (a class with no "
                             f"training example has no log prior), got {p.tolist()}")
        total = float(p.sum())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"priors must sum to 1, got sum {total!r}")
        self._log_priors = torch.log(p / total)

    @property
    def priors_set(self) -> bool:
        return self._log_priors is not None

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        if self._log_priors is None:
            raise ValueError("logit_adjusted needs the training class priors: the trainer must "
                             "call set_class_priors(priors) (losses.hooks.PRIORS_HOOK) before "
                             "the first forward")
        if self._log_priors.shape[0] != logits.shape[1]:
            raise ValueError(f"class priors have {self._log_priors.shape[0]} classes but logits "
                             f"have {logits.shape[1]}")
        if self._log_priors.device != logits.device:
            # Moved once (re-assigning the buffer), not copied host-to-device every step.
            self._log_priors = self._log_priors.to(logits.device)
        shift = self.tau * self._log_priors.to(logits.dtype)
        logprobs = F.log_softmax(logits + shift, dim=-1)
        return F.nll_loss(logprobs, targets)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, priors_set={self.priors_set}"
