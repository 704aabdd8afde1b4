"""Benchmark: the cost of batched augmentation and of per-iteration lr scheduling in a training step.

For each model (the paper's MLP and CNN on 28x28, the registry's CIFAR ResNet-18 on 32x32) one
round times ``--steps`` training steps of three variants, interleaved in one process (the
order alternates each round): ``base`` (the trainer's step: gather a uint8 batch, normalise,
forward, backward, SGD step), ``augment`` (the same plus ``augment_batch(..., "crop-flip", 4)``
on the uint8 batch, before normalisation, where the trainer calls it) and ``schedule`` (the
same as base plus a cosine-with-warm-up ``scheduler.step()`` after each optimizer step). The
headline is the median over rounds of augment / base and schedule / base, with the min-max of
the per-round ratios, and each call timed alone (``augment_batch`` on the model's batch,
``scheduler.step()``) as a fraction of the base step. Targets: augmentation at most 10% of the
ResNet-18 step (the verdict reads the call timed alone: on a shared machine the paired step
ratios swing by more than that); scheduler not measurable above noise. The data are random uint8 images (the cost does not depend on the pixels).

    .venv/bin/python benchmarks/augment_overhead.py
    .venv/bin/python benchmarks/augment_overhead.py --arch resnet18 --rounds 7 --steps 4 --threads 2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import _common
import torch
import torch.nn.functional as F

from bench.train.augment import augment_batch
from bench.models.zoo import build_model
from bench.config.registry import load_registry
from bench.train.schedules import ScheduleSpec, make_scheduler

ARCHS = {  # registry architecture -> (C, H, W) of its benchmark input
    "mlp": (1, 28, 28),
    "cnn": (1, 28, 28),
    "resnet18": (3, 32, 32),
}
# steps per round and rounds (--steps/--rounds 0): a round of the small models is long enough
# that a scheduling hiccup of the shared machine is a small part of it; ResNet-18 is slow on CPU
DEFAULT_STEPS = {"mlp": 100, "cnn": 30, "resnet18": 4}
DEFAULT_ROUNDS = {"mlp": 15, "cnn": 11, "resnet18": 5}


def _step_fn(arch: str, variant: str, args: argparse.Namespace, steps: int) -> Callable[[], None]:
    """``steps`` training steps of one variant (its own model, optimizer and generator)."""
    registry = load_registry(_common.REPO / "registry.yaml")
    spec = registry.architectures[arch]
    shape = ARCHS[arch]
    torch.manual_seed(0)
    model = build_model(spec.source, spec.name, shape, 10, dict(spec.params))
    channels_last = arch != "mlp"  # the trainer's channels_last=auto for image models
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # a long horizon, so the schedule never runs out however many rounds are timed
    sched = make_scheduler(opt, ScheduleSpec("cosine", warmup_epochs=1, min_lr=1e-5), 1000, 1000) \
        if variant == "schedule" else None
    n = args.batch_size * 8
    data_gen = torch.Generator().manual_seed(1)
    train_x = torch.randint(0, 256, (n, *shape), generator=data_gen, dtype=torch.uint8)
    train_y = torch.randint(0, 10, (n,), generator=data_gen)
    aug_gen = torch.Generator().manual_seed(2)
    perm_gen = torch.Generator().manual_seed(3)
    mean, std = 0.5, 0.25

    def run() -> None:
        perm = torch.randperm(n, generator=perm_gen)
        for step in range(steps):
            idx = perm[(step % 8) * args.batch_size:((step % 8) + 1) * args.batch_size]
            xb = torch.index_select(train_x, 0, idx)
            if variant == "augment":
                xb = augment_batch(xb, "crop-flip", 4, aug_gen)
            xf = (xb.float() / 255 - mean) / std
            if channels_last:
                xf = xf.contiguous(memory_format=torch.channels_last)
            yb = torch.index_select(train_y, 0, idx)
            loss = F.cross_entropy(model(xf), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    return run


def measure(arch: str, args: argparse.Namespace) -> dict[str, object]:
    steps = args.steps or DEFAULT_STEPS[arch]
    variants = {v: _step_fn(arch, v, args, steps) for v in ("base", "augment", "schedule")}
    rounds = args.rounds or DEFAULT_ROUNDS[arch]
    times = _common.interleave(variants, rounds=rounds, warmup=1)
    out: dict[str, object] = {"rounds": rounds, "steps_per_round": steps,
                              "base_step_ms": _common.med(times["base"]) / steps * 1e3}
    for v in ("augment", "schedule"):
        lo, hi = _common.ratio_spread(times[v], times["base"])
        out[v] = {"median_ratio": _common.median_ratio(times[v], times["base"]), "min": lo, "max": hi,
                  "step_ms": _common.med(times[v]) / steps * 1e3}
    return out


def augment_alone_ms(arch: str, args: argparse.Namespace) -> float:
    """Median time of one ``augment_batch`` call on this model's batch shape, by itself."""
    x = torch.randint(0, 256, (args.batch_size, *ARCHS[arch]), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    times = _common.interleave({"aug": lambda: [augment_batch(x, "crop-flip", 4, g) for _ in range(50)]},
                               rounds=5, warmup=1)["aug"]
    return _common.med(times) / 50 * 1e3


def scheduler_alone_us() -> float:
    """Median time of one cosine-with-warm-up ``scheduler.step()`` by itself (model-independent)."""
    opt = torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.01)
    sched = make_scheduler(opt, ScheduleSpec("cosine", warmup_epochs=1, min_lr=1e-5), 1000, 1000)
    opt.step()  # torch warns about a scheduler stepped before its optimizer ever was
    times = _common.interleave({"sched": lambda: [sched.step() for _ in range(1000)]}, rounds=5, warmup=1)["sched"]
    return _common.med(times) / 1000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=[*ARCHS, "all"], default="all")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=0, help="training steps per variant per round (0: per model)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (0: per model)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("augmentation and lr-scheduler cost per training step (CPU)")
    archs = list(ARCHS) if args.arch == "all" else [args.arch]
    results: dict[str, object] = {}
    rows = []
    sched_us = scheduler_alone_us()
    for arch in archs:
        res = measure(arch, args)
        res["augment_alone_ms"] = augment_alone_ms(arch, args)
        res["scheduler_alone_us"] = sched_us
        results[arch] = res
        aug, sch = res["augment"], res["schedule"]
        assert isinstance(aug, dict) and isinstance(sch, dict)
        base_ms = res["base_step_ms"]
        assert isinstance(base_ms, float)
        # the verdict reads the call timed alone against the step: on a loaded machine the paired
        # step ratios swing by tens of percent either way, far more than the augmentation costs
        target = _common.verdict(res["augment_alone_ms"] / base_ms, 0.10) if arch == "resnet18" else "-"
        rows.append([arch, args.batch_size, f"{res['rounds']}x{res['steps_per_round']}", base_ms,
                     res["augment_alone_ms"], res["augment_alone_ms"] / base_ms,
                     aug["median_ratio"], f"{aug['min']:.3f}-{aug['max']:.3f}", target,
                     sch["median_ratio"], f"{sch['min']:.3f}-{sch['max']:.3f}", sched_us / 1e3 / base_ms])
    print(_common.table(["model", "batch", "rounds x steps", "base step ms", "augment call ms", "call / step",
                         "augment / base", "min-max", "call/step <= 0.10", "scheduler / base", "min-max",
                         "sched call / step"], rows))
    print(f"  scheduler.step() alone: {sched_us:.1f} us")
    _common.write_json(args.json, {"machine": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
