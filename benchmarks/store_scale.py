"""Benchmark 4: `bench status` and `bench report` on a store of 100,000 finished cells.

Builds (once; reused while its parameters match) a synthetic workspace under ``--dir``:

* ``registry.yaml``: the real registry's datasets, architectures and losses plus a grid
  ``scale`` (Fashion-MNIST x mlp, cnn x the 5 losses x ``--seeds`` seeds: 100,000 cells for
  10,000 seeds) so that ``bench status --grid scale`` and ``bench report --grid scale`` resolve
  every cell;
* two stores in the store's layout (``results/cells/*.parquet``, ``results/history/*.parquet``),
  written with pyarrow directly as a few large files (what compaction leaves): one cell row per
  cell (0.1% failed or diverged, the rest done) with every column ``run_cell`` writes, and
  ``--epochs-small`` (1M history rows) or ``--epochs-large`` (10M rows) history rows per cell.

Then, interleaved in one process:

1. ``bench status`` and ``bench report`` on the large store, as subprocesses (wall time,
   including the interpreter start and imports); target < 2 s each. Also ``python -c "import
   torch"`` as the floor every ``bench`` command pays.
2. the resume scan ``Store.statuses()`` on the small and the large store: its time must not
   grow with history (ratio large / small ~ 1).
3. an in-process breakdown of where status and report spend their time (``--profile`` adds
   cProfile's top functions).

    .venv/bin/python benchmarks/store_scale.py                     # ~2 min the first time (writes ~0.5 GB)
    .venv/bin/python benchmarks/store_scale.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

BENCH = str(Path(sys.executable).with_name("bench"))
CELL_FILES = 4
HISTORY_ROWS_PER_FILE = 1_000_000


def write_registry(path: Path, seeds: int) -> None:
    real = yaml.safe_load((_common.REPO / "registry.yaml").read_text())
    reg = {k: real[k] for k in ("datasets", "architectures", "losses")}
    reg["grids"] = {"scale": {"description": "synthetic: 100k cells for benchmarks/store_scale.py",
                              "datasets": ["fashion-mnist"], "architectures": ["mlp", "cnn"], "losses": "all",
                              "seeds": list(range(seeds)),
                              "train": {"epochs": 77, "batch_size": 512, "optimizer": "sgd", "lr": 0.001, "momentum": 0.9}}}
    path.write_text(yaml.safe_dump(reg, sort_keys=False, default_flow_style=None, width=1 << 20))


def expand(registry: Path):
    from bench.plan.planner import make_plan
    from bench.config.registry import load_registry

    return make_plan(load_registry(registry), "scale", validate=False).cells


def cell_table(cells, rng: np.random.Generator) -> tuple[pa.Table, list[str]]:
    """Rows shaped like bench.train.cell.run_cell's, one per cell."""
    n = len(cells)
    flats = [c.flat() for c in cells]
    columns: dict[str, list] = {k: [f[k] for f in flats] for k in flats[0]}
    attempts = [f"{i:012x}" for i in range(n)]
    status = np.array(["done"] * n, dtype=object)
    bad = rng.choice(n, size=max(2, n // 1000), replace=False)
    status[bad[: len(bad) // 2]] = "failed"
    status[bad[len(bad) // 2:]] = "diverged"
    acc = rng.uniform(0.80, 0.92, n)
    h_cond = rng.uniform(0.2, 0.5, n)
    h_marg = np.full(n, np.log(10)) - rng.uniform(0, 1e-3, n)
    now = time.time_ns()
    columns.update({
        "attempt_id": attempts, "device": ["cpu"] * n, "host": ["bench"] * n, "torch_version": ["2.14.1"] * n,
        "python_version": ["3.11.7"] * n, "deterministic": [True] * n, "started_at": ["2026-01-01T00:00:00+00:00"] * n,
        "status": status.tolist(),
        "message": ["" if s == "done" else f"synthetic {s} cell; try a smaller lr" for s in status],
        "epochs_done": [77] * n, "resumed_from_epoch": [0] * n, "num_classes": [10] * n,
        "final_train_loss": rng.uniform(0.1, 0.4, n), "final_train_acc": rng.uniform(0.85, 0.95, n),
        "final_test_loss": h_cond, "final_test_acc": acc, "final_test_h_cond": h_cond, "final_test_h_marg": h_marg,
        "final_test_mi": h_marg - h_cond, "best_test_acc": acc + 0.001, "test_label_entropy": np.full(n, np.log(10)),
        "wall_time": rng.uniform(20, 400, n), "finished_at": ["2026-01-01T01:00:00+00:00"] * n,
        "written_at": now + np.arange(n, dtype=np.int64),
    })
    return pa.table(columns), attempts


def write_history(folder: Path, cell_ids: list[str], attempts: list[str], epochs: int, rng: np.random.Generator) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.array(cell_ids, dtype=object)
    att = np.array(attempts, dtype=object)
    cells_per_file = max(1, HISTORY_ROWS_PER_FILE // epochs)
    rows = 0
    for part, start in enumerate(range(0, len(ids), cells_per_file)):
        sl = slice(start, start + cells_per_file)
        k = len(ids[sl])
        m = k * epochs
        table = pa.table({
            "cell_id": pa.array(np.repeat(ids[sl], epochs), pa.string()),
            "attempt_id": pa.array(np.repeat(att[sl], epochs), pa.string()),
            "epoch": np.tile(np.arange(1, epochs + 1, dtype=np.int64), k),
            "train_loss": rng.uniform(0.1, 2.3, m), "train_acc": rng.uniform(0.1, 0.95, m),
            "test_acc": rng.uniform(0.1, 0.92, m), "test_loss": rng.uniform(0.2, 2.3, m),
            "test_h_cond": rng.uniform(0.2, 2.3, m), "test_h_marg": rng.uniform(2.2, 2.31, m),
            "test_mi": rng.uniform(0, 2.1, m), "epoch_time": rng.uniform(0.3, 5, m), "eval_time": rng.uniform(0.01, 0.3, m),
        })
        pq.write_table(table, folder / f"merged-{time.time_ns():020d}-{part:04d}.parquet")
        rows += m
    return rows


def build(root: Path, seeds: int, epochs_small: int, epochs_large: int) -> dict:
    spec = {"seeds": seeds, "epochs_small": epochs_small, "epochs_large": epochs_large, "version": 2}
    marker = root / "built.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return json.loads(marker.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    write_registry(root / "registry.yaml", seeds)
    cells = expand(root / "registry.yaml")
    rng = np.random.default_rng(0)
    table, attempts = cell_table(cells, rng)
    info = {"spec": spec, "cells": len(cells)}
    for name, epochs in (("small", epochs_small), ("large", epochs_large)):
        store = root / name
        (store / "cells").mkdir(parents=True)
        per = -(-len(cells) // CELL_FILES)
        for i in range(CELL_FILES):
            pq.write_table(table.slice(i * per, per), store / "cells" / f"merged-{time.time_ns():020d}-{i:04d}.parquet")
        info[f"history_rows_{name}"] = write_history(store / "history", [c.cell_id for c in cells], attempts, epochs, rng)
        info[f"bytes_{name}"] = sum(p.stat().st_size for p in store.rglob("*.parquet"))
    info["build_s"] = time.perf_counter() - t0
    marker.write_text(json.dumps(info))
    return info


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOSSBENCH_CACHE": str(CACHE)}
    return subprocess.run([BENCH, *args], capture_output=True, text=True, env=env, check=False)


def breakdown(root: Path, profile: bool) -> list[list[object]]:
    """Where status and report spend their time, in process (imports excluded)."""
    import bench.report as report
    from bench.config.registry import load_registry
    from bench.store.results import Store

    registry, results = root / "registry.yaml", root / "large"
    steps: list[list[object]] = []

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        steps.append([name, time.perf_counter() - t0])
        return out

    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    timed("load_registry (yaml + pydantic)", lambda: load_registry(registry))
    cells = timed("make_plan (100k cells, identities)", lambda: expand(registry))
    store = Store(results)
    timed("Store.statuses() (the resume scan)", store.statuses)
    timed("Store.cells([cell_id, status, message])", lambda: store.cells(["cell_id", "status", "message"]))
    full = timed("Store.cells(REPORT_COLUMNS)", lambda: store.cells(report.REPORT_COLUMNS))
    data = timed("report.collect()", lambda: report.collect("scale", cells, full, "celLoss"))
    timed("report.render(markdown)", lambda: report.render(data, "markdown", None))
    if prof:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(35)
        print(buf.getvalue())
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
        print(buf.getvalue())
    return steps


CACHE = Path("/nonexistent")


def main() -> None:
    global CACHE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/lossbench-store-scale", help="workspace (reused while its spec matches)")
    ap.add_argument("--seeds", type=int, default=10_000, help="seeds in the grid (x 2 archs x 5 losses = cells)")
    ap.add_argument("--epochs-small", type=int, default=10, help="history rows per cell in the small store")
    ap.add_argument("--epochs-large", type=int, default=100, help="history rows per cell in the large store")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scan-rounds", type=int, default=11)
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions of the in-process breakdown")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = _common.header("Benchmark 4: store and report scale")
    root = Path(args.dir)
    CACHE = root / "cache"
    built = build(root, args.seeds, args.epochs_small, args.epochs_large)
    print(f"  workspace {root}: {built['cells']:,} cells; history {built['history_rows_small']:,} rows "
          f"({built['bytes_small'] / 1e6:.0f} MB) and {built['history_rows_large']:,} rows "
          f"({built['bytes_large'] / 1e6:.0f} MB)" + (f"; built in {built['build_s']:.0f} s" if "build_s" in built else ""))

    from bench.store.results import Store

    common = ["--grid", "scale", "--registry", str(root / "registry.yaml")]
    outputs: dict[str, str] = {}

    def run(name: str, *a: str):
        def go() -> None:
            r = cli(*a, *common, "--results", str(root / "large"))
            if r.returncode != 0:
                raise SystemExit(f"bench {' '.join(a)} failed ({r.returncode}): {r.stderr[-2000:]}")
            outputs[name] = r.stdout
        return go

    def import_torch() -> None:
        subprocess.run([sys.executable, "-c", "import torch"], check=True)

    cli_times = _common.interleave({"python -c 'import torch'": import_torch, "bench status": run("status", "status"),
                                    "bench report": run("report", "report")}, rounds=args.rounds, warmup=1)
    small, large = Store(root / "small"), Store(root / "large")
    scan = _common.interleave({"statuses() 1M history": small.statuses, "statuses() 10M history": large.statuses},
                              rounds=args.scan_rounds, warmup=1)
    n_done = sum(v == "done" for v in large.statuses().values())
    steps = breakdown(root, args.profile)

    floor = cli_times["python -c 'import torch'"]
    rows = [[name, _common.med(ts), f"{min(ts):.2f}-{max(ts):.2f}",
             "" if ts is floor else f"{_common.med([a - b for a, b in zip(ts, floor)]):.2f}",
             "" if ts is floor else _common.verdict(_common.med(ts), 2.0)] for name, ts in cli_times.items()]
    print(_common.table(["command (wall, subprocess)", "seconds (median)", "range",
                         "minus `import torch` (median per round)", "target < 2 s"], rows))
    print(f"status says: {outputs['status'].splitlines()[0]}")
    ratio = _common.median_ratio(scan["statuses() 10M history"], scan["statuses() 1M history"])
    print(_common.table(["resume scan", "seconds (median)"], [[k, _common.med(v)] for k, v in scan.items()]
                        + [["ratio 10M / 1M history (median)", ratio]]))
    extra_rows = built["history_rows_large"] - built["history_rows_small"]
    growth = (_common.med(scan["statuses() 10M history"]) - _common.med(scan["statuses() 1M history"])) / (extra_rows / 1e6)
    print(f"  statuses() found {n_done:,} done cells; growth {1e3 * growth:+.1f} ms per million history rows; "
          f"target: does not grow with history (ratio < 1.25): {'OK' if ratio < 1.25 else 'MISSED'}")
    print(_common.table(["in-process step (imports excluded)", "seconds"], steps))
    _common.write_json(args.json, {"benchmark": "store_scale", "machine": info, "workspace": built,
                                   "cli_seconds": cli_times, "scan_seconds": scan, "scan_ratio": ratio,
                                   "scan_growth_s_per_million_rows": growth,
                                   "breakdown": steps})


if __name__ == "__main__":
    main()
