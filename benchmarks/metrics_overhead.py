"""Benchmark: the per-epoch cost of bench.metrics.compute' calibration metrics, own code vs torchmetrics.

One evaluation epoch of an MLP on 10 000 Fashion-MNIST-shaped inputs (10 000 x 10 logits, in
eval batches of 4096) is the yardstick. Measured interleaved in one process (``_common``):

- ``mlp eval``: the forward passes alone;
- ``own metrics``: :class:`bench.metrics.compute.SplitMetrics` over the same logits, all six metrics
  (NLL, ECE, adaptive ECE, Brier, balanced accuracy, accuracy), ``compute()`` included;
- ``own metrics, test + val``: the same plus a 6 000-sample validation split (val_fraction 0.1);
- ``mlp train epoch``: one whole epoch of the MLP through ``bench.train.loop.train_cell`` (60 000
  images, batch 512, its test pass included): the issue's yardstick, printed as the two metric
  rows' share of it (target: at most 5%);
- ``torchmetrics``: its ECE (15 bins, L1) and macro accuracy (= balanced accuracy), the two of
  these metrics it has, when torchmetrics is importable (it is not a lossbench dependency).

It also prints how far torchmetrics' values are from ours (they agree unless a confidence lies
exactly on a bin edge: its bins are left-closed, ours right-closed).

    .venv/bin/python benchmarks/metrics_overhead.py [--device cuda] [--rounds 20]
"""

from __future__ import annotations

import argparse

import _common
import torch

from bench.metrics.compute import SplitMetrics
from bench.models.zoo import build_model

N, K, EVAL_BATCH = 10_000, 10, 4096
TRAIN, VAL = 60_000, 6_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("Benchmark: metrics overhead (per evaluation epoch, 10000 x 10 logits)")
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, K, (N,), generator=g).to(device)
    torch.manual_seed(0)
    model = build_model("native", "mlp", (1, 28, 28), K, {}).to(device).eval()
    with torch.inference_mode():
        logits = torch.cat([model(x[s:s + EVAL_BATCH]) for s in range(0, N, EVAL_BATCH)]).float()
        logits = logits * 8  # spread the confidences over the bins (a fresh MLP is near-uniform)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    @torch.inference_mode()
    def forward() -> None:
        for s in range(0, N, EVAL_BATCH):
            model(x[s:s + EVAL_BATCH])
        sync()

    def own() -> dict[str, float]:
        acc = SplitMetrics()
        for s in range(0, N, EVAL_BATCH):
            acc.update(logits[s:s + EVAL_BATCH], y[s:s + EVAL_BATCH])
        return acc.compute()

    # the yardstick: one whole MLP epoch through the real trainer (60 000 training images,
    # batch 512, the 10 000-image test pass included), on Fashion-MNIST-shaped uint8 data
    from bench.data import Splits
    from bench.config.registry import TrainConfig
    from bench.train.loop import train_cell
    from losses.cross_entropy import CelLoss

    xt = torch.randint(0, 256, (TRAIN, 1, 28, 28), generator=g, dtype=torch.uint8)
    yt = torch.randint(0, K, (TRAIN,), generator=g)
    splits = Splits(xt, yt, (x * 255).to(torch.uint8).cpu(), y.cpu(), K, (1, 28, 28), (0.286,), (0.353,), "synthetic",
                    tuple(map(str, range(K))), kind="fashion-mnist")
    cfg = TrainConfig(epochs=1, batch_size=512, lr=1e-3, momentum=0.9, precision="fp32")

    def epoch() -> None:
        torch.manual_seed(0)
        mlp = build_model("native", "mlp", (1, 28, 28), K, {})
        train_cell(cell_id="bench", model=mlp, criterion=CelLoss(), splits=splits, cfg=cfg, seed=0, device=device,
                   checkpoint=None)

    def own_test_and_val() -> dict[str, float]:  # what a cell with a 10% validation split adds: 10 000 + 6 000
        own()
        acc = SplitMetrics()
        for s in range(0, VAL, EVAL_BATCH):
            acc.update(logits[s:s + min(EVAL_BATCH, VAL - s)], y[s:s + min(EVAL_BATCH, VAL - s)])
        return acc.compute()

    variants = {"mlp eval": forward, "own metrics": own, "own metrics, test + val": own_test_and_val,
                "mlp train epoch (train_cell)": epoch}
    try:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError
    except ImportError:
        MulticlassAccuracy = MulticlassCalibrationError = None  # noqa: N806
    if MulticlassCalibrationError is not None:
        def tm() -> dict[str, float]:
            ece = MulticlassCalibrationError(num_classes=K, n_bins=15, norm="l1").to(device)
            bacc = MulticlassAccuracy(num_classes=K, average="macro").to(device)
            for s in range(0, N, EVAL_BATCH):
                probs = logits[s:s + EVAL_BATCH].softmax(-1)
                ece.update(probs, y[s:s + EVAL_BATCH])
                bacc.update(probs, y[s:s + EVAL_BATCH])
            return {"ece": ece.compute().item(), "balanced_accuracy": bacc.compute().item()}
        variants["torchmetrics (ece + macro acc)"] = tm
    times = _common.interleave(variants, rounds=args.rounds)
    base = times["mlp eval"]
    rows = [[name, f"{_common.med(t) * 1e3:.2f}", f"{_common.median_ratio(t, base):.2f}"]
            for name, t in times.items()]
    print(_common.table(["per epoch", "ms (median)", "ratio to mlp eval"], rows))
    whole = times["mlp train epoch (train_cell)"]
    for name in ("own metrics", "own metrics, test + val"):
        lo, hi = _common.ratio_spread(times[name], whole)
        print(f"{name} / one MLP training epoch: {100 * _common.median_ratio(times[name], whole):.1f}% "
              f"(rounds {100 * lo:.1f}-{100 * hi:.1f}%; target <= 5%)")
    ours = own()
    print("own:", {k: round(v, 6) for k, v in ours.items()})
    if MulticlassCalibrationError is not None:
        theirs = tm()
        print("torchmetrics:", theirs, "| abs diff ece", abs(theirs["ece"] - ours["ece"]),
              "balanced_accuracy", abs(theirs["balanced_accuracy"] - ours["balanced_accuracy"]))
    _common.write_json(args.json, {"benchmark": "metrics_overhead", "machine": info, "device": str(device),
                                   "ms": {k: _common.med(v) * 1e3 for k, v in times.items()}})


if __name__ == "__main__":
    main()
