"""Run one cell end to end and return its result rows; used by every launcher.

``run_cell`` never raises for a problem of the cell itself: an exception becomes a ``failed``
row with the message, a non-finite loss a ``diverged`` row. The caller (the driver) writes the
rows to the store, so workers on a cluster need no shared filesystem for results.
"""

from __future__ import annotations

import json
import platform
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.config.cells import Cell, canonical_json
from bench.config.recipe import check_recipe
from bench.config.registry import TrainConfig, import_target
from bench.data import Splits, load_splits
from bench.data.regimes import UNKNOWN_FACTS, RegimeFacts, apply_regime
from bench.data.validation import hold_out
from bench.errors import BenchError
from bench.fileio import StoreWriteError
from bench.metrics.table import TABLE, final_values
from bench.models.zoo import build_model
from bench.plan.preflight import where
from bench.plan.code_fingerprint import code_fingerprint, code_version
from bench.seams import Seams
from bench.store.results import corrupt_folder
from bench.train.checkpoint import checkpoint_path, resume_state
from bench.train.device import resolve_train
from bench.train.loop import ProgressFn, TrainCallback, label_entropy, train_cell
from losses.hooks import give_class_priors


@dataclass(frozen=True)
class ExecOptions:
    """Where a worker finds data and keeps checkpoints, which device it trains on, and the seams
    (training callbacks, file writer) its cells run with."""

    device: str = "cpu"
    data_root: str | None = None
    download: bool = False
    cache_dir: str | None = None
    checkpoint_dir: str | None = None
    import_paths: tuple[str, ...] = ()  # where a loss target's module is looked for (Registry.import_paths)
    seams: Seams = field(default_factory=Seams)


@dataclass
class CellOutcome:
    row: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    traceback: str = ""  # the full traceback of a cell that raised; the driver keeps it beside the store

    @property
    def status(self) -> str:
        return self.row["status"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_cell_splits(cell: Cell, opts: ExecOptions, memo: dict[str, Any] | None = None) -> Splits:
    """Decode a cell's dataset (memoised per process by its config)."""
    key = repr(sorted(cell.config["dataset"].items()))
    if memo is not None and key in memo:
        return memo[key]
    ds = cell.config["dataset"]
    splits = load_splits(ds["kind"], dict(ds["params"]),
                         Path(opts.data_root) if opts.data_root else None, opts.download,
                         Path(opts.cache_dir) if opts.cache_dir else None)
    if memo is not None:
        memo.clear()  # keep one dataset resident at a time
        memo[key] = splits
    return splits


_DERIVED = "derived:"  # memo keys of a cell's splits after the holdout and the regime


def cell_regime_splits(cell: Cell, splits: Splits, cfg: TrainConfig, memo: dict[str, Any] | None = None
                       ) -> tuple[Splits, RegimeFacts]:
    """The cell's validation holdout and data regime applied to its dataset's ``splits``; memoised
    per process by what they depend on, so a grid's cells sharing them corrupt the labels once."""
    key = _DERIVED + canonical_json([cell.config["dataset"], cfg.val_fraction, cfg.split_seed, cell.config.get("regime", {})])
    if memo is not None and key in memo:
        return memo[key]
    held = hold_out(splits, cfg.val_fraction, cfg.split_seed)  # from the clean training split, before the regime
    derived = apply_regime(held, cell.regime, cell.config["dataset"]["kind"])
    if memo is not None:
        for old in [k for k in memo if k.startswith(_DERIVED)]:  # one derived copy resident beside the dataset
            del memo[old]
        memo[key] = derived
    return derived


def run_cell(cell: Cell, opts: ExecOptions, progress: ProgressFn | None = None,
             memo: dict[str, Any] | None = None,
             on_epoch_start: Callable[[int], None] | None = None) -> CellOutcome:
    """Train ``cell`` and return its store rows. Resumes from a checkpoint when one exists."""
    device = torch.device(opts.device)
    cfg = TrainConfig(**cell.config["train"])  # as declared; resolved for the device below
    t0 = time.perf_counter()
    ckpt = checkpoint_path(opts.checkpoint_dir, cell.cell_id) if opts.checkpoint_dir else None
    base = _base_row(cell, device, socket.gethostname(), _now(), time.time_ns(), opts.import_paths)
    history: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    tb_text = ""
    for callback in opts.seams.callbacks:
        callback.on_cell_start(cell.cell_id, cell.title, cell.config)
    try:
        cfg = TrainConfig(**resolve_train(cell.config["train"], device))
        base.update(precision_used=cfg.precision, channels_last_used=cfg.channels_last)
        splits = load_cell_splits(cell, opts, memo)
        base.update(data_fingerprint=splits.provenance.fingerprint if splits.provenance else "")
        splits, facts = cell_regime_splits(cell, splits, cfg, memo)  # the memo keeps the full training split too
        base.update(facts.row())
        check_recipe(cfg.model_dump(), cell.config["dataset"]["kind"], splits.in_shape)  # as the planner did
        saved = None
        if ckpt is not None:  # checkpoints live in <results>/checkpoints: that results folder's corrupt/ is beside it
            saved = resume_state(ckpt, cell.cell_id, splits.val_y is not None, corrupt_folder(ckpt.parent.parent))
        torch.manual_seed(cell.seed)
        arch = cell.config["architecture"]
        model = build_model(arch["source"], arch["name"], splits.in_shape, splits.num_classes, dict(arch["params"]),
                            opts.import_paths)
        loss_cls = import_target(cell.config["loss"]["target"], opts.import_paths)
        criterion = loss_cls(**cell.config["loss"]["params"])
        give_class_priors(criterion, splits.train_y, splits.num_classes)  # losses/hooks.py: the training labels' priors
        result = train_cell(cell_id=cell.cell_id, model=model, criterion=criterion, splits=splits, cfg=cfg,
                            seed=cell.seed, device=device, checkpoint=ckpt, resume_state=saved,
                            progress=progress, callbacks=(*opts.seams.callbacks, *_epoch_start_callback(on_epoch_start)),
                            writer=opts.seams.writer)
        history, final = result.history, result.final
        status, message = result.status, result.message
        if status == "diverged":
            message = f"loss {cell.loss!r}: {message}"
        resumed = result.resumed_from_epoch
        wall = result.wall_time
        test_h = label_entropy(splits.test_y, splits.num_classes)
        num_classes = splits.num_classes
    except torch.OutOfMemoryError as exc:
        status, resumed, wall, test_h, num_classes = "failed", 0, time.perf_counter() - t0, float("nan"), 0
        message = (f"out of memory in cell {cell.cell_id} ({cell.dataset}/{cell.architecture}/{cell.loss}/seed {cell.seed}, "
                   f"batch {cfg.batch_size}): {str(exc).splitlines()[0][:200]}; try a smaller batch "
                   f"(--set train.batch_size={max(1, cfg.batch_size // 2)}) or fewer --jobs")
    except StoreWriteError:
        raise  # a full or read-only results folder ends the run: the next cells could not be saved either
    except BenchError as exc:
        status, message, resumed, wall, test_h, num_classes = "failed", str(exc), 0, time.perf_counter() - t0, float("nan"), 0
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded and the grid goes on
        status, resumed, wall, test_h, num_classes = "failed", 0, time.perf_counter() - t0, float("nan"), 0
        # the line named is the user's own (their loss file), not torch's autograd internals
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}{where(exc)}"
        tb_text = "".join(traceback.format_exception(exc))
    outcome = CellOutcome(_result_row(base, status, message, history, resumed, num_classes, test_h, wall, device, final),
                          history, tb_text)
    for callback in opts.seams.callbacks:
        callback.on_cell_end(cell.cell_id, outcome.row)
    return outcome


class _EpochStart(TrainCallback):
    """A launcher's per-epoch hook (the thread share's rebalance: bench.run.threads) as a training callback."""

    def __init__(self, hook: Callable[[int], None]):
        self.hook = hook

    def on_epoch_start(self, cell_id: str, epoch: int, model: torch.nn.Module) -> None:  # noqa: ARG002
        self.hook(epoch)


def _epoch_start_callback(hook: Callable[[int], None] | None) -> tuple[TrainCallback, ...]:
    return (_EpochStart(hook),) if hook is not None else ()


def _result_row(base: dict[str, Any], status: str, message: str, history: list[dict[str, Any]], resumed: int,
                num_classes: int, test_h: float, wall: float, device: torch.device,
                final: dict[str, Any] | None = None) -> dict[str, Any]:
    """The store row of one attempt: identity and config columns, status, final metrics, provenance.

    The last epoch's value of every metric is a column (its ``final`` name in
    :mod:`bench.metrics.table`: ``final_test_acc``, ``final_test_ece``..., after temperature scaling
    ``temperature``, ``final_test_ece_ts``: NaN without a validation split), and its per-class accuracy
    and reliability tables JSON text (``test_class_acc``, ``test_reliability``, ``test_reliability_ts``;
    "" when absent).
    """
    last = history[-1] if history else {}
    nan = float("nan")
    final = final or {}
    return {
        **base,
        "status": status,
        "message": message,
        "epochs_done": len(history),
        "resumed_from_epoch": resumed,
        "num_classes": num_classes,
        **final_values(last),
        "best_test_acc": max((h[_TEST_ACC] for h in history), default=nan),
        **{key: json.dumps(final[key]) if key in final else "" for key in FINAL_TABLES},
        **validation_fields(history),
        "test_label_entropy": test_h,
        "wall_time": wall,
        **determinism_flags(device),
        "finished_at": _now(),
        "finished_at_ns": time.time_ns(),
        "written_at": time.time_ns(),
    }


_TEST_ACC, _VAL_ACC = TABLE["acc"].history["test"], TABLE["acc"].history["val"]
FINAL_TABLES = ("test_class_acc", "test_reliability", "test_reliability_ts")


def validation_fields(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's validation summary: last and best validation accuracy, and the best epoch (1-based,
    earliest on ties); NaN and 0 without a validation split."""
    val = [h[_VAL_ACC] for h in history if _VAL_ACC in h]
    if not val:
        return {"final_val_acc": float("nan"), "best_val_acc": float("nan"), "best_val_epoch": 0}
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    return {"final_val_acc": val[-1], "best_val_acc": val[best], "best_val_epoch": best + 1}


def _base_row(cell: Cell, device: torch.device | None, host: str, started: str, started_ns: int,
              import_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        **cell.flat(),
        "attempt_id": uuid.uuid4().hex[:12],
        "device": "" if device is None else (
            str(device) if device.type != "cuda" else f"cuda:{torch.cuda.get_device_name(device)}"),
        "host": host,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "code_fingerprint": code_fingerprint(cell.config, import_paths),
        "code_version": code_version(),
        "precision_used": "",  # what precision/channels_last 'auto' resolved to (set once resolved)
        "channels_last_used": "",
        **UNKNOWN_FACTS,  # what the data regime realised (set once the splits are derived)
        "data_fingerprint": "",  # the decoded dataset's content, before the regime (set once it is read)
        "started_at": started,
        "started_at_ns": started_ns,
    }


def failed_outcome(cell: Cell, message: str, started_at: str | None = None) -> CellOutcome:
    """A ``failed`` row for a cell whose worker never returned one (it died, or the engine failed).

    Built by the same code as :func:`run_cell`'s rows, so the columns and types match.
    """
    base = _base_row(cell, None, "", started_at or _now(), time.time_ns())
    row = _result_row(base, "failed", message, [], 0, 0, float("nan"), 0.0, torch.device("cpu"))
    row["deterministic"] = False  # the flag columns carry the driver's values, not a worker's
    return CellOutcome(row, [])


def determinism_flags(device: torch.device) -> dict[str, Any]:
    """The settings that decide whether a cell's numbers repeat bitwise, stored with each cell row.

    ``deterministic`` is True on CPU (same machine, same thread count, same versions) and on CUDA
    only when deterministic algorithms are enforced, cuDNN is deterministic and not autotuning.
    """
    import os

    cudnn = torch.backends.cudnn
    flags = {
        "torch_num_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_tf32": bool(cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
    }
    flags["deterministic"] = device.type == "cpu" or (
        flags["deterministic_algorithms"] and flags["cudnn_deterministic"] and not flags["cudnn_benchmark"])
    return flags
