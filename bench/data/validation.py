"""A validation split: a stratified holdout of the training split, drawn from a split seed.

The holdout depends only on the training labels, the fraction and ``split_seed``, never on the
cell's training seed or loss, so every cell of a grid that shares these is judged on the same
validation images (a paired design). The held-out examples are removed from the training split,
so they are never trained on. The normalisation constants stay those of the full training split:
they are the published constants for the real data sets, and keeping them means a validation
split does not change how the remaining training images are normalised.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bench.data.splits import Splits
from bench.errors import BenchError

MAX_FRACTION = 0.5  # above this the "training" split would be the smaller one


def check_fraction(fraction: float) -> None:
    """A fraction outside [0, 0.5) is one error line."""
    if not 0.0 <= fraction < MAX_FRACTION:
        raise BenchError(f"train.val_fraction={fraction:g}: must be in [0, {MAX_FRACTION:g})")


def holdout_counts(labels: np.ndarray, fraction: float, num_classes: int) -> np.ndarray:
    """Examples of each class held out: round(fraction * n_c), at least 1 for a class that has any.

    At least one, so that every class present in training is also present in validation; one
    training example of each class must remain, else the fraction is refused.
    """
    check_fraction(fraction)
    counts = np.bincount(labels, minlength=num_classes)
    if fraction == 0.0:
        return np.zeros_like(counts)
    held = np.where(counts > 0, np.maximum(1, np.floor(fraction * counts + 0.5).astype(np.int64)), 0)
    short = [c for c in range(num_classes) if counts[c] > 0 and held[c] >= counts[c]]
    if short:
        c = short[0]
        raise BenchError(f"train.val_fraction={fraction:g} is too large: class {c} has {int(counts[c])} training "
                         f"example(s), and one must stay in training and one go to validation")
    return held


def holdout_indices(labels: np.ndarray, fraction: float, split_seed: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices), both sorted, disjoint and covering every example.

    Each class's examples are permuted by a generator seeded from ``split_seed`` alone (the classes
    in order, one stream), and the first ``holdout_counts`` of each go to validation.
    """
    held = holdout_counts(labels, fraction, num_classes)
    rng = np.random.Generator(np.random.PCG64(split_seed))
    val_parts = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if held[c]:
            val_parts.append(members[rng.permutation(len(members))[: held[c]]])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def hold_out(splits: Splits, fraction: float, split_seed: int) -> Splits:
    """``splits`` with a stratified validation split moved out of its training split (0: unchanged)."""
    if fraction == 0.0:
        check_fraction(fraction)
        return splits
    labels = splits.train_y.cpu().numpy()
    train_idx, val_idx = holdout_indices(labels, fraction, split_seed, splits.num_classes)
    t_idx, v_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return dataclasses.replace(
        splits,
        train_x=splits.train_x.index_select(0, t_idx), train_y=splits.train_y.index_select(0, t_idx),
        val_x=splits.train_x.index_select(0, v_idx), val_y=splits.train_y.index_select(0, v_idx),
        train_index=t_idx, val_index=v_idx)
