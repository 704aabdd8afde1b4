"""``--launcher slurm``: each cell is one SLURM job (submitted as job arrays) through submitit.

The driver claims a window of cells (2 x ``--slurm-array-parallelism``), submits them as one array,
and polls: each finished job's result comes back to the driver, which alone writes the store.
submitit itself needs a folder that the login node and the compute nodes share (its pickles and logs
go to ``<results>/logs``), and checkpoints go to ``<results>/checkpoints``, so with ``--results`` on a
shared filesystem a job that dies (node failure, preemption, time limit) is resubmitted up to
``--max-retries`` times and resumes from its last epoch. An exception in a cell is stored as
``failed`` and not resubmitted.

``LOSSBENCH_SUBMITIT_CLUSTER`` picks submitit's executor: ``slurm`` (default), ``local`` (jobs are
subprocesses of this machine; no queue, so at most ``--slurm-array-parallelism`` run at once) or
``debug`` (jobs run one by one inside this process). The last two exist for tests and dry runs.

submitit is imported only when this launcher runs: ``pip install 'lossbench[slurm]'``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cells import Cell
from bench.errors import BenchError
from bench.execute import CellOutcome, ExecOptions, failed_outcome
from bench.launchers import Hooks, LauncherOptions
from bench.launchers.cluster import MAX_IN_FLIGHT, TaskResult, absolute_options, first_line, import_extra, timed_cell
from bench.store import StoreWriteError

CLUSTER_ENV = "LOSSBENCH_SUBMITIT_CLUSTER"
CLUSTERS = ("slurm", "local", "debug")


def slurm_cell(cell: Cell, opts: ExecOptions, gpus: int) -> TaskResult:
    """Runs in the SLURM job."""
    return timed_cell(cell, opts, gpus > 0)


@dataclass
class SlurmLauncher:
    options: LauncherOptions = field(default_factory=lambda: LauncherOptions(kind="slurm"))
    poll_s: float = 1.0
    cluster: str | None = None  # default: $LOSSBENCH_SUBMITIT_CLUSTER, else "slurm"
    timings: dict[str, tuple[int, int]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # cell_id -> jobs submitted for it

    def __post_init__(self) -> None:
        self.cluster = self.cluster or os.environ.get(CLUSTER_ENV) or "slurm"
        if self.cluster not in CLUSTERS:
            raise BenchError(f"{CLUSTER_ENV}={self.cluster!r}: expected one of {', '.join(CLUSTERS)}")
        g = self.options.gpus_per_cell
        if g < 0 or g != int(g):
            raise BenchError(f"--gpus-per-cell {g:g}: SLURM allocates whole GPUs; fractions need --launcher ray")
        if self.options.max_retries < 0:
            raise BenchError("--max-retries must be >= 0")

    @property
    def gpus(self) -> int:
        return int(self.options.gpus_per_cell)

    # -- setup
    def check_gpus(self) -> None:
        """A GPU request where there is none fails now, in one line, rather than queueing forever."""
        if self.gpus == 0:
            return
        if self.cluster != "slurm":
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if n < self.gpus:
                raise BenchError(f"--gpus-per-cell {self.gpus}: this machine has {n} CUDA GPU(s) "
                                 f"({CLUSTER_ENV}={self.cluster}); use --gpus-per-cell 0 to train on CPU")
            return
        gres = _partition_gres(self.options.slurm_partition)
        if gres is not None and not any("gpu" in g for g in gres):
            where = f"partition {self.options.slurm_partition!r}" if self.options.slurm_partition else "the cluster"
            raise BenchError(f"--gpus-per-cell {self.gpus}: {where} has no GPUs (sinfo reports no gpu gres); "
                             "pick a GPU partition with --slurm-partition or use --gpus-per-cell 0")

    def make_executor(self, submitit, folder: Path):
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise BenchError("--launcher slurm: sbatch not found; run on a SLURM login node "
                             f"(or set {CLUSTER_ENV}=local to run the jobs on this machine)")
        try:
            executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=self.cluster)
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
        if self.cluster == "slurm":
            params["slurm_array_parallelism"] = int(self.options.slurm_array_parallelism)
            if self.options.slurm_partition:
                params["slurm_partition"] = self.options.slurm_partition
        executor.update_parameters(**params)
        return executor

    # -- the run
    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        if not cells:
            return
        submitit = import_extra("submitit", "slurm", "submitit")
        self.check_gpus()
        folder = Path(self.options.log_dir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        executor = self.make_executor(submitit, folder)
        self._run(submitit, executor, cells, absolute_options(opts), hooks)

    def _window(self) -> int:
        par = max(1, int(self.options.slurm_array_parallelism))
        # SLURM queues: keep twice what runs at once submitted. local: no queue, run exactly that many.
        return min(MAX_IN_FLIGHT, 2 * par if self.cluster == "slurm" else par)

    def _run(self, submitit, executor, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        pending = deque(cells)
        retry: deque[Cell] = deque()  # claimed cells whose job died, to resubmit
        running: list[tuple[Any, Cell]] = []  # (job, cell)
        claimed: dict[str, Cell] = {}
        shown: set[str] = set()
        window = self._window()
        try:
            while pending or retry or running:
                batch: list[Cell] = []
                while retry and len(running) + len(batch) < window:
                    batch.append(retry.popleft())
                while pending and len(running) + len(batch) < window:
                    cell = pending.popleft()
                    if hooks.claim(cell):
                        claimed[cell.cell_id] = cell
                        batch.append(cell)
                if batch:
                    running.extend(zip(self._submit(submitit, executor, batch, opts), batch))
                if not running:
                    break
                still: list[tuple[Any, Cell]] = []
                for job, cell in running:
                    done = job.done()
                    if cell.cell_id not in shown and (done or _is_running(job)):
                        shown.add(cell.cell_id)
                        hooks.start(cell)
                    if not done:
                        still.append((job, cell))
                        continue
                    outcome = self._collect(submitit, job, cell)
                    if outcome is None:  # the job died and may try again
                        retry.append(cell)
                        continue
                    shown.discard(cell.cell_id)
                    claimed.pop(cell.cell_id, None)
                    try:
                        hooks.finish(cell, outcome)
                    finally:
                        hooks.release(cell)
                running = still
                if running and not retry:
                    time.sleep(self.poll_s if self.cluster == "slurm" else min(self.poll_s, 0.25))
        except BaseException:
            # Ctrl-C / SIGTERM / a store error: cancel what is queued or running and free the claims.
            for job, _ in running:
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
            for cell in claimed.values():
                hooks.release(cell)
            raise

    def _submit(self, submitit, executor, batch: list[Cell], opts: ExecOptions) -> list[Any]:
        for cell in batch:
            self.attempts[cell.cell_id] = self.attempts.get(cell.cell_id, 0) + 1
        try:
            jobs = executor.map_array(slurm_cell, batch, [opts] * len(batch), [self.gpus] * len(batch))
        except (submitit.core.utils.FailedSubmissionError, subprocess.CalledProcessError, OSError) as exc:
            raise BenchError(f"--launcher slurm: the submission was refused: {first_line(exc)}") from None
        if self.cluster == "local":
            for job in jobs:  # no network filesystem to wait for: a job without a result died
                job._results_timeout_s = 2
        return jobs

    def _collect(self, submitit, job, cell: Cell) -> CellOutcome | None:
        """The cell's outcome, or None when its job died and has a retry left."""
        utils = submitit.core.utils
        try:
            result: TaskResult = job.result()
        except StoreWriteError:
            raise  # (debug executor) a checkpoint could not be written: ends the run, as on the local launcher
        except utils.FailedJobError as exc:
            line = _last_error_line(exc)
            if "StoreWriteError" in line:
                raise StoreWriteError(line.partition("StoreWriteError: ")[2] or line) from None
            # raised inside the job but outside run_cell (e.g. the node cannot import the project)
            return failed_outcome(cell, f"slurm job {job.job_id} raised: {line}")
        except utils.UncompletedJobError:
            tries = self.attempts.get(cell.cell_id, 1)
            if tries <= self.options.max_retries:
                return None
            return failed_outcome(
                cell, f"slurm job {job.job_id} ended without a result {tries} time(s) (killed, preempted or out of "
                      f"time; state {_state(job)}; logs in {Path(str(job.paths.stderr)).parent}); "
                      "rerun with --retry-failed to resume from its checkpoint")
        except Exception as exc:  # noqa: BLE001 - the debug executor re-raises the job's own exception
            return failed_outcome(cell, f"job raised {type(exc).__name__}: {first_line(exc)}")
        self.timings[cell.cell_id] = (result.started_ns, result.finished_ns)
        return result.outcome


def _is_running(job) -> bool:
    try:
        return str(job.state).upper() == "RUNNING"
    except Exception:  # noqa: BLE001 - state is advisory (display only)
        return False


def _state(job) -> str:
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


__all__ = ["SlurmLauncher", "slurm_cell", "CLUSTER_ENV"]
