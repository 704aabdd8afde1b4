"""FLOPs of a training step, counted with ``torch.utils.flop_counter`` and a grouped-conv fix.

``torch.utils.flop_counter`` counts a convolution's weight gradient as if the convolution had
one group: its backward formula computes the weight gradient as conv(input^T, grad_out^T) and
multiplies the full C_in by C_out, where each output channel only sees C_in / groups inputs.
For a depthwise convolution (groups = C_in) that is C_in times too many, which made MobileNetV2
and EfficientNet-B0 look 7x and 15x heavier than they are. :func:`conv_backward_flop` replaces
that formula: each gradient that the backward computes (output_mask) costs as many
multiply-adds as the forward convolution, whose count already divides by the groups through
the weight's shape (C_out, C_in / groups, *k).

A FLOP here is a multiply or an add (2 per multiply-add), as torch's counter counts; biases,
BatchNorm, activations, pooling and the loss are not counted (they are a few percent of a
CNN's work and not matrix-engine work).
"""

from __future__ import annotations

from math import prod
from typing import Any

import torch

aten = torch.ops.aten


def conv_macs(x_shape: Any, w_shape: Any, out_shape: Any, transposed: bool) -> int:
    """Multiply-adds of one convolution: batch x prod(weight shape) x spatial positions.

    The weight shape already holds C_in / groups (or C_out / groups, transposed), so groups
    need no term of their own. The spatial positions are the output's for a convolution and the
    input's for a transposed one (each input position scatters the whole filter).
    """
    spatial = (x_shape if transposed else out_shape)[2:]
    return int(x_shape[0]) * prod(int(v) for v in w_shape) * prod(int(v) for v in spatial)


def conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any, _stride: Any, _padding: Any,
                       _dilation: Any, transposed: bool, _output_padding: Any, _groups: int, output_mask: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of ``aten.convolution_backward``, right for any ``groups``.

    The input gradient (a transposed convolution of grad_out with the weight) and the weight
    gradient (a convolution of the input with grad_out, per group) each multiply every weight
    with every position the forward multiplied it with: the forward's multiply-adds each. The
    forward output's shape is grad_out's.
    """
    macs = conv_macs(x_shape, w_shape, grad_out_shape, bool(transposed))
    return 2 * macs * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


CUSTOM_FLOPS = {aten.convolution_backward: conv_backward_flop}


def counter() -> torch.utils.flop_counter.FlopCounterMode:
    """A FlopCounterMode with the grouped-conv backward formula (no table printed)."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS)


def train_step_flops(model: torch.nn.Module, in_shape: tuple[int, int, int], batch: int = 2,
                     device: torch.device | str = "cpu") -> float:
    """Forward + backward FLOPs per image of ``model`` in training mode (cross entropy on random data).

    Counted from shapes, so the values of the data do not matter: ``device="meta"`` computes
    nothing (and moves the model there). Batch 2 because BatchNorm in training mode needs more
    than one value per channel.
    """
    model = model.to(device).train()
    x = torch.randn(batch, *in_shape, device=device)
    with counter() as mode:
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=device)).backward()
    return mode.get_total_flops() / batch


__all__ = ["CUSTOM_FLOPS", "conv_backward_flop", "conv_macs", "counter", "train_step_flops"]
