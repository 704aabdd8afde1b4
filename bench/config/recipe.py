"""The training recipe of a cell, checked as a whole: schedule, augmentation, clipping, EMA.

Each recipe setting is a field of :class:`~bench.config.registry.TrainConfig` and is validated there
on its own (type and range). Whether the settings make sense *together* (milestones for a
cosine schedule, a warm-up as long as the run, a flip on a dataset whose flip policy says no)
depends on the whole cell, so :func:`check_recipe` runs on every expanded cell before anything
trains, and again in the worker (a cell rebuilt from a record is checked like a planned one).
Torch-free: the planner calls it without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.config.augment_policy import FLIPS, check_augment
from bench.errors import BenchError
from bench.train.schedules import ScheduleSpec, parse_milestones, validate


def schedule_spec(train: Mapping[str, Any]) -> ScheduleSpec:
    """The :class:`~bench.train.schedules.ScheduleSpec` of a cell's training settings."""
    return ScheduleSpec(
        name=train.get("schedule", "constant"),
        warmup_epochs=int(train.get("warmup_epochs", 0)),
        min_lr=float(train.get("min_lr", 0.0)),
        milestones=parse_milestones(train.get("milestones", "")),
        gamma=float(train.get("gamma", 0.1)),
        step_epochs=int(train.get("step_epochs", 0)),
    )


def scheduled(train: Mapping[str, Any]) -> bool:
    """Whether the cell's lr changes during training (else the trainer builds no scheduler)."""
    return train.get("schedule", "constant") != "constant" or int(train.get("warmup_epochs", 0)) > 0


def check_recipe(train: Mapping[str, Any], dataset_kind: str, in_shape: tuple[int, int, int]) -> None:
    """One BenchError line for recipe settings that do not apply or cannot work for this cell.

    ``train``: the cell's training settings (a ``TrainConfig`` dump); ``dataset_kind`` and
    ``in_shape`` (C, H, W): its dataset, as the planner knows it without reading data.
    """
    validate(schedule_spec(train), int(train["epochs"]), float(train["lr"]))
    augment = train.get("augment", "none")
    padding = int(train.get("crop_padding", 4))
    if augment != "none" or train.get("force_flip", False):
        if train.get("force_flip", False) and augment not in FLIPS:
            raise BenchError(f"force_flip does not apply to augment {augment!r} (nothing flips): drop force_flip or set "
                             "augment=flip or crop-flip")
        check_augment(augment, padding, dataset_kind, tuple(in_shape), bool(train.get("force_flip", False)))
    else:
        check_augment("none", padding, dataset_kind, tuple(in_shape))
    decay = train.get("ema_decay", 0.0)
    if decay != 0.0 and not 0.0 < decay < 1.0:
        raise BenchError(f"ema_decay must be in (0, 1) (e.g. 0.999; 0 for no EMA), got {decay!r}")


__all__ = ["check_recipe", "schedule_spec", "scheduled"]
