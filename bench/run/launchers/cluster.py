"""What the cluster launchers (Ray, SLURM) share besides their loop: the worker side and its helpers.

A worker picks its device itself, trains one cell through :func:`bench.train.cell.run_cell` with the
driver's :class:`~bench.train.cell.ExecOptions` (the data root, cache and checkpoint folders travel
there as absolute paths, never through the environment), and sends back its
:class:`~bench.train.cell.CellOutcome` (whose rows carry the worker's start and finish times); the
driver alone writes the store. The driver side, shared too, is :mod:`bench.run.launchers.loop`.
The options both engines read are declared here (:data:`OPTIONS`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from bench.errors import BenchError
from bench.run.launchers.base import LauncherOption, LauncherOptions, OptionGroup

if TYPE_CHECKING:  # torch comes with these: imported on the workers, not when the CLI builds its flags
    from bench.config.cells import Cell
    from bench.data import Splits
    from bench.train.cell import CellOutcome, ExecOptions

MAX_IN_FLIGHT = 512  # claimed cells hold one lock file each; keep well under the open-files limit

OPTIONS = OptionGroup("Ray and SLURM launchers (--launcher ray | slurm)", (
    LauncherOption("gpus_per_cell", ("--gpus-per-cell",), float, 0.0,
                   "GPUs per cell (fractions on Ray: 0.25 packs four cells per GPU).", min=0.0),
    LauncherOption("cpus_per_cell", ("--cpus-per-cell",), float, 1.0, "CPUs per cell.", min=0.0),
    LauncherOption("max_retries", ("--max-retries",), int, 2, "Retries of a cell whose worker died.", min=0),
))


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


def worker_device(options: LauncherOptions) -> str:
    """The device type a cluster cell trains on, as the planner checks it: cuda when it asks for GPUs."""
    return "cuda" if options.gpus_per_cell > 0 else "cpu"


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


_WORKER_MEMO: dict[str, Splits] = {}  # per worker process: the dataset it decoded last


def worker_cell(cell: Cell, opts: ExecOptions, has_gpu: bool) -> CellOutcome:
    """On a worker (Ray task or SLURM job): choose the device explicitly, train, return the rows."""
    from bench.train.cell import run_cell

    return run_cell(cell, replace(opts, device=pick_cell_device(has_gpu)), memo=_WORKER_MEMO)


__all__ = ["MAX_IN_FLIGHT", "OPTIONS", "absolute_options", "check_cluster_options", "import_extra", "pick_cell_device",
           "worker_cell", "worker_device"]
