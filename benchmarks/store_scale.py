"""Benchmark 4: `bench status` and `bench report` on large stores, and how their cost grows with the cells.

Builds (once; reused while its parameters match) synthetic workspaces under ``--dir``:

* ``registry.yaml``: the real registry's datasets, architectures and losses plus a grid ``scale``
  that names its own losses (5 of them), so the cell count does not follow the registry:
  Fashion-MNIST x mlp, cnn x 5 losses x a search of 4 trials x seeds = exactly ``--cells`` cells
  (a multiple of 40); its training has a validation split, so every selection rule applies;
* stores in the store's layout (``cells/*.parquet``, ``history/*.parquet``), written with pyarrow
  directly as a few large files (what compaction leaves): one cell row per cell (0.1% failed or
  diverged, the rest done) with every column the store writes (``run_cell``'s, and the selection
  rules' picks of its history that ``Store.write_result`` adds, computed by the same function), and
  10 (``h10``) or 100 (``h100``) history rows per cell with the test and validation columns the
  trainer records. Values lie on a 1e-4 grid, as accuracies on 10,000 test images do.
* ``h100-older``: the cell rows of ``h100`` as an older version wrote them, without the picks
  (its ``history`` a link to ``h100``'s), so a report reads every done cell's history.

Then:

1. ``bench status`` and ``bench report --select last|val|oracle|tuned`` on ``--cells`` cells x 100
   history rows, and ``bench report --select tuned`` on ``h100-older``, each a subprocess (wall time
   including interpreter start and imports, and CPU seconds) whose peak resident memory is read with
   ``resource.getrusage(RUSAGE_CHILDREN)`` in a fresh parent per run; targets < 2 s and < 2 GB each
   (the older rows' report: < 2 GB). ``python -c "import torch"`` is the floor every command pays,
   though neither command imports torch.
2. the growth line: ``bench report`` at each of ``--growth`` cells (100 history rows each), once
   each: time and peak memory should grow linearly.
3. the resume scan ``Store.statuses()`` on 10 and on 100 history rows per cell: its time must not
   grow with history (ratio ~ 1).
4. an in-process breakdown of where a report spends its time (``--profile`` adds cProfile's top).

``--baseline-code DIR`` runs every command of 1. and the breakdown of 4. with the ``bench`` package
under ``DIR`` too, in the same rounds, so two versions are compared under the same load:

    python benchmarks/store_scale.py                                   # 100k cells; growth 10k, 100k
    python benchmarks/store_scale.py --growth 10000,100000,1000000     # + 1M cells (~4 GB on disk)
    git archive 51e45a0 | tar -x -C /tmp/before                        # an earlier version, beside this one
    python benchmarks/store_scale.py --growth "" --rounds 2 --baseline-code /tmp/before --baseline-label 51e45a0
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

LOSSES = ["celLoss", "celLossLSR", "celLossCP", "celLossLC", "milLoss"]
ARCHS = ["mlp", "cnn"]
TRIALS = 4
PER_SEED = len(LOSSES) * len(ARCHS) * TRIALS
CELL_FILES = 4
HISTORY_ROWS_PER_FILE = 1_000_000
HISTORY_COLUMNS = ["train_loss", "train_acc", "test_acc", "test_loss", "test_h_cond", "test_h_marg", "test_mi",
                   "test_ece", "test_brier", "test_balanced_acc", "val_acc", "val_nll", "val_ece", "epoch_time",
                   "eval_time"]
SELECTS = ["last", "val", "oracle", "tuned"]
# the peak of one command alone: this runs as its own process, so its children are that command only
# and its CPU seconds (user + system): on a shared machine, less at the mercy of other load than the wall time
PEAK = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(json.dumps({'rc': r.returncode, 's': time.perf_counter() - t, 'out': r.stdout[:4000], "
        "'err': r.stderr[-2000:], 'rss_mb': u.ru_maxrss / 1024, 'cpu_s': u.ru_utime + u.ru_stime}))")


def write_registry(path: Path, seeds: int) -> None:
    real = yaml.safe_load((_common.REPO / "registry.yaml").read_text())
    reg = {k: real[k] for k in ("datasets", "architectures", "losses")}
    missing = [name for name in LOSSES if name not in reg["losses"]]
    if missing:
        raise SystemExit(f"registry.yaml has no loss {missing[0]!r}: update LOSSES in {Path(__file__).name}")
    reg["grids"] = {"scale": {
        "description": "synthetic: benchmarks/store_scale.py", "datasets": ["fashion-mnist"], "architectures": ARCHS,
        "losses": LOSSES, "seeds": list(range(seeds)),
        "train": {"epochs": 100, "batch_size": 512, "optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "val_fraction": 0.1},
        "search": {"trials": TRIALS, "seed": 0,
                   "space": {"train.lr": "loguniform(1e-4, 1e-1)", "milLoss.lam": "loguniform(0.5, 500)"}}}}
    path.write_text(yaml.safe_dump(reg, sort_keys=False, default_flow_style=None, width=1 << 20))


def expand(registry: Path):
    from bench.config.registry import load_registry
    from bench.plan.planner import make_plan

    return make_plan(load_registry(registry), "scale", validate=False).cells


def grid(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values on a 1e-4 grid (what accuracies on 10,000 images are; parquet stores them compactly)."""
    return np.round(rng.uniform(0, 1, n), 4)


def cell_table(cells, rng: np.random.Generator) -> tuple[pa.Table, list[str]]:
    """Rows shaped like bench.train.cell.run_cell's, one per cell."""
    n = len(cells)
    flats = [c.flat() for c in cells]
    columns: dict[str, list] = {k: [f.get(k) for f in flats] for k in flats[0]}
    del flats
    attempts = [f"{i:012x}" for i in range(n)]
    status = np.array(["done"] * n, dtype=object)
    bad = rng.choice(n, size=max(2, n // 1000), replace=False)
    status[bad[: len(bad) // 2]] = "failed"
    status[bad[len(bad) // 2:]] = "diverged"
    acc = 0.80 + 0.12 * grid(n, rng)
    h_cond = 0.2 + 0.3 * grid(n, rng)
    now = time.time_ns()
    columns.update({
        "attempt_id": attempts, "device": ["cpu"] * n, "host": ["bench"] * n, "torch_version": ["2.14.1"] * n,
        "python_version": ["3.11.7"] * n, "deterministic": [True] * n, "started_at": ["2026-01-01T00:00:00+00:00"] * n,
        "status": status.tolist(),
        "message": ["" if s == "done" else f"synthetic {s} cell; try a smaller lr" for s in status],
        "epochs_done": [100] * n, "resumed_from_epoch": [0] * n, "num_classes": [10] * n,
        "final_train_loss": grid(n, rng), "final_train_acc": grid(n, rng), "final_test_loss": h_cond,
        "final_test_acc": acc, "final_test_h_cond": h_cond, "final_test_h_marg": np.full(n, np.log(10)),
        "final_test_mi": np.log(10) - h_cond, "best_test_acc": acc + 0.001, "test_label_entropy": np.full(n, np.log(10)),
        "wall_time": 20 + 380 * grid(n, rng), "finished_at": ["2026-01-01T01:00:00+00:00"] * n,
        "written_at": now + np.arange(n, dtype=np.int64),
    })
    return pa.table(columns), attempts


def write_history(folder: Path, cell_ids: list[str], attempts: list[str], epochs: int, extra_columns: int,
                  rng: np.random.Generator) -> tuple[int, dict[str, np.ndarray]]:
    """The history files; returns their rows and, per cell, the row columns the store computes from a cell's
    history when it writes its row (bench.report.selection.pick_columns)."""
    from bench.report.selection import Histories, pick_columns

    folder.mkdir(parents=True, exist_ok=True)
    ids = np.array(cell_ids, dtype=object)
    att = np.array(attempts, dtype=object)
    cells_per_file = max(1, HISTORY_ROWS_PER_FILE // epochs)
    rows = 0
    names = HISTORY_COLUMNS + [f"extra_{i}" for i in range(extra_columns)]
    picks: list[dict[str, np.ndarray]] = []
    for part, start in enumerate(range(0, len(ids), cells_per_file)):
        sl = slice(start, start + cells_per_file)
        k = len(ids[sl])
        m = k * epochs
        values = {name: grid(m, rng) for name in names}
        table = pa.table({
            "cell_id": pa.array(np.repeat(ids[sl], epochs), pa.string()),
            "attempt_id": pa.array(np.repeat(att[sl], epochs), pa.string()),
            "epoch": np.tile(np.arange(1, epochs + 1, dtype=np.int64), k),
            **values})
        pq.write_table(table, folder / f"merged-{time.time_ns():020d}-{part:04d}.parquet")
        picks.append(pick_columns(Histories(list(ids[sl]), np.arange(0, m + 1, epochs, dtype=np.int64), values)))
        rows += m
    return rows, {name: np.concatenate([p[name] for p in picks]) for name in picks[0]}


def build(root: Path, cells: int, epochs: tuple[int, ...] = (10, 100), extra_columns: int = 0,
          picks: bool = True) -> dict:
    """A workspace of exactly ``cells`` cells with one store per history length (``root/h<epochs>``), and
    ``root/h100-older``, the 100-row store's cell rows without the selection rules' picks (an older version's).
    ``picks``: whether the cell rows of ``h<epochs>`` carry them too."""
    if cells <= 0 or cells % PER_SEED:
        raise SystemExit(f"--cells {cells}: expected a positive multiple of {PER_SEED} "
                         f"({len(ARCHS)} architectures x {len(LOSSES)} losses x {TRIALS} trials per seed)")
    spec = {"cells": cells, "epochs": list(epochs), "extra_columns": extra_columns, "picks": picks, "version": 4}
    marker = root / "built.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return json.loads(marker.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    write_registry(root / "registry.yaml", cells // PER_SEED)
    expanded = expand(root / "registry.yaml")
    if len(expanded) != cells:
        raise SystemExit(f"the grid expanded to {len(expanded):,} cells, not {cells:,}")
    rng = np.random.default_rng(0)
    table, attempts = cell_table(expanded, rng)
    cell_ids = [c.cell_id for c in expanded]
    del expanded
    info: dict = {"spec": spec, "cells": cells}
    for e in epochs:
        store = root / f"h{e}"
        info[f"history_rows_h{e}"], stored = write_history(store / "history", cell_ids, attempts, e, extra_columns, rng)
        with_picks = table
        for name, values in stored.items():
            with_picks = with_picks.append_column(name, pa.array(values))
        write_cells(store / "cells", with_picks if picks else table)
        info[f"bytes_h{e}"] = sum(p.stat().st_size for p in store.rglob("*.parquet"))
        if e == 100:
            older = root / "h100-older"
            write_cells(older / "cells", table)
            (older / "history").symlink_to(Path("..") / store.name / "history")
    info["build_s"] = time.perf_counter() - t0
    marker.write_text(json.dumps(info))
    return info


def write_cells(folder: Path, table: pa.Table) -> None:
    folder.mkdir(parents=True)
    per = -(-table.num_rows // CELL_FILES)
    for i in range(CELL_FILES):
        pq.write_table(table.slice(i * per, per), folder / f"merged-{time.time_ns():020d}-{i:04d}.parquet")


def bench_cmd(ws: Path, store: str, *args: str, code: Path | None = None) -> dict:
    """One ``bench`` command on ``ws/store`` in a fresh parent: wall seconds, peak resident MB, output.
    ``code``: the folder holding the ``bench`` package to run (default: the one this process imports)."""
    cmd = [sys.executable, "-m", "bench.cli", *args, "--grid", "scale", "--registry", str(ws / "registry.yaml"),
           "--results", str(ws / store)]
    if code is None:
        import bench  # the code measured: the package this process imports, in the subprocess too

        code = Path(bench.__file__).parents[1]
    path = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "LOSSBENCH_CACHE": str(ws / "cache"), "PYTHONPATH": path}
    # run in the code's folder: `python -m` puts the working folder first on the path, ahead of PYTHONPATH
    out = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, env=env, check=True,
                         cwd=code)
    r = json.loads(out.stdout)
    # `bench status` exits 1 on a grid holding failed or diverged cells, as this store does (0.1% of them)
    if r["rc"] not in ((0, 1) if args[0] == "status" else (0,)):
        raise SystemExit(f"bench {' '.join(args)} failed ({r['rc']}): {r['err']}")
    r["load1"] = os.getloadavg()[0]
    return r


def floor() -> dict:
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-c", "import torch"],
                         capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout), "load1": os.getloadavg()[0]}


def breakdown(ws: Path, profile: bool) -> list[list[object]]:
    """Where a `--select tuned` report spends its time, in process (imports excluded), step by step as
    ``bench report`` runs them (the garbage collector paused, as there); then `bench status`'s scan, and a
    report on rows written without the picks."""
    from bench.config.registry import load_registry
    from bench.plan.planner import make_plan
    from bench.report.collect import REPORT_COLUMNS, annotate, collect_from_store
    from bench.report.render import render
    from bench.store.results import Store

    steps: list[list[object]] = []

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        steps.append([name, time.perf_counter() - t0])
        return out

    prof = cProfile.Profile() if profile else None
    gc.disable()  # as bench status and bench report run (bench.cli.main.gc_paused)
    if prof:
        prof.enable()
    registry = timed("load_registry (yaml + pydantic)", lambda: load_registry(ws / "registry.yaml"))
    plan = timed("make_plan (cells, identities)", lambda: make_plan(registry, "scale", validate=False))
    cells = plan.cells
    store = Store(ws / "h100")
    results = timed("Store.cells(REPORT_COLUMNS)", lambda: store.cells(REPORT_COLUMNS))
    data = timed("collect_from_store(tuned; every rule)", lambda: collect_from_store("scale", cells, results, store,
                                                                                    "celLoss", "tuned"))
    timed("annotate (stale cells, the search's completeness)",
          lambda: annotate(data, registry, "scale", plan, store, results))
    timed("render(markdown)", lambda: render(data, "markdown", None))
    timed("Store.statuses() (bench status's scan)", store.statuses)
    older = Store(ws / "h100-older")
    timed("older rows: Store.cells + collect_from_store (reads the history)",
          lambda: collect_from_store("scale", cells, older.cells(REPORT_COLUMNS), older, "celLoss", "tuned"))
    gc.enable()
    if prof:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        print(buf.getvalue())
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "lossbench-store-scale"),
                    help="workspaces (reused while their spec matches; default under $TMPDIR)")
    ap.add_argument("--cells", type=int, default=100_000, help=f"cells of the main workspace (a multiple of {PER_SEED})")
    ap.add_argument("--growth", default="10000,100000", help="comma-separated cell counts of the growth line")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (they warm the file cache)")
    ap.add_argument("--scan-rounds", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="small sizes (4,000 cells; growth 2,000 and 8,000), one round, no warm-up")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions of the in-process breakdown")
    ap.add_argument("--baseline-code", default=None,
                    help="also run every command with the bench package under this folder (e.g. `git archive` of an "
                         "earlier commit), interleaved in the same rounds")
    ap.add_argument("--baseline-label", default=None, help="its name in the tables (default: the folder's)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--breakdown-only", action="store_true",
                    help="print the in-process breakdown of the built workspace as JSON and stop (how --baseline-code "
                         "measures the other code's)")
    args = ap.parse_args()
    if args.quick:
        args.cells, args.growth, args.rounds, args.warmup, args.scan_rounds = 4000, "2000,8000", 1, 0, 3
    if args.breakdown_only:
        print(json.dumps(breakdown(Path(args.dir) / f"c{args.cells}", False)))
        return
    sizes = [int(s) for s in args.growth.split(",") if s]
    info = _common.header("Benchmark 4: store and report scale")
    root = Path(args.dir)
    ws = root / f"c{args.cells}"
    built = build(ws, args.cells)
    print(f"  workspace {ws}: {built['cells']:,} cells; history {built['history_rows_h10']:,} rows "
          f"({built['bytes_h10'] / 1e6:.0f} MB) and {built['history_rows_h100']:,} rows "
          f"({built['bytes_h100'] / 1e6:.0f} MB)" + (f"; built in {built['build_s']:.0f} s" if "build_s" in built else ""))

    # name -> (store, arguments, code folder or None for this checkout's, whether the time target applies)
    commands = {"bench status": ("h100", ["status"], None, True),
                **{f"bench report --select {k}": ("h100", ["report", "--select", k], None, True) for k in SELECTS},
                "bench report --select tuned, older rows (reads the history)":
                    ("h100-older", ["report", "--select", "tuned"], None, False)}
    if args.baseline_code:  # the same commands with another checkout's code, in the same rounds
        label = args.baseline_label or Path(args.baseline_code).name
        commands.update({f"{name} [{label}]": (store, argv, Path(args.baseline_code), timed)
                         for name, (store, argv, _, timed) in list(commands.items())})
    runs: dict[str, list[dict]] = {"python -c 'import torch'": [], **{name: [] for name in commands}}
    outputs: dict[str, str] = {}
    for r in range(args.warmup + args.rounds):  # the order alternates each round; warm-up rounds are not counted
        names = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in names:
            if name in commands:
                store, argv, code, _ = commands[name]
                res = bench_cmd(ws, store, *argv, code=code)
            else:
                res = floor()
            outputs[name] = res.get("out", "")
            if r >= args.warmup:
                runs[name].append(res)
    base = [x["s"] for x in runs["python -c 'import torch'"]]
    rows = []
    for name, rs in runs.items():
        ts = [x["s"] for x in rs]
        rss = max(x["rss_mb"] for x in rs)
        is_floor = name.startswith("python")
        timed = not is_floor and commands[name][3]
        target = "" if is_floor else ("OK" if (_common.med(ts) < 2.0 or not timed) and rss < 2048 else "MISSED")
        rows.append([name, _common.med(ts), f"{min(ts):.2f}-{max(ts):.2f}",
                     f"{_common.med([x['cpu_s'] for x in rs]):.2f}",
                     "" if is_floor else f"{_common.med([a - b for a, b in zip(ts, base)]):.2f}", f"{rss:,.0f}",
                     f"{_common.med([x['load1'] for x in rs]):.1f}", target if timed or is_floor else f"{target} (2 GB)"])
    print(f"\n{built['cells']:,} cells x 100 history rows ({built['history_rows_h100']:,} rows), median of {args.rounds}")
    print(_common.table(["command (subprocess)", "wall s (median)", "range", "CPU s (median)", "minus `import torch`",
                         "peak RSS MB", "load (1 min)", "target < 2 s, < 2 GB"], rows))
    print(f"status says: {outputs['bench status'].splitlines()[0] if outputs['bench status'] else ''}")

    growth = []
    for n in sizes:
        gws = ws if n == args.cells else root / f"c{n}"
        g = build(gws, n) if gws == ws else build(gws, n, epochs=(100,))
        res = bench_cmd(gws, "h100", "report")
        growth.append({"cells": n, "history_rows": g["history_rows_h100"], "s": res["s"], "rss_mb": res["rss_mb"],
                       "load1": res["load1"]})
    grow_rows = [[f"{g['cells']:,}", f"{g['history_rows']:,}", g["s"], f"{g['rss_mb']:,.0f}",
                  f"{1e6 * g['s'] / g['cells']:.1f}", f"{g['load1']:.1f}"] for g in growth]
    print("\ngrowth: `bench report` (every rule computed; --select last shown), one run per size")
    print(_common.table(["cells", "history rows", "wall s", "peak RSS MB", "us per cell", "load (1 min)"], grow_rows))

    from bench.store.results import Store

    small, large = Store(ws / "h10"), Store(ws / "h100")
    scan = _common.interleave({"statuses() 10 rows/cell": small.statuses, "statuses() 100 rows/cell": large.statuses},
                              rounds=args.scan_rounds, warmup=1)
    ratio = _common.median_ratio(scan["statuses() 100 rows/cell"], scan["statuses() 10 rows/cell"])
    print(_common.table(["resume scan", "seconds (median)"], [[k, _common.med(v)] for k, v in scan.items()]
                        + [["ratio 100 / 10 rows per cell (median)", ratio]]))
    print(f"  target: does not grow with history (ratio < 1.25): {'OK' if ratio < 1.25 else 'MISSED'}")
    steps = breakdown(ws, args.profile)
    if args.baseline_code:  # the same steps with the other code, in a process of its own
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [args.baseline_code, os.environ.get("PYTHONPATH")]))}
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--breakdown-only", "--dir", str(root),
                              "--cells", str(args.cells)], capture_output=True, text=True, env=env, check=True,
                             cwd=args.baseline_code)
        theirs = dict(json.loads(out.stdout.splitlines()[-1]))
        label = args.baseline_label or Path(args.baseline_code).name
        steps = [[name, s, theirs.get(name, "")] for name, s in steps]
        print(_common.table(["in-process step (imports excluded)", "seconds", f"seconds [{label}]"], steps))
    else:
        print(_common.table(["in-process step (imports excluded)", "seconds"], steps))
    _common.write_json(args.json, {"benchmark": "store_scale", "machine": info, "workspace": built,
                                   "commands": {k: [{x: r[x] for x in ("s", "cpu_s", "rss_mb", "load1")} for r in v]
                                                for k, v in runs.items()},
                                   "growth": growth, "scan_seconds": scan, "scan_ratio": ratio, "breakdown": steps})


if __name__ == "__main__":
    main()
