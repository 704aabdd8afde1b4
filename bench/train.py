"""Train one cell: the paper's protocol with on-device batching, epoch checkpoints and MI metrics.

The loop keeps the training split resident on the device (uint8 for images), draws a seeded
per-epoch permutation on the device, gathers each batch with ``index_select`` (a row copy,
~15x faster than advanced indexing on CPU) and normalises it on the device. Nothing in the
step loop reads the device: each step's loss and logits are kept (as tensors) and reduced in
chunks on the device; the host reads the epoch's figures once, at its end (and the progress
display at most twice a second). A non-finite epoch loss ends the cell as ``diverged``.

Speed switches (each a ``TrainConfig`` setting, so part of a cell's identity):
``precision`` (``auto``: bf16 autocast with fp32 master weights on CUDA, fp32 on CPU),
``channels_last`` (``auto``: on), ``compile`` (``torch.compile`` of the training forward;
evaluation runs the uncompiled module, which shares its weights, so eval batch shapes cost no
extra compilation). On CUDA ``cudnn.benchmark`` is switched on for the process (unless
deterministic algorithms were asked for) and the optimiser is the fused implementation.
Checkpoints are serialised at the end of an epoch and written (atomically, with fsync) by a
background thread while the next epoch trains; a failed write stops training at the next step.

On CPU the float operations, their order, the parameter init and the permutation stream are
those of the original loop, so a resumed cell ends bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import Splits
from bench.faults import Fault, SimulatedOutOfMemoryError
from bench.registry import TrainConfig
from bench.store import atomic_write_bytes
from losses import SplitMI

CHECKPOINT_VERSION = 1
PROGRESS_INTERVAL_S = 0.25  # the step loop calls the progress callback at most this often
METER_CHUNK_STEPS = 32  # steps of logits kept before they are reduced to a correct-count (bounds memory)


class EpochMeter:
    """Training loss and accuracy of one epoch, accumulated on the device without host reads.

    ``add`` keeps references to each step's (detached) loss and logits; every
    ``METER_CHUNK_STEPS`` steps the logits are reduced on the device to a count of correct
    predictions. ``finish`` reads the epoch's figures back with one host transfer and sums
    ``loss_i * batch_i`` in float32, in step order: the same operations, so the same bits, as a
    running ``loss_sum += loss * len(batch)`` on the device.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.seen = 0
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._correct: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        self.losses.append(loss)
        self.sizes.append(n)
        self.seen += n
        self._logits.append(logits)
        self._labels.append(labels)
        if len(self._logits) >= METER_CHUNK_STEPS:
            self._reduce()

    def _reduce(self) -> None:
        if not self._logits:
            return
        logits = self._logits[0] if len(self._logits) == 1 else torch.cat(self._logits)
        labels = self._labels[0] if len(self._labels) == 1 else torch.cat(self._labels)
        # max(1).indices is argmax(1) (first maximum, NaN as maximum) and ~1.6x faster on CPU
        correct = (logits.max(1).indices == labels).sum()
        self._correct = correct if self._correct is None else self._correct + correct
        self._logits.clear()
        self._labels.clear()

    def correct(self) -> torch.Tensor:
        self._reduce()
        return self._correct if self._correct is not None else torch.zeros((), dtype=torch.long, device=self.device)

    def running(self) -> tuple[float, float]:
        """Mean loss and accuracy so far (reads the device: for displays, at most a few times a second)."""
        if not self.seen:
            return float("nan"), float("nan")
        sizes = torch.tensor(self.sizes, dtype=torch.float32, device=self.device)
        loss_sum = (torch.stack(self.losses) * sizes).sum()
        values = torch.stack([loss_sum.double(), self.correct().double()]).tolist()
        return values[0] / self.seen, values[1] / self.seen

    def finish(self) -> tuple[float, int]:
        """(sum of loss_i * batch_i in float32, in step order; number of correct predictions)."""
        if not self.losses:
            return 0.0, 0
        values = torch.cat([torch.stack(self.losses).double(), self.correct().double().view(1)]).tolist()
        correct = int(values.pop())
        total = np.float32(0.0)
        with np.errstate(all="ignore"):  # inf/nan propagate as on the device
            for value, size in zip(values, self.sizes):
                total = np.float32(total + np.float32(np.float32(value) * np.float32(size)))
        return float(total), correct


@dataclass
class Progress:
    """What the trainer reports to a display; device values are read only when the display asks.

    During an epoch ``meter`` is set and :meth:`running` gives the mean loss and accuracy so far
    (a host read: call it at most a few times a second). After an epoch, ``last_epoch`` holds
    its history row.
    """

    epoch: int
    epochs: int
    step: int
    steps: int
    seen: int = 0
    meter: EpochMeter | None = None
    last_epoch: dict[str, float] | None = None

    def running(self) -> tuple[float, float] | None:
        return self.meter.running() if self.meter is not None and self.meter.seen else None


ProgressFn = Callable[[Progress], None]


@dataclass
class TrainResult:
    status: str  # done | diverged
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time: float = 0.0
    resumed_from_epoch: int = 0
    message: str = ""


class CheckpointWriter:
    """Serialise a checkpoint now, write it (atomically, with fsync) in a background thread.

    At most one write is in flight: ``submit`` and ``wait`` join the previous one first and
    re-raise its error. The bytes are taken before ``submit`` returns, so training may go on
    changing the weights while the file is written.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: Path, state: dict[str, Any]) -> None:
        self.wait()
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        cell_id = str(state.get("cell_id", ""))

        def write() -> None:
            try:
                atomic_write_bytes(path, data, "checkpoint", cell_id)
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                self._error = exc

        self._thread = threading.Thread(target=write, name="lossbench-checkpoint", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """True once the write in flight has failed (cheap: no join)."""
        return self._error is not None

    def wait(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if raise_error:
                raise error


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
        correct += (logits.max(1).indices == yb).sum()  # == argmax(1), faster on CPU
    terms = mi.compute()
    model.train(was_training)
    return {
        "test_acc": correct.item() / max(len(y), 1),
        "test_loss": terms["h_cond"],
        "test_h_cond": terms["h_cond"],
        "test_h_marg": terms["h_marg"],
        "test_mi": terms["mi"],
    }


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
    on_epoch_start: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` (already built under ``torch.manual_seed(seed)``) for ``cfg.epochs`` epochs.

    ``on_epoch_start(epoch)`` runs before each epoch, outside its timing (the launchers rebalance
    the CPU threads there: :mod:`bench.threads`).
    """
    if device.type == "cuda" and not (torch.are_deterministic_algorithms_enabled() or torch.backends.cudnn.deterministic):
        # fixed batch shapes: let cuDNN time its kernels once and keep the fastest. Set for the
        # process (a harness worker), not restored, so the cell row records what was used
        # (bench.execute.determinism_flags); left off when determinism was asked for.
        torch.backends.cudnn.benchmark = True
    writer = CheckpointWriter()
    try:
        result = _train(cell_id, model, criterion, splits, cfg, seed, device, checkpoint, resume_state,
                        progress, fault, writer, on_epoch_start)
    except BaseException:
        writer.wait(raise_error=False)  # let an in-flight checkpoint land (no torn temp file), keep the first error
        raise
    writer.wait()
    return result


def _train(cell_id: str, model: torch.nn.Module, criterion: torch.nn.Module, splits: Splits, cfg: TrainConfig,
           seed: int, device: torch.device, checkpoint: Path | None, resume_state: dict[str, Any] | None,
           progress: ProgressFn | None, fault: Fault | None, writer: CheckpointWriter,
           on_epoch_start: Callable[[int], None] | None) -> TrainResult:
    memory_format = torch.channels_last if cfg.channels_last == "on" else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    criterion = criterion.to(device)
    optimizer = make_optimizer(model.parameters(), cfg, device)
    # the compiled module shares the weights; evaluation runs the plain one (no extra graphs)
    step_model = torch.compile(model, dynamic=False) if cfg.compile else model

    train_x = splits.train_x.to(device, non_blocking=True)
    train_y = splits.train_y.to(device, non_blocking=True)
    test_x = splits.test_x.to(device, non_blocking=True)
    test_y = splits.test_y.to(device, non_blocking=True)
    n = len(train_y)
    batch_size = cfg.batch_size
    steps = math.ceil(n / batch_size)

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

    to_channels_last = train_x.dim() == 4 and cfg.channels_last == "on"
    autocast = _autocast(device, cfg.precision)
    normalise = splits.normalise
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        if hasattr(criterion, "set_progress"):
            criterion.set_progress(epoch, cfg.epochs)
        nan_fault = False
        if fault is not None and fault.applies(cell_id, epoch):
            if fault.kind == "oom":
                raise SimulatedOutOfMemoryError("CUDA out of memory (simulated by LOSSBENCH_FAULT)")
            if fault.kind == "raise":
                raise RuntimeError("fault injected by LOSSBENCH_FAULT")
            nan_fault = fault.kind == "nan"
        t0 = time.perf_counter()
        next_report = t0 + PROGRESS_INTERVAL_S
        perm = torch.randperm(n, generator=gen, device=device)
        meter = EpochMeter(device)
        for step in range(steps):
            idx = perm[step * batch_size:(step + 1) * batch_size]
            xb = normalise(torch.index_select(train_x, 0, idx))
            if to_channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = torch.index_select(train_y, 0, idx)
            with autocast:
                logits = step_model(xb)
            loss = criterion(logits.float(), yb)
            if nan_fault:
                loss = loss * float("nan")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add(loss.detach(), logits.detach(), yb)
            if writer.failed:  # the last epoch's checkpoint could not be written (e.g. disk full): stop now
                writer.wait()
            if progress is not None and time.perf_counter() >= next_report:
                next_report = time.perf_counter() + PROGRESS_INTERVAL_S
                progress(Progress(epoch, cfg.epochs, step + 1, steps, meter.seen, meter))
        loss_sum, correct = meter.finish()
        del meter
        train_loss = loss_sum / n
        train_acc = correct / n
        if not math.isfinite(train_loss):
            wall += time.perf_counter() - t0
            return TrainResult("diverged", history, wall, start_epoch,
                               f"non-finite training loss in epoch {epoch + 1}; try a smaller lr")
        t_eval = time.perf_counter()
        metrics = evaluate(model, test_x, test_y, splits, cfg, device)
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, **metrics,
               "epoch_time": epoch_time, "eval_time": epoch_time - (t_eval - t0)}
        history.append(row)
        if not all(math.isfinite(v) for v in (metrics["test_loss"], metrics["test_mi"])):
            return TrainResult("diverged", history, wall, start_epoch,
                               f"non-finite test loss in epoch {epoch + 1}; try a smaller lr")
        if checkpoint is not None and epoch + 1 < cfg.epochs:
            writer.submit(checkpoint, {
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
            progress(Progress(epoch + 1, cfg.epochs, steps, steps, n, last_epoch=row))
        if fault is not None and fault.kind == "kill" and fault.applies(cell_id, epoch + 1):
            writer.wait()  # the checkpoint of this epoch is on disk before the process dies
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


__all__ = [
    "CheckpointWriter",
    "EpochMeter",
    "F",
    "Progress",
    "TrainResult",
    "evaluate",
    "label_entropy",
    "load_checkpoint",
    "train_cell",
]
