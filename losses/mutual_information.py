"""Mutual information learning loss (milLoss, the paper's eq. 7) and the MI metric.

Yi et al. 2022, "Mutual Information Learned Classifiers", Appendix B. For n pairs (x_i, y_i)
and K classes, with p_θ(k|x) = softmax(logits)_k:

- p̂(k)       = (1/n) Σ_i 1[y_i = k]                       (empirical label marginal)
- log p_θ(k) = logsumexp_i log p_θ(k|x_i) - log n          (learned label marginal, the batch
                                                            mean of the softmax, in log space)
- H_θ(Y|X)   = -(1/n) Σ_i log p_θ(y_i|x_i)                 (= celLoss)
- H_θ(Y)     = -Σ_k p̂(k) log p_θ(k)                        (classes with p̂(k) = 0 add exactly 0)
- Î          = H_θ(Y) - H_θ(Y|X)
- milLoss    = H_θ(Y|X) + λ H_θ(Y)

:func:`mi_terms` computes the three terms one by one; :class:`SplitMI` accumulates them over
a whole split. Neither reads the device back: label counts come from ``index_add_``, equal to
``torch.bincount(targets, minlength=K)``, which on CUDA would read the largest label to the host.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Loss, check_real, prepare


def label_counts(targets: Tensor, num_classes: int) -> Tensor:
    """Per-class counts, int64 of shape (K,): ``bincount(targets, minlength=K)`` without a host sync."""
    counts = torch.zeros(num_classes, dtype=torch.int64, device=targets.device)
    return counts.index_add_(0, targets, torch.ones_like(targets))


def _h_marg(counts: Tensor, log_marg: Tensor, n: Tensor | float) -> Tensor:
    """H_θ(Y) = -Σ_k (counts_k / n) log p_θ(k), absent classes contributing exactly 0."""
    # log p_θ(k) may be -inf for a class no sample can reach; 0 · -inf would be NaN.
    present = counts > 0
    safe_log = torch.where(present, log_marg, torch.zeros_like(log_marg))
    return -(counts.to(log_marg.dtype) * safe_log).sum() / n


def mi_terms(logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Return 0-dim tensors ``h_cond`` = H_θ(Y|X), ``h_marg`` = H_θ(Y), ``mi`` = h_marg - h_cond.

    The module docstring's formulas, term by term; differentiable in ``logits``.
    """
    logits = prepare(logits, targets)
    n, num_classes = logits.shape
    logprobs = F.log_softmax(logits, dim=-1)
    h_cond = F.nll_loss(logprobs, targets)
    log_marg = torch.logsumexp(logprobs, dim=0) - math.log(n)
    h_marg = _h_marg(label_counts(targets, num_classes), log_marg, float(n))
    return {"h_cond": h_cond, "h_marg": h_marg, "mi": h_marg - h_cond}


class MilLoss(Loss):
    """milLoss (Yi et al. 2022, eq. 7): L = H_θ(Y|X) + λ H_θ(Y), λ = ``lam`` (paper: 5e1 = 50).

    H_θ(Y) = -Σ_k p̂(k) log p_θ(k) is the mean over the samples of -log p_θ(y_i), so it is
    read off at the targets like cross entropy. The per-class log-sum-exp comes from a second
    ``log_softmax``, over the batch: q_ik = log p_θ(k|x_i) - log Σ_j p_θ(k|x_j)
    = log p_θ(k|x_i) - log p_θ(k) - log n, hence

        log p_θ(k) = log p_θ(k|x_i) - q_ik - log n    (the same for every row i).

    This is exact (the tests check value and gradient against :func:`mi_terms` to 1e-12 in
    float64) and as stable as ``log_softmax``, in a handful of tensor ops; the term-by-term
    form needs about twice as many.
    """

    def __init__(self, lam: float = 50.0) -> None:
        super().__init__()
        self.lam = check_real("lam", lam, low=0.0)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = prepare(logits, targets)
        logprobs = F.log_softmax(logits, dim=-1)                     # log p_θ(k|x_i)
        h_cond = F.nll_loss(logprobs, targets)
        log_class_sum = logprobs - F.log_softmax(logprobs, dim=0)    # log Σ_j p_θ(k|x_j) = log p_θ(k) + log n
        h_marg = F.nll_loss(log_class_sum, targets) + math.log(targets.shape[0])
        return h_cond + self.lam * h_marg

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


class SplitMI:
    """Accumulate H_θ(Y|X), H_θ(Y) and Î over a whole split, batch by batch, on the device.

    ``update`` adds a batch's NLL sum, sample count and per-class label counts, and folds
    logsumexp_i log p_θ(k|x_i) into a running per-class value (``torch.logaddexp``, starting
    at -inf), so the split's p_θ(k) is exact whatever the batching. It never syncs with the
    host; :meth:`compute` reads the three results back once. Accumulation is in ``dtype``
    (default float64: a split's NLL sum over 10^4-10^5 samples would lose digits in float32).
    """

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._nll_sum: Tensor | None = None
        self._count: Tensor | None = None
        self._class_counts: Tensor | None = None
        self._log_sum: Tensor | None = None

    @torch.no_grad()
    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add one batch: ``logits`` (n, K), integer ``targets`` (n,)."""
        logits = prepare(logits.detach(), targets)
        num_classes = logits.shape[1]
        if self._log_sum is None:
            device = logits.device
            self._nll_sum = torch.zeros((), dtype=self.dtype, device=device)
            self._count = torch.zeros((), dtype=torch.int64, device=device)
            self._class_counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
            self._log_sum = torch.full((num_classes,), -math.inf, dtype=self.dtype, device=device)
        elif self._log_sum.shape[0] != num_classes:
            raise ValueError(
                f"logits have {num_classes} classes but earlier batches had {self._log_sum.shape[0]}"
            )
        assert self._nll_sum is not None and self._count is not None
        assert self._class_counts is not None
        logprobs = F.log_softmax(logits.to(self.dtype), dim=-1)
        self._nll_sum += F.nll_loss(logprobs, targets, reduction="sum")
        self._count += targets.shape[0]
        self._class_counts += label_counts(targets, num_classes)
        self._log_sum = torch.logaddexp(self._log_sum, torch.logsumexp(logprobs, dim=0))

    def compute(self) -> dict[str, float]:
        """Return ``h_cond``, ``h_marg``, ``mi`` (nats) over everything seen since the last reset."""
        if self._log_sum is None:
            raise ValueError("SplitMI.compute() called before any update()")
        assert self._nll_sum is not None and self._count is not None
        assert self._class_counts is not None
        n = self._count.to(torch.float64)
        h_cond = self._nll_sum.to(torch.float64) / n
        log_marg = self._log_sum.to(torch.float64) - torch.log(n)
        h_marg = _h_marg(self._class_counts, log_marg, n)
        values = torch.stack([h_cond, h_marg, h_marg - h_cond]).tolist()
        return dict(zip(("h_cond", "h_marg", "mi"), values, strict=True))
