"""``--launcher ray``: cells run as Ray core tasks on a local or an existing Ray cluster.

Each cell is one task asking for ``--cpus-per-cell`` CPUs and ``--gpus-per-cell`` GPUs (fractions
pack several cells on one GPU). The task picks its device itself (``cuda`` when Ray gave it a GPU
and this node's torch sees CUDA, else ``cpu``), trains through :func:`bench.execute.run_cell` and
returns the small result rows; the driver alone writes the store, so results need no shared
filesystem. Checkpoints go to ``ExecOptions.checkpoint_dir`` (``<results>/checkpoints``); where that
path is shared between nodes, a retried cell resumes from its last epoch.

Failures: a worker (or node) that dies mid-cell is retried by Ray up to ``--max-retries`` times;
after that the cell is stored as ``failed``. An exception inside a cell is never retried: ``run_cell``
turns it into a ``failed`` row (the task is submitted with ``retry_exceptions=False`` as well).

Ray is imported only when this launcher runs: ``pip install 'lossbench[ray]'``.

Logical GPUs: a cluster started with ``ray.init(num_gpus=1)`` on a machine without CUDA offers
GPU resources that only exist for scheduling; cells packed onto them still train on the CPU
(``torch.cuda.is_available()`` is False there), which is what the tests use.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench.cells import Cell
from bench.errors import BenchError
from bench.execute import CellOutcome, ExecOptions, failed_outcome
from bench.launchers import Hooks, LauncherOptions
from bench.launchers.cluster import (MAX_IN_FLIGHT, TaskResult, absolute_options, cell_env, first_line, forwarded_env,
                                     import_extra, timed_cell)
from bench.store import StoreWriteError

def ray_cell(cell: Cell, opts: ExecOptions, env: dict[str, str]) -> TaskResult:
    """Runs inside a Ray worker, with the driver's LOSSBENCH_* variables set."""
    import ray

    with cell_env(env):
        return timed_cell(cell, opts, bool(ray.get_gpu_ids()))


# ---------------------------------------------------------------- the launcher

@dataclass
class RayLauncher:
    options: LauncherOptions = field(default_factory=lambda: LauncherOptions(kind="ray"))
    poll_s: float = 0.5
    # cell_id -> (start, end) in ns on the worker clock, for the cells this launcher ran
    timings: dict[str, tuple[int, int]] = field(default_factory=dict)
    submitted: int = 0  # tasks submitted by this launcher

    def __post_init__(self) -> None:
        g = self.options.gpus_per_cell
        if g < 0 or self.options.cpus_per_cell < 0:
            raise BenchError("--gpus-per-cell and --cpus-per-cell must be >= 0")
        if g > 1 and g != int(g):
            raise BenchError(f"--gpus-per-cell {g}: Ray takes a fraction up to 1 or a whole number of GPUs")
        if self.options.max_retries < 0:
            raise BenchError("--max-retries must be >= 0")

    # -- cluster
    def _connect(self, ray) -> bool:
        """Join the cluster (or start a private one); True when this call connected, so must disconnect.

        Disconnecting stops a private cluster; a joined one keeps running. A Ray that this process had
        already initialised (e.g. by a test) is used as it is and left connected.
        """
        if ray.is_initialized():
            return False
        address = self.options.ray_address
        if address and address != "auto":
            _probe(address)  # ray.init retries an unreachable GCS for minutes, deaf to Ctrl-C
        try:
            # no --ray-address: always a private cluster on this machine ("local"), even where `ray start`
            # or RAY_ADDRESS would otherwise make ray.init() join another one
            ray.init(address=address or "local", include_dashboard=False, logging_level="warning")
        except ConnectionError as exc:
            raise BenchError(f"--ray-address {address}: no Ray cluster there ({first_line(exc)}); start one with "
                             "`ray start --head`, or omit --ray-address to start a local one") from None
        except Exception as exc:  # noqa: BLE001 - any start failure is one line for the user
            where = f"--ray-address {address}" if address else "starting a local Ray cluster"
            raise BenchError(f"{where}: {type(exc).__name__}: {first_line(exc)}") from None
        return True

    def _where(self) -> str:
        return f"at {self.options.ray_address}" if self.options.ray_address else "started on this machine"

    def check_resources(self, total: dict[str, float], nodes: list[dict[str, float]]) -> int:
        """Fail at once when no node can run a cell; else return how many cells run at once."""
        cpus, gpus = self.options.cpus_per_cell, self.options.gpus_per_cell
        have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
        if gpus > 0 and have_gpu <= 0:
            raise BenchError(f"--gpus-per-cell {gpus:g}: the Ray cluster {self._where()} has no GPUs "
                             f"({have_cpu:g} CPUs); use --gpus-per-cell 0 to train on CPU")
        if nodes and not any(n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus for n in nodes):
            biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
            raise BenchError(f"--cpus-per-cell {cpus:g} --gpus-per-cell {gpus:g}: no node of the Ray cluster "
                             f"{self._where()} is that large (largest: {biggest.get('CPU', 0.0):g} CPUs, "
                             f"{biggest.get('GPU', 0.0):g} GPUs)")
        fits = []
        if cpus > 0:
            fits.append(int(have_cpu / cpus + 1e-9))
        if gpus > 0:
            fits.append(int(have_gpu / gpus + 1e-9))
        return max(1, min(fits) if fits else int(have_cpu) or 1)

    def _task_options(self) -> dict[str, Any]:
        return {
            "num_cpus": self.options.cpus_per_cell,
            "num_gpus": self.options.gpus_per_cell,
            "max_retries": self.options.max_retries,  # worker / node deaths
            "retry_exceptions": False,  # an exception in a cell is a result, not a reason to retry
            "name": "lossbench-cell",
        }

    # -- the run
    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None:
        if not cells:
            return
        ray = import_extra("ray", "ray", "Ray")
        connected_here = self._connect(ray)
        try:
            alive = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
            slots = self.check_resources(ray.cluster_resources(), alive)
            self._run(ray, cells, absolute_options(opts), hooks, slots)
        finally:
            if connected_here:
                ray.shutdown()

    def _run(self, ray, cells: list[Cell], opts: ExecOptions, hooks: Hooks, slots: int) -> None:
        remote = ray.remote(ray_cell).options(**self._task_options())
        env = forwarded_env()
        window = min(MAX_IN_FLIGHT, 2 * slots)  # keep the cluster busy without claiming the whole grid
        pending = deque(cells)
        in_flight: dict[Any, Cell] = {}  # ObjectRef -> cell, claimed and submitted
        queued: deque[Cell] = deque()  # submitted but not yet shown as running (Ray queues past `slots`)
        shown: set[str] = set()
        try:
            while pending or in_flight:
                while pending and len(in_flight) < window:
                    cell = pending.popleft()
                    if not hooks.claim(cell):
                        continue
                    try:
                        ref = remote.remote(cell, opts, env)
                    except BaseException:
                        hooks.release(cell)
                        raise
                    self.submitted += 1
                    in_flight[ref] = cell
                    queued.append(cell)
                # the display shows as running what the cluster can run at once (Ray runs tasks in order)
                while queued and len(shown) < slots:
                    cell = queued.popleft()
                    shown.add(cell.cell_id)
                    hooks.start(cell)
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    cell = in_flight.pop(ref)
                    outcome = self._collect(ray, ref, cell)
                    if cell.cell_id not in shown:
                        queued.remove(cell)
                        hooks.start(cell)
                    shown.discard(cell.cell_id)
                    try:
                        hooks.finish(cell, outcome)
                    finally:
                        hooks.release(cell)
        except BaseException:
            # Ctrl-C / SIGTERM / a store error: stop what is queued or running, free the claims.
            # Finished cells are already stored; running ones resume from their checkpoints next time.
            for ref, cell in in_flight.items():
                try:
                    # force: kill the worker. A KeyboardInterrupt raised inside it instead could land
                    # in the middle of an import and leave that worker broken for the next cells.
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
                hooks.release(cell)
            raise

    def _collect(self, ray, ref, cell: Cell) -> CellOutcome:
        from ray import exceptions as rex

        try:
            result: TaskResult = ray.get(ref)
        except rex.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            if isinstance(cause, StoreWriteError):
                raise cause from None  # a checkpoint could not be written: ends the run, as on the local launcher
            # raised outside run_cell (e.g. the task could not import the project on that node): not retried
            return failed_outcome(cell, f"ray task error: {type(cause).__name__}: {first_line(cause)}")
        except rex.RayError as exc:
            tries = self.options.max_retries + 1
            return failed_outcome(
                cell, f"the Ray worker running this cell died {tries} time(s) ({type(exc).__name__}: "
                      f"{first_line(exc)[:200]}); rerun with --retry-failed (it resumes from its checkpoint "
                      "where the checkpoint path is shared)")
        self.timings[cell.cell_id] = (result.started_ns, result.finished_ns)
        return result.outcome


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail in one line when nothing listens at ``host:port`` (or ``ray://host:port``)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise BenchError(f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BenchError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster "
                         "with `ray start --head`, or omit --ray-address to start a local one") from None


__all__ = ["RayLauncher", "ray_cell"]
