"""The benchmark scripts that need no dataset run end to end at tiny sizes.

These check that the scripts work and write the figures they promise (their timings mean
nothing here); the benchmarks themselves are run by hand, see docs/benchmarks.md.
"""

from __future__ import annotations

import json
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


def test_gpu_bench_smoke_runs_every_section_on_cpu(tmp_path: Path) -> None:
    stdout, fig = run_script("gpu_bench.py", "--smoke", "--archs", "resnet18", "--jobs", "1,2", tmp_path=tmp_path)
    # FLOPs are counted by torch.utils.flop_counter (2 per multiply-add): pytorch-cifar's ResNet-18
    # is 0.56 G multiply-adds, 1.11 GFLOP, forward per 32x32 image; forward + backward is 3x that
    assert fig["flops_per_image"]["resnet18"] == pytest.approx(3.33e9, rel=0.01)
    for precision in ("fp32", "bf16"):
        row = fig["throughput"]["resnet18"][precision]
        assert row["train_images_per_s"] > 0 and row["tflops"] > 0
    assert {r["jobs"] for r in fig["jobs"]} == {1, 2}
    assert set(fig["best_jobs"]) == {"mlp", "cnn"}
    assert fig["cifar10_projection_hours"] > 0 and fig["mnist_grid_projection_minutes"] > 0
    assert "projected cifar10 grid" in stdout
