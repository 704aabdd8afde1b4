"""Loss functions compared by lossbench (the paper's Table 1) and the MI metric.

Losses: :class:`CelLoss`, :class:`CelLossLSR`, :class:`CelLossCP`, :class:`CelLossLC`,
:class:`MilLoss`; all subclass :class:`Loss` and map ``(logits (n, K), targets (n,))``
to the 0-dim batch-mean loss. :func:`mi_terms` gives a batch's H_θ(Y|X), H_θ(Y) and
Î; :class:`SplitMI` accumulates them over a whole split.

How to add a loss
-----------------
1. Write one class, in any importable module, subclassing ``torch.nn.Module``
   (preferably :class:`losses.Loss`) with ``forward(logits, targets) -> Tensor``
   returning the scalar batch mean. Validate constructor arguments by raising
   ``ValueError``. If the loss depends on training time, define the hook
   ``set_progress(self, epoch: int, total_epochs: int) -> None``; the trainer calls
   it at the start of every epoch (0-based ``epoch``); :class:`Loss` provides a no-op.
2. Add one registry entry naming it, with its constructor keyword arguments::

       my_loss:
         target: package.module:ClassName
         params: {alpha: 0.5}
"""

from losses.base import Loss
from losses.cross_entropy import CelLoss, CelLossCP, CelLossLC, CelLossLSR
from losses.mutual_information import MilLoss, SplitMI, mi_terms

__all__ = [
    "Loss",
    "CelLoss",
    "CelLossLSR",
    "CelLossCP",
    "CelLossLC",
    "MilLoss",
    "mi_terms",
    "SplitMI",
]
