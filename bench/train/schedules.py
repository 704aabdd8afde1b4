"""Learning-rate schedules of a cell, built from ``torch.optim.lr_scheduler`` and stepped per iteration.

A :class:`ScheduleSpec` names the schedule and its parameters; :func:`validate` turns every
setting that does not apply or cannot work into one :class:`~bench.errors.BenchError` line
naming the setting and the fix; :func:`make_scheduler` builds the torch scheduler. All the
schedule maths is torch's: the warmup is ``LinearLR`` chained with the main schedule by
``SequentialLR``; ``onecycle`` is ``OneCycleLR`` alone (it has its own warm-up phase).

Iteration counts: with ``S`` steps per epoch, ``T = epochs * S`` iterations in all and
``W = warmup_epochs * S`` of warm-up. ``scheduler.step()`` is called once after every
``optimizer.step()``, so iteration ``t`` (0-based) trains at:

* warm-up (``t <= W``, every schedule but onecycle): ``lr * (t + 1) / (W + 1)``
  (``LinearLR(start_factor=1 / (W + 1))``: the first step is already non-zero, the last
  warm-up step reaches ``lr``);
* ``constant``: ``lr``;
* ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2``;
* ``step``: ``lr * gamma ** ((t - W) // (step_epochs * S))`` (counted from the end of warm-up);
* ``multistep``: ``lr * gamma ** (number of milestones m with m * S <= t)`` (milestones are
  epochs of the whole run, as recipes write them: 30,60,90);
* ``onecycle``: torch's ``OneCycleLR`` (cosine annealing, two phases) from ``lr / 25`` up to
  ``lr`` over the first ``W`` iterations (``pct_start = W / T``; ``warmup_epochs = 0``
  keeps torch's default ``pct_start = 0.3``), then down to ``min_lr`` (0 keeps torch's
  default ``lr / 25 / 1e4``). Momentum is not cycled: the cell's ``momentum`` setting stays.

``min_lr`` is a floor only where torch's class has one (``cosine``'s ``eta_min``,
``onecycle``'s final lr); torch's step schedules have none, so it is refused there.

Checkpoints: ``scheduler.state_dict()`` holds only numbers, strings and lists (checked by the
tests through ``torch.save``/``torch.load(weights_only=True)``), and the optimizer's
``state_dict`` holds the current lr of each group; :func:`load_scheduler_state` restores both
sides consistently whatever order the trainer rebuilt them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, closest

if TYPE_CHECKING:  # torch is imported by make_scheduler: validating a grid needs no torch
    import torch
    from torch.optim.lr_scheduler import LRScheduler

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "multistep", "onecycle")
ONECYCLE_DIV_FACTOR = 25.0  # torch's default: onecycle starts at lr / 25


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule and its parameters (defaults: today's constant lr, no warm-up).

    ``milestones``: epochs (of the whole run) at which ``multistep`` multiplies the lr by
    ``gamma``. ``step_epochs``: ``step``'s period in epochs, counted from the end of warm-up.
    ``gamma``: the factor of ``step``/``multistep``. ``min_lr``: the floor of ``cosine`` and the
    final lr of ``onecycle`` (0: torch's default there).
    """

    name: str = "constant"
    warmup_epochs: int = 0
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    step_epochs: int = 0


def parse_milestones(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """Milestones from a grid value: ``"30,60,90"`` (a string, since a YAML list in a grid's
    ``train:`` block is a sweep), a single int, or a sequence of ints."""
    if isinstance(text, bool):
        raise BenchError(f"milestones: expected comma-separated epochs like '30,60', got {text!r}")
    if isinstance(text, int):
        return (text,)
    parts: Sequence[Any] = [p for p in text.replace(" ", "").split(",") if p] if isinstance(text, str) else text
    try:
        values = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise BenchError(f"milestones: expected comma-separated epochs like '30,60', got {text!r}") from None
    return values


def validate(spec: ScheduleSpec, epochs: int, lr: float | None = None) -> None:
    """Raise a one-line BenchError for a setting that does not apply to ``spec.name`` or cannot work.

    ``lr`` (the base learning rate), when given, also checks that ``min_lr`` is below it.
    """
    name = spec.name
    if name not in SCHEDULES:
        raise BenchError(f"schedule {name!r} is not a schedule{closest(name, SCHEDULES)}")
    default = ScheduleSpec()
    # a parameter set away from its default where the schedule does not read it is a mistake
    # (milestones for cosine): refuse it rather than silently train something else
    unused = {
        "milestones": name != "multistep",
        "step_epochs": name != "step",
        "gamma": name not in ("step", "multistep"),
        "min_lr": name not in ("cosine", "onecycle"),
    }
    for key, not_read in unused.items():
        if not_read and getattr(spec, key) != getattr(default, key):
            readers = {"milestones": "multistep", "step_epochs": "step", "gamma": "step or multistep",
                       "min_lr": "cosine or onecycle"}[key]
            raise BenchError(f"{key} does not apply to schedule {name!r} (only {readers} reads it); "
                             f"drop {key} or choose that schedule")
    if isinstance(spec.warmup_epochs, bool) or not isinstance(spec.warmup_epochs, int) or spec.warmup_epochs < 0:
        raise BenchError(f"warmup_epochs must be a whole number of epochs >= 0, got {spec.warmup_epochs!r}")
    if spec.warmup_epochs >= epochs:
        raise BenchError(f"warmup_epochs ({spec.warmup_epochs}) must be below epochs ({epochs}): "
                         f"set warmup_epochs to at most {epochs - 1} or train longer")
    if not spec.min_lr >= 0:  # also refuses NaN
        raise BenchError(f"min_lr must be >= 0, got {spec.min_lr!r}")
    if lr is not None and spec.min_lr > 0:
        top = lr / ONECYCLE_DIV_FACTOR if name == "onecycle" else lr
        if spec.min_lr >= top:
            what = f"onecycle's starting lr (lr / {ONECYCLE_DIV_FACTOR:g} = {top:g})" if name == "onecycle" else f"lr ({lr:g})"
            raise BenchError(f"min_lr ({spec.min_lr:g}) must be below {what}: lower min_lr or raise lr")
    if name in ("step", "multistep") and not 0 < spec.gamma < 1:
        raise BenchError(f"gamma must be in (0, 1) for schedule {name!r} (the lr is multiplied by it), got {spec.gamma!r}")
    if name == "multistep":
        ms = spec.milestones
        if not ms:
            raise BenchError("schedule 'multistep' needs milestones (epochs at which the lr is multiplied by gamma), "
                             "e.g. milestones='30,60'")
        if list(ms) != sorted(set(ms)):
            raise BenchError(f"milestones must be increasing and distinct, got {','.join(map(str, ms))}")
        if ms[0] <= spec.warmup_epochs or ms[-1] >= epochs:
            raise BenchError(f"milestones must lie after the warm-up and before the last epoch "
                             f"({spec.warmup_epochs} < milestone < {epochs}), got {','.join(map(str, ms))}")
    if name == "step":
        if isinstance(spec.step_epochs, bool) or not isinstance(spec.step_epochs, int) or spec.step_epochs < 1:
            raise BenchError(f"schedule 'step' needs step_epochs >= 1 (the lr is multiplied by gamma every "
                             f"step_epochs epochs), got {spec.step_epochs!r}")
        if spec.step_epochs >= epochs - spec.warmup_epochs:
            raise BenchError(f"step_epochs ({spec.step_epochs}) must be below the epochs after warm-up "
                             f"({epochs - spec.warmup_epochs}), else the lr never steps: lower step_epochs")


def make_scheduler(optimizer: torch.optim.Optimizer, spec: ScheduleSpec, epochs: int,
                   steps_per_epoch: int) -> LRScheduler:
    """The torch scheduler of ``spec`` over ``epochs * steps_per_epoch`` iterations.

    The optimizer is fresh (its groups' ``lr`` is the base lr) or restored from a checkpoint
    (then the constructors find the base lr they recorded, ``initial_lr``/``max_lr``, in its
    groups); either way follow with :func:`load_scheduler_state` on resume. Step it once per iteration,
    after ``optimizer.step()``.
    """
    from torch.optim.lr_scheduler import (
        ConstantLR,
        CosineAnnealingLR,
        LinearLR,
        MultiStepLR,
        OneCycleLR,
        SequentialLR,
        StepLR,
    )

    validate(spec, epochs)
    if steps_per_epoch < 1:
        raise BenchError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    total = epochs * steps_per_epoch
    warmup = spec.warmup_epochs * steps_per_epoch
    if spec.name == "onecycle":
        # an optimizer restored from a checkpoint holds the current lr, and OneCycleLR's own
        # record of the peak in "max_lr": read that, so both build orders give the same schedule
        max_lr = [group.get("max_lr", group["lr"]) for group in optimizer.param_groups]
        kwargs: dict[str, Any] = {}
        if warmup:
            kwargs["pct_start"] = warmup / total
        if spec.min_lr > 0:
            # torch's final lr is initial_lr / final_div_factor, with initial_lr = max_lr / div_factor
            kwargs["final_div_factor"] = max_lr[0] / ONECYCLE_DIV_FACTOR / spec.min_lr
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, div_factor=ONECYCLE_DIV_FACTOR,
                          anneal_strategy="cos", cycle_momentum=False, **kwargs)
    main_iters = total - warmup
    main: LRScheduler
    if spec.name == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=main_iters, eta_min=spec.min_lr)
    elif spec.name == "step":
        main = StepLR(optimizer, step_size=spec.step_epochs * steps_per_epoch, gamma=spec.gamma)
    elif spec.name == "multistep":
        main = MultiStepLR(optimizer, milestones=[m * steps_per_epoch - warmup for m in spec.milestones],
                           gamma=spec.gamma)
    else:
        # factor 1 for 0 iterations: the lr stays the base lr (a no-op scheduler that still
        # records the lr and chains behind a warm-up)
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, schedulers=[ramp, main], milestones=[warmup])


def load_scheduler_state(scheduler: LRScheduler, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore a checkpoint's ``scheduler.state_dict()`` and put its last lr back into the optimizer.

    The scheduler's constructor writes the first iteration's lr into the optimizer; re-applying
    the saved last lr makes the result independent of whether the optimizer's state was loaded
    before or after the scheduler was built (the chainable schedules read the group's lr).
    """
    scheduler.load_state_dict(state)
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = lr


__all__ = ["SCHEDULES", "ScheduleSpec", "load_scheduler_state", "make_scheduler", "parse_milestones", "validate"]
