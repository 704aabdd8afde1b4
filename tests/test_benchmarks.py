"""The benchmark scripts that need no dataset run end to end at tiny sizes.

These check that the scripts work and write the figures they promise (their timings mean
nothing here); the benchmarks themselves are run by hand, see docs/benchmarks.md. The GPU
benchmark's smoke run (benchmarks/gpu.sh --smoke) is tested in test_gpu_ready.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / f"{Path(name).stem}.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


def test_softmax_layout_table(tmp_path: Path) -> None:
    stdout, fig = run_script("softmax_layout.py", "--classes", "10,100", "--batches", "64,512", "--reps", "5",
                             "--rounds", "1", "--threads", "1", tmp_path=tmp_path)
    picks = {(r["K"], r["n"]): r["chosen"] for r in fig["results"]}
    assert picks == {(10, 64): "usual", (10, 512): "class-major", (100, 64): "usual", (100, 512): "usual"}
    assert all(r["usual_us"] > 0 and r["class_major_us"] > 0 for r in fig["results"])
    assert "class_major() picks" in stdout
