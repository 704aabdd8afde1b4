"""Batched image augmentation on the training device: random crops and horizontal flips.

:func:`augment_batch` works on a whole (N, C, H, W) batch with tensor operations only (no
per-sample Python, no DataLoader): one ``torch.randint`` per random quantity, drawn from the
given ``torch.Generator`` on the batch's device, and for ``crop-flip`` a single ``gather``
whose per-sample index grid folds the crop offset and the flip together (one pass over the
batch, whatever is drawn).

Padding: zeros, the standard CIFAR recipe (torchvision's ``RandomCrop(32, padding=4)``, fill
0). The trainer augments the uint8 batch before ``splits.normalise``, so the border is black
as in that recipe (and the uint8 pass moves a quarter of the bytes of a float one); a float
batch is padded with 0.0 in its own units. Reflect padding would invent image content at the
border; zeros keep the crop an exact translation.

The random draws, in this order (so a test or a replay can reproduce them): the flip coins
(N bools), then for ``crop-flip`` the row offsets and the column offsets (N ints each, in
``[0, 2 * padding]``; offset ``padding`` is the uncropped image).

Flip policy per dataset kind (:data:`FLIP_POLICY`, :func:`flip_allowed`): a horizontal flip is
only a label-preserving augmentation where the mirror image is still an example of its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F

from bench.data.kinds import KIND_TABLE
from bench.errors import BenchError, closest

AUGMENTS: tuple[str, ...] = ("none", "flip", "crop-flip")
DEFAULT_PADDING = 4

# (flip allowed by default, why): the per-dataset decision, stated once
FLIP_POLICY: Mapping[str, tuple[bool, str]] = MappingProxyType({
    "cifar10": (True, "natural photos: a mirrored car or cat is still one (the standard CIFAR recipe flips)"),
    "mnist": (False, "mirrored digits are not digits (2, 3, 4, 7, 9 become other glyphs or none)"),
    "fashion-mnist": (False, "items are near-symmetric but drawn in one orientation (shoes point left); a flip "
                             "adds an invariance the test split never asks for and breaks comparability with the "
                             "paper's unaugmented protocol: allowed only when asked for explicitly"),
    "gauss": (False, "feature vectors, not images: no image augmentation at all"),
})


def flip_allowed(dataset_kind: str) -> bool:
    """Whether a horizontal flip keeps the class meaning of ``dataset_kind`` (see :data:`FLIP_POLICY`)."""
    if dataset_kind not in FLIP_POLICY:
        raise BenchError(f"no flip policy for dataset kind {dataset_kind!r}{closest(dataset_kind, FLIP_POLICY)}")
    return FLIP_POLICY[dataset_kind][0]


def check_augment(kind: str, padding: int, dataset_kind: str, in_shape: tuple[int, int, int],
                  force_flip: bool = False) -> None:
    """One BenchError line for an augmentation the dataset cannot take (checked before training).

    ``force_flip``: flip even where :func:`flip_allowed` says no (the explicit request).
    """
    if kind not in AUGMENTS:
        raise BenchError(f"augment {kind!r} is not an augmentation{closest(kind, AUGMENTS)}")
    if kind == "none":
        if padding != DEFAULT_PADDING:
            raise BenchError("crop_padding does not apply to augment 'none': drop crop_padding or set augment=crop-flip")
        return
    if kind == "flip" and padding != DEFAULT_PADDING:
        raise BenchError("crop_padding does not apply to augment 'flip' (it does not crop): drop crop_padding "
                         "or set augment=crop-flip")
    spec = KIND_TABLE.get(dataset_kind)
    if spec is None or spec.in_shape is None:
        raise BenchError(f"augment {kind!r}: dataset kind {dataset_kind!r} is not images (shape {tuple(in_shape)}); "
                         "set augment=none")
    _, h, w = in_shape
    if h < 2 or w < 2:
        raise BenchError(f"augment {kind!r} needs images of at least 2x2 pixels, got {h}x{w}; set augment=none")
    if not flip_allowed(dataset_kind) and not force_flip:
        raise BenchError(f"augment {kind!r} flips images, which is off for {dataset_kind} "
                         f"({FLIP_POLICY[dataset_kind][1].split(':')[0]}); set force_flip=true to flip anyway, "
                         "or augment=none")
    if kind == "crop-flip":
        _check_padding(padding, h, w)


def _check_padding(padding: int, h: int, w: int) -> None:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
        raise BenchError(f"crop_padding must be a whole number of pixels >= 1, got {padding!r}")
    if padding >= min(h, w):
        raise BenchError(f"crop_padding ({padding}) must be below the image size ({h}x{w}), else a crop can "
                         f"miss the image entirely: use at most {min(h, w) - 1}")


@dataclass(frozen=True)
class Draws:
    """The random quantities of one batch: flip coins, crop row and column offsets (None: no crop)."""

    flip: torch.Tensor
    rows: torch.Tensor | None
    cols: torch.Tensor | None


def draw(kind: str, n: int, padding: int, generator: torch.Generator, device: torch.device) -> Draws:
    """Draw one batch's randomness from ``generator`` (the order is documented in the module)."""
    flip = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    if kind != "crop-flip":
        return Draws(flip, None, None)
    rows = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    cols = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    return Draws(flip, rows, cols)


def augment_batch(x: torch.Tensor, kind: str, padding: int = DEFAULT_PADDING,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` (N, C, H, W, any dtype and device) augmented by ``kind``; same shape and dtype.

    ``flip``: each sample mirrored left-right with probability 1/2. ``crop-flip``: each sample
    zero-padded by ``padding`` on every side, cropped back to H x W at a random offset, then
    flipped with probability 1/2. ``none`` returns ``x`` itself.
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
    if kind == "crop-flip":
        _check_padding(padding, h, w)
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


__all__ = ["AUGMENTS", "DEFAULT_PADDING", "Draws", "FLIP_POLICY", "augment_batch", "check_augment", "draw", "flip_allowed"]
