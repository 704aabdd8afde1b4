"""Benchmark 2: training-step time with each loss relative to celLoss, on the same model.

Each round trains one epoch of the same cell (same model init, data and permutation) through
``bench.train.loop.train_cell`` once per loss of the registry, in alternating order; the step time
is the epoch's training time (``epoch_time - eval_time``) divided by its number of steps. The
headline is the median over rounds of each loss's time / celLoss's time. Target: milLoss
<= 1.05.

    .venv/bin/python benchmarks/loss_overhead.py
    .venv/bin/python benchmarks/loss_overhead.py --arch mlp --rounds 15 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import _common
import torch

from bench.data import load_splits
from bench.models.zoo import build_model
from bench.config.registry import TrainConfig, import_target, load_registry
from bench.train.loop import train_cell
from losses.hooks import give_class_priors

SEED = 0


def measure(arch: str, args: argparse.Namespace, full, losses: dict[str, tuple[str, dict]]) -> tuple[list, dict]:
    """Interleaved one-epoch runs of the same cell, one per loss."""
    n = args.n_train if arch == "mlp" else args.cnn_n_train
    splits = dataclasses.replace(full, train_x=full.train_x[:n], train_y=full.train_y[:n],
                                 test_x=full.test_x[:64], test_y=full.test_y[:64])
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, optimizer="sgd", lr=1e-3, momentum=0.9,
                      precision="fp32", channels_last="on")
    steps = math.ceil(n / args.batch_size)
    step_times: dict[str, list[float]] = {name: [] for name in losses}

    def make(name: str):
        target, params = losses[name]

        def run() -> None:
            torch.manual_seed(SEED)
            model = build_model("native", arch, splits.in_shape, splits.num_classes, {})
            criterion = import_target(target)(**params)
            give_class_priors(criterion, splits.train_y, splits.num_classes)  # logit_adjusted needs them
            result = train_cell(cell_id=f"bench-{name}", model=model, criterion=criterion,
                                splits=splits, cfg=cfg, seed=SEED, device=torch.device("cpu"), checkpoint=None)
            h = result.history[-1]
            step_times[name].append((h["epoch_time"] - h["eval_time"]) / steps)
        return run

    rounds = args.rounds or (31 if arch == "mlp" else 15)
    _common.interleave({name: make(name) for name in losses}, rounds=rounds, warmup=1)
    for name in losses:
        step_times[name] = step_times[name][1:]  # drop the warm-up
    base = step_times["celLoss"]
    rows, res = [], {}
    for name in losses:
        ratio = _common.median_ratio(step_times[name], base)
        lo, hi = _common.ratio_spread(step_times[name], base)
        target = _common.verdict(ratio, 1.05) if name == "milLoss" else ""
        rows.append([arch, name, 1e3 * _common.med(step_times[name]), ratio, f"{lo:.3f}-{hi:.3f}", target])
        res[name] = {"step_ms": [1e3 * t for t in step_times[name]], "median_ratio": ratio, "min": lo, "max": hi}
    return rows, {"n_train": n, "steps_per_epoch": steps, "rounds": rounds, "losses": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["mlp", "cnn", "both"], default="both")
    ap.add_argument("--n-train", type=int, default=60000, help="training images for the MLP")
    ap.add_argument("--cnn-n-train", type=int, default=4096, help="training images for the CNN (short epochs interleave better)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 31 for the MLP, 15 for the CNN)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--registry", default=str(_common.REPO / "registry.yaml"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("Benchmark 2: loss overhead (step time with each loss / with celLoss)")
    reg = load_registry(args.registry)
    losses = {name: (spec.target, dict(spec.params)) for name, spec in reg.losses.items()}
    if "celLoss" not in losses:
        raise SystemExit("the registry has no celLoss to compare against")
    full = load_splits("fashion-mnist", {}, None, False, None)
    archs = ["mlp", "cnn"] if args.arch == "both" else [args.arch]
    rows, results = [], {}
    for arch in archs:
        arch_rows, results[arch] = measure(arch, args, full, losses)
        rows += arch_rows
    print(_common.table(["model", "loss", "step ms (median)", "ratio to celLoss (median)", "ratio range",
                         "target <= 1.05"], rows))
    _common.write_json(args.json, {"benchmark": "loss_overhead", "machine": info, "results": results})


if __name__ == "__main__":
    main()
