"""Benchmark: what ``bench run --log tensorboard|mlflow|wandb`` costs per epoch, on the paper's MLP.

One cell (Fashion-MNIST from Debian, the MLP, cross entropy, SGD, batch 512) is trained by
``bench.train.cell.run_cell`` (what ``bench run`` calls for each cell) without a tracker and with
each tracker, interleaved in one process (the order alternates each round). Per variant:

* epoch: the median of the history's ``epoch_time`` (training and evaluation; a tracker's
  background work, e.g. W&B's service process, shows here as a slower epoch), and its ratio to
  the untracked cell's in the same rounds;
* per-epoch hooks: the time spent inside the tracker's per-epoch hooks (``on_epoch_start``,
  ``on_history_row``, ``on_epoch_end``), measured around the calls, as a share of the untracked
  epoch. Target: under 2% of the epoch;
* per cell: the time spent opening and closing the tracker run (``on_cell_start``,
  ``on_cell_end``), paid once per cell, not per epoch.

    .venv/bin/python benchmarks/tracker_overhead.py                  # every tracker, 5 rounds of 3 epochs
    .venv/bin/python benchmarks/tracker_overhead.py --trackers mlflow --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _common

from bench.config.cells import expand_grid
from bench.config.registry import parse_registry
from bench.run.trackers import TRACKERS
from bench.seams import Seams
from bench.train.cell import ExecOptions, run_cell
from bench.train.loop import TrainCallback


class Timed(TrainCallback):
    """Forwards every hook to ``inner`` and adds the time each took to ``per_epoch`` or ``per_cell``."""

    def __init__(self, inner: TrainCallback) -> None:
        self.inner, self.per_epoch, self.per_cell = inner, 0.0, 0.0

    def _time(self, fn, *args, epoch: bool) -> None:
        t0 = time.perf_counter()
        fn(*args)
        spent = time.perf_counter() - t0
        if epoch:
            self.per_epoch += spent
        else:
            self.per_cell += spent

    def on_cell_start(self, *a) -> None:
        self._time(self.inner.on_cell_start, *a, epoch=False)

    def on_epoch_start(self, *a) -> None:
        self._time(self.inner.on_epoch_start, *a, epoch=True)

    def on_history_row(self, *a) -> None:
        self._time(self.inner.on_history_row, *a, epoch=True)

    def on_epoch_end(self, *a) -> None:
        self._time(self.inner.on_epoch_end, *a, epoch=True)

    def on_cell_end(self, *a) -> None:
        self._time(self.inner.on_cell_end, *a, epoch=False)


def make_cell(n_train: int, epochs: int):
    reg = parse_registry({
        "datasets": {"fashion-mnist": {"kind": "fashion-mnist", "params": {"n_train": n_train}}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}},
        "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"}},
        "grids": {"bench": {"datasets": ["fashion-mnist"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                            "train": {"epochs": epochs, "batch_size": 512, "optimizer": "sgd", "lr": 0.001,
                                      "momentum": 0.9}}},
    }, source="<benchmark>")
    (cell,) = expand_grid(reg, "bench")
    return cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trackers", nargs="+", choices=list(TRACKERS), default=list(TRACKERS))
    ap.add_argument("--n-train", type=int, default=60000, help="first N training images (Fashion-MNIST has 60000)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = _common.parse_torch_args(ap)
    info = _common.header("Benchmark: a tracker's cost per epoch (MLP, Fashion-MNIST)")
    cell = make_cell(args.n_train, args.epochs)
    results = Path(tempfile.mkdtemp(prefix="lossbench-trackers-"))
    memo: dict = {}
    epochs: dict[str, list[float]] = {n: [] for n in ["none", *args.trackers]}
    hooks: dict[str, list[float]] = {n: [] for n in args.trackers}
    opens: dict[str, list[float]] = {n: [] for n in args.trackers}

    def variant(name: str):
        def go() -> None:
            timed = Timed(TRACKERS[name](results)) if name != "none" else None
            opts = ExecOptions(device="cpu", seams=Seams(callbacks=(timed,) if timed else ()))
            outcome = run_cell(cell, opts, memo=memo)
            if outcome.status != "done":
                raise SystemExit(f"cell {outcome.status}: {outcome.row['message']}")
            epochs[name].append(statistics.median(h["epoch_time"] for h in outcome.history))
            if timed is not None:
                hooks[name].append(timed.per_epoch / len(outcome.history))
                opens[name].append(timed.per_cell)
        return go

    variants = {n: variant(n) for n in epochs}
    _common.interleave(variants, rounds=args.rounds, warmup=1)
    # the warm-up round's figures are left out
    for store in (epochs, hooks, opens):
        for name in store:
            del store[name][0]
    base = _common.med(epochs["none"])
    rows, payload = [], {"machine": info, "n_train": args.n_train, "epochs": args.epochs, "rounds": args.rounds,
                         "epoch_s": epochs, "hook_s_per_epoch": hooks, "open_close_s_per_cell": opens}
    rows.append(["none", f"{base:.3f}", "1", "", "", ""])
    for name in args.trackers:
        hook = _common.med(hooks[name])
        share = hook / base
        rows.append([name, f"{_common.med(epochs[name]):.3f}", f"{_common.median_ratio(epochs[name], epochs['none']):.3f}",
                     f"{1e3 * hook:.2f} ms ({100 * share:.2f}%)", _common.verdict(share, 0.02),
                     f"{_common.med(opens[name]):.2f} s"])
    print(_common.table(["tracker", "epoch (s)", "epoch / untracked", "per-epoch hooks (share of epoch)",
                         "target < 2%", "open + close per cell"], rows))
    _common.write_json(args.json or None, {"benchmark": "tracker_overhead", **payload})


if __name__ == "__main__":
    main()
