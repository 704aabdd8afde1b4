"""Benchmark 5 (GPU): FLOPs and throughput per CIFAR-10 architecture, the cifar10 grid's projected
time, a 2-epoch cifar10 smoke run through ``bench run`` and the best --jobs for the MNIST models.

Made for a GPU machine met once, for minutes, with the source tree and nothing else: every
measurement is printed (and flushed) the moment it is taken and appended as one JSON line to
``--out`` (default ``$OUT/gpu_bench.jsonl`` when OUT is set), so a crash or a timeout keeps what
came before. Each section has a time cap and the whole run a budget (``--budget-s``, default 330:
with ``benchmarks/gpu.sh``'s start-up it fits 6 minutes); a section that no longer fits is
skipped with a ``skipped`` line. Sections, in order:

``versions``   python, torch, torchvision, timm, pydantic (and where it was imported from), GPU;
               warns when torch is older than the oldest version the code is written for (2.11).
``flops``      forward + backward FLOPs per 32x32 image of each architecture of the registry's
               ``cifar10`` grid, counted from shapes (meta tensors) with torch's FlopCounterMode and
               a backward formula right for grouped / depthwise convolutions (benchmarks/flops.py).
``throughput`` ``bench.train.loop.train_cell`` (device-resident uint8 data, channels_last, fused SGD,
               cudnn.benchmark) on synthetic 32x32 data, batch 256, ``--steps`` steps an epoch, two
               epochs, the second timed: bf16 eager for each architecture first.
``grid_smoke`` ``bench run --grid cifar10`` for 2 epochs in bf16, one loss and one seed, every
               architecture, on synthetic data in CIFAR-10's pickle format, with --jobs 1 and 4.
``throughput`` (continued) bf16 with ``torch.compile`` for ResNet-18 only (compile time reported
               as warm-up), then fp32 eager for each architecture.
``projection`` the cifar10 grid's wall time at --jobs 1 (cells x 100 epochs of 50k + 10k images)
               from each architecture's fastest measured setting.
``jobs``       N = 1, 2, 4, 8 worker processes sharing the GPU, each training the MNIST-size MLP or
               CNN through ``train_cell``: aggregate epochs/s, cells/hour (77-epoch cells), best N.

``--smoke`` runs every section on the CPU with tiny sizes (a test of this script, not a
measurement); ``--flops-only`` prints one line per cifar10 architecture, ``<name> <GFLOP>``, and
exits. Without CUDA (and without --smoke) it prints a note and exits 0.

    bash benchmarks/gpu.sh                                  # on a GPU machine
    .venv/bin/python benchmarks/gpu_bench.py --smoke --archs resnet18
    .venv/bin/python benchmarks/gpu_bench.py --flops-only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _common
import flops as flop_count
import numpy as np
import torch

if TYPE_CHECKING:
    from bench.data import Splits
    from bench.config.registry import Registry

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_EPOCHS = 77  # epochs of an MNIST-size cell (registry grids mnist / fashion-mnist)
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
MIN_TORCH = (2, 11)  # the oldest torch the code is written for (the GPU image's)
COMPILED_ARCH = "resnet18"  # the one architecture compiled: compilation costs a minute per model

# seconds: (cap, the least a section is worth starting with); the budget is shared in this order
CAPS = {
    "flops": (60, 10),
    "throughput_eager": (30, 12),
    "grid_smoke": (130, 60),
    "throughput_compile": (120, 60),
    "jobs": (60, 25),
}
GRID_RUN_LEAST = 35  # seconds kept for each later --jobs run of the smoke section


# ----------------------------------------------------------------------------- output


class Recorder:
    """Prints each result as soon as it is measured and appends it as a JSON line to ``path``."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, section: str, text: str, **fields: Any) -> None:
        print(text, flush=True)
        if self.path is not None:
            record = {"section": section, "t": round(time.time(), 3), **fields}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())


class Budget:
    """The run's deadline, shared out among the sections in order."""

    def __init__(self, seconds: float, scale: float = 1.0) -> None:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + seconds
        self.scale = scale  # --smoke: a shared CPU is far slower than the GPU the caps are sized for

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def grant(self, section: str, later: list[str]) -> float:
        """Seconds ``section`` may use: its cap, less what the later sections need at the least.

        Returns 0 when less than the section's minimum is left.
        """
        cap, least = (v * self.scale for v in CAPS[section])
        free = self.left() - sum(CAPS[s][1] * self.scale for s in later)
        return min(cap, free) if free >= least else 0.0


class SectionTimeout(Exception):
    """A section ran past its cap (raised by SIGALRM in the main thread)."""


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in the block once ``seconds`` have passed.

    Python runs the handler between bytecodes, so a long CUDA kernel or C++ call ends first;
    the sections' steps are far shorter than their caps.
    """
    def on_alarm(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise SectionTimeout(f"over its {seconds:.0f} s cap")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


# ----------------------------------------------------------------------------- versions


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.11.0+cu130' -> (2, 11, 0); pre-release tags are dropped ('2.12.0a0' -> (2, 12, 0))."""
    out = []
    for part in version.split("+")[0].split(".")[:3]:
        m = re.match(r"\d+", part)
        if m is None:
            break
        out.append(int(m.group()))
    return tuple(out)


def dependency_versions() -> list[dict[str, str]]:
    """Each dependency in pyproject.toml: the version found, where from, and whether it satisfies the pin.

    torch and torchvision are pinned to the local venv's releases; another machine's image runs
    its own (>= MIN_TORCH), so for them a mismatch is reported, not refused.
    """
    import importlib.metadata as md
    import tomllib

    deps = tomllib.loads((_common.REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    try:
        from packaging.requirements import Requirement
    except ImportError:  # no packaging: versions are still printed, the pins are not checked
        Requirement = None  # type: ignore[assignment,misc]  # noqa: N806
    rows = []
    for spec in deps:
        name = re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0]
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            rows.append({"name": name, "wanted": spec, "found": "", "status": "MISSING"})
            continue
        version = dist.version
        status = "found"
        if Requirement is not None:
            status = "ok" if Requirement(spec).specifier.contains(version, prereleases=True) else (
                "other (image's own)" if name in ("torch", "torchvision") else "MISMATCH")
        where = str(Path(str(dist.locate_file(""))).resolve())
        rows.append({"name": name, "wanted": spec, "found": version, "status": status, "from": where})
    return rows


def versions_section(rec: Recorder, device: torch.device) -> bool:
    """Print what the run uses; False when a dependency is missing (nothing else could run)."""
    import platform

    import timm
    import torchvision

    info: dict[str, str] = {"python": platform.python_version(), "python_executable": sys.executable,
                            "torch": torch.__version__, "torchvision": torchvision.__version__,
                            "timm": timm.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=f"{props.total_memory / 2**30:.0f}", sms=str(props.multi_processor_count),
                    cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()))
    deps = dependency_versions()
    too_old = version_tuple(torch.__version__)[:2] < MIN_TORCH
    floor = ".".join(map(str, MIN_TORCH))
    lines = ["## versions", "  " + ", ".join(f"{k} {v}" for k, v in info.items())]
    lines += [f"  {d['name']} {d['found'] or '-'} ({d['wanted']}): {d['status']}" + (f" from {d['from']}" if d.get("from") else "")
              for d in deps]
    lines.append(f"  WARNING: torch {torch.__version__} is older than {floor}, the oldest this code is written for"
                 if too_old else f"  running with torch {torch.__version__} (the code is written for torch >= {floor})")
    missing = [d["name"] for d in deps if d["status"] == "MISSING"]
    if missing:
        lines.append(f"  MISSING: {', '.join(missing)}: carry their wheels (scripts/gpu_wheels.sh) and run benchmarks/gpu.sh")
    rec.emit("versions", "\n".join(lines), **info, dependencies=deps, torch_too_old=too_old, missing=missing)
    return not missing


# ----------------------------------------------------------------------------- data


def synthetic_splits(n_train: int, n_test: int, shape: tuple[int, int, int], seed: int = 0) -> Splits:
    from bench.data import Splits

    g = torch.Generator().manual_seed(seed)
    mean, std = (CIFAR_MEAN, CIFAR_STD) if shape[0] == 3 else ((0.2860,), (0.3530,))
    return Splits(
        train_x=torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=g),
        train_y=torch.randint(0, 10, (n_train,), generator=g),
        test_x=torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=g),
        test_y=torch.randint(0, 10, (n_test,), generator=g),
        num_classes=10, in_shape=shape, mean=mean, std=std, source="synthetic",
        class_names=tuple(str(i) for i in range(10)), kind="synthetic",
    )


def write_cifar10_batches(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """CIFAR-10's python pickles (5 training batches, 1 test batch, batches.meta) of random images.

    The layout ``bench.data`` reads for the real data set: ``<root>/cifar-10-batches-py/``, each
    batch a protocol-2 pickle of a dict with 'batch_label', 'labels' (ints), 'data' (uint8,
    (N, 3072): 1024 R, 1024 G, 1024 B values, row-major 32x32) and 'filenames'.
    """
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    per_batch = max(2, n_train // 5)
    batches = [(f"data_batch_{i}", f"training batch {i} of 5", per_batch) for i in range(1, 6)]
    for fname, label, n in [*batches, ("test_batch", "testing batch 1 of 1", max(2, n_test))]:
        labels = rng.permutation(np.arange(n) % 10)
        entry = {"batch_label": label, "labels": [int(v) for v in labels],
                 "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 "filenames": [f"synthetic_{fname}_{j:05d}.png" for j in range(n)]}
        with open(d / fname, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}, f, protocol=2)
    return d


# ----------------------------------------------------------------------------- flops and throughput


def flops_per_image(source: str, name: str, params: dict, in_shape: tuple[int, int, int] = (3, 32, 32)) -> float:
    """Forward + backward FLOPs of one image, from shapes alone (the model is moved to 'meta')."""
    from bench.models.zoo import build_model

    torch.manual_seed(0)
    model = build_model(source, name, in_shape, 10, dict(params))
    return flop_count.train_step_flops(model, in_shape, device="meta")


def throughput(source: str, name: str, params: dict, splits: Splits, device: torch.device, precision: str,
               compile_: bool, batch_size: int) -> dict[str, float]:
    """Two epochs through train_cell; the second is timed (its train part and its eval part)."""
    from bench.models.zoo import build_model
    from bench.config.registry import TrainConfig
    from bench.train.loop import train_cell
    from losses import CelLoss

    cfg = TrainConfig(epochs=2, batch_size=batch_size, optimizer="sgd", lr=1e-3, momentum=0.9, precision=precision,
                      channels_last="on", compile=compile_, eval_batch_size=4096)
    torch.manual_seed(0)
    model = build_model(source, name, splits.in_shape, 10, dict(params))
    t0 = time.perf_counter()
    result = train_cell(cell_id="gpu-bench", model=model, criterion=CelLoss(), splits=splits, cfg=cfg, seed=0,
                        device=device, checkpoint=None)
    wall = time.perf_counter() - t0
    if result.status != "done":
        raise RuntimeError(f"{result.status}: {result.message}")
    first, second = result.history
    train_s = max(second["epoch_time"] - second["eval_time"], 1e-9)
    return {"train_images_per_s": splits.n_train / train_s,
            "eval_images_per_s": splits.n_test / max(second["eval_time"], 1e-9),
            "first_epoch_s": first["epoch_time"], "second_epoch_s": second["epoch_time"], "wall_s": wall,
            "warmup_s": max(0.0, first["epoch_time"] - second["epoch_time"])}


# ----------------------------------------------------------------------------- grid smoke


def bench_env() -> dict[str, str]:
    """The environment for a ``bench`` subprocess: this checkout first on the path."""
    paths = [str(_common.REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


def run_bench(args: list[str], timeout: float) -> tuple[int, str, float]:
    """Run ``python -m bench.cli.main ARGS`` in its own process group; kill the group at ``timeout``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=_common.REPO, env=bench_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the --jobs workers too
        out, _ = proc.communicate()
        code = -9
        out += f"\n(killed at its {timeout:.0f} s cap)"
    return code, out, time.perf_counter() - t0


def grid_smoke(rec: Recorder, reg_path: str, archs: list[str], device: torch.device, jobs_list: list[int],
               n_train: int, n_test: int, cap: float) -> None:
    from bench.store.results import Store

    precision = "bf16" if device.type == "cuda" else "fp32"  # the harness refuses bf16 cells on a CPU
    section_end = time.perf_counter() + cap
    with tempfile.TemporaryDirectory(prefix="lossbench-grid-smoke-") as tmp:
        data_root = Path(tmp) / "data"
        t0 = time.perf_counter()
        write_cifar10_batches(data_root, n_train, n_test)
        rec.emit("grid_smoke", f"## grid_smoke: bench run --grid cifar10, 2 epochs, {precision}, synthetic CIFAR-10 pickles "
                 f"({n_train} train / {n_test} test images, written in {time.perf_counter() - t0:.1f} s)",
                 event="data", n_train=n_train, n_test=n_test)
        for i, jobs in enumerate(jobs_list):
            left = section_end - time.perf_counter()
            share = left - GRID_RUN_LEAST * (len(jobs_list) - i - 1)  # the later --jobs runs keep theirs
            if share < 15:
                rec.emit("grid_smoke", f"  skipped --jobs {jobs}: {left:.0f} s left in the section", event="skipped",
                         jobs=jobs)
                continue
            results = Path(tmp) / f"results-jobs{jobs}"
            args = ["run", "--grid", "cifar10", "--registry", reg_path, "--results", str(results),
                    "--data-root", str(data_root), "--device", device.type, "--jobs", str(jobs),
                    "--set", "train.epochs=2", "--set", f"train.precision={precision}", "--filter", "loss=celLoss",
                    "--filter", "seed=0", "--filter", "architecture=" + ",".join(archs), "--plain", "--no-report"]
            code, out, wall = run_bench(args, share)
            rows: list[dict[str, Any]] = []
            with contextlib.suppress(Exception):  # an empty store (the run died early) has no cells
                df = Store(results).cells(["architecture", "status", "wall_time", "final_test_acc", "device",
                                           "torch_version", "message"])
                rows = df.to_dict("records")
            done = sum(r["status"] == "done" for r in rows)
            ok = code == 0 and done == len(archs)
            summary = next((ln for ln in out.splitlines() if ln.startswith("grid 'cifar10'")), "")
            rec.emit("grid_smoke",
                     f"  --jobs {jobs}: exit {code}, {done}/{len(archs)} cells done, wall {wall:.1f} s "
                     f"({'OK' if ok else 'FAILED'}) {summary}",
                     event="run", jobs=jobs, exit_code=code, cells_done=done, cells=len(archs), wall_s=wall, ok=ok)
            for r in rows:
                rec.emit("grid_smoke", f"    {r['architecture']}: {r['status']}, cell wall {r['wall_time']:.1f} s, "
                         f"test acc {r['final_test_acc']:.3f} on {r['device']} (torch {r['torch_version']})"
                         + (f" {r['message'][:200]}" if r["status"] != "done" else ""),
                         event="cell", jobs=jobs, **r)
            if not ok:
                rec.emit("grid_smoke", "    output tail:\n" + "\n".join("      " + ln for ln in out.splitlines()[-25:]),
                         event="output", jobs=jobs, tail=out[-4000:])


# ----------------------------------------------------------------------------- --jobs workers


def worker_main() -> None:
    """A long-lived worker: reads JSON commands on stdin, trains, answers JSON lines on stdout."""
    from bench.models.zoo import build_model
    from bench.config.registry import TrainConfig
    from bench.train.loop import train_cell
    from losses import CelLoss

    device = torch.device(os.environ.get("GPU_BENCH_DEVICE", "cuda"))
    cache: dict[tuple, Splits] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        key = (cmd["n_train"], cmd["n_test"])
        if key not in cache:
            cache.clear()
            cache[key] = synthetic_splits(cmd["n_train"], cmd["n_test"], (1, 28, 28))
        cfg = TrainConfig(epochs=cmd["epochs"], batch_size=512, optimizer="sgd", lr=1e-3, momentum=0.9,
                          precision=cmd["precision"], channels_last="on")
        torch.manual_seed(0)
        model = build_model("native", cmd["arch"], (1, 28, 28), 10, {})
        while time.time() < cmd.get("start_at", 0):
            time.sleep(0.005)
        start = time.time()
        result = train_cell(cell_id="jobs", model=model, criterion=CelLoss(), splits=cache[key], cfg=cfg, seed=0,
                            device=device, checkpoint=None)
        print(json.dumps({"start": start, "end": time.time(), "epochs": len(result.history),
                          "status": result.status}), flush=True)


class Workers:
    """N worker processes; each answer is awaited only until the section's deadline."""

    def __init__(self, n: int, device: str) -> None:
        env = {**bench_env(), "GPU_BENCH_DEVICE": device, "OMP_NUM_THREADS": "1"}
        self.procs = [subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]

    def run(self, k: int, cmd: dict, deadline: float) -> list[dict]:
        for p in self.procs[:k]:
            assert p.stdin is not None
            p.stdin.write(json.dumps(cmd) + "\n")
            p.stdin.flush()
        out = []
        for p in self.procs[:k]:
            assert p.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(p.stdout, selectors.EVENT_READ)
                if not sel.select(timeout=max(deadline - time.perf_counter(), 0.0)):
                    raise SectionTimeout("a --jobs worker did not answer before the section's cap")
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("a --jobs worker died; see its stderr above")
            out.append(json.loads(line))
        return out

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert p.stdin is not None
                p.stdin.write(json.dumps({"quit": True}) + "\n")
                p.stdin.flush()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def jobs_section(rec: Recorder, reg: Registry, ns: list[int], device: str, precision: str, epochs: int,
                 n_train: int, n_test: int, cap: float) -> None:
    deadline = time.perf_counter() + cap
    rec.emit("jobs", f"## jobs: MNIST-size MLP / CNN cells, N worker processes on one {device} "
             f"({n_train} images, {epochs} epochs, {precision})", event="start")
    best: dict[str, dict] = {}
    workers = Workers(max(ns), device)
    try:
        base = {"n_train": n_train, "n_test": n_test, "precision": precision}
        for arch in ("mlp", "cnn"):  # warm-up: imports, CUDA context, cuDNN autotuning, data on the device
            workers.run(max(ns), {**base, "arch": arch, "epochs": 1}, deadline)
        for arch in ("mlp", "cnn"):
            for n in ns:
                if time.perf_counter() > deadline:
                    rec.emit("jobs", f"  skipped {arch} N={n} and later: section cap", event="skipped")
                    raise SectionTimeout("cap")
                res = workers.run(n, {**base, "arch": arch, "epochs": epochs, "start_at": time.time() + 0.5}, deadline)
                span = max(r["end"] for r in res) - min(r["start"] for r in res)
                eps = sum(r["epochs"] for r in res) / span
                row = {"arch": arch, "jobs": n, "span_s": span, "epochs_per_s": eps,
                       "cells_per_hour": eps * 3600 / MNIST_EPOCHS}
                rec.emit("jobs", f"  {arch} --jobs {n}: {eps:.2f} epochs/s together, {row['cells_per_hour']:.0f} "
                         f"cells/hour ({MNIST_EPOCHS} epochs)", event="row", **row)
                if arch not in best or row["cells_per_hour"] > best[arch]["cells_per_hour"]:
                    best[arch] = row
    except SectionTimeout as exc:
        rec.emit("jobs", f"  jobs section stopped: {exc}", event="stopped")
    finally:
        workers.close()
    for arch, row in best.items():
        rec.emit("jobs", f"  best --jobs for {arch}: {row['jobs']}", event="best", arch=arch, jobs=row["jobs"])
    if set(best) == {"mlp", "cnn"}:
        mnist = reg.grids.get("fashion-mnist")
        per_arch = len(mnist.seeds) * len(mnist.grid_losses(reg.loss_names())) if mnist else 15
        minutes = sum(per_arch / best[a]["cells_per_hour"] * 60 for a in ("mlp", "cnn"))
        rec.emit("jobs", f"  projected fashion-mnist grid ({2 * per_arch} cells, {MNIST_EPOCHS} epochs, each model at "
                 f"its best --jobs): {minutes:.1f} min", event="projection", minutes=minutes)


PROJECTED_GRIDS = ("cifar10", "cifar10-modern", "cifar10-tuned")


def project_grid(rec: Recorder, reg: Registry, name: str, best: dict[str, tuple[str, dict]], measured: list[str]) -> None:
    """A CIFAR-10 grid's wall time at --jobs 1 from each architecture's fastest measured setting.

    Measured at the throughput section's batch, without augmentation: a grid with another batch
    size or with crop-flip (about 1% of a ResNet-18 step on a CPU, docs/benchmarks.md) is
    projected at the measured rate, and the line says so.
    """
    if name not in reg.grids:
        return
    grid = reg.grids[name]
    archs = [a for a in grid.architectures if a in measured]  # --archs may measure a few of them
    if not archs:
        return
    trials = grid.search.trials if grid.search is not None else 1
    cells_per_arch = len(grid.seeds) * len(grid.grid_losses(reg.loss_names())) * trials
    epochs = int(grid.train.get("epochs", 100))
    extras = [f"{k} {grid.train[k]}" for k in ("batch_size", "augment", "schedule") if k in grid.train]
    rec.emit("projection", f"## projection: {name} grid, {cells_per_arch} cells per architecture x {epochs} epochs "
             f"of {CIFAR_TRAIN} train + {CIFAR_TEST} test images, --jobs 1, each at its fastest setting"
             + (f" (grid: {', '.join(extras)}; projected at the measured rate)" if extras else ""),
             event="start", grid=name)
    total_h = 0.0
    for a in archs:
        if a not in best:
            rec.emit("projection", f"  {a}: no throughput measured", arch=a, grid=name)
            continue
        key, r = best[a]
        epoch_s = CIFAR_TRAIN / r["train_images_per_s"] + CIFAR_TEST / r["eval_images_per_s"]
        cell_h = (epochs * epoch_s + (r["warmup_s"] if "compile" in key else 0.0)) / 3600
        total_h += cells_per_arch * cell_h
        rec.emit("projection", f"  {a} ({key}): epoch {epoch_s:.1f} s, cell {cell_h * 60:.1f} min, "
                 f"{cells_per_arch} cells {cells_per_arch * cell_h:.2f} h", arch=a, setting=key, epoch_s=epoch_s,
                 cell_h=cell_h, grid=name)
    if all(a in best for a in archs):
        part = "" if len(archs) == len(grid.architectures) else f", the {len(archs)} measured of its architectures"
        rec.emit("projection", f"  projected {name} grid ({cells_per_arch * len(archs)} cells{part}, {epochs} epochs, "
                 f"--jobs 1): {total_h:.1f} h", event="total", hours=total_h, grid=name)


# ----------------------------------------------------------------------------- main


def cifar10_archs(reg: Registry, wanted: list[str]) -> dict[str, tuple[str, str, dict]]:
    grid = reg.grids["cifar10"]
    unknown = [a for a in wanted if a not in grid.architectures]
    if unknown:
        raise SystemExit(f"--archs: {unknown} not in the cifar10 grid's {list(grid.architectures)}")
    return {a: (reg.architectures[a].source, reg.architectures[a].name, dict(reg.architectures[a].params))
            for a in grid.architectures if not wanted or a in wanted}


def measure(rec: Recorder, budget: Budget, best: dict[str, tuple[str, dict]], archs: dict[str, tuple[str, str, dict]],
            flops: dict[str, float], a: str, precision: str, comp: bool, splits: Splits, device: torch.device,
            batch: int, later: list[str]) -> None:
    """One throughput row within its grant; a failure or a timeout is a row too, the run goes on."""
    key = precision + (" compile" if comp else "")
    grant = budget.grant("throughput_compile" if comp else "throughput_eager", later)
    if grant <= 0:
        rec.emit("throughput", f"  skipped {a} {key}: {budget.left():.0f} s left", event="skipped", arch=a, setting=key)
        return
    src, name, params = archs[a]
    try:
        with time_cap(grant):
            r = throughput(src, name, params, splits, device, precision, comp, batch)
    except Exception as exc:  # noqa: BLE001 - SectionTimeout included
        rec.emit("throughput", f"  {a} {key}: FAILED {first_line(exc)}", event="failed", arch=a, setting=key,
                 error=first_line(exc))
        return
    r["tflops"] = r["train_images_per_s"] * flops.get(a, float("nan")) / 1e12
    rec.emit("throughput", f"  {a} {key}: train {r['train_images_per_s']:,.0f} img/s ({r['tflops']:.1f} TFLOP/s), "
             f"eval {r['eval_images_per_s']:,.0f} img/s, warm-up {r['warmup_s']:.1f} s", arch=a, setting=key, **r)
    if a not in best or r["train_images_per_s"] > best[a][1]["train_images_per_s"]:
        best[a] = (key, r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="every section on the CPU with tiny sizes (tests the script)")
    ap.add_argument("--flops-only", action="store_true", help="print '<name> <fwd+bwd GFLOP per image>' per cifar10 architecture")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="time for the whole run, later sections shrink to fit (default 330; --smoke 1200)")
    ap.add_argument("--out", default=None, help="JSON-lines file the results are appended to (default $OUT/gpu_bench.jsonl)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per timed epoch (batch 256)")
    ap.add_argument("--no-compile", action="store_true", help=f"skip the torch.compile row ({COMPILED_ARCH})")
    ap.add_argument("--archs", default="", help="comma-separated subset of the cifar10 grid's architectures")
    ap.add_argument("--jobs", default="1,2,4,8", help="--jobs N values of the MNIST section")
    ap.add_argument("--jobs-epochs", type=int, default=2)
    ap.add_argument("--grid-jobs", default="1,4", help="--jobs values of the cifar10 smoke run")
    ap.add_argument("--grid-images", type=int, default=2560, help="training images of the cifar10 smoke run's data")
    ap.add_argument("--no-grid", action="store_true", help="skip the cifar10 smoke run")
    ap.add_argument("--registry", default=str(_common.REPO / "registry.yaml"))
    args = ap.parse_args()
    if args.worker:
        worker_main()
        return
    wanted = [a for a in args.archs.split(",") if a]
    if args.flops_only:
        from bench.config.registry import load_registry

        for a, (src, name, params) in cifar10_archs(load_registry(args.registry), wanted).items():
            print(f"{a} {flops_per_image(src, name, params) / 1e9:.3f}", flush=True)
        return

    out = args.out or (str(Path(os.environ["OUT"]) / "gpu_bench.jsonl") if os.environ.get("OUT") else None)
    rec = Recorder(out)
    budget_s = args.budget_s if args.budget_s is not None else (1200.0 if args.smoke else 330.0)
    budget = Budget(budget_s, scale=5.0 if args.smoke else 1.0)
    _common.header("Benchmark 5: GPU throughput, cifar10 grid projection and smoke run, --jobs")
    if args.smoke:
        device = torch.device("cpu")
        print("  --smoke: CPU, tiny sizes; the figures mean nothing, the code paths are exercised", flush=True)
    elif not torch.cuda.is_available():
        rec.emit("versions", "no CUDA device: the GPU benchmark was skipped (run it on a GPU machine: bash "
                 "benchmarks/gpu.sh; test this script on a CPU with --smoke)", skipped="no CUDA")
        return
    else:
        device = torch.device(args.device)
    print(f"  budget {budget_s:.0f} s; results appended to {out or '(no --out)'}", flush=True)
    if not versions_section(rec, device):
        raise SystemExit(2)  # bench imports pydantic, typer...: nothing below could run
    from bench.config.registry import load_registry

    reg = load_registry(args.registry)
    archs = cifar10_archs(reg, wanted)

    # flops
    flops: dict[str, float] = {}
    grant = budget.grant("flops", ["throughput_eager", "grid_smoke", "jobs"])
    rec.emit("flops", "## flops: forward + backward per 32x32 image (grouped convolutions counted per group)",
             event="start")
    try:
        with time_cap(max(grant, CAPS["flops"][1])):  # first section: the budget always has this
            for a, (src, name, params) in archs.items():
                flops[a] = flops_per_image(src, name, params)
                rec.emit("flops", f"  {a} ({src}:{name}) {flops[a] / 1e9:.3f} GFLOP", arch=a, gflop=flops[a] / 1e9)
    except SectionTimeout as exc:
        rec.emit("flops", f"  flops stopped: {exc}", event="stopped")

    # throughput, in the order of what matters most if the time runs out: bf16 eager (the grid's
    # setting on CUDA) for every architecture, then (after the smoke run) ResNet-18 compiled, fp32
    batch = 8 if args.smoke else int(reg.grids["cifar10"].train.get("batch_size", 256))
    steps = 1 if args.smoke else args.steps
    splits = synthetic_splits(steps * batch, 16 if args.smoke else 4096, (3, 32, 32))
    best: dict[str, tuple[str, dict]] = {}
    later_than_bf16 = (["grid_smoke"] if not args.no_grid else []) + ["throughput_compile", "jobs"]
    rec.emit("throughput", f"## throughput bf16: train_cell, batch {batch}, {steps} steps an epoch, second epoch "
             "timed", event="start", batch=batch, steps=steps)
    for a in archs:
        measure(rec, budget, best, archs, flops, a, "bf16", False, splits, device, batch, later_than_bf16)

    # 2-epoch cifar10 smoke run through the CLI
    if not args.no_grid:
        grant = budget.grant("grid_smoke", ["throughput_compile", "jobs"])
        grid_jobs = [int(v) for v in args.grid_jobs.split(",") if v]
        if grant <= 0:
            rec.emit("grid_smoke", f"## grid_smoke skipped: {budget.left():.0f} s left", event="skipped")
        else:
            n_train, n_test = (10, 10) if args.smoke else (args.grid_images, max(10, args.grid_images // 5))
            grid_smoke(rec, args.registry, list(archs), device, grid_jobs, n_train, n_test, grant)

    rec.emit("throughput", f"## throughput {COMPILED_ARCH} compiled, then fp32", event="start")
    if COMPILED_ARCH in archs and not args.no_compile and not args.smoke:  # no C++ toolchain is assumed on a CPU
        measure(rec, budget, best, archs, flops, COMPILED_ARCH, "bf16", True, splits, device, batch, ["jobs"])
    for a in archs:
        measure(rec, budget, best, archs, flops, a, "fp32", False, splits, device, batch, ["jobs"])

    # projections of the CIFAR-10 grids (jobs 1: cells one after another)
    for name in PROJECTED_GRIDS:
        project_grid(rec, reg, name, best, list(archs))

    # --jobs for the MNIST models
    grant = budget.grant("jobs", [])
    ns = [int(v) for v in args.jobs.split(",") if v]
    if grant <= 0:
        rec.emit("jobs", f"## jobs skipped: {budget.left():.0f} s left", event="skipped")
    else:
        jobs_section(rec, reg, ns, str(device), "fp32" if args.smoke else "bf16", 1 if args.smoke else args.jobs_epochs,
                     512 if args.smoke else 60000, 128 if args.smoke else 10000, grant)
    rec.emit("end", f"## end: wall {budget.elapsed():.0f} s of a {budget_s:.0f} s budget", wall_s=budget.elapsed())


if __name__ == "__main__":
    main()
