"""Loss functions compared by lossbench (the paper's Table 1), standard baselines, the MI metric.

The paper's losses: :class:`CelLoss`, :class:`CelLossLSR`, :class:`CelLossCP`,
:class:`CelLossLC`, :class:`MilLoss`. Standard baselines: :class:`FocalLoss`,
:class:`Poly1Loss` (``losses.focal``); :class:`GCELoss`, :class:`SCELoss`, :class:`NCERCELoss`,
:class:`MAELoss`, :class:`TaylorCELoss` (``losses.robust``, noisy labels);
:class:`LogitAdjustedLoss` (``losses.imbalance``, long tail). All subclass :class:`Loss` and map ``(logits (n, K), targets (n,))``
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
   If the loss needs facts of the training data, define
   ``set_class_priors(self, priors: Tensor) -> None``: the trainer calls it once, before the
   first training step, with the K class frequencies π_k = n_k / n of the training labels
   (:func:`losses.hooks.class_priors`). A loss that needs the priors raises ``ValueError`` if
   used before they are set. The hook names live in :mod:`losses.hooks` (``PROGRESS_HOOK``,
   ``PRIORS_HOOK``, ``HOOKS``); nothing reaches a loss through globals.
2. Add one registry entry naming it, with its constructor keyword arguments::

       my_loss:
         target: package.module:ClassName
         params: {alpha: 0.5}
"""

from losses.base import Loss
from losses.cross_entropy import CelLoss, CelLossCP, CelLossLC, CelLossLSR
from losses.focal import FocalLoss, Poly1Loss
from losses.hooks import HOOKS, PRIORS_HOOK, PROGRESS_HOOK, class_priors
from losses.imbalance import LogitAdjustedLoss
from losses.mutual_information import MilLoss, SplitMI, mi_terms
from losses.robust import GCELoss, MAELoss, NCERCELoss, SCELoss, TaylorCELoss

__all__ = [
    "Loss",
    "CelLoss",
    "CelLossLSR",
    "CelLossCP",
    "CelLossLC",
    "MilLoss",
    "FocalLoss",
    "Poly1Loss",
    "GCELoss",
    "SCELoss",
    "NCERCELoss",
    "MAELoss",
    "TaylorCELoss",
    "LogitAdjustedLoss",
    "HOOKS",
    "PROGRESS_HOOK",
    "PRIORS_HOOK",
    "class_priors",
    "mi_terms",
    "SplitMI",
]
