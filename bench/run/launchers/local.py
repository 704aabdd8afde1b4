"""The default launcher: cells run one after another in this process (or in N local workers).

Every process that trains cells on the CPU (this one with ``--jobs 1``, from its first cell on;
each worker with ``--jobs N``, for its life) holds a slot of :mod:`bench.run.threads`, so runs side by
side on one machine split its cores instead of each starting a thread per core.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from typing import TYPE_CHECKING

from bench.run.launchers.base import Hooks, LauncherOption, LauncherOptions, LauncherSpec, OptionGroup, SubmitObserver

if TYPE_CHECKING:  # torch comes with these: imported when cells run, not when the CLI builds its flags
    from bench.config.cells import Cell
    from bench.data import Splits
    from bench.run.threads import SlotHold, ThreadShare
    from bench.train.cell import CellOutcome, ExecOptions
    from bench.train.loop import ProgressFn

OPTIONS = OptionGroup("Local launcher (--launcher local)", (
    LauncherOption("jobs", ("--jobs", "-j"), int, 1, "Cells trained at once by local worker processes.", min=1),
    LauncherOption("threads", ("--threads",), int, 0, "CPU threads per training process; 0 (default): share the cores "
                   "with the other lossbench runs on this machine.", min=0),
))


def thread_share(device: str, threads: int, want: int, folder: Path | None) -> ThreadShare | None:
    """How cells on ``device`` take CPU threads: pinned to ``threads``, or shared (0); None on a GPU
    without ``--threads`` (torch's default, as before: a GPU cell's CPU side is one busy thread)."""
    from bench.run.threads import ThreadShare

    if threads == 0 and not device.startswith("cpu"):
        return None
    return ThreadShare(pinned=threads, want=want, folder=folder)


def train_one(cell: Cell, opts: ExecOptions, held: SlotHold | None, progress: ProgressFn | None = None,
              memo: dict[str, Splits] | None = None) -> CellOutcome:
    """``run_cell`` with the process's thread share, rebalanced before the cell and at each epoch start."""
    from bench.train.cell import run_cell

    if held is None:
        return run_cell(cell, opts, progress=progress, memo=memo)
    held.begin_cell()
    outcome = run_cell(cell, opts, progress=progress, memo=memo, on_epoch_start=held.on_epoch_start)
    if held.varied:
        # the row stores the last thread count; on CPU the float sums depend on it, so a rerun at
        # that count need not repeat this cell's bits
        outcome.row["deterministic"] = False
    return outcome


@dataclass
class LocalLauncher:
    """Sequential in-process training, with the per-step progress display.

    ``threads``: CPU threads per process, 0 to share the cores (see :mod:`bench.run.threads`);
    ``slot_dir``: the folder of thread slots (None: the per-user default).
    """

    threads: int = 0
    slot_dir: Path | None = None

    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        import torch

        share = thread_share(opts.device, self.threads, torch.get_num_threads(), self.slot_dir)
        memo: dict[str, Splits] = {}
        with ExitStack() as stack:
            held: SlotHold | None = None
            for cell in cells:
                if not hooks.claim(cell):
                    continue
                if held is None and share is not None:
                    # from the first cell this process trains: a pass that only waits for cells of
                    # another run (which trains them) takes no share from it
                    held = stack.enter_context(share.hold())
                try:
                    hooks.start(cell)
                    outcome = train_one(cell, opts, held, progress=lambda p, c=cell: hooks.progress(c, p), memo=memo)
                    hooks.finish(cell, outcome)
                finally:
                    hooks.release(cell)


@dataclass
class _WorkerState:
    """What a pool worker process keeps between its cells."""

    memo: dict[str, Splits] = field(default_factory=dict)  # the dataset it decoded last
    held: SlotHold | None = None  # its thread slot, held until the process exits


_WORKER = _WorkerState()  # one per (spawned) worker process, set up by _init_worker


def _init_worker(share: ThreadShare | None) -> None:
    from bench.run.threads import SlotHold

    if share is not None:
        _WORKER.held = SlotHold(share)
        atexit.register(_WORKER.held.release)  # a killed worker's file is cleaned by the next listing


def _worker(cell: Cell, opts: ExecOptions) -> CellOutcome:
    return train_one(cell, opts, _WORKER.held, memo=_WORKER.memo)


def device_for_slot(opts: ExecOptions, slot: int, n_gpus: int) -> ExecOptions:
    """Spread workers over the GPUs of a machine: worker k uses cuda:(k mod n)."""
    if opts.device.startswith("cuda") and n_gpus > 1 and ":" not in opts.device:
        return replace(opts, device=f"cuda:{slot % n_gpus}")
    return opts


@dataclass
class PoolLauncher:
    """``--jobs N``: N worker processes share the device(s); the driver writes the store.

    Each worker holds its own thread slot, so N workers on an otherwise idle machine split the
    cores N ways, as do the workers of two runs.
    """

    jobs: int
    threads: int = 0
    slot_dir: Path | None = None

    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        import torch

        n_gpus = torch.cuda.device_count() if opts.device.startswith("cuda") else 0
        ctx = mp.get_context("spawn")
        pending = list(cells)
        running: dict[Future, tuple[Cell, int]] = {}
        free_slots = list(range(self.jobs))
        # the driver's thread count (OMP_NUM_THREADS) is what a worker wants: spawned workers start afresh
        share = thread_share(opts.device, self.threads, torch.get_num_threads(), self.slot_dir)
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(share,)) as pool:
            try:
                while pending or running:
                    while pending and free_slots:
                        cell = pending.pop(0)
                        if not hooks.claim(cell):
                            continue
                        slot = free_slots.pop(0)
                        hooks.start(cell)
                        running[pool.submit(_worker, cell, device_for_slot(opts, slot, n_gpus))] = (cell, slot)
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        cell, slot = running.pop(fut)
                        free_slots.append(slot)
                        try:
                            hooks.finish(cell, fut.result())
                        finally:
                            hooks.release(cell)
            except BaseException:
                # interrupted (or the store failed): stop the workers now, so no cell goes on training
                # (and writing its checkpoint) after this run released its lock; each worker's last
                # epoch checkpoint is on disk and the next run resumes from it
                _stop_workers(pool)
                for fut, (cell, _) in running.items():
                    fut.cancel()
                    hooks.release(cell)
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def build(options: LauncherOptions, on_submit: SubmitObserver | None = None) -> LocalLauncher | PoolLauncher:  # noqa: ARG001
    """In this process (``--jobs 1``) or in a pool of ``--jobs`` workers; nothing is submitted, so ``on_submit`` is unused."""
    return LocalLauncher(options.threads) if options.jobs == 1 else PoolLauncher(options.jobs, options.threads)


SPEC = LauncherSpec("local", (OPTIONS,), build)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=10)
