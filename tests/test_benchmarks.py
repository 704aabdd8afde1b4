"""The benchmark scripts that need no dataset run end to end at tiny sizes.

These check that the scripts work and write the figures they promise (their timings mean
nothing here); the benchmarks themselves are run by hand, see docs/benchmarks.md. The GPU
benchmark's smoke run (benchmarks/gpu.sh --smoke) is tested in test_gpu_ready.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / f"{Path(name).stem}.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")


@needs_fashion
def test_harness_overhead_runs_at_tiny_sizes(tmp_path: Path) -> None:
    stdout, fig = run_script("harness_overhead.py", "--arch", "mlp", "--n-train", "1024", "--n-test", "256",
                             "--epochs", "1", "--rounds", "1", "--threads", "1", tmp_path=tmp_path)
    assert "mlp" in json.dumps(fig) and "harness" in stdout


@needs_fashion
def test_loss_overhead_runs_at_tiny_sizes(tmp_path: Path) -> None:
    stdout, fig = run_script("loss_overhead.py", "--arch", "mlp", "--n-train", "1024", "--rounds", "1",
                             "--threads", "1", tmp_path=tmp_path)
    assert "milLoss" in stdout and "milLoss" in json.dumps(fig)


def test_store_scale_runs_at_tiny_sizes_through_run_all(tmp_path: Path) -> None:
    out = tmp_path / "latest"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick", "--only", "store_scale",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO, check=False,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fig = json.loads((out / "store_scale.json").read_text())
    stdout = (out / "run_all.md").read_text()
    assert "bench status" in stdout and "bench report --select tuned" in stdout and "commit `" in stdout
    # exactly the cells it states, whatever the registry holds; a peak memory beside every time
    assert fig["workspace"]["cells"] == 400 and fig["workspace"]["history_rows_h100"] == 40_000
    assert [g["cells"] for g in fig["growth"]] == [200, 400]
    assert all(r["rss_mb"] > 0 and r["load1"] >= 0 for runs in fig["commands"].values() for r in runs)
    summary = json.loads((out / "run_all.json").read_text())
    assert [b["name"] for b in summary["benchmarks"]] == ["store_scale"] and summary["benchmarks"][0]["status"] == "ok"


def test_run_all_names_an_unknown_benchmark(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--only", "nope", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert proc.returncode != 0 and "--only 'nope'" in proc.stderr and "store_scale" in proc.stderr


def test_val_overhead_runs_at_tiny_sizes(tmp_path: Path) -> None:
    stdout, fig = run_script("val_overhead.py", "--synthetic", "--n-train", "1024", "--n-test", "256", "--epochs", "1",
                             "--rounds", "1", "--threads", "1", tmp_path=tmp_path)
    assert "validation pass" in stdout and fig["data"].startswith("synthetic")
    res = fig["results"]
    # the stratified holdout: about a tenth of each class leaves the training split, which keeps the rest
    assert res["n_train"]["noval"] == 1024 and res["n_train"]["val"] + res["n_val"] == 1024
    assert 90 <= res["n_val"] <= 115 and res["n_test"] == 256
    assert res["val"]["eval_ms"] > 0 and res["noval"]["epoch_ms"] > 0 and math.isfinite(res["val_pass_share"])


def test_metrics_overhead_prints_its_share_of_an_mlp_epoch(tmp_path: Path) -> None:
    stdout, fig = run_script("metrics_overhead.py", "--rounds", "1", "--threads", "1", tmp_path=tmp_path)
    assert "own metrics / one MLP training epoch" in stdout and "target <= 5%" in stdout
    assert {"own metrics", "own metrics, test + val", "mlp train epoch (train_cell)"} <= set(fig["ms"])
    assert all(math.isfinite(v) and v > 0 for v in fig["ms"].values())
