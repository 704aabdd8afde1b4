"""What the cluster launchers (Ray, SLURM) share besides their loop: the worker side and its helpers.

A worker picks its device itself, trains one cell through :func:`bench.train.cell.run_cell` with the
driver's ``LOSSBENCH_*`` variables, and sends back its :class:`~bench.train.cell.CellOutcome` (whose
rows carry the worker's start and finish times); the driver alone writes the store. The driver
side, shared too, is :mod:`bench.run.launchers.loop`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from bench.config.cells import Cell
from bench.data import Splits
from bench.errors import BenchError
from bench.train.cell import CellOutcome, ExecOptions, run_cell
from bench.run.launchers import LauncherOptions

MAX_IN_FLIGHT = 512  # claimed cells hold one lock file each; keep well under the open-files limit
FORWARDED_ENV_PREFIX = "LOSSBENCH_"  # driver variables every cell sees (callbacks and writers travel in ExecOptions)


def import_extra(module: str, extra: str, name: str) -> ModuleType:
    """Import an optional engine, or fail with one line naming the extra to install.

    ``extra`` is both the launcher's and the extra's name (``ray``, ``slurm``); ``name`` the engine's.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BenchError(f"the {extra} launcher needs {name}: pip install 'lossbench[{extra}]'") from None


def check_cluster_options(options: LauncherOptions) -> None:
    """The checks both cluster launchers make of their options (each adds its engine's own)."""
    if options.gpus_per_cell < 0 or options.cpus_per_cell < 0:
        raise BenchError("--gpus-per-cell and --cpus-per-cell must be >= 0")
    if options.max_retries < 0:
        raise BenchError("--max-retries must be >= 0")


def absolute_options(opts: ExecOptions) -> ExecOptions:
    """Paths as the workers must see them: absolute (workers do not share the driver's cwd)."""

    def fix(p: str | None) -> str | None:
        return str(Path(p).expanduser().resolve()) if p else p

    return replace(opts, data_root=fix(opts.data_root), cache_dir=fix(opts.cache_dir),
                   checkpoint_dir=fix(opts.checkpoint_dir))


def pick_cell_device(has_gpu: bool) -> str:
    """The device a worker trains on: cuda when it was given a GPU that torch can see, else cpu."""
    from bench.train.device import pick_device

    return pick_device("auto" if has_gpu else "cpu").type


_WORKER_MEMO: dict[str, Splits] = {}  # per Ray worker process: the dataset it decoded last


def forwarded_env() -> dict[str, str]:
    """The driver's ``LOSSBENCH_*`` variables, which every cell sees wherever it runs."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}


@contextmanager
def cell_env(env: dict[str, str]) -> Iterator[None]:
    """Give one cell the driver's ``LOSSBENCH_*`` variables, and take them back afterwards.

    Passed with each task rather than as a Ray ``runtime_env``: a runtime_env per value would start
    a fresh pool of workers (each importing torch) for every distinct setting.
    """
    saved = forwarded_env()
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith(FORWARDED_ENV_PREFIX)]:
            del os.environ[k]
        os.environ.update(saved)


def worker_cell(cell: Cell, opts: ExecOptions, has_gpu: bool) -> CellOutcome:
    """On a worker (Ray task or SLURM job): choose the device explicitly, train, return the rows."""
    return run_cell(cell, replace(opts, device=pick_cell_device(has_gpu)), memo=_WORKER_MEMO)


__all__ = ["MAX_IN_FLIGHT", "absolute_options", "cell_env", "check_cluster_options", "forwarded_env",
           "import_extra", "pick_cell_device", "worker_cell"]
