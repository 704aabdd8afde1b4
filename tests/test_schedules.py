"""bench.train.schedules: torch's schedulers against the closed forms, resume from a state dict, bad input."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch

from bench.errors import BenchError
from bench.train.schedules import ScheduleSpec, load_scheduler_state, make_scheduler, parse_milestones, validate

LR = 0.1


def _optimizer() -> torch.optim.Optimizer:
    model = torch.nn.Linear(3, 2)
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)


def _run(spec: ScheduleSpec, epochs: int, spe: int) -> list[float]:
    """The lr of every iteration, as the trainer sees it before each optimizer step."""
    opt = _optimizer()
    sched = make_scheduler(opt, spec, epochs, spe)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated step(epoch) path, no order warnings
        for _ in range(epochs * spe):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


def _epoch_starts(lrs: list[float], spe: int) -> list[float]:
    return lrs[::spe]


def _cosine(t: int, total: int, warmup: int, min_lr: float) -> float:
    if t <= warmup and warmup:
        return LR * (t + 1) / (warmup + 1)
    return min_lr + (LR - min_lr) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2


@pytest.mark.parametrize("warmup_epochs,min_lr", [(0, 0.0), (2, 1e-3), (1, 0.0)])
def test_cosine_with_warmup_and_floor(warmup_epochs: int, min_lr: float) -> None:
    epochs, spe = 10, 7
    lrs = _run(ScheduleSpec("cosine", warmup_epochs=warmup_epochs, min_lr=min_lr), epochs, spe)
    total, warmup = epochs * spe, warmup_epochs * spe
    expected = [_cosine(t, total, warmup, min_lr) for t in range(total)]
    assert _epoch_starts(lrs, spe) == pytest.approx(_epoch_starts(expected, spe), rel=1e-9, abs=1e-12)
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)  # every iteration, not only epoch starts
    assert min(lrs) >= min_lr


def test_multistep_with_warmup() -> None:
    epochs, spe, gamma = 8, 5, 0.5
    lrs = _run(ScheduleSpec("multistep", warmup_epochs=1, milestones=(3, 6), gamma=gamma), epochs, spe)
    expected = [LR * (t + 1) / (spe + 1) if t <= spe else LR * gamma ** sum(t >= m * spe for m in (3, 6))
                for t in range(epochs * spe)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert _epoch_starts(lrs, spe)[1:] == pytest.approx([LR, LR, LR * gamma, LR * gamma, LR * gamma,
                                                         LR * gamma**2, LR * gamma**2])


def test_step_counts_from_the_end_of_warmup() -> None:
    epochs, spe, gamma = 9, 4, 0.1
    lrs = _run(ScheduleSpec("step", warmup_epochs=1, step_epochs=3, gamma=gamma), epochs, spe)
    w = spe
    expected = [LR * (t + 1) / (w + 1) if t <= w else LR * gamma ** ((t - w) // (3 * spe))
                for t in range(epochs * spe)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_constant_is_todays_lr_and_warms_up() -> None:
    assert _run(ScheduleSpec(), 3, 4) == [LR] * 12
    lrs = _run(ScheduleSpec("constant", warmup_epochs=1), 3, 4)
    assert lrs == pytest.approx([LR * (t + 1) / 5 for t in range(5)] + [LR] * 7)


def _onecycle_doc(t: int, total: int, pct_start: float, max_lr: float, div: float, final_div: float) -> float:
    """torch's documented OneCycleLR (two phases, cosine annealing)."""
    initial = max_lr / div
    low = initial / final_div
    end1 = float(pct_start * total) - 1
    end2 = total - 1

    def cos_anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    if t <= end1:
        return cos_anneal(initial, max_lr, t / end1)
    return cos_anneal(max_lr, low, (t - end1) / (end2 - end1))


@pytest.mark.parametrize("warmup_epochs,min_lr", [(2, 1e-5), (0, 0.0)])
def test_onecycle_against_torch_documented_formula(warmup_epochs: int, min_lr: float) -> None:
    epochs, spe = 10, 6
    total = epochs * spe
    lrs = _run(ScheduleSpec("onecycle", warmup_epochs=warmup_epochs, min_lr=min_lr), epochs, spe)
    pct = warmup_epochs * spe / total if warmup_epochs else 0.3
    final_div = (LR / 25 / min_lr) if min_lr else 1e4
    expected = [_onecycle_doc(t, total, pct, LR, 25.0, final_div) for t in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[-1] == pytest.approx(min_lr if min_lr else LR / 25 / 1e4)


def test_onecycle_keeps_the_configured_momentum() -> None:
    opt = _optimizer()
    sched = make_scheduler(opt, ScheduleSpec("onecycle"), 4, 3)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["momentum"] == 0.9


ALL_ON = [
    ScheduleSpec("cosine", warmup_epochs=2, min_lr=1e-4),
    ScheduleSpec("multistep", warmup_epochs=1, milestones=(4, 6), gamma=0.2),
    ScheduleSpec("step", warmup_epochs=1, step_epochs=2, gamma=0.5),
    ScheduleSpec("onecycle", warmup_epochs=2, min_lr=1e-6),
    ScheduleSpec("constant", warmup_epochs=1),
]


@pytest.mark.parametrize("spec", ALL_ON, ids=lambda s: s.name)
@pytest.mark.parametrize("optimizer_first", [True, False], ids=["optimizer-then-scheduler", "scheduler-then-optimizer"])
def test_resume_from_state_dict_gives_identical_lrs(spec: ScheduleSpec, optimizer_first: bool) -> None:
    """Kill at the end of an epoch inside the warm-up and one after it; the state goes through
    torch.save / torch.load(weights_only=True) as in a checkpoint."""
    epochs, spe = 8, 5
    reference = _run(spec, epochs, spe)
    for stop_epoch in (1, 3):
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
        sched = make_scheduler(opt, spec, epochs, spe)
        for _ in range(stop_epoch * spe):
            opt.step()
            sched.step()
        buf = io.BytesIO()
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)  # raises if the state holds anything but plain data

        opt2 = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
        if optimizer_first:  # the optimizer's state is loaded before the scheduler is built
            opt2.load_state_dict(state["optimizer"])
            sched2 = make_scheduler(opt2, spec, epochs, spe)
        else:  # the trainer's natural order: build everything fresh, then load
            sched2 = make_scheduler(opt2, spec, epochs, spe)
            opt2.load_state_dict(state["optimizer"])
        load_scheduler_state(sched2, opt2, state["scheduler"])
        resumed = []
        for _ in range(stop_epoch * spe, epochs * spe):
            resumed.append(opt2.param_groups[0]["lr"])
            opt2.step()
            sched2.step()
        assert resumed == reference[stop_epoch * spe:]  # exact, not approx


def test_parse_milestones() -> None:
    assert parse_milestones("30,60, 90") == (30, 60, 90)
    assert parse_milestones(30) == (30,)
    assert parse_milestones([3, 5]) == (3, 5)
    with pytest.raises(BenchError, match="milestones"):
        parse_milestones("30;60")
    with pytest.raises(BenchError, match="milestones"):
        parse_milestones(True)


BAD = [
    (ScheduleSpec("cosin"), "closest: 'cosine'"),
    (ScheduleSpec("cosine", milestones=(3,)), "milestones does not apply to schedule 'cosine'"),
    (ScheduleSpec("onecycle", gamma=0.5), "gamma does not apply"),
    (ScheduleSpec("multistep", milestones=(3,), step_epochs=2), "step_epochs does not apply"),
    (ScheduleSpec("constant", min_lr=1e-3), "min_lr does not apply to schedule 'constant'"),
    (ScheduleSpec("multistep", milestones=(3,), min_lr=1e-3), "min_lr does not apply"),
    (ScheduleSpec("cosine", warmup_epochs=10), r"warmup_epochs \(10\) must be below epochs \(10\)"),
    (ScheduleSpec("cosine", warmup_epochs=12), "warmup_epochs"),
    (ScheduleSpec("cosine", warmup_epochs=-1), "warmup_epochs must be a whole number"),
    (ScheduleSpec("cosine", min_lr=-1e-3), "min_lr must be >= 0"),
    (ScheduleSpec("cosine", min_lr=float("nan")), "min_lr must be >= 0"),
    (ScheduleSpec("cosine", min_lr=0.5), r"min_lr \(0.5\) must be below lr"),
    (ScheduleSpec("onecycle", min_lr=0.01), "below onecycle's starting lr"),
    (ScheduleSpec("multistep"), "needs milestones"),
    (ScheduleSpec("multistep", milestones=(5, 3)), "increasing"),
    (ScheduleSpec("multistep", milestones=(3, 3)), "distinct"),
    (ScheduleSpec("multistep", milestones=(10,)), "before the last epoch"),
    (ScheduleSpec("multistep", warmup_epochs=3, milestones=(2, 5)), "after the warm-up"),
    (ScheduleSpec("multistep", milestones=(3,), gamma=1.5), "gamma must be in"),
    (ScheduleSpec("step"), "needs step_epochs"),
    (ScheduleSpec("step", step_epochs=10), "never steps"),
]


@pytest.mark.parametrize("spec,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line(spec: ScheduleSpec, message: str) -> None:
    with pytest.raises(BenchError, match=message) as info:
        validate(spec, epochs=10, lr=LR)
    assert "\n" not in str(info.value)
    if spec.min_lr <= 0.001:  # make_scheduler validates too (all but the lr-dependent min_lr checks)
        with pytest.raises(BenchError, match=message):
            make_scheduler(_optimizer(), spec, 10, 3)


def test_good_specs_validate() -> None:
    for spec in ALL_ON:
        validate(spec, epochs=8, lr=LR)


def test_validation_imports_no_torch() -> None:
    """Grids are validated without torch (the registry's rule); only make_scheduler imports it."""
    import subprocess
    import sys

    code = ("import sys, bench.train.schedules as s, bench.config.augment_policy as a; "
            "s.validate(s.ScheduleSpec('cosine'), 3); a.check_augment('crop-flip', 4, 'cifar10', (3, 32, 32)); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
