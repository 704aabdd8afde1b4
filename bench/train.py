"""Train one cell: the paper's protocol with on-device batching, epoch checkpoints and MI metrics.

The loop keeps the training split resident on the device (uint8 for images), draws a seeded
per-epoch permutation on the device, normalises each batch on the device, and accumulates
loss and accuracy on the device: the host reads them once per epoch (and at most twice a
second for the progress display). A non-finite epoch loss ends the cell as ``diverged``.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.data import Splits
from bench.faults import Fault, SimulatedOutOfMemoryError
from bench.registry import TrainConfig
from bench.store import atomic_write_bytes
from losses import SplitMI

CHECKPOINT_VERSION = 1


@dataclass
class Progress:
    """What the trainer reports to a display; tensors are read only when the display wants them."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    seen: int = 0
    last_epoch: dict[str, float] | None = None


ProgressFn = Callable[[Progress], None]


@dataclass
class TrainResult:
    status: str  # done | diverged
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time: float = 0.0
    resumed_from_epoch: int = 0
    message: str = ""


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def make_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def label_entropy(y: torch.Tensor, num_classes: int) -> float:
    """Entropy (nats) of the empirical label distribution of a split."""
    p = torch.bincount(y.cpu(), minlength=num_classes).double() / max(len(y), 1)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, splits: Splits,
             cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Accuracy, cross entropy and the MI terms over a whole split, in large batches."""
    was_training = model.training
    model.eval()
    mi = SplitMI()
    correct = torch.zeros((), dtype=torch.long, device=device)
    memory_format = torch.channels_last if cfg.channels_last == "on" and x.dim() == 4 else torch.contiguous_format
    for start in range(0, len(y), cfg.eval_batch_size):
        xb = splits.normalise(x[start:start + cfg.eval_batch_size]).contiguous(memory_format=memory_format)
        yb = y[start:start + cfg.eval_batch_size]
        with _autocast(device, cfg.precision):
            logits = model(xb)
        logits = logits.float()
        mi.update(logits, yb)
        correct += (logits.argmax(1) == yb).sum()
    terms = mi.compute()
    model.train(was_training)
    return {
        "test_acc": correct.item() / max(len(y), 1),
        "test_loss": terms["h_cond"],
        "test_h_cond": terms["h_cond"],
        "test_h_marg": terms["h_marg"],
        "test_mi": terms["mi"],
    }


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, cell_id: str) -> dict[str, Any] | None:
    """Load a checkpoint with ``weights_only=True``; raises on a corrupt file (caller quarantines)."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("cell_id") != cell_id or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError("checkpoint belongs to another cell or version")
    return state


def train_cell(
    *,
    cell_id: str,
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    splits: Splits,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    checkpoint: Path | None,
    resume_state: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    fault: Fault | None = None,
) -> TrainResult:
    """Train ``model`` (already built under ``torch.manual_seed(seed)``) for ``cfg.epochs`` epochs."""
    memory_format = torch.channels_last if cfg.channels_last == "on" else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    criterion = criterion.to(device)
    optimizer = make_optimizer(model.parameters(), cfg, device)
    step_model = torch.compile(model) if cfg.compile else model

    train_x = splits.train_x.to(device, non_blocking=True)
    train_y = splits.train_y.to(device, non_blocking=True)
    test_x = splits.test_x.to(device, non_blocking=True)
    test_y = splits.test_y.to(device, non_blocking=True)
    n = len(train_y)
    steps = math.ceil(n / cfg.batch_size)

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    history: list[dict[str, float]] = []
    start_epoch = 0
    wall = 0.0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        gen.set_state(resume_state["generator"])
        torch.set_rng_state(resume_state["cpu_rng"])
        if device.type == "cuda" and resume_state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume_state["cuda_rng"], device)
        history = [dict(h) for h in resume_state["history"]]
        start_epoch = int(resume_state["epoch"])
        wall = float(resume_state["wall_time"])

    use_4d = train_x.dim() == 4
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        if hasattr(criterion, "set_progress"):
            criterion.set_progress(epoch, cfg.epochs)
        if fault is not None and fault.applies(cell_id, epoch):
            if fault.kind == "oom":
                raise SimulatedOutOfMemoryError("CUDA out of memory (simulated by LOSSBENCH_FAULT)")
            if fault.kind == "raise":
                raise RuntimeError("fault injected by LOSSBENCH_FAULT")
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for step in range(steps):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            xb = splits.normalise(train_x[idx])
            if use_4d and cfg.channels_last == "on":
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = train_y[idx]
            with _autocast(device, cfg.precision):
                logits = step_model(xb)
            loss = criterion(logits.float(), yb)
            if fault is not None and fault.kind == "nan" and fault.applies(cell_id, epoch):
                loss = loss * float("nan")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            if progress is not None:
                progress(Progress(epoch, cfg.epochs, step + 1, steps, loss_sum, correct,
                                  min((step + 1) * cfg.batch_size, n)))
        train_loss = loss_sum.item() / n
        train_acc = correct.item() / n
        if not math.isfinite(train_loss):
            wall += time.perf_counter() - t0
            return TrainResult("diverged", history, wall, start_epoch,
                               f"non-finite training loss in epoch {epoch + 1}; try a smaller lr")
        metrics = evaluate(model, test_x, test_y, splits, cfg, device)
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, **metrics,
               "epoch_time": epoch_time}
        history.append(row)
        if not all(math.isfinite(v) for v in (metrics["test_loss"], metrics["test_mi"])):
            return TrainResult("diverged", history, wall, start_epoch,
                               f"non-finite test loss in epoch {epoch + 1}; try a smaller lr")
        if checkpoint is not None and epoch + 1 < cfg.epochs:
            _save_checkpoint(checkpoint, {
                "version": CHECKPOINT_VERSION,
                "cell_id": cell_id,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": gen.get_state(),
                "cpu_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "history": history,
                "wall_time": wall,
            })
        if progress is not None:
            progress(Progress(epoch + 1, cfg.epochs, steps, steps, last_epoch=row))
        if fault is not None and fault.kind == "kill" and fault.applies(cell_id, epoch + 1):
            _kill_once(checkpoint)
    return TrainResult("done", history, wall, start_epoch)


def _kill_once(checkpoint: Path | None) -> None:
    """Test hook: SIGKILL this process the first time only (a marker file remembers)."""
    import os
    import signal

    marker = (checkpoint or Path(".")).with_suffix(".killed")
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("killed once by LOSSBENCH_FAULT\n")
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["train_cell", "evaluate", "load_checkpoint", "label_entropy", "Progress", "TrainResult", "F"]
