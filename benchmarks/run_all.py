"""Rerun every CPU benchmark of docs/benchmarks.md in one go and collect what they print.

Each benchmark runs as its own subprocess, one after the other (they would disturb each other's
timings otherwise), with the command docs/benchmarks.md gives for it. For each it records the
command, its wall time, the 1-minute load average before and after, its printed tables, and its
JSON figures; ``--out`` receives ``<name>.json`` per benchmark, ``run_all.json`` and
``run_all.md`` (the printed tables under one heading each, with the date, commit and machine: the
material docs/benchmarks.md is rewritten from). The GPU benchmark (5) needs CUDA and runs through
``benchmarks/gpu.sh``; a benchmark whose data set is missing is listed as skipped, with why.

    python benchmarks/run_all.py --out /tmp/bench-latest            # a few minutes on 2 idle cores
    python benchmarks/run_all.py --quick --out /tmp/bench-quick     # small sizes: checks the scripts run
    python benchmarks/run_all.py --only store_scale --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import _common

FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Benchmark:
    number: str
    name: str
    what: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    needs_fashion: bool = False


BENCHMARKS = [
    Benchmark("1", "harness_overhead", "one cell through the harness vs a bare PyTorch loop (MLP)",
              ("--threads", "1", "--arch", "mlp"),
              ("--threads", "1", "--arch", "mlp", "--n-train", "2048", "--n-test", "512", "--epochs", "1", "--rounds", "1"),
              needs_fashion=True),
    Benchmark("2", "loss_overhead", "step time with each loss / with celLoss (MLP)",
              ("--threads", "1", "--arch", "mlp"),
              ("--threads", "1", "--arch", "mlp", "--n-train", "2048", "--rounds", "1"), needs_fashion=True),
    Benchmark("3", "data_path", "tensor batching vs a torchvision DataLoader",
              ("--threads", "1",), ("--threads", "1", "--n-train", "4096", "--rounds", "1", "--workers", "0"),
              needs_fashion=True),
    Benchmark("4", "store_scale", "`bench status` and `bench report` on 100,000 cells; growth to 1M; resume scan",
              ("--growth", "10000,100000,1000000"),
              ("--cells", "400", "--growth", "200,400", "--rounds", "1", "--warmup", "0", "--scan-rounds", "1")),
    Benchmark("4b", "metrics_overhead", "the calibration metrics' cost per evaluation pass", (), ("--rounds", "2")),
    Benchmark("6", "concurrent_runs", "two `bench run`s at once vs one alone", (), ("--epochs", "1", "--rounds", "1"),
              needs_fashion=True),
    Benchmark("7", "augment_overhead", "on-device crop/flip and the lr scheduler, cost per step",
              ("--arch", "all"), ("--arch", "mlp", "--rounds", "1", "--steps", "5")),
    Benchmark("8", "val_overhead", "a validation split against none: the MLP epoch",
              ("--threads", "1"), ("--threads", "1", "--synthetic", "--n-train", "2048", "--n-test", "512",
                                   "--epochs", "1", "--rounds", "1")),
    Benchmark("9", "imagefolder_decode", "a 50,000-image folder of 32x32 PNGs: the first decode, then a cached read",
              (), ("--n", "500", "--rounds", "1")),
    Benchmark("10", "tracker_overhead", "a tracker's cost per epoch (TensorBoard, MLflow, W&B) on the MLP",
              ("--threads", "1"), ("--threads", "1", "--n-train", "2048", "--epochs", "1", "--rounds", "1"),
              needs_fashion=True),
    Benchmark("12", "leaderboard_speed", "the leaderboard: its statistics, bench leaderboard and bench site on an export, "
              "and on 100,000 cells", ("--export", "report/fashion-mnist-suite/fashion-mnist-suite.parquet"),
              ("--quick",)),
]


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=_common.REPO,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=_common.REPO, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(b: Benchmark, quick: bool, out: Path, timeout: float) -> dict:
    args = b.quick if quick else b.args
    json_path = out / f"{b.name}.json"
    cmd = [sys.executable, str(_common.REPO / "benchmarks" / f"{b.name}.py"), *args, "--json", str(json_path)]
    shown = f"python benchmarks/{b.name}.py {' '.join(args)}".strip()
    record = {"number": b.number, "name": b.name, "what": b.what, "command": shown,
              "load1_before": round(os.getloadavg()[0], 2), "started": _common.machine()["date"]}
    if b.needs_fashion and not FASHION.is_dir():
        return {**record, "status": "skipped", "why": f"needs Fashion-MNIST under {FASHION}"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=_common.REPO, check=False)
    except subprocess.TimeoutExpired:
        return {**record, "status": "timed out", "why": f"over {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
    record.update(wall_s=round(time.perf_counter() - t0, 1), load1_after=round(os.getloadavg()[0], 2),
                  returncode=proc.returncode, stdout=proc.stdout, stderr_tail=proc.stderr[-3000:])
    record["status"] = "ok" if proc.returncode == 0 else "failed"
    if json_path.exists():
        record["figures"] = json.loads(json_path.read_text())
    return record


def markdown(records: list[dict], info: dict, quick: bool) -> str:
    lines = [f"# Benchmarks rerun ({'quick sizes' if quick else 'full sizes'})", "",
             f"- date {info['date']}, commit `{info['commit']}`", f"- {info['cpu']}, {info['cores']} cores, "
             f"torch {info['torch']}, python {info['python']}", ""]
    lines += [_common.table(["#", "benchmark", "command", "status", "wall s", "load (1 min) before / after"],
                            [[r["number"], r["name"], f"`{r['command']}`", r["status"], r.get("wall_s", ""),
                              f"{r['load1_before']} / {r.get('load1_after', '')}"] for r in records]), ""]
    for r in records:
        lines += [f"## {r['number']}. {r['name']}: {r['what']}", "", f"`{r['command']}`: {r['status']}"
                  + (f" ({r['why']})" if "why" in r else ""), ""]
        if r.get("stdout"):
            lines += ["```", r["stdout"].rstrip(), "```", ""]
        if r["status"] == "failed":
            lines += ["```", r.get("stderr_tail", "").rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks-latest", help="folder for the figures and run_all.md")
    ap.add_argument("--quick", action="store_true", help="small sizes: checks every script runs (figures mean little)")
    ap.add_argument("--only", action="append", default=[], help="a benchmark's name (repeatable); default: all")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = ap.parse_args()
    names = {b.name for b in BENCHMARKS}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        raise SystemExit(f"error: --only {unknown[0]!r}: expected one of {', '.join(sorted(names))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {**_common.header("Rerun of every CPU benchmark"), "commit": commit()}
    records = []
    for b in BENCHMARKS:
        if args.only and b.name not in args.only:
            continue
        print(f"\n== {b.number}. {b.name} ...", flush=True)
        r = run_one(b, args.quick, out, args.timeout)
        records.append(r)
        print(f"   {r['status']}" + (f" in {r['wall_s']} s" if "wall_s" in r else "")
              + (f": {r['why']}" if "why" in r else ""), flush=True)
        if r["status"] == "failed":
            print(r.get("stderr_tail", ""))
    (out / "run_all.json").write_text(json.dumps({"machine": info, "quick": args.quick, "benchmarks": records},
                                                 indent=1, default=str))
    (out / "run_all.md").write_text(markdown(records, info, args.quick))
    print(f"\nwritten: {out / 'run_all.md'} and {out / 'run_all.json'}")
    sys.exit(1 if any(r["status"] in ("failed", "timed out") for r in records) else 0)


if __name__ == "__main__":
    main()
