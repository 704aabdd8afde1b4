"""Shared helpers of the benchmark scripts: side-by-side timing in one process, tables, JSON.

Timings on a shared machine drift with background load, so every benchmark runs its variants
interleaved in one process (A, B, B, A, A, B, ... : the order alternates each round so a
slow-down hits both sides equally) and reports the median of the per-round ratios, which is
robust to a few disturbed rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # the installed (editable) package, or whatever PYTHONPATH puts first
    import bench  # noqa: F401
except ImportError:  # run as `python benchmarks/x.py` without an installed package too
    sys.path.insert(0, str(REPO))


def interleave(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall time of each variant, ``rounds`` times, interleaved; the order alternates each round."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i] (paired: both measured in the same round)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def ratio_spread(a: list[float], b: list[float]) -> tuple[float, float]:
    """(min, max) of the per-round ratios, to show how noisy a figure is."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return min(ratios), max(ratios)


def med(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-markdown table (what docs/benchmarks.md holds)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def machine() -> dict[str, str]:
    """Date, CPU model, cores, torch version, and whether other processes are loading the CPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        load1 = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load1 = "?"
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "loadavg_1min_at_start": load1,
        "python": platform.python_version(),
    }


def header(title: str) -> dict[str, str]:
    info = machine()
    print(f"# {title}")
    print("  " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return info


def parse_torch_args(ap: "argparse.ArgumentParser") -> "argparse.Namespace":
    """Add ``--threads`` and ``--json`` to a torch benchmark's parser, parse, and set torch's threads."""
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, help=f"also write the figures here (default $OUT/{Path(sys.argv[0]).stem}.json)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def write_json(path: str | None, payload: dict) -> None:
    """Write the figures as JSON to ``path`` (or to $OUT/<script>.json when $OUT is set)."""
    if path is None and os.environ.get("OUT"):
        path = str(Path(os.environ["OUT"]) / f"{Path(sys.argv[0]).stem}.json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1, default=str))
        print(f"figures written to {path}")


def verdict(value: float, target: float) -> str:
    return "OK" if value <= target else "MISSED"
