"""The GPU benchmark is ready for a machine met once: FLOPs of grouped convolutions counted right,
``--flops-only``, and ``benchmarks/gpu.sh`` end to end in its CPU smoke mode, wheel install included.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import flops  # noqa: E402  (benchmarks/flops.py)


def counted(module: torch.nn.Module, x: torch.Tensor) -> int:
    with flops.counter() as mode:
        module(x).sum().backward()
    return mode.get_total_flops()


def test_depthwise_conv_hand_count() -> None:
    # 3x3 depthwise conv, 8 channels, 5x5 input padded to a 5x5 output, batch 2. Each of the
    # 2*8*25 = 400 outputs is 9 multiply-adds: 3,600. The input gradient sends each output's
    # gradient back through the same 9 weights: 3,600. Each of the 8*9 = 72 weights' gradient
    # sums over the 2*25 positions it touched: 3,600. 2 FLOPs per multiply-add: 3 * 7,200.
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    assert counted(conv, x) == 3 * 2 * 3_600
    # torch's own formula counts the weight gradient as if groups were 1: 8 times 3,600
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as stock:
        conv(x).sum().backward()
    assert stock.get_total_flops() > counted(conv, x)


def test_grouped_conv_hand_count() -> None:
    # 8 -> 12 channels in 4 groups (2 inputs -> 3 outputs each), 3x3, stride 2, 7x7 -> 3x3, batch 2.
    # Outputs 2*12*9 = 216, each 2*9 = 18 multiply-adds: 3,888. Input gradient: 3,888. Weight
    # gradient: 12*2*9 = 216 weights, each over 2*9 = 18 positions: 3,888.
    conv = torch.nn.Conv2d(8, 12, 3, stride=2, groups=4, bias=False)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    assert counted(conv, x) == 3 * 2 * 3_888
    # without an input gradient (a first layer) only the weight gradient is computed
    assert counted(conv, x.detach()) == 2 * 2 * 3_888


def test_grouped_transposed_conv_hand_count() -> None:
    # 4 -> 6 channels in 2 groups, 3x3, stride 2, on a 3x3 input, batch 1: each of the 4*9 = 36
    # input values scatters into 3 output channels x 9 taps: 972 multiply-adds, each way.
    conv = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, bias=False)
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    assert counted(conv, x) == 3 * 2 * 972


def test_dense_conv_agrees_with_torch() -> None:
    """For groups = 1 the formula is torch's own (same FLOP convention)."""
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv2d(3, 16, 3, padding=1)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with FlopCounterMode(display=False) as stock:
        conv(x).sum().backward()
    assert counted(conv, x) == stock.get_total_flops() == 3 * 2 * (2 * 16 * 64) * 27


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_flops_only_prints_the_corrected_counts() -> None:
    proc = run([sys.executable, str(REPO / "benchmarks" / "gpu_bench.py"), "--flops-only"])
    lines = [ln.split() for ln in proc.stdout.strip().splitlines()]
    got = {name: float(g) for name, g in lines}
    assert list(got) == ["googlenet", "resnet18", "mobilenetv2", "efficientnet_b0", "shufflenetv2"]  # the cifar10 grid's
    # pytorch-cifar's ResNet-18 is 0.556 G multiply-adds forward, 1.11 GFLOP; fwd + bwd about 3x
    assert got["resnet18"] == pytest.approx(3.329, abs=0.001)
    # depthwise nets: torch's stock counter said 3.92 and 2.62 GFLOP
    assert got["mobilenetv2"] == pytest.approx(0.545, abs=0.001)
    assert got["efficientnet_b0"] == pytest.approx(0.180, abs=0.001)
    assert got["shufflenetv2"] == pytest.approx(0.269, abs=0.001)
    assert got["googlenet"] == pytest.approx(9.120, abs=0.001)


def wheel_of_installed(name: str, dest: Path) -> Path:
    """Pack an installed distribution back into a wheel (this Python's build of it), offline.

    The tests cannot download: these stand in for scripts/gpu_wheels.sh's downloads, built from
    the same packages of the running environment, with the tag of its own WHEEL file.
    """
    dist = md.distribution(name)
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in str(f)]
    wheel_meta = next(f for f in files if str(f).endswith(".dist-info/WHEEL"))
    tag = next(ln.split(":", 1)[1].strip() for ln in wheel_meta.read_text().splitlines() if ln.startswith("Tag:"))
    out = dest / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f.locate(), str(f))
    return out


def test_gpu_sh_smoke_end_to_end_with_wheels(tmp_path: Path) -> None:
    """gpu.sh installs the wheel folder into a fresh target dir, runs every section on the CPU."""
    names = [ln.split("==")[0] for ln in (REPO / "scripts" / "gpu_wheels.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert "pydantic" in names and "pydantic-core" in names
    wheels = tmp_path / "whl"
    wheels.mkdir()
    for name in names:
        wheel_of_installed(name, wheels)
    site_parent = tmp_path / "tmp"
    site_parent.mkdir()
    out = tmp_path / "gpu.jsonl"
    env = {**os.environ, "PYTHON": sys.executable, "LOSSBENCH_WHEELS": str(wheels), "TMPDIR": str(site_parent)}
    env.pop("OUT", None)
    proc = run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--archs", "shufflenetv2", "--jobs", "1,2",
                "--grid-jobs", "1,2", "--out", str(out)], env=env, timeout=1500)
    assert f"installed {len(names)} wheels from {wheels}" in proc.stdout
    # the fresh target dir is removed at the end (torch itself may leave its inductor cache folder in TMPDIR:
    # creating an optimizer does, in torch 2.14, whether or not the suite ran something before)
    assert [p for p in site_parent.iterdir() if not p.name.startswith("torchinductor_")] == []
    records = [json.loads(ln) for ln in out.read_text().splitlines()]
    by = lambda section: [r for r in records if r["section"] == section]  # noqa: E731
    (versions,) = by("versions")
    deps = {d["name"]: d for d in versions["dependencies"]}
    assert Path(deps["pydantic"]["from"]).parent == site_parent.resolve()  # imported from the installed wheels
    assert deps["pydantic"]["found"] == md.version("pydantic")
    assert not versions["missing"] and not versions["torch_too_old"]
    assert [r["gflop"] for r in by("flops") if "gflop" in r] == [pytest.approx(0.269, abs=0.001)]
    rows = {r["setting"]: r for r in by("throughput") if "train_images_per_s" in r}
    assert set(rows) == {"bf16", "fp32"} and all(r["train_images_per_s"] > 0 and r["tflops"] > 0 for r in rows.values())
    totals = {r["grid"]: r["hours"] for r in by("projection") if r.get("event") == "total"}
    assert set(totals) == {"cifar10", "cifar10-modern"} and all(h > 0 for h in totals.values())  # the grids with shufflenetv2
    runs = [r for r in by("grid_smoke") if r.get("event") == "run"]
    assert [(r["jobs"], r["ok"], r["cells_done"]) for r in runs] == [(1, True, 1), (2, True, 1)]
    cells = [r for r in by("grid_smoke") if r.get("event") == "cell"]
    assert {(r["architecture"], r["status"]) for r in cells} == {("shufflenetv2", "done")}
    assert {(r["arch"], r["jobs"]) for r in by("jobs") if r.get("event") == "row"} == {
        ("mlp", 1), ("mlp", 2), ("cnn", 1), ("cnn", 2)}
    assert [r for r in by("jobs") if r.get("event") == "projection"]
    assert by("end") and "## end" in proc.stdout
    # each result was printed as it came: the output has every section's header in order
    heads = [ln.split(":")[0] for ln in proc.stdout.splitlines() if ln.startswith("## ")]
    assert heads == ["## versions", "## flops", "## throughput bf16", "## grid_smoke",
                     "## throughput resnet18 compiled, then fp32", "## projection", "## projection", "## jobs",
                     "## end"]  # a projection for each grid with a measured architecture: cifar10, cifar10-modern
