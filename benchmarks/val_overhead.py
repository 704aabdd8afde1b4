"""Benchmark 8: what a validation split (``train.val_fraction: 0.1``) costs an MLP epoch.

The same cell (the paper's MLP built by ``bench.models.zoo.build_model("native", "mlp", ...)`` right
after ``torch.manual_seed(0)``, ``losses.cross_entropy:CelLoss``, SGD lr 1e-3 momentum 0.9, batch
512, fp32, channels_last on as ``auto`` resolves on a CPU) is trained through the real loop,
``bench.train.loop.train_cell``, twice per round: once on ``bench.data.validation.hold_out(splits, 0.1,
0)`` and once on the splits unchanged (fraction 0), in alternating order (A B, B A, ...). The data
are Debian's Fashion-MNIST through ``bench.data.load_splits("fashion-mnist")`` when it can be
read, else (or with ``--synthetic``) random uint8 tensors of the same shape; the script says which.

With a validation split the training split is 10% smaller, so the epoch's training part shrinks
while its evaluation part grows by the validation pass. The script prints, from the history rows
(``epoch_time``, ``eval_time``), the per-epoch medians of both variants, the paired ratio of the
epoch times, each variant's share of the epoch spent evaluating, and the validation pass itself:
the extra evaluation time (val minus no-val ``eval_time``, paired per round) as a share of the
no-val epoch. Target: the validation pass adds at most 10% to the MLP epoch.

    .venv/bin/python benchmarks/val_overhead.py --threads 1
    .venv/bin/python benchmarks/val_overhead.py --synthetic --n-train 1024 --n-test 256 --epochs 1 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics

import _common
import torch

from bench.data import Splits, load_splits
from bench.data.validation import hold_out
from bench.errors import BenchError
from bench.models.zoo import build_model
from bench.config.registry import TrainConfig
from bench.train.loop import train_cell
from losses.cross_entropy import CelLoss

SEED = 0
VAL_FRACTION = 0.1
FASHION_SHAPE = (1, 28, 28)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)  # the published Fashion-MNIST constants


def synthetic_splits(n_train: int, n_test: int) -> Splits:
    """Random uint8 images and labels of Fashion-MNIST's shape (the timing does not depend on the pixels)."""
    gen = torch.Generator().manual_seed(SEED)
    return Splits(
        train_x=torch.randint(0, 256, (n_train, *FASHION_SHAPE), generator=gen, dtype=torch.uint8),
        train_y=torch.randint(0, 10, (n_train,), generator=gen),
        test_x=torch.randint(0, 256, (n_test, *FASHION_SHAPE), generator=gen, dtype=torch.uint8),
        test_y=torch.randint(0, 10, (n_test,), generator=gen),
        num_classes=10, in_shape=FASHION_SHAPE, mean=FASHION_MEAN, std=FASHION_STD,
        source="synthetic (random uint8 tensors of Fashion-MNIST's shape)",
        class_names=tuple(str(k) for k in range(10)), kind="fashion-mnist")


def data(args: argparse.Namespace) -> tuple[Splits, str]:
    """(splits, what they are): the real Fashion-MNIST when it can be read, else synthetic."""
    if not args.synthetic:
        try:
            splits = load_splits("fashion-mnist", {"n_train": args.n_train, "n_test": args.n_test})
            return splits, f"Fashion-MNIST from {splits.source}"
        except BenchError as exc:
            print(f"  Fashion-MNIST not readable ({exc}); using synthetic tensors of its shape")
    splits = synthetic_splits(args.n_train, args.n_test)
    return splits, splits.source


def measure(splits: Splits, args: argparse.Namespace) -> dict[str, object]:
    """Interleaved runs of the cell with and without a validation split; per-round means of each epoch's times."""
    variants = {"val": hold_out(splits, VAL_FRACTION, 0), "noval": hold_out(splits, 0.0, 0)}
    base = dict(epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd", lr=1e-3, momentum=0.9,
                precision="fp32", channels_last="on")
    rows: dict[str, list[list[dict[str, float]]]] = {name: [] for name in variants}

    def make(name: str):
        cfg = TrainConfig(**base, val_fraction=VAL_FRACTION if name == "val" else 0.0)

        def run() -> None:
            torch.manual_seed(SEED)
            s = variants[name]
            model = build_model("native", "mlp", s.in_shape, s.num_classes, {})
            result = train_cell(cell_id=f"bench-{name}", model=model, criterion=CelLoss(), splits=s, cfg=cfg,
                                seed=SEED, device=torch.device("cpu"), checkpoint=None)
            if result.status != "done":
                raise SystemExit(f"{name}: {result.status}: {result.message}")
            rows[name].append(result.history)
        return run

    _common.interleave({name: make(name) for name in variants}, rounds=args.rounds, warmup=1)
    out: dict[str, object] = {"rounds": args.rounds, "epochs_per_round": args.epochs,
                              "n_train": {k: v.n_train for k, v in variants.items()},
                              "n_val": variants["val"].n_val, "n_test": splits.n_test}
    per_round: dict[str, dict[str, list[float]]] = {}
    for name in variants:
        timed = rows[name][1:]  # drop the warm-up round
        epochs = [h for run in timed for h in run]
        per_round[name] = {k: [statistics.fmean(h[k] for h in run) for run in timed] for k in ("epoch_time", "eval_time")}
        out[name] = {"epoch_ms": 1e3 * _common.med([h["epoch_time"] for h in epochs]),
                     "eval_ms": 1e3 * _common.med([h["eval_time"] for h in epochs]),
                     "train_ms": 1e3 * _common.med([h["epoch_time"] - h["eval_time"] for h in epochs]),
                     "eval_share": _common.med([h["eval_time"] / h["epoch_time"] for h in epochs]),
                     "per_round": per_round[name]}
    val, noval = per_round["val"], per_round["noval"]
    out["epoch_ratio"] = _common.median_ratio(val["epoch_time"], noval["epoch_time"])
    out["epoch_ratio_range"] = _common.ratio_spread(val["epoch_time"], noval["epoch_time"])
    # the validation pass: the eval time it adds (the test pass is the same on both sides), paired per round
    extra = [(a - b) / c for a, b, c in zip(val["eval_time"], noval["eval_time"], noval["epoch_time"], strict=True)]
    out["val_pass_share"] = _common.med(extra)
    out["val_pass_share_range"] = (min(extra), max(extra))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=60000, help="first N training images (Fashion-MNIST has 60000)")
    ap.add_argument("--n-test", type=int, default=10000, help="first N test images (Fashion-MNIST has 10000)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds (each trains both variants once)")
    ap.add_argument("--synthetic", action="store_true", help="random tensors of Fashion-MNIST's shape, not the data set")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, help="also write the figures here (default $OUT/val_overhead.json)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("Benchmark 8: validation-split overhead of the MLP epoch (val_fraction 0.1 / 0)")
    splits, what = data(args)
    print(f"  data: {what}")
    res = measure(splits, args)
    val, noval = res["val"], res["noval"]
    assert isinstance(val, dict) and isinstance(noval, dict)
    n_train = res["n_train"]
    assert isinstance(n_train, dict)
    rows = [[label, n_train[name], res["n_val"] if name == "val" else 0, res["n_test"], r["epoch_ms"], r["train_ms"],
             r["eval_ms"], f"{100 * r['eval_share']:.1f}%"]
            for label, name, r in (("val 0.1", "val", val), ("val 0", "noval", noval))]
    print(_common.table(["variant", "train imgs", "val imgs", "test imgs", "epoch ms", "train part ms", "eval ms",
                         "eval / epoch"], rows))
    lo, hi = res["epoch_ratio_range"]
    share, (s_lo, s_hi) = res["val_pass_share"], res["val_pass_share_range"]
    print(f"  epoch time val 0.1 / val 0: {res['epoch_ratio']:.3f} (range {lo:.3f}-{hi:.3f}; "
          f"the training split is {100 * VAL_FRACTION:.0f}% smaller with val 0.1)")
    print(f"  validation pass (eval time added) / val-0 epoch: {100 * share:.1f}% "
          f"(range {100 * s_lo:.1f}-{100 * s_hi:.1f}%), target <= 10%: {_common.verdict(share, 0.10)}")
    print(f"  ms are per-epoch medians over {res['rounds']} rounds x {res['epochs_per_round']} epochs; "
          "ratios are medians of per-round ratios")
    _common.write_json(args.json, {"benchmark": "val_overhead", "machine": info, "data": what, "args": vars(args),
                                   "results": res})


if __name__ == "__main__":
    main()
