"""The default launcher: cells run one after another in this process (or in N local workers)."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace

from bench.cells import Cell
from bench.data import Splits
from bench.execute import CellOutcome, ExecOptions, run_cell
from bench.launchers import Hooks


@dataclass
class LocalLauncher:
    """Sequential in-process training, with the per-step progress display."""

    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        memo: dict[str, Splits] = {}
        for cell in cells:
            if not hooks.claim(cell):
                continue
            try:
                hooks.start(cell)
                outcome = run_cell(cell, opts, progress=lambda p, c=cell: hooks.progress(c, p), memo=memo)
                hooks.finish(cell, outcome)
            finally:
                hooks.release(cell)


def _worker(cell: Cell, opts: ExecOptions) -> CellOutcome:
    return run_cell(cell, opts, memo=_WORKER_MEMO)


def _init_worker(threads: int) -> None:
    """Each CPU worker gets its share of the cores: N workers x all cores would thrash OpenMP."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def threads_per_worker(device: str, jobs: int) -> int:
    """CPU threads per worker: the machine's cores split evenly (0 = leave torch's default, on CUDA)."""
    if device.startswith("cuda"):
        return 0
    return max(1, (os.cpu_count() or 1) // jobs)


_WORKER_MEMO: dict[str, Splits] = {}  # per worker process: the dataset it decoded last


def device_for_slot(opts: ExecOptions, slot: int, n_gpus: int) -> ExecOptions:
    """Spread workers over the GPUs of a machine: worker k uses cuda:(k mod n)."""
    if opts.device.startswith("cuda") and n_gpus > 1 and ":" not in opts.device:
        return replace(opts, device=f"cuda:{slot % n_gpus}")
    return opts


@dataclass
class PoolLauncher:
    """``--jobs N``: N worker processes share the device(s); the driver writes the store."""

    jobs: int

    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        import torch

        n_gpus = torch.cuda.device_count() if opts.device.startswith("cuda") else 0
        ctx = mp.get_context("spawn")
        pending = list(cells)
        running: dict[Future, tuple[Cell, int]] = {}
        free_slots = list(range(self.jobs))
        threads = threads_per_worker(opts.device, self.jobs)
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads,)) as pool:
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


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=10)
