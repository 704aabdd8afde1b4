"""Launchers run claimed cells somewhere and hand each outcome back to the driver.

A launcher implements ``run(cells, opts, hooks)``: for each cell it calls ``hooks.claim(cell)``
(False means skip it: another process has it or it is already done), runs it (in process, in a
pool, on Ray, on SLURM), and calls ``hooks.finish(cell, outcome)`` in the driver process, which
alone writes the store.

The cluster launchers (``ray``, ``slurm``) share one driver-side loop (:mod:`bench.run.launchers.loop`);
each provides only how its engine submits, polls and cancels cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench.config.cells import Cell
from bench.train.cell import CellOutcome, ExecOptions
from bench.train.loop import TrainProgress


@dataclass
class Hooks:
    claim: Callable[[Cell], bool]
    start: Callable[[Cell], None]
    progress: Callable[[Cell, TrainProgress], None]
    finish: Callable[[Cell, CellOutcome], None]
    release: Callable[[Cell], None]


# told in the driver of each cell a cluster launcher submits, with its try number (1 for the first)
SubmitObserver = Callable[[Cell, int], None]


class Launcher(Protocol):
    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None: ...


@dataclass(frozen=True)
class LauncherOptions:
    """What ``bench run`` says about where cells run; validated by the CLI, read by the launchers."""

    kind: str = "local"
    jobs: int = 1
    threads: int = 0  # CPU threads per local training process; 0: share the cores (bench.run.threads)
    gpus_per_cell: float = 0.0
    cpus_per_cell: float = 1.0
    max_retries: int = 2
    ray_address: str | None = None
    slurm_partition: str | None = None
    timeout_min: int = 60 * 24
    slurm_array_parallelism: int = 16
    slurm_executor: str = "slurm"  # submitit's executor: slurm, or local / debug to run the jobs on this machine
    log_dir: str = "results/logs"


def make_launcher(options: LauncherOptions, on_submit: SubmitObserver | None = None) -> Launcher:
    """The launcher ``options`` ask for, its options checked first and its engine imported only then.

    ``on_submit`` is told of each cell a cluster launcher submits, with its try number; the local
    launchers submit nothing and ignore it.
    """
    from bench.errors import BenchError

    if options.kind == "local":
        from bench.run.launchers.local import LocalLauncher, PoolLauncher

        return LocalLauncher(options.threads) if options.jobs == 1 else PoolLauncher(options.jobs, options.threads)
    if options.kind in ("ray", "slurm") and (options.jobs != 1 or options.threads):
        flag = f"--jobs {options.jobs}" if options.jobs != 1 else f"--threads {options.threads}"
        raise BenchError(f"{flag} is for --launcher local; on {options.kind} size cells with "
                         "--cpus-per-cell / --gpus-per-cell")
    from bench.run.launchers.cluster import import_extra

    if options.kind == "ray":
        from bench.run.launchers.ray import RayLauncher

        ray_launcher = RayLauncher(options, on_submit=on_submit)  # checks the options without Ray
        import_extra("ray", "ray", "Ray")  # a missing extra is one line now, before any cell is claimed
        return ray_launcher
    if options.kind == "slurm":
        from bench.run.launchers.slurm import SlurmLauncher

        slurm_launcher = SlurmLauncher(options, on_submit=on_submit)  # checks the options without submitit
        import_extra("submitit", "slurm", "submitit")
        return slurm_launcher
    raise BenchError(f"--launcher {options.kind!r}: expected local, ray or slurm")
