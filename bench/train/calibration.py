"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", section 4.2).

One scalar T > 0 divides every logit: p = softmax(z / T). T is fitted on the validation split by
minimising its NLL, -(1/n) Σ_i log softmax(z_i / T)_{y_i}; the argmax, so the accuracy, does not
change. The fit optimises u = log T (T > 0 by construction) with ``torch.optim.LBFGS`` and a
strong-Wolfe line search, in float64, starting at T = 1 (u = 0): the model as trained. Guo et
al.'s reference code (github.com/gpleiss/temperature_scaling) starts at T = 1.5 instead and runs
LBFGS on T itself (lr 0.01, 50 iterations, no line search). The start does not choose the answer:
the NLL is convex in 1/T, so it has one minimum, and a fit started at T = 1.5 ends at the same T
to 1e-6 (``start``; tested), so T = 1 keeps the temperatures of stored cells. When the validation
predictions are all correct and confident the minimum lies at T → 0 (any sharpening lowers the
NLL) and with labels independent of the logits at T → ∞ (the uniform prediction): the fit
stops where the NLL is flat to the optimiser's tolerance; the result is clamped to the bounds below.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))  # T in [0.01, 100]: beyond it the fit is degenerate, not informative


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100, start: float = 1.0) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` against ``labels``, the
    search started at T = ``start``."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(f"expected logits (n, K) with n >= 1 and labels (n,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    z = logits.detach().to(torch.float64)
    y = labels.detach().to(z.device, torch.int64)
    if not start > 0:
        raise ValueError(f"start must be a temperature > 0, got {start!r}")
    log_t = torch.tensor(math.log(start), dtype=torch.float64, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z * torch.exp(-log_t), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    # clamped after the fit, not inside it: a clamp makes the loss flat beyond the bounds, and a line
    # search that overshoots into the flat part would stop there even with the optimum just inside
    return float(torch.exp(log_t.detach().clamp(*LOG_T_BOUNDS)))


__all__ = ["LOG_T_BOUNDS", "fit_temperature"]
