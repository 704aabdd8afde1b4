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
        self.decay = float(decay)  # n_averaged stays on the host: AveragedModel puts it there without device=

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        """One EMA step: the first copies the weights, later ones lerp the floating-point tensors by
        ``1 - decay`` (torch's ``get_ema_multi_avg_fn``, per device and dtype group) and copy the
        integer buffers.

        The same operations as ``AveragedModel.update_parameters``, minus its device reads: torch's
        version moves its step counter to each group's device every step (a host-to-device copy) and
        compares it with 0 once per tensor; here the counter ``n_averaged`` stays on the host.
        """
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        first = int(self.n_averaged) == 0  # a host tensor: no device read
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        for a, b in zip(mine, theirs, strict=True):
            b = b.detach().to(a.device)
            if first or not (a.is_floating_point() or a.is_complex()):
                a.detach().copy_(b)  # the first step, and counters (BatchNorm's num_batches_tracked)
            else:
                pair = groups.setdefault((a.device, a.dtype), ([], []))
                pair[0].append(a.detach())
                pair[1].append(b)
        for ema_list, model_list in groups.values():
            self.multi_avg_fn(ema_list, model_list, self.n_averaged)
        self.n_averaged += 1


__all__ = ["WeightEMA", "validate_decay"]
