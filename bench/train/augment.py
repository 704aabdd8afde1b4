"""Batched image augmentation on the training device: random crops and horizontal flips.

:func:`augment_batch` works on a whole (N, C, H, W) batch with tensor operations only (no
per-sample Python, no DataLoader): one ``torch.randint`` per random quantity, drawn from the
given ``torch.Generator`` on the batch's device, and for ``crop``/``crop-flip`` a single ``gather``
whose per-sample index grid folds the crop offset and the flip together (one pass over the
batch, whatever is drawn).

Padding: zeros, the standard CIFAR recipe (torchvision's ``RandomCrop(32, padding=4)``, fill
0). The trainer augments the uint8 batch before ``splits.normalise``, so the border is black
as in that recipe (and the uint8 pass moves a quarter of the bytes of a float one); a float
batch is padded with 0.0 in its own units. Reflect padding would invent image content at the
border; zeros keep the crop an exact translation.

The random draws, in this order (so a test or a replay can reproduce them): for ``flip`` and
``crop-flip`` the flip coins (N bools), then for ``crop`` and ``crop-flip`` the row offsets and
the column offsets (N ints each, in ``[0, 2 * padding]``; offset ``padding`` is the uncropped
image).

Which augmentation a dataset may take (the flip policy, the checks before training) lives in
:mod:`bench.config.augment_policy`, which needs no torch; its names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.config.augment_policy import AUGMENTS, CROPS, DEFAULT_PADDING, FLIPS, FLIP_POLICY, check_augment, check_padding, flip_allowed
from bench.errors import BenchError, closest

AUGMENT_STREAM = 0xA06  # spawn key of the augmentation stream, distinct from the permutation's plain seed


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The cell's augmentation generator on ``device``: its own stream, derived from the cell's seed.

    Separate from the permutation generator so that switching augmentation on leaves the batch
    order of a cell unchanged; seeded through ``numpy.random.SeedSequence((seed, AUGMENT_STREAM))``
    so its stream is not the permutation generator's (``manual_seed(seed)``) replayed.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence((seed, AUGMENT_STREAM)).generate_state(1, dtype=np.uint64)[0]))
    return gen


@dataclass(frozen=True)
class Draws:
    """The random quantities of one batch: flip coins, crop row and column offsets (None: no crop)."""

    flip: torch.Tensor
    rows: torch.Tensor | None
    cols: torch.Tensor | None


def draw(kind: str, n: int, padding: int, generator: torch.Generator, device: torch.device) -> Draws:
    """Draw one batch's randomness from ``generator`` (the order is documented in the module)."""
    if kind in FLIPS:
        flip = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=device)
    if kind not in CROPS:
        return Draws(flip, None, None)
    rows = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    cols = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    return Draws(flip, rows, cols)


def augment_batch(x: torch.Tensor, kind: str, padding: int = DEFAULT_PADDING,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` (N, C, H, W, any dtype and device) augmented by ``kind``; same shape and dtype.

    ``flip``: each sample mirrored left-right with probability 1/2. ``crop-flip``: each sample
    zero-padded by ``padding`` on every side, cropped back to H x W at a random offset, then
    flipped with probability 1/2. ``crop``: the crop without the flip. ``none`` returns ``x`` itself.
    """
    if kind not in AUGMENTS:
        raise BenchError(f"augment {kind!r} is not an augmentation{closest(kind, AUGMENTS)}")
    if x.dim() != 4:
        raise BenchError(f"augment {kind!r} needs an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    if kind == "none":
        return x
    n, c, h, w = x.shape
    if h < 2 or w < 2:
        raise BenchError(f"augment {kind!r} needs images of at least 2x2 pixels, got {h}x{w}")
    if kind in CROPS:
        check_padding(padding, h, w)
    if generator is None:
        raise ValueError("augment_batch draws from the cell's generator: pass generator=")
    if generator.device.type != x.device.type:
        raise ValueError(f"the generator is on {generator.device}, the batch on {x.device}: draw where the batch is")
    d = draw(kind, n, padding, generator, x.device)
    if kind == "flip":
        return torch.where(d.flip.view(n, 1, 1, 1), x.flip(3), x)
    assert d.rows is not None and d.cols is not None
    padded = F.pad(x, (padding, padding, padding, padding))  # constant 0, any dtype
    pw = w + 2 * padding
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    # per-sample column order: left-to-right, or right-to-left for a flipped sample; the flip
    # is folded into the crop's index grid so the batch is read once
    col_order = torch.where(d.flip.view(n, 1), ar_w.flip(0).view(1, w), ar_w.view(1, w))
    rows = d.rows.view(n, 1) + ar_h.view(1, h)  # (N, H) rows of the padded image
    cols = d.cols.view(n, 1) + col_order  # (N, W) columns of the padded image
    flat = (rows.view(n, h, 1) * pw + cols.view(n, 1, w)).view(n, 1, h * w)
    out = padded.reshape(n, c, -1).gather(2, flat.expand(n, c, h * w))
    return out.view(n, c, h, w)


__all__ = ["AUGMENTS", "DEFAULT_PADDING", "Draws", "FLIP_POLICY", "augment_batch", "check_augment", "draw", "flip_allowed",
           "make_generator"]
