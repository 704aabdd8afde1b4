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
Checkpoints (:mod:`bench.train.checkpoint`, which owns their format) are serialised at the end of an
epoch and written by a background thread while the next epoch trains; a failed write stops
training at the next step.

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
Brier, balanced accuracy); the history's column of each figure is its entry's in
:mod:`bench.metrics.table`. With a validation split, the cell ends with temperature scaling
(:mod:`bench.train.calibration`): for each epoch a selection rule can pick (the last, the best
validation epoch, the best test epoch; earliest on ties, as :mod:`bench.report.selection` picks) T is
fitted on that epoch's validation logits, and the history row of that epoch gains
the table's temperature-scaled columns (``temperature``, ``test_ece_ts``, ``test_nll_ts``; NaN in
the other rows). The logits of the
best epochs so far travel in the checkpoint, so a resumed cell scales the same epochs.

On CPU the float operations, their order, the parameter init and the permutation and
augmentation streams are those of the uninterrupted loop (the scheduler, the augmentation
generator and the EMA are checkpointed), so a resumed cell ends bitwise identical to an
uninterrupted one.

The loop is a few named steps over one :class:`TrainState`: :func:`_setup` (modules, optimiser,
recipe, the data on the device; :func:`_resume` from a checkpoint), then per epoch
:func:`_train_epoch` (:func:`_batch`, :func:`_step`), :func:`_evaluate_epoch`, the divergence
checks, :func:`_save_checkpoint` and the callbacks; :func:`_finish` temperature-scales at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config.recipe import schedule_spec, scheduled
from bench.config.registry import TrainConfig
from bench.data import Splits
from bench.fileio import Writer
from bench.metrics.compute import SplitMetrics
from bench.metrics.table import SCALED, TABLE, TRAIN, columns, history_values
from bench.train.augment import augment_batch, make_generator
from bench.train.calibration import fit_temperature
from bench.train.checkpoint import VERSION, Checkpoint, CheckpointWriter
from bench.train.ema import WeightEMA
from bench.train.schedules import load_scheduler_state, make_scheduler
from losses import SplitMI

PROGRESS_INTERVAL_S = 0.25  # the step loop calls the progress callback at most this often
METER_CHUNK_STEPS = 32  # steps of logits kept before they are reduced to a correct-count (bounds memory)
TEMPERATURE_COLUMNS = columns("test", SCALED)  # filled on the epochs a selection rule can pick, NaN elsewhere
# the history columns the loop itself reads: the divergence check and the best epochs' scores
_TEST_NLL, _TEST_MI = TABLE["nll"].history["test"], TABLE["mi"].history["test"]
_VAL_ACC, _TEST_ACC = TABLE["acc"].history["val"], TABLE["acc"].history["test"]


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
class TrainProgress:
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


ProgressFn = Callable[[TrainProgress], None]


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


def _autocast(device: torch.device, precision: str) -> AbstractContextManager:
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
    """One split's figures (``values``: what its accumulators computed, keyed as
    :mod:`bench.metrics.table`'s ``computed`` names them), the accumulator of the calibration
    metrics, and the split's logits when kept."""

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
    values = {**metrics.compute(), **mi.compute()}  # disjoint names (bench.metrics.table)
    model.train(was_training)
    return Evaluation(values, metrics, torch.cat(kept) if kept else None)


def scaled_test_metrics(val_logits: torch.Tensor, val_y: torch.Tensor, test_logits: torch.Tensor,
                        test_y: torch.Tensor) -> tuple[float, SplitMetrics]:
    """Temperature scaling of one epoch: T fitted on the validation logits, the test metrics at T."""
    temperature = fit_temperature(val_logits, val_y)
    scaled = SplitMetrics()
    scaled.update(test_logits / temperature, test_y)
    return temperature, scaled


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


@dataclass
class TrainState:
    """What the loop carries from step to step and epoch to epoch: the cell, its data on the device,
    the modules and optimiser with the recipe's parts (None where the recipe has none), the random
    streams, what was recorded so far, and where the loop reports (checkpoint, progress, callbacks)."""

    cell_id: str
    cfg: TrainConfig
    device: torch.device
    data: Splits  # the cell's splits, resident on the device
    model: torch.nn.Module
    step_model: torch.nn.Module  # the training forward: ``model`` compiled when cfg.compile (same weights)
    criterion: torch.nn.Module
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    ema: WeightEMA | None
    aug_gen: torch.Generator | None
    gen: torch.Generator  # the per-epoch permutation's stream
    autocast: AbstractContextManager
    checkpoint: Path | None
    writer: CheckpointWriter
    progress: ProgressFn | None = None
    callbacks: tuple[TrainCallback, ...] = ()
    history: list[dict[str, float]] = field(default_factory=list)
    best: _BestEpochs = field(default_factory=_BestEpochs)
    start_epoch: int = 0
    wall: float = 0.0
    last: tuple[Evaluation, Evaluation | None] | None = None  # the last epoch's test and validation passes

    @property
    def n(self) -> int:
        return len(self.data.train_y)

    @property
    def steps(self) -> int:
        return math.ceil(self.n / self.cfg.batch_size)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights evaluated: the EMA's when the recipe keeps one."""
        return self.ema.module if self.ema is not None else self.model


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
        state = _setup(cell_id, model, criterion, splits, cfg, seed, device, checkpoint, ckpt_writer)
        state.progress, state.callbacks = progress, tuple(callbacks)
        if resume_state is not None:
            _resume(state, resume_state)
        result = _train(state)
    except BaseException:
        ckpt_writer.wait(raise_error=False)  # let an in-flight checkpoint land (no torn temp file), keep the first error
        raise
    ckpt_writer.wait()
    return result


def _setup(cell_id: str, model: torch.nn.Module, criterion: torch.nn.Module, splits: Splits, cfg: TrainConfig,
           seed: int, device: torch.device, checkpoint: Path | None, writer: CheckpointWriter) -> TrainState:
    """The state of epoch 0: modules and data on the device, the optimiser and the recipe's parts."""
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
    has_val = splits.val_y is not None
    data = replace(splits, **{name: getattr(splits, name).to(device, non_blocking=True) for name in (
        "train_x", "train_y", "test_x", "test_y", *(("val_x", "val_y") if has_val else ()))})
    steps = math.ceil(len(data.train_y) / cfg.batch_size)
    settings = cfg.model_dump()
    scheduler = make_scheduler(optimizer, schedule_spec(settings), cfg.epochs, steps) if scheduled(settings) else None
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    aug_gen = make_generator(seed, device) if cfg.augment != "none" else None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return TrainState(cell_id=cell_id, cfg=cfg, device=device, data=data, model=model, step_model=step_model,
                      criterion=criterion, params=params, optimizer=optimizer, scaler=scaler, scheduler=scheduler,
                      ema=ema, aug_gen=aug_gen, gen=gen, autocast=_autocast(device, cfg.precision),
                      checkpoint=checkpoint, writer=writer)


def _resume(state: TrainState, saved: dict[str, Any]) -> None:
    """Continue from a checkpoint (:mod:`bench.train.checkpoint`): weights, optimiser, recipe, streams, history."""
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scaler is not None and saved.get("grad_scaler") is not None:
        state.scaler.load_state_dict(saved["grad_scaler"])
    if state.scheduler is not None:
        load_scheduler_state(state.scheduler, state.optimizer, saved["scheduler"])
    if state.ema is not None:
        state.ema.load_state_dict(saved["ema"])
    if state.aug_gen is not None:
        state.aug_gen.set_state(saved["augment_generator"])
    state.best = _BestEpochs.from_state(saved.get("best_epochs"))
    state.gen.set_state(saved["generator"])
    torch.set_rng_state(saved["cpu_rng"])
    if state.device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], state.device)
    state.history = [dict(h) for h in saved["history"]]
    state.start_epoch = int(saved["epoch"])
    state.wall = float(saved["wall_time"])


def _train(state: TrainState) -> TrainResult:
    """The epochs left: train, evaluate, stop on divergence, checkpoint, tell the callbacks."""
    cfg = state.cfg
    state.model.train()
    for epoch in range(state.start_epoch, cfg.epochs):
        if hasattr(state.criterion, "set_progress"):
            state.criterion.set_progress(epoch, cfg.epochs)
        for callback in state.callbacks:
            callback.on_epoch_start(state.cell_id, epoch, state.model)
        t0 = time.perf_counter()
        lr = state.optimizer.param_groups[0]["lr"]  # the lr of the epoch's first step
        train = _train_epoch(state, epoch, t0)
        if (message := _training_diverged(train, epoch, cfg)) is not None:
            state.wall += time.perf_counter() - t0
            return TrainResult("diverged", state.history, state.wall, state.start_epoch, message)
        t_eval = time.perf_counter()
        test, val = state.last = _evaluate_epoch(state)
        epoch_time = time.perf_counter() - t0
        state.wall += epoch_time
        row = {"epoch": epoch + 1, **history_values(TRAIN, train, TRAIN), "lr": lr, **history_values("test", test.values),
               **(history_values("val", val.values) if val is not None else {}),
               "epoch_time": epoch_time, "eval_time": epoch_time - (t_eval - t0)}
        state.history.append(row)
        if (message := _predictions_diverged(row, epoch, cfg)) is not None:
            return TrainResult("diverged", state.history, state.wall, state.start_epoch, message)
        if val is not None:
            state.best.offer(epoch, row[_VAL_ACC], row[_TEST_ACC], val.logits, test.logits)
        written = _save_checkpoint(state, epoch)
        if state.progress is not None:
            state.progress(TrainProgress(epoch + 1, cfg.epochs, state.steps, state.steps, state.n, last_epoch=row))
        for callback in state.callbacks:
            callback.on_history_row(state.cell_id, epoch, row)
            callback.on_epoch_end(state.cell_id, epoch, partial(state.writer.landed, written))
    return _finish(state)


def _train_epoch(state: TrainState, epoch: int, t0: float) -> dict[str, float]:
    """One pass over the training split in a fresh seeded order: the mean ``loss`` and ``acc``."""
    cfg, steps = state.cfg, state.steps
    next_report = t0 + PROGRESS_INTERVAL_S
    perm = torch.randperm(state.n, generator=state.gen, device=state.device)
    meter = EpochMeter(state.device)
    for step in range(steps):
        xb, yb = _batch(state, perm[step * cfg.batch_size:(step + 1) * cfg.batch_size])
        loss, logits = _step(state, xb, yb)
        meter.add(loss.detach(), logits.detach(), yb)
        if state.writer.failed:  # the last epoch's checkpoint could not be written (e.g. disk full): stop now
            state.writer.wait()
        if state.progress is not None and time.perf_counter() >= next_report:
            next_report = time.perf_counter() + PROGRESS_INTERVAL_S
            state.progress(TrainProgress(epoch, cfg.epochs, step + 1, steps, meter.seen, meter))
    loss_sum, correct = meter.finish()
    return {"loss": loss_sum / state.n, "acc": correct / state.n}


def _batch(state: TrainState, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch at ``idx``: gathered on the device, augmented (raw uint8), normalised."""
    data, cfg = state.data, state.cfg
    xb = torch.index_select(data.train_x, 0, idx)
    if state.aug_gen is not None:
        xb = augment_batch(xb, cfg.augment, cfg.crop_padding, state.aug_gen)
    xb = data.normalise(xb)
    if xb.dim() == 4 and cfg.channels_last == "on":
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, torch.index_select(data.train_y, 0, idx)


def _step(state: TrainState, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step (with the fp16 scaler, clipping, the schedule and the EMA); its loss and logits."""
    optimizer, scaler, clip = state.optimizer, state.scaler, state.cfg.grad_clip
    with state.autocast:
        logits = state.step_model(xb)
    loss = state.criterion(logits.float(), yb)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(state.params, clip)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
            torch.nn.utils.clip_grad_norm_(state.params, clip)
        scaler.step(optimizer)
        scaler.update()
    if state.scheduler is not None:
        state.scheduler.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    return loss, logits


def _evaluate_epoch(state: TrainState) -> tuple[Evaluation, Evaluation | None]:
    """The test split's pass, and the validation split's (kept logits: temperature scaling needs them)."""
    data, args = state.data, (state.cfg, state.device)
    keep = data.val_y is not None
    test = evaluate(state.eval_model, data.test_x, data.test_y, data, *args, keep_logits=keep)
    val = evaluate(state.eval_model, data.val_x, data.val_y, data, *args, keep_logits=True) if keep else None
    return test, val


def _training_diverged(train: dict[str, float], epoch: int, cfg: TrainConfig) -> str | None:
    """Why the cell ends as diverged after training an epoch, or None: a non-finite training loss."""
    if math.isfinite(train["loss"]):
        return None
    return (f"non-finite training loss in epoch {epoch + 1}: the loss returned {train['loss']}; a loss "
            "that takes log(0) or divides by zero does this by itself, else the weights diverged: "
            f"try a smaller lr (--set train.lr={cfg.lr / 10:g})")


def _predictions_diverged(row: dict[str, float], epoch: int, cfg: TrainConfig) -> str | None:
    """Why the cell ends as diverged after evaluating an epoch, or None: non-finite test predictions."""
    if all(math.isfinite(row[c]) for c in (_TEST_NLL, _TEST_MI)):
        return None
    return (f"the model's test predictions were non-finite in epoch {epoch + 1} (test NLL "
            f"{row[_TEST_NLL]}, test MI {row[_TEST_MI]}); the weights diverged: try a "
            f"smaller lr (--set train.lr={cfg.lr / 10:g})")


def _save_checkpoint(state: TrainState, epoch: int) -> Path | None:
    """Hand the state after ``epoch`` to the background writer; the path written, or None (no
    checkpoint folder, or the last epoch: its result follows)."""
    if state.checkpoint is None or epoch + 1 >= state.cfg.epochs:
        return None
    cuda = state.device.type == "cuda"
    state.writer.submit(state.checkpoint, Checkpoint(
        version=VERSION, cell_id=state.cell_id, epoch=epoch + 1,
        model=state.model.state_dict(), optimizer=state.optimizer.state_dict(),
        grad_scaler=state.scaler.state_dict() if state.scaler is not None else None,
        scheduler=state.scheduler.state_dict() if state.scheduler is not None else None,
        ema=state.ema.state_dict() if state.ema is not None else None,
        augment_generator=state.aug_gen.get_state() if state.aug_gen is not None else None,
        best_epochs=state.best.state(), generator=state.gen.get_state(), cpu_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state(state.device) if cuda else None,
        history=state.history, wall_time=state.wall))
    return state.checkpoint


def _finish(state: TrainState) -> TrainResult:
    """The cell's result: the last epoch's per-class and reliability tables, temperature-scaled with a
    validation split."""
    final: dict[str, Any] = {}
    if state.last is not None:  # None only when a resumed cell had no epoch left to train
        test, val = state.last
        final = {"test_class_acc": test.metrics.class_accuracy(), "test_reliability": test.metrics.reliability()}
        if val is not None:
            final["test_reliability_ts"] = _temperature_scale(state.history, state.best, (val.logits, test.logits),
                                                              state.data.val_y, state.data.test_y)
    return TrainResult("done", state.history, state.wall, state.start_epoch, final=final)


def _temperature_scale(history: list[dict[str, float]], best: _BestEpochs,
                       last_logits: tuple[torch.Tensor | None, torch.Tensor | None], val_y: torch.Tensor,
                       test_y: torch.Tensor) -> dict[str, list]:
    """Fill the temperature-scaled columns of every epoch a rule can select (NaN elsewhere); return
    the last epoch's reliability table after scaling."""
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
        history[epoch].update(history_values("test", {**scaled.compute(), "temperature": temperature}, SCALED))
        if epoch == last:
            reliability = scaled.reliability()
    return reliability


__all__ = [
    "TEMPERATURE_COLUMNS",
    "EpochMeter",
    "Evaluation",
    "ProgressFn",
    "TrainCallback",
    "TrainProgress",
    "TrainResult",
    "TrainState",
    "evaluate",
    "label_entropy",
    "train_cell",
]
