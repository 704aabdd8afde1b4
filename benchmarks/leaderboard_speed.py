"""Benchmark 12: what the leaderboard costs: its statistics alone, ``bench leaderboard`` and ``bench site`` on a
suite's export, and ``bench leaderboard`` on the 100,000-cell synthetic store of benchmark 4.

* the statistics, in process: the IQM and the probability of improvement with 10,000 stratified-bootstrap
  resamples, the performance profiles (2,000) and the Bayesian signed-rank test, for each of 12 losses
  against a baseline on 4 tasks x 3 seeds (the shape of ``fashion-mnist-suite``), median of ``--rounds``;
* the commands, as subprocesses (wall time including the interpreter's start), each with its peak resident
  memory, ``bench site`` on the 100,000-cell store among them (``resource.getrusage(RUSAGE_CHILDREN)``
  read in a fresh parent per command).

    python benchmarks/leaderboard_speed.py --export report/fashion-mnist-suite/fashion-mnist-suite.parquet
    python benchmarks/leaderboard_speed.py --quick          # the statistics only, 1 round
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np


def statistics(rounds: int, reps: int) -> list[list[object]]:
    import pandas as pd

    from bench.leaderboard import aggregate

    rng = np.random.default_rng(0)
    tasks, seeds, losses = 4, 3, 13
    rows = [{"task": f"t{t}", "loss": f"l{i}", "seed": s, "score": 80 + rng.normal(0, 1) + 0.2 * i}
            for i in range(losses) for t in range(tasks) for s in range(seeds)]
    norm = aggregate.normalise(pd.DataFrame(rows), "l0")
    matrices = aggregate.score_matrices(norm)
    taus = np.linspace(-3, 3, 101)
    diffs = rng.normal(0.5, 0.5, tasks)
    steps = {
        f"IQM, {reps:,} resamples, 13 losses": lambda: aggregate.iqm(matrices, reps=reps, seed=0),
        f"probability of improvement, {reps:,} resamples, 12 pairs": lambda: [
            aggregate.probability_of_improvement(m, matrices["l0"], reps=reps, seed=0) for m in matrices.values()],
        "performance profiles, 2,000 resamples, 101 thresholds": lambda: aggregate.performance_profile(
            matrices, taus, seed=0),
        "Bayesian signed-rank test, 50,000 samples, 12 losses": lambda: [
            aggregate.rope_verdict(diffs, 0.5, seed=i) for i in range(12)],
    }
    out = []
    for name, step in steps.items():
        step()  # imports and caches outside the timing
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out.append([name, f"{_common.med(times):.3f}", f"{min(times):.3f}-{max(times):.3f}"])
    return out


def timed(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds and peak resident MB of one command, measured in a fresh parent."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
             "w = time.perf_counter() - t; "
             "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r.returncode)")
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "bench.cli", *args], cwd=cwd,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    wall, rss, code = out.stdout.split()
    return float(wall), float(rss), int(code)


def commands(export: Path | None, store: Path | None, rounds: int) -> list[list[object]]:
    rows = []
    work = Path(tempfile.mkdtemp(prefix="lossbench-lb-"))
    cases = []
    if export is not None:
        cases += [("bench leaderboard --from EXPORT", ["leaderboard", "--from", str(export)], Path.cwd()),
                  ("bench leaderboard --from EXPORT --out DIR (figures)",
                   ["leaderboard", "--from", str(export), "--out", str(work / "lb")], Path.cwd()),
                  ("bench site --from EXPORT --out DIR", ["site", "--from", str(export), "--out", str(work / "site")],
                   Path.cwd())]
    if store is not None:
        cases += [("bench leaderboard --grid scale (100,000 cells)",
                   ["leaderboard", "--grid", "scale", "--results", "h100", "--format", "csv"], store),
                  # the site of the same store: its grid page's figures read the histories of the curves drawn
                  ("bench site, the store of 100,000 cells", ["site", "--results", "h100", "--out", str(work / "big")],
                   store)]
    for name, args, cwd in cases:
        results = [timed(args, cwd) for _ in range(rounds)]
        walls = [r[0] for r in results]
        rows.append([name, f"{_common.med(walls):.2f}", f"{min(walls):.2f}-{max(walls):.2f}",
                     f"{max(r[1] for r in results):.0f}", results[-1][2]])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", type=Path, help="a suite's export (bench export --suite S)")
    ap.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "lossbench-store-scale" / "c100000",
                    help="benchmark 4's 100,000-cell workspace (built by benchmarks/store_scale.py --cells 100000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="the statistics only, one round, 1,000 resamples")
    ap.add_argument("--json")
    a = ap.parse_args()
    info = _common.header("Benchmark 12: the leaderboard")
    rounds = 1 if a.quick else a.rounds
    print(f"load (1 min) before: {os.getloadavg()[0]:.2f}")
    stats = statistics(rounds, 1_000 if a.quick else a.reps)
    print(_common.table(["statistic (in process)", "median s", "range"], stats))
    cmds: list[list[object]] = []
    if not a.quick:
        store = a.store if (a.store / "h100").is_dir() else None
        if store is None:
            print(f"note: no 100,000-cell store at {a.store}; build it with "
                  f"python benchmarks/store_scale.py --cells 100000 --growth ''")
        cmds = commands(a.export, store, rounds)
        print(_common.table(["command (subprocess)", "median wall s", "range", "peak RSS MB", "exit"], cmds))
    print(f"load (1 min) after: {os.getloadavg()[0]:.2f}")
    _common.write_json(a.json, {**info, "statistics": stats, "commands": cmds})


if __name__ == "__main__":
    main()
