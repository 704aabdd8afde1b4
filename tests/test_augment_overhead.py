"""benchmarks/augment_overhead.py runs end to end at a tiny size and writes its figures (timings mean nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_augment_overhead_smoke(tmp_path: Path) -> None:
    out = tmp_path / "augment_overhead.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "augment_overhead.py"), "--arch", "cnn",
                           "--steps", "2", "--rounds", "2", "--batch-size", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fig = json.loads(out.read_text())["results"]["cnn"]
    assert fig["rounds"] == 2 and fig["steps_per_round"] == 2
    for variant in ("augment", "schedule"):
        assert fig[variant]["median_ratio"] > 0 and fig[variant]["min"] <= fig[variant]["max"]
    assert fig["augment_alone_ms"] > 0 and fig["scheduler_alone_us"] > 0
    assert "augment / base" in proc.stdout
