"""An exponential moving average of a model's weights, for evaluation in place of the raw weights.

Built on ``torch.optim.swa_utils``: :class:`WeightEMA` is an ``AveragedModel`` with
``multi_avg_fn=get_ema_multi_avg_fn(decay)`` (public in torch since 2.1; one ``_foreach_lerp_``
per device and dtype group, so one update costs a few kernel launches, not one per tensor).
The first update copies the weights; after it, ``ema = decay * ema + (1 - decay) * weights``.

BatchNorm: ``use_buffers=True``, so the running means and variances are averaged like the
weights (the averaged model's statistics match its averaged weights, with no extra pass over
the data as ``swa_utils.update_bn`` would need). Integer buffers (BatchNorm's
``num_batches_tracked``) are counters, not averageable: torch's EMA would round them down and
freeze them, so each update copies them from the model instead.

Checkpoints: ``state_dict()`` is the averaged module's tensors plus ``n_averaged`` (tensors
only: ``torch.load(weights_only=True)``-safe); ``load_state_dict`` restores it exactly.
"""

from __future__ import annotations

import math

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bench.errors import BenchError


def validate_decay(decay: float) -> None:
    """One BenchError line unless ``decay`` is a number strictly between 0 and 1."""
    if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 < decay < 1 or math.isnan(decay):
        raise BenchError(f"ema_decay must be in (0, 1) (e.g. 0.999; leave it unset for no EMA), got {decay!r}")


class WeightEMA(AveragedModel):
    """EMA of ``model``'s parameters and floating-point buffers; call :meth:`update_parameters`
    after every optimizer step, evaluate ``ema.module``."""

    def __init__(self, model: torch.nn.Module, decay: float):
        validate_decay(decay)
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = float(decay)

    def update_parameters(self, model: torch.nn.Module) -> None:
        super().update_parameters(model)
        with torch.no_grad():
            for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
                if not (mine.is_floating_point() or mine.is_complex()):
                    mine.copy_(theirs)


__all__ = ["WeightEMA", "validate_decay"]
