"""Benchmark 5 (GPU): throughput of the harness's loop per CIFAR-10 architecture, the best --jobs
for the MNIST models and the projected wall time of the full ``cifar10`` grid.

Sections (each with a time budget; the whole run fits in ~8 minutes on one H100/H200):

1. FLOPs per image, forward + backward, counted with ``torch.utils.flop_counter.FlopCounterMode``
   on each architecture of the registry's ``cifar10`` grid (built by ``bench.models.build_model``
   with the registry's source and name, 32x32 CIFAR stems).
2. Training throughput with the harness's loop (``bench.train.train_cell``: device-resident uint8
   data, per-batch normalisation, channels_last, fused SGD, cudnn.benchmark) on synthetic 32x32
   data, batch 256: ``--steps`` steps an epoch, two epochs, the second one timed (the first
   absorbs cuDNN autotuning and compilation); images/s and achieved TFLOP/s for fp32 and bf16
   eager, then bf16 and fp32 with ``torch.compile`` while the budget lasts.
3. ``--jobs``: N = 1, 2, 4, 8 long-lived worker processes sharing the GPU (as ``bench run --jobs N``
   does), each training the MNIST-size MLP or CNN through ``train_cell`` on synthetic 28x28 data;
   aggregate epochs/s and cells/hour (77-epoch cells), and the best N per model.
4. The projected wall time of the ``cifar10`` grid (75 cells x 100 epochs of 50k training and
   10k test images) from the measured throughput of each architecture's fastest setting.

Without CUDA it prints a note and exits 0; ``--smoke`` runs every section on the CPU with a
couple of tiny steps (to test this script, not to measure anything). Figures go to stdout as
tables and, as JSON, to ``--json`` or ``$OUT/gpu_bench.json``.

    bash benchmarks/gpu.sh                       # on a GPU machine
    .venv/bin/python benchmarks/gpu_bench.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common
import torch

from bench.data import Splits
from bench.models import build_model
from bench.registry import TrainConfig, load_registry
from bench.train import train_cell

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_EPOCHS = 77  # epochs of an MNIST-size cell (registry grids mnist / fashion-mnist)


def synthetic_splits(n_train: int, n_test: int, shape: tuple[int, int, int], seed: int = 0) -> Splits:
    g = torch.Generator().manual_seed(seed)
    c = shape[0]
    mean, std = (CIFAR_MEAN, CIFAR_STD) if c == 3 else ((0.2860,), (0.3530,))
    return Splits(
        train_x=torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=g),
        train_y=torch.randint(0, 10, (n_train,), generator=g),
        test_x=torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=g),
        test_y=torch.randint(0, 10, (n_test,), generator=g),
        num_classes=10, in_shape=shape, mean=mean, std=std, source="synthetic",
        class_names=tuple(str(i) for i in range(10)), kind="synthetic",
    )


def flops_per_image(source: str, name: str, device: torch.device, batch: int = 4) -> float:
    """Forward + backward FLOPs of one 32x32 image (FlopCounterMode counts matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = build_model(source, name, (3, 32, 32), 10, {}).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def throughput(source: str, name: str, splits: Splits, device: torch.device, precision: str, compile_: bool,
               batch_size: int) -> dict:
    """Two epochs through train_cell; the second is timed (train part and eval part separately)."""
    cfg = TrainConfig(epochs=2, batch_size=batch_size, optimizer="sgd", lr=1e-3, momentum=0.9, precision=precision,
                      channels_last="on", compile=compile_, eval_batch_size=4096)
    torch.manual_seed(0)
    model = build_model(source, name, splits.in_shape, 10, {})
    from losses import CelLoss

    t0 = time.perf_counter()
    result = train_cell(cell_id="gpu-bench", model=model, criterion=CelLoss(), splits=splits, cfg=cfg, seed=0,
                        device=device, checkpoint=None)
    total = time.perf_counter() - t0
    if result.status != "done":
        raise RuntimeError(f"{name} {precision}: {result.status} {result.message}")
    first, second = result.history
    train_s = second["epoch_time"] - second["eval_time"]
    return {"train_images_per_s": splits.n_train / train_s, "eval_images_per_s": splits.n_test / second["eval_time"],
            "first_epoch_s": first["epoch_time"], "second_epoch_s": second["epoch_time"], "wall_s": total,
            "warmup_s": max(0.0, first["epoch_time"] - second["epoch_time"])}


# ----------------------------------------------------------------------------- --jobs workers


def worker_main() -> None:
    """A long-lived worker: reads JSON commands on stdin, trains, answers JSON lines on stdout."""
    device = torch.device(os.environ.get("GPU_BENCH_DEVICE", "cuda"))
    from losses import CelLoss

    cache: dict[tuple, Splits] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        key = (cmd["n_train"], cmd["n_test"])
        if key not in cache:
            cache.clear()
            cache[key] = synthetic_splits(cmd["n_train"], cmd["n_test"], (1, 28, 28))
        splits = cache[key]
        cfg = TrainConfig(epochs=cmd["epochs"], batch_size=512, optimizer="sgd", lr=1e-3, momentum=0.9,
                          precision=cmd["precision"], channels_last="on")
        torch.manual_seed(0)
        model = build_model("native", cmd["arch"], (1, 28, 28), 10, {})
        while time.time() < cmd.get("start_at", 0):
            time.sleep(0.005)
        start = time.time()
        result = train_cell(cell_id="jobs", model=model, criterion=CelLoss(), splits=splits, cfg=cfg, seed=0,
                            device=device, checkpoint=None)
        end = time.time()
        print(json.dumps({"start": start, "end": end, "epochs": len(result.history), "status": result.status}), flush=True)


class Workers:
    def __init__(self, n: int, device: str):
        env = {**os.environ, "GPU_BENCH_DEVICE": device, "OMP_NUM_THREADS": "1"}
        self.procs = [subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]

    def run(self, k: int, cmd: dict) -> list[dict]:
        for p in self.procs[:k]:
            p.stdin.write(json.dumps(cmd) + "\n")
            p.stdin.flush()
        out = []
        for p in self.procs[:k]:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("a --jobs worker died; see its stderr above")
            out.append(json.loads(line))
        return out

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write(json.dumps({"quit": True}) + "\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def jobs_section(ns: list[int], archs: list[str], device: str, precision: str, epochs: int, n_train: int,
                 n_test: int, deadline: float) -> tuple[list[dict], list[str]]:
    rows, notes = [], []
    workers = Workers(max(ns), device)
    try:
        base = {"n_train": n_train, "n_test": n_test, "precision": precision}
        for arch in archs:  # warm-up: imports, CUDA context, cuDNN autotuning, data on the device
            workers.run(max(ns), {**base, "arch": arch, "epochs": 1})
        for arch in archs:
            for n in ns:
                if time.perf_counter() > deadline:
                    notes.append(f"--jobs: budget spent; skipped {arch} N={n} and later")
                    return rows, notes
                res = workers.run(n, {**base, "arch": arch, "epochs": epochs, "start_at": time.time() + 0.5})
                span = max(r["end"] for r in res) - min(r["start"] for r in res)
                eps = sum(r["epochs"] for r in res) / span
                rows.append({"arch": arch, "jobs": n, "span_s": span, "epochs_per_s": eps,
                             "cells_per_hour": eps * 3600 / MNIST_EPOCHS,
                             "per_cell_epoch_s": span / epochs})
    finally:
        workers.close()
    return rows, notes


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="run every section on the CPU with tiny sizes (tests the script)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=40, help="training steps per timed epoch (batch 256)")
    ap.add_argument("--budget-s", type=float, default=450, help="total time budget; later sections shrink to fit")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--jobs", default="1,2,4,8")
    ap.add_argument("--jobs-epochs", type=int, default=3)
    ap.add_argument("--archs", default="", help="comma-separated subset of the cifar10 grid's architectures")
    ap.add_argument("--registry", default=str(_common.REPO / "registry.yaml"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.worker:
        worker_main()
        return
    t_start = time.perf_counter()
    info = _common.header("Benchmark 5: GPU throughput, --jobs and cifar10 grid projection")
    if args.smoke:
        device = torch.device("cpu")
        print("  --smoke: CPU, tiny sizes; the figures mean nothing, the code paths are exercised")
    elif not torch.cuda.is_available():
        print("no CUDA device: the GPU benchmark was skipped (run it on a GPU machine: bash benchmarks/gpu.sh; "
              "test this script on a CPU with --smoke)")
        _common.write_json(args.json, {"benchmark": "gpu", "machine": info, "skipped": "no CUDA"})
        return
    else:
        device = torch.device(args.device)
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu": props.name, "gpu_memory_gib": f"{props.total_memory / 2**30:.0f}",
                     "cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())})
        print(f"  GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}, {props.multi_processor_count} SMs")

    reg = load_registry(args.registry)
    grid = reg.grids["cifar10"]
    wanted = [a for a in args.archs.split(",") if a] or list(grid.architectures)
    archs = {a: (reg.architectures[a].source, reg.architectures[a].name) for a in grid.architectures if a in wanted}
    cifar_cells_per_arch = len(grid.seeds) * len(grid.grid_losses(reg.loss_names()))
    epochs = int(grid.train.get("epochs", 100))
    batch = 8 if args.smoke else int(grid.train.get("batch_size", 256))
    steps = 1 if args.smoke else args.steps
    budget = args.budget_s
    notes: list[str] = []
    out: dict = {"benchmark": "gpu", "machine": info, "steps": steps, "batch_size": batch}

    # 1. FLOPs
    flops = {a: flops_per_image(src, name, device) for a, (src, name) in archs.items()}
    out["flops_per_image"] = flops

    # 2. throughput
    splits = synthetic_splits(steps * batch, 16 if args.smoke else 4096, (3, 32, 32))
    settings = [("fp32", False), ("bf16", False)]
    if not args.no_compile and not args.smoke:
        settings += [("bf16", True), ("fp32", True)]
    jobs_reserve = 0 if args.smoke else 110  # seconds kept for section 3
    tp: dict[str, dict[str, dict]] = {a: {} for a in archs}
    compile_cost: list[float] = []
    for precision, comp in settings:
        for a, (src, name) in archs.items():
            key = f"{precision}{' compile' if comp else ''}"
            elapsed = time.perf_counter() - t_start
            expected = (max(compile_cost) if compile_cost else 90.0) if comp else 15.0
            if elapsed + expected > budget - jobs_reserve:
                notes.append(f"throughput: budget spent before {a} {key}; skipped")
                continue
            try:
                r = throughput(src, name, splits, device, precision, comp, batch)
            except Exception as exc:  # noqa: BLE001 - a setting that fails is reported, the rest goes on
                notes.append(f"{a} {key}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                continue
            if comp:
                compile_cost.append(r["wall_s"])
            r["tflops"] = r["train_images_per_s"] * flops[a] / 1e12
            tp[a][key] = r
    out["throughput"] = tp

    # 3. --jobs for the MNIST models
    ns = [int(v) for v in args.jobs.split(",")]
    if args.smoke:
        ns = [n for n in ns if n <= 2]
    deadline = t_start + budget
    jobs_rows, jobs_notes = jobs_section(ns, ["mlp", "cnn"], str(device), "fp32" if args.smoke else "bf16",
                                         1 if args.smoke else args.jobs_epochs, 512 if args.smoke else 60000,
                                         128 if args.smoke else 10000, deadline)
    notes += jobs_notes
    out["jobs"] = jobs_rows

    # 4. projection of the cifar10 grid (jobs 1: cells one after another)
    proj_rows, total_h = [], 0.0
    for a in archs:
        if not tp[a]:
            continue
        best_key = max(tp[a], key=lambda k: tp[a][k]["train_images_per_s"])
        r = tp[a][best_key]
        epoch_s = 50000 / r["train_images_per_s"] + 10000 / r["eval_images_per_s"]
        cell_h = (epochs * epoch_s + (r["warmup_s"] if "compile" in best_key else 0.0)) / 3600
        total_h += cifar_cells_per_arch * cell_h
        proj_rows.append([a, best_key, f"{epoch_s:.1f}", f"{cell_h * 60:.1f}", f"{cifar_cells_per_arch * cell_h:.2f}"])
    out["cifar10_projection_hours"] = total_h if len(proj_rows) == len(archs) else None

    # ---- report
    rows = []
    for a in archs:
        for key, r in tp[a].items():
            rows.append([a, f"{flops[a] / 1e9:.3f}", key, f"{r['train_images_per_s']:,.0f}", f"{r['tflops']:.1f}",
                         f"{r['eval_images_per_s']:,.0f}", f"{r['warmup_s']:.1f}"])
        if not tp[a]:
            rows.append([a, f"{flops[a] / 1e9:.3f}", "-", "-", "-", "-", "-"])
    print(_common.table(["arch", "GFLOP/img fwd+bwd", "setting", "train img/s", "TFLOP/s", "eval img/s",
                         "warm-up / compile s"], rows))
    if jobs_rows:
        best = {}
        for r in jobs_rows:
            if r["arch"] not in best or r["cells_per_hour"] > best[r["arch"]]["cells_per_hour"]:
                best[r["arch"]] = r
        print(_common.table(["model", "--jobs", "aggregate epochs/s", "cells/hour (77 epochs)", "best"],
                            [[r["arch"], r["jobs"], f"{r['epochs_per_s']:.2f}", f"{r['cells_per_hour']:.0f}",
                              "*" if best[r["arch"]] is r else ""] for r in jobs_rows]))
        out["best_jobs"] = {k: v["jobs"] for k, v in best.items()}
        if set(best) == {"mlp", "cnn"}:
            mnist = reg.grids.get("fashion-mnist")
            per_arch = len(mnist.seeds) * len(mnist.grid_losses(reg.loss_names())) if mnist else 15
            minutes = sum(per_arch / best[a]["cells_per_hour"] * 60 for a in ("mlp", "cnn"))
            out["mnist_grid_projection_minutes"] = minutes
            print(f"projected fashion-mnist grid ({2 * per_arch} cells, {MNIST_EPOCHS} epochs; MLP cells then CNN "
                  f"cells, each at its best --jobs): {minutes:.1f} min")
    print(_common.table(["arch", "fastest setting", "epoch s (50k train + 10k eval)", "cell min (100 epochs)",
                         f"{cifar_cells_per_arch} cells h"], proj_rows))
    if out["cifar10_projection_hours"] is not None:
        print(f"projected cifar10 grid ({cifar_cells_per_arch * len(archs)} cells, {epochs} epochs, --jobs 1): "
              f"{total_h:.1f} h")
    for note in notes:
        print(f"note: {note}")
    out["notes"] = notes
    out["wall_s"] = time.perf_counter() - t_start
    print(f"benchmark wall time {out['wall_s']:.0f} s")
    _common.write_json(args.json, out)


if __name__ == "__main__":
    main()
