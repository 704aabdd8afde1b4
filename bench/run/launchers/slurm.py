"""``--launcher slurm``: each cell is one SLURM job (submitted as job arrays) through submitit.

The driver side is the loop shared with Ray (:mod:`bench.run.launchers.loop`): it claims a window of
cells (2 x ``--slurm-array-parallelism``), submits them as one array, and polls; each finished job's
result comes back to the driver, which alone writes the store. This module provides that loop's
submitit backend and the executor's setup.

submitit itself needs a folder that the login node and the compute nodes share (its pickles and logs
go to ``<results>/logs``), and checkpoints go to ``<results>/checkpoints``, so with ``--results`` on a
shared filesystem a job that dies (node failure, preemption, time limit) is resubmitted up to
``--max-retries`` times and resumes from its last epoch. An exception in a cell is stored as
``failed`` and not resubmitted.

``--slurm-executor`` picks submitit's executor: ``slurm`` (default), ``local`` (jobs are subprocesses
of this machine; no queue, so at most ``--slurm-array-parallelism`` run at once) or ``debug`` (jobs
run one by one inside this process). The last two try the SLURM path on a machine without SLURM.

submitit is imported only when this launcher runs (its options are checked without it):
``pip install 'lossbench[slurm]'``.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, exception_line
from bench.fileio import StoreWriteError
from bench.run.launchers import cluster
from bench.run.launchers.base import (Hooks, LauncherOption, LauncherOptions, LauncherSpec, OptionGroup,
                                      SubmitObserver)
from bench.run.launchers.cluster import MAX_IN_FLIGHT, absolute_options, check_cluster_options, import_extra, worker_cell
from bench.run.launchers.loop import Died, Done, Failed, Queued, Running, State, run_cells

if TYPE_CHECKING:
    from bench.config.cells import Cell
    from bench.train.cell import CellOutcome, ExecOptions

EXECUTORS = ("slurm", "local", "debug")  # submitit AutoExecutor's cluster values

OPTIONS = OptionGroup("SLURM launcher (--launcher slurm)", (
    LauncherOption("slurm_partition", ("--slurm-partition",), str, None, "SLURM partition."),
    LauncherOption("timeout_min", ("--timeout-min",), int, 60 * 24, "SLURM time limit per cell, minutes.", min=1),
    LauncherOption("slurm_array_parallelism", ("--slurm-array-parallelism",), int, 16,
                   "SLURM array jobs running at once.", min=1),
    LauncherOption("slurm_executor", ("--slurm-executor",), str, "slurm",
                   "How the jobs run: slurm (sbatch, default), local (processes of this machine) or debug "
                   "(one by one in this process)."),
))


def slurm_cell(cell: Cell, opts: ExecOptions, gpus: int) -> CellOutcome:
    """Runs in the SLURM job."""
    return worker_cell(cell, opts, gpus > 0)


def collect(submitit: ModuleType, job: Any) -> Done | Failed | Died:
    """The state of a finished job: its rows, a job that raised outside ``run_cell``, or one that died."""
    utils = submitit.core.utils
    try:
        outcome: CellOutcome = job.result()
    except StoreWriteError:
        raise  # (debug executor) a checkpoint could not be written: ends the run, as on the local launcher
    except utils.FailedJobError as exc:
        line = _last_error_line(exc)
        if "StoreWriteError" in line:
            raise StoreWriteError(line.partition("StoreWriteError: ")[2] or line) from None
        # raised inside the job but outside run_cell (e.g. the node cannot import the project)
        return Failed(f"slurm job {job.job_id} raised: {line}")
    except utils.UncompletedJobError:
        return Died(f"slurm job {job.job_id} ended without a result",
                    f"killed, preempted or out of time; state {_state(job)}; "
                    f"logs in {Path(str(job.paths.stderr)).parent}")
    except Exception as exc:  # noqa: BLE001 - the debug executor re-raises the job's own exception
        return Failed(f"job raised {type(exc).__name__}: {exception_line(exc)}")
    return Done(outcome)


# ---------------------------------------------------------------- the loop's backend

@dataclass
class SlurmBackend:
    """Cells as submitit jobs; a handle is the job."""

    submitit: ModuleType
    executor: Any  # a configured submitit AutoExecutor
    opts: ExecOptions
    gpus: int
    kind: str  # the executor: one of EXECUTORS
    window_size: int
    poll_s: float  # pause between looks at the jobs when none has finished

    @property
    def window(self) -> int:
        return self.window_size

    def submit(self, cells: list[Cell]) -> list[Any]:
        n = len(cells)
        try:
            jobs = self.executor.map_array(slurm_cell, cells, [self.opts] * n, [self.gpus] * n)
        except (self.submitit.core.utils.FailedSubmissionError, subprocess.CalledProcessError, OSError) as exc:
            raise BenchError(f"--launcher slurm: the submission was refused: {exception_line(exc)}") from None
        if self.kind == "local":
            for job in jobs:  # no network filesystem to wait for: a job without a result died
                job._results_timeout_s = 2
        return list(jobs)

    def poll(self, handles: list[Any]) -> list[State]:
        states: list[State] = []
        for job in handles:
            if job.done():
                states.append(collect(self.submitit, job))
            else:
                states.append(Running() if _is_running(job) else Queued())
        if all(isinstance(s, (Queued, Running)) for s in states):
            time.sleep(self.poll_s)  # submitit asks the scheduler (or the files) afresh on each look
        return states

    def cancel(self, handles: list[Any]) -> None:
        for job in handles:
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass


# ---------------------------------------------------------------- the launcher

@dataclass
class SlurmLauncher:
    options: LauncherOptions = field(default_factory=lambda: LauncherOptions(kind="slurm"))
    poll_s: float = 1.0
    on_submit: SubmitObserver | None = None

    def __post_init__(self) -> None:
        # checks only: submitit itself is imported when the launcher runs
        check_cluster_options(self.options)
        if self.executor_kind not in EXECUTORS:
            raise BenchError(f"--slurm-executor {self.executor_kind!r}: expected one of {', '.join(EXECUTORS)}")
        g = self.options.gpus_per_cell
        if g != int(g):
            raise BenchError(f"--gpus-per-cell {g:g}: SLURM allocates whole GPUs; fractions need --launcher ray")

    @property
    def executor_kind(self) -> str:
        return self.options.slurm_executor

    @property
    def gpus(self) -> int:
        return int(self.options.gpus_per_cell)

    # -- setup
    def check_gpus(self) -> None:
        """A GPU request where there is none fails now, in one line, rather than queueing forever."""
        if self.gpus == 0:
            return
        if self.executor_kind != "slurm":
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if n < self.gpus:
                raise BenchError(f"--gpus-per-cell {self.gpus}: this machine has {n} CUDA GPU(s) "
                                 f"(--slurm-executor {self.executor_kind}); use --gpus-per-cell 0 to train on CPU")
            return
        gres = _partition_gres(self.options.slurm_partition)
        if gres is not None and not any("gpu" in g for g in gres):
            where = f"partition {self.options.slurm_partition!r}" if self.options.slurm_partition else "the cluster"
            raise BenchError(f"--gpus-per-cell {self.gpus}: {where} has no GPUs (sinfo reports no gpu gres); "
                             "pick a GPU partition with --slurm-partition or use --gpus-per-cell 0")

    def make_executor(self, submitit: ModuleType, folder: Path) -> Any:
        if self.executor_kind == "slurm" and shutil.which("sbatch") is None:
            raise BenchError("--launcher slurm: sbatch not found; run on a SLURM login node "
                             "(or pass --slurm-executor local to run the jobs on this machine)")
        try:
            executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=self.executor_kind)
        except RuntimeError as exc:
            raise BenchError(f"--launcher slurm: {exc}") from None
        params: dict[str, Any] = {
            "name": "lossbench",
            "timeout_min": int(self.options.timeout_min),
            "cpus_per_task": max(1, math.ceil(self.options.cpus_per_cell)),
            "gpus_per_node": self.gpus,
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if self.executor_kind == "slurm":
            params["slurm_array_parallelism"] = int(self.options.slurm_array_parallelism)
            if self.options.slurm_partition:
                params["slurm_partition"] = self.options.slurm_partition
        executor.update_parameters(**params)
        return executor

    def _window(self) -> int:
        par = max(1, int(self.options.slurm_array_parallelism))
        # SLURM queues: keep twice what runs at once submitted. local: no queue, run exactly that many.
        return min(MAX_IN_FLIGHT, 2 * par if self.executor_kind == "slurm" else par)

    # -- the run
    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        if not cells:
            return
        submitit = import_extra("submitit", "slurm", "submitit")
        self.check_gpus()
        folder = Path(self.options.log_dir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        # a real queue is asked at the full interval; local jobs' files can be looked at more often
        poll_s = self.poll_s if self.executor_kind == "slurm" else min(self.poll_s, 0.25)
        backend = SlurmBackend(submitit, self.make_executor(submitit, folder), absolute_options(opts), self.gpus,
                               self.executor_kind, self._window(), poll_s)
        run_cells(cells, backend, hooks, self.options.max_retries, self.on_submit)


def _is_running(job: Any) -> bool:
    try:
        return str(job.state).upper() == "RUNNING"
    except Exception:  # noqa: BLE001 - state is advisory (display only)
        return False


def _state(job: Any) -> str:
    try:
        return str(job.state)
    except Exception:  # noqa: BLE001
        return "unknown"


def _partition_gres(partition: str | None) -> list[str] | None:
    """The generic resources (``gpu:a100:4`` ...) of a partition's nodes, or None if sinfo cannot tell."""
    cmd = ["sinfo", "--noheader", "--format=%G"] + (["--partition", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip().lower() for line in out.splitlines() if line.strip()]
    return lines or None


def _last_error_line(exc: BaseException) -> str:
    """The exception line of a submitit trace (its last non-decoration line)."""
    decoration = ("-", "You can", "or at", "  -")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith(decoration)]
    return lines[-1][:300] if lines else type(exc).__name__


def build(options: LauncherOptions, on_submit: SubmitObserver | None = None) -> SlurmLauncher:
    launcher = SlurmLauncher(options, on_submit=on_submit)  # checks the options without submitit
    import_extra("submitit", "slurm", "submitit")
    return launcher


SPEC = LauncherSpec("slurm", (cluster.OPTIONS, OPTIONS), build, worker_device=cluster.worker_device)

__all__ = ["EXECUTORS", "OPTIONS", "SPEC", "SlurmBackend", "SlurmLauncher", "collect", "slurm_cell"]
