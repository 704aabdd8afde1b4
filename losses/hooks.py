"""The hooks through which the trainer hands a loss facts it cannot see in a batch.

A loss opts in to a hook by defining the method; the trainer calls each hook a loss has
(``hasattr``) and never sets state any other way, so a loss holds no globals:

- :data:`PROGRESS_HOOK` ``set_progress(epoch: int, total_epochs: int) -> None``: at the start
  of every epoch, ``epoch`` 0-based (:class:`losses.Loss` provides a no-op).
- :data:`PRIORS_HOOK` ``set_class_priors(priors: Tensor) -> None``: once, before the first
  training step, with the K class frequencies of the training labels as the loss will see
  them (after label noise, imbalance and subsetting), from :func:`class_priors`.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import Tensor, nn

PROGRESS_HOOK: Final[str] = "set_progress"
PRIORS_HOOK: Final[str] = "set_class_priors"
HOOKS: Final[tuple[str, ...]] = (PROGRESS_HOOK, PRIORS_HOOK)


def class_priors(targets: Tensor, num_classes: int) -> Tensor:
    """The empirical class frequencies π_k = n_k / n of integer ``targets``, float64 of shape (K,)."""
    if targets.ndim != 1 or targets.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty 1-D tensor, got shape {tuple(targets.shape)}")
    counts = torch.bincount(targets.detach().to("cpu", torch.int64), minlength=num_classes)
    if counts.shape[0] != num_classes:
        raise ValueError(f"targets hold a label >= num_classes={num_classes}")
    return counts.to(torch.float64) / targets.shape[0]


def give_class_priors(criterion: nn.Module, train_targets: Tensor, num_classes: int) -> bool:
    """Call ``criterion.set_class_priors`` with the training labels' priors if it has the hook.

    Returns whether the hook was called. Losses without the hook are left untouched.
    """
    hook = getattr(criterion, PRIORS_HOOK, None)
    if hook is None:
        return False
    hook(class_priors(train_targets, num_classes))
    return True
