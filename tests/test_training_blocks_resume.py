"""The new training pieces together, wired as the trainer will: a run stopped at an epoch end and
resumed from a weights_only checkpoint ends bitwise identical on CPU (scheduler with warm-up,
crop-flip from its own generator, gradient clipping, EMA)."""

from __future__ import annotations

import io
from typing import Any

import torch
import torch.nn.functional as F

from bench.train.augment import augment_batch, make_generator
from bench.train.ema import WeightEMA
from bench.train.schedules import ScheduleSpec, load_scheduler_state, make_scheduler

EPOCHS, N, BATCH, SEED = 4, 96, 32, 11
SPEC = ScheduleSpec("cosine", warmup_epochs=1, min_lr=1e-4)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (N, 3, 8, 8), generator=g, dtype=torch.uint8),
            torch.randint(0, 4, (N,), generator=g))


def _model() -> torch.nn.Module:
    torch.manual_seed(SEED)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 4))


def _run(stop_after: int | None, state: dict[str, Any] | None) -> tuple[dict[str, Any], list[float]]:
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    steps = -(-N // BATCH)
    sched = make_scheduler(opt, SPEC, EPOCHS, steps)  # built right after the optimizer, before any resume
    gen = torch.Generator().manual_seed(SEED)
    aug_gen = make_generator(SEED, "cpu")
    ema = WeightEMA(model, 0.9)
    start, lrs = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        load_scheduler_state(sched, opt, state["scheduler"])
        gen.set_state(state["generator"])
        aug_gen.set_state(state["augment_generator"])
        ema.load_state_dict(state["ema"])
        start = state["epoch"]
    for epoch in range(start, EPOCHS):
        lrs.append(opt.param_groups[0]["lr"])  # the epoch's lr, for the history
        perm = torch.randperm(N, generator=gen)
        for step in range(steps):
            idx = perm[step * BATCH:(step + 1) * BATCH]
            xb = augment_batch(torch.index_select(x, 0, idx), "crop-flip", 2, aug_gen)
            xb = (xb.float() / 255 - 0.5) / 0.25
            loss = F.cross_entropy(model(xb), torch.index_select(y, 0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            sched.step()
            ema.update_parameters(model)
        if stop_after is not None and epoch + 1 == stop_after:
            buf = io.BytesIO()
            torch.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "generator": gen.get_state(),
                        "augment_generator": aug_gen.get_state(), "ema": ema.state_dict()}, buf)
            buf.seek(0)
            return torch.load(buf, weights_only=True), lrs
    return {"model": model.state_dict(), "ema": ema.state_dict()}, lrs


def test_resumed_run_is_bitwise_identical() -> None:
    reference, ref_lrs = _run(None, None)
    checkpoint, first_lrs = _run(2, None)
    resumed, rest_lrs = _run(None, checkpoint)
    assert first_lrs + rest_lrs == ref_lrs
    for part in ("model", "ema"):
        assert resumed[part].keys() == reference[part].keys()
        for key, value in reference[part].items():
            assert torch.equal(resumed[part][key], value), (part, key)
