"""Train one cell: the paper's protocol with on-device batching, epoch checkpoints and MI metrics.

The loop keeps the training split resident on the device (uint8 for images), draws a seeded
per-epoch permutation on the device, gathers each batch with ``index_select`` (a row copy,
much faster than advanced indexing on CPU; docs/benchmarks.md) and normalises it on the device. Nothing in the
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

Callbacks (:class:`TrainCallback`) are told when each epoch starts and when it has ended: they
may log, adjust the process, or raise to end the cell (what they raise is handled as any error of
the cell's own). Besides them and the progress display, the loop has no hooks.

The recipe (``TrainConfig``'s schedule, augment, grad_clip and ema_decay; checked as a whole by
:mod:`bench.config.recipe`): a ``torch.optim.lr_scheduler`` schedule (:mod:`bench.train.schedules`) stepped
after every optimizer step, the lr of each epoch's first step recorded as the history's ``lr``;
batch augmentation (:mod:`bench.train.augment`) of the raw (uint8) batch before normalisation, drawn
from the cell's own augmentation generator, so the batch order is that of an unaugmented cell;
the gradient's global norm clipped after unscaling (fp16); an EMA of the weights
(:mod:`bench.train.ema`), updated after every step and evaluated instead of the raw weights. With
none of them set the loop runs exactly the operations of the paper's protocol.

Every epoch evaluates the test split (and the validation split, when the cell has one) in one
pass: accuracy, NLL, the MI terms and :class:`bench.metrics.compute.SplitMetrics` (ECE, adaptive ECE,
Brier, balanced accuracy). With a validation split, the cell ends with temperature scaling
(:mod:`bench.train.calibration`): for each epoch a selection rule can pick (the last, the best
validation epoch, the best test epoch; earliest on ties, as :mod:`bench.report.selection` picks) T is
fitted on that epoch's validation logits, and the history row of that epoch gains
``temperature``, ``test_ece_ts`` and ``test_nll_ts`` (NaN in the other rows). The logits of the
best epochs so far travel in the checkpoint, so a resumed cell scales the same epochs.

On CPU the float operations, their order, the parameter init and the permutation and
augmentation streams are those of the uninterrupted loop (the scheduler, the augmentation
generator and the EMA are checkpointed), so a resumed cell ends bitwise identical to an
uninterrupted one.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.train.augment import augment_batch, make_generator
from bench.train.calibration import fit_temperature
from bench.data import Splits
from bench.train.ema import WeightEMA
from bench.fileio import Writer, atomic_write
from bench.metrics.compute import SplitMetrics
from bench.config.recipe import schedule_spec, scheduled
from bench.config.registry import TrainConfig
from bench.train.schedules import load_scheduler_state, make_scheduler
from losses import SplitMI

CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: before the recipe and the calibration metrics (see resumable)
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
        # max(1).indices is argmax(1) (first maximum, NaN as maximum) and faster on CPU
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


class TrainCallback:
    """Told of each cell and each epoch as it trains; subclass it and override any method (all do nothing).

    ``epoch`` is the epoch's 0-based index (a resumed cell starts at the epoch after its
    checkpoint). Callbacks are called in the order given, in the process that trains the cell:
    to reach a pool worker, a Ray task or a SLURM job (through ``Seams``) a callback must be
    picklable and importable there. An exception raised by a callback ends the cell as an
    exception of the training step would (``torch.OutOfMemoryError`` as out of memory).
    """

    def on_epoch_start(self, cell_id: str, epoch: int, model: torch.nn.Module) -> None:
        """Before the epoch's first step; ``model`` is the module being trained (on its device)."""

    def on_epoch_end(self, cell_id: str, epoch: int, checkpoint_written: Callable[[], Path | None]) -> None:
        """After the epoch was evaluated and its checkpoint handed to the background writer (not
        called for an epoch that diverged). ``checkpoint_written()`` waits until that checkpoint is
        on disk and returns its path (None when this epoch writes none: the last one, or a cell
        trained without a checkpoint folder); a failed write raises there."""

    def on_cell_start(self, cell_id: str, title: str, config: dict[str, Any]) -> None:
        """Before a cell reads its data: its title (``dataset/arch/loss/seed N``) and its whole configuration."""

    def on_history_row(self, cell_id: str, epoch: int, row: dict[str, float]) -> None:
        """An epoch's history row, as the store keeps it (called before ``on_epoch_end``)."""

    def on_cell_end(self, cell_id: str, row: dict[str, Any]) -> None:
        """The cell's result row, as the store keeps it, whatever its status (done, diverged, failed)."""


@dataclass
class TrainResult:
    status: str  # done | diverged
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time: float = 0.0
    resumed_from_epoch: int = 0
    message: str = ""
    final: dict[str, Any] = field(default_factory=dict)  # the last epoch's per-class and reliability tables


class CheckpointWriter:
    """Serialise a checkpoint now, write it (atomically, with fsync) in a background thread.

    At most one write is in flight: ``submit`` and ``wait`` join the previous one first and
    re-raise its error. The bytes are taken before ``submit`` returns, so training may go on
    changing the weights while the file is written.
    """

    def __init__(self, writer: Writer | None = None) -> None:
        self._writer = writer
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
                atomic_write(path, data, "checkpoint", cell_id, self._writer)
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


@dataclass
class Evaluation:
    """One split's figures (``values``: acc, nll, h_cond, h_marg, mi, ece, aece, brier,
    balanced_acc), the accumulator they came from, and the split's logits when kept."""

    values: dict[str, float]
    metrics: SplitMetrics
    logits: torch.Tensor | None = None


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, splits: Splits,
             cfg: TrainConfig, device: torch.device, keep_logits: bool = False) -> Evaluation:
    """Accuracy, NLL, the MI terms and the calibration metrics over a whole split, in large batches."""
    was_training = model.training
    model.eval()
    mi = SplitMI()
    metrics = SplitMetrics()
    kept: list[torch.Tensor] = []
    memory_format = torch.channels_last if cfg.channels_last == "on" and x.dim() == 4 else torch.contiguous_format
    for start in range(0, len(y), cfg.eval_batch_size):
        xb = splits.normalise(x[start:start + cfg.eval_batch_size]).contiguous(memory_format=memory_format)
        yb = y[start:start + cfg.eval_batch_size]
        with _autocast(device, cfg.precision):
            logits = model(xb)
        logits = logits.float()
        mi.update(logits, yb)
        metrics.update(logits, yb)
        if keep_logits:
            kept.append(logits)
    terms = mi.compute()
    calib = metrics.compute()
    model.train(was_training)
    values = {
        "acc": calib["accuracy"],  # SplitMetrics' hit count over n: the logits' argmax, as the training accuracy
        "nll": terms["h_cond"],
        "h_cond": terms["h_cond"],
        "h_marg": terms["h_marg"],
        "mi": terms["mi"],
        "ece": calib["ece"],
        "aece": calib["adaptive_ece"],
        "brier": calib["brier"],
        "balanced_acc": calib["balanced_accuracy"],
    }
    return Evaluation(values, metrics, torch.cat(kept) if kept else None)


# the history's names of the test split's figures (test_loss is the test NLL: the paper's name)
TEST_COLUMNS = {"acc": "test_acc", "nll": "test_loss", "h_cond": "test_h_cond", "h_marg": "test_h_marg",
                "mi": "test_mi", "ece": "test_ece", "aece": "test_aece", "brier": "test_brier",
                "balanced_acc": "test_balanced_acc"}
VAL_COLUMNS = {"acc": "val_acc", "nll": "val_nll", "mi": "val_mi", "ece": "val_ece", "aece": "val_aece",
               "brier": "val_brier", "balanced_acc": "val_balanced_acc"}
TEMPERATURE_COLUMNS = ("temperature", "test_ece_ts", "test_nll_ts")


def scaled_test_metrics(val_logits: torch.Tensor, val_y: torch.Tensor, test_logits: torch.Tensor,
                        test_y: torch.Tensor) -> tuple[float, SplitMetrics]:
    """Temperature scaling of one epoch: T fitted on the validation logits, the test metrics at T."""
    temperature = fit_temperature(val_logits, val_y)
    scaled = SplitMetrics()
    scaled.update(test_logits / temperature, test_y)
    return temperature, scaled


def load_checkpoint(path: Path, cell_id: str) -> dict[str, Any] | None:
    """Load a checkpoint with ``weights_only=True``; raises on a corrupt file (caller quarantines)."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("cell_id") != cell_id or state.get("version") not in READABLE_VERSIONS:
        raise ValueError("checkpoint belongs to another cell or version")
    return state


def resumable(state: dict[str, Any], has_validation: bool) -> bool:
    """Whether a loaded checkpoint can resume its cell to the same result as an uninterrupted run.

    A version-1 checkpoint (written before the recipe and the calibration metrics) has no recipe
    state, which a cell of that time never had, but also no logits of its best epochs so far: a
    cell with a validation split could not temperature-scale the epochs its selection rules pick,
    so it restarts instead.
    """
    return int(state.get("version", 0)) >= 2 or not has_validation


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
    callbacks: Sequence[TrainCallback] = (),
    writer: Writer | None = None,
) -> TrainResult:
    """Train ``model`` (already built under ``torch.manual_seed(seed)``) for ``cfg.epochs`` epochs.

    ``callbacks`` are told of each epoch (:class:`TrainCallback`); ``writer`` writes the
    checkpoint files (default: :class:`bench.fileio.Writer`).
    """
    if device.type == "cuda" and not (torch.are_deterministic_algorithms_enabled() or torch.backends.cudnn.deterministic):
        # fixed batch shapes: let cuDNN time its kernels once and keep the fastest. Set for the
        # process (a harness worker), not restored, so the cell row records what was used
        # (bench.train.cell.determinism_flags); left off when determinism was asked for.
        torch.backends.cudnn.benchmark = True
    ckpt_writer = CheckpointWriter(writer)
    try:
        result = _train(cell_id, model, criterion, splits, cfg, seed, device, checkpoint, resume_state,
                        progress, tuple(callbacks), ckpt_writer)
    except BaseException:
        ckpt_writer.wait(raise_error=False)  # let an in-flight checkpoint land (no torn temp file), keep the first error
        raise
    ckpt_writer.wait()
    return result


def _train(cell_id: str, model: torch.nn.Module, criterion: torch.nn.Module, splits: Splits, cfg: TrainConfig,
           seed: int, device: torch.device, checkpoint: Path | None, resume_state: dict[str, Any] | None,
           progress: ProgressFn | None, callbacks: tuple[TrainCallback, ...], writer: CheckpointWriter) -> TrainResult:
    memory_format = torch.channels_last if cfg.channels_last == "on" else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    criterion = criterion.to(device)
    params = list(model.parameters())
    optimizer = make_optimizer(params, cfg, device)
    # fp16's narrow exponent underflows small gradients: scale the loss, unscale before the step
    # (bf16 has fp32's exponent range and needs no scaler)
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
    # the compiled module shares the weights; evaluation runs the plain one (no extra graphs)
    step_model = torch.compile(model, dynamic=False) if cfg.compile else model

    train_x = splits.train_x.to(device, non_blocking=True)
    train_y = splits.train_y.to(device, non_blocking=True)
    test_x = splits.test_x.to(device, non_blocking=True)
    test_y = splits.test_y.to(device, non_blocking=True)
    val_x = splits.val_x.to(device, non_blocking=True) if splits.val_y is not None else None
    val_y = splits.val_y.to(device, non_blocking=True) if splits.val_y is not None else None
    n = len(train_y)
    batch_size = cfg.batch_size
    steps = math.ceil(n / batch_size)

    settings = cfg.model_dump()
    scheduler = make_scheduler(optimizer, schedule_spec(settings), cfg.epochs, steps) if scheduled(settings) else None
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    aug_gen = make_generator(seed, device) if cfg.augment != "none" else None
    eval_model = ema.module if ema is not None else model

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    history: list[dict[str, float]] = []
    best = _BestEpochs()
    start_epoch = 0
    wall = 0.0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        if scaler is not None and resume_state.get("grad_scaler") is not None:
            scaler.load_state_dict(resume_state["grad_scaler"])
        if scheduler is not None:
            load_scheduler_state(scheduler, optimizer, resume_state["scheduler"])
        if ema is not None:
            ema.load_state_dict(resume_state["ema"])
        if aug_gen is not None:
            aug_gen.set_state(resume_state["augment_generator"])
        best = _BestEpochs.from_state(resume_state.get("best_epochs"))
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
    clip = cfg.grad_clip
    last_test: Evaluation | None = None
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        if hasattr(criterion, "set_progress"):
            criterion.set_progress(epoch, cfg.epochs)
        for callback in callbacks:
            callback.on_epoch_start(cell_id, epoch, model)
        t0 = time.perf_counter()
        next_report = t0 + PROGRESS_INTERVAL_S
        lr = optimizer.param_groups[0]["lr"]  # the lr of the epoch's first step
        perm = torch.randperm(n, generator=gen, device=device)
        meter = EpochMeter(device)
        for step in range(steps):
            idx = perm[step * batch_size:(step + 1) * batch_size]
            xb = torch.index_select(train_x, 0, idx)
            if aug_gen is not None:
                xb = augment_batch(xb, cfg.augment, cfg.crop_padding, aug_gen)
            xb = normalise(xb)
            if to_channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = torch.index_select(train_y, 0, idx)
            with autocast:
                logits = step_model(xb)
            loss = criterion(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                    torch.nn.utils.clip_grad_norm_(params, clip)
                scaler.step(optimizer)
                scaler.update()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
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
                               f"non-finite training loss in epoch {epoch + 1}: the loss returned {train_loss}; a loss "
                               "that takes log(0) or divides by zero does this by itself, else the weights diverged: "
                               f"try a smaller lr (--set train.lr={cfg.lr / 10:g})")
        t_eval = time.perf_counter()
        keep = val_y is not None  # the logits temperature scaling needs
        last_test = evaluate(eval_model, test_x, test_y, splits, cfg, device, keep_logits=keep)
        metrics = {TEST_COLUMNS[k]: v for k, v in last_test.values.items()}
        val = None
        if val_y is not None:  # the validation split, evaluated like the test split
            val = evaluate(eval_model, val_x, val_y, splits, cfg, device, keep_logits=True)
            metrics.update({col: val.values[k] for k, col in VAL_COLUMNS.items()})
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "lr": lr, **metrics,
               "epoch_time": epoch_time, "eval_time": epoch_time - (t_eval - t0)}
        history.append(row)
        if not all(math.isfinite(v) for v in (metrics["test_loss"], metrics["test_mi"])):
            return TrainResult("diverged", history, wall, start_epoch,
                               f"the model's test predictions were non-finite in epoch {epoch + 1} (test NLL "
                               f"{metrics['test_loss']}, test MI {metrics['test_mi']}); the weights diverged: try a "
                               f"smaller lr (--set train.lr={cfg.lr / 10:g})")
        if val is not None:
            best.offer(epoch, metrics["val_acc"], metrics["test_acc"], val.logits, last_test.logits)
        epoch_ckpt = checkpoint if checkpoint is not None and epoch + 1 < cfg.epochs else None  # the last: its result follows
        if epoch_ckpt is not None:
            writer.submit(epoch_ckpt, {
                "version": CHECKPOINT_VERSION,
                "cell_id": cell_id,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "grad_scaler": scaler.state_dict() if scaler is not None else None,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "augment_generator": aug_gen.get_state() if aug_gen is not None else None,
                "best_epochs": best.state(),
                "generator": gen.get_state(),
                "cpu_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "history": history,
                "wall_time": wall,
            })
        if progress is not None:
            progress(Progress(epoch + 1, cfg.epochs, steps, steps, n, last_epoch=row))
        for callback in callbacks:
            callback.on_history_row(cell_id, epoch, row)
            callback.on_epoch_end(cell_id, epoch, partial(_landed, writer, epoch_ckpt))
    final: dict[str, Any] = {}
    if last_test is not None:  # None only when a resumed cell had no epoch left to train
        final = {"test_class_acc": last_test.metrics.class_accuracy(), "test_reliability": last_test.metrics.reliability()}
        if val_y is not None and val is not None:
            final["test_reliability_ts"] = _temperature_scale(history, best, (val.logits, last_test.logits), val_y, test_y)
    return TrainResult("done", history, wall, start_epoch, final=final)


class _BestEpochs:
    """The best validation and best test epoch so far (earliest on ties, as bench.report.selection
    picks them), with their validation and test logits: what temperature scaling needs at the end."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, int, torch.Tensor, torch.Tensor]] = {}

    def offer(self, epoch: int, val_acc: float, test_acc: float, val_logits: torch.Tensor | None,
              test_logits: torch.Tensor | None) -> None:
        if val_logits is None or test_logits is None:
            raise ValueError("temperature scaling needs the epoch's validation and test logits (evaluate keep_logits=True)")
        for key, score in (("val", val_acc), ("test", test_acc)):
            held = self.entries.get(key)
            if math.isfinite(score) and (held is None or score > held[0]):  # strictly better: the earliest stays
                self.entries[key] = (score, epoch, val_logits, test_logits)

    def state(self) -> dict[str, Any]:
        return {key: {"score": s, "epoch": e, "val_logits": v.cpu(), "test_logits": t.cpu()}
                for key, (s, e, v, t) in self.entries.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> _BestEpochs:
        out = cls()
        for key, entry in (state or {}).items():
            out.entries[key] = (float(entry["score"]), int(entry["epoch"]), entry["val_logits"], entry["test_logits"])
        return out


def _temperature_scale(history: list[dict[str, float]], best: _BestEpochs,
                       last_logits: tuple[torch.Tensor | None, torch.Tensor | None], val_y: torch.Tensor,
                       test_y: torch.Tensor) -> dict[str, list]:
    """Fill ``temperature``, ``test_ece_ts`` and ``test_nll_ts`` of every epoch a rule can select
    (NaN elsewhere); return the last epoch's reliability table after scaling."""
    for row in history:
        row.update(dict.fromkeys(TEMPERATURE_COLUMNS, float("nan")))
    last = len(history) - 1
    chosen = {last: last_logits, **{e: (v, t) for _, e, v, t in best.entries.values()}}
    reliability: dict[str, list] = {}
    for epoch, (val_logits, test_logits) in chosen.items():
        if val_logits is None or test_logits is None:
            raise ValueError(f"epoch {epoch + 1} has no kept logits to fit a temperature on")
        device = val_y.device
        temperature, scaled = scaled_test_metrics(val_logits.to(device), val_y, test_logits.to(device), test_y)
        values = scaled.compute()
        history[epoch].update(temperature=temperature, test_ece_ts=values["ece"], test_nll_ts=values["nll"])
        if epoch == last:
            reliability = scaled.reliability()
    return reliability


def _landed(writer: CheckpointWriter, path: Path | None) -> Path | None:
    """Wait until the checkpoint in flight is on disk; return ``path``, the epoch's checkpoint (or None)."""
    writer.wait()
    return path


__all__ = [
    "CheckpointWriter",
    "EpochMeter",
    "Evaluation",
    "Progress",
    "TrainCallback",
    "TrainResult",
    "evaluate",
    "label_entropy",
    "load_checkpoint",
    "resumable",
    "train_cell",
]
