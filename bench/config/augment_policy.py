"""Which augmentations a dataset may take: the per-dataset flip policy and the checks before training.

Torch-free, so a grid is validated without importing torch (the tensor work is
:mod:`bench.train.augment`). A horizontal flip is a label-preserving augmentation only where the
mirror image is still an example of its class; :data:`FLIP_POLICY` states the decision and its
reason per dataset kind, and ``force_flip`` is the explicit request that overrides a "no".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bench.data.kinds import KIND_TABLE
from bench.errors import BenchError, closest

AUGMENTS: tuple[str, ...] = ("none", "flip", "crop", "crop-flip")
FLIPS: tuple[str, ...] = ("flip", "crop-flip")  # the augmentations that mirror images
CROPS: tuple[str, ...] = ("crop", "crop-flip")  # the augmentations that read crop_padding
DEFAULT_PADDING = 4

# (flip allowed by default, why): the per-dataset decision, stated once
FLIP_POLICY: Mapping[str, tuple[bool, str]] = MappingProxyType({
    "cifar10": (True, "natural photos: a mirrored car or cat is still one (the standard CIFAR recipe flips)"),
    "mnist": (False, "mirrored digits are not digits (2, 3, 4, 7, 9 become other glyphs or none)"),
    "fashion-mnist": (False, "items are near-symmetric but drawn in one orientation (shoes point left); a flip "
                             "adds an invariance the test split never asks for and breaks comparability with the "
                             "paper's unaugmented protocol: allowed only when asked for explicitly"),
    "gauss": (False, "feature vectors, not images: no image augmentation at all"),
    "cifar100": (True, "natural photos, as CIFAR-10 (the standard CIFAR-100 recipe flips)"),
    "svhn": (False, "house-number digits: a mirrored 2, 3, 4, 5, 7 or 9 is not that digit"),
    "kmnist": (False, "cursive Japanese characters: a mirrored character is another glyph or none"),
    "emnist": (False, "handwritten letters and digits: mirrored b/d, p/q and digits change class"),
    "imagefolder": (False, "a user's images: whether a mirror keeps the class is theirs to say (train.force_flip)"),
    "npz": (False, "a user's arrays: whether a mirror keeps the class is theirs to say (train.force_flip)"),
    "target": (False, "a user's data: whether a mirror keeps the class is theirs to say (train.force_flip)"),
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
            raise BenchError("crop_padding does not apply to augment 'none': drop crop_padding or set augment=crop "
                             "or crop-flip")
        return
    if kind not in CROPS and padding != DEFAULT_PADDING:
        raise BenchError(f"crop_padding does not apply to augment {kind!r} (it does not crop): drop crop_padding "
                         "or set augment=crop or crop-flip")
    spec = KIND_TABLE.get(dataset_kind)
    if spec is None or spec.in_shape is None:
        raise BenchError(f"augment {kind!r}: dataset kind {dataset_kind!r} is not images (shape {tuple(in_shape)}); "
                         "set augment=none")
    _, h, w = in_shape
    if h < 2 or w < 2:
        raise BenchError(f"augment {kind!r} needs images of at least 2x2 pixels, got {h}x{w}; set augment=none")
    if kind in FLIPS and not flip_allowed(dataset_kind) and not force_flip:
        raise BenchError(f"augment {kind!r} flips images, which is off for {dataset_kind} "
                         f"({FLIP_POLICY[dataset_kind][1].split(':')[0]}); set force_flip=true to flip anyway, "
                         "augment=crop (no flip), or augment=none")
    if kind in CROPS:
        check_padding(padding, h, w)


def check_padding(padding: int, h: int, w: int) -> None:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
        raise BenchError(f"crop_padding must be a whole number of pixels >= 1, got {padding!r}")
    if padding >= min(h, w):
        raise BenchError(f"crop_padding ({padding}) must be below the image size ({h}x{w}), else a crop can "
                         f"miss the image entirely: use at most {min(h, w) - 1}")


__all__ = ["AUGMENTS", "CROPS", "DEFAULT_PADDING", "FLIPS", "FLIP_POLICY", "check_augment", "check_padding", "flip_allowed"]
