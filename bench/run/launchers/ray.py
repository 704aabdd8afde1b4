"""``--launcher ray``: cells run as Ray core tasks on a local or an existing Ray cluster.

Each cell is one task asking for ``--cpus-per-cell`` CPUs and ``--gpus-per-cell`` GPUs (fractions
pack several cells on one GPU). The task picks its device itself (``cuda`` when Ray gave it a GPU
and this node's torch sees CUDA, else ``cpu``), trains through :func:`bench.train.cell.run_cell` and
returns the small result rows; the driver alone writes the store, so results need no shared
filesystem. Checkpoints go to ``ExecOptions.checkpoint_dir`` (``<results>/checkpoints``); where that
path is shared between nodes, a retried cell resumes from its last epoch.

The driver side is the loop shared with SLURM (:mod:`bench.run.launchers.loop`); this module provides
its Ray backend (submit a task, wait on the tasks' object refs, cancel them) and the cluster setup.

Failures: a cell whose worker (or node) dies mid-cell is submitted again by that loop, up to
``--max-retries`` times (Ray's own retries are off, so one count governs both launchers); after that
the cell is stored as ``failed``. An exception inside a cell is never retried: ``run_cell`` turns it
into a ``failed`` row.

Ray is imported only when this launcher runs (its options are checked without it):
``pip install 'lossbench[ray]'``.

Logical GPUs: a cluster started with ``ray.init(num_gpus=1)`` on a machine without CUDA offers
GPU resources that only exist for scheduling; cells packed onto them still train on the CPU
(``torch.cuda.is_available()`` is False there), which is what the tests use.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
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

OPTIONS = OptionGroup("Ray launcher (--launcher ray)", (
    LauncherOption("ray_address", ("--ray-address",), str, None,
                   "Ray cluster to join ('auto' or host:port); default starts a local one."),
))


def ray_cell(cell: Cell, opts: ExecOptions) -> CellOutcome:
    """Runs inside a Ray worker; everything the cell needs travels in ``opts``."""
    import ray

    return worker_cell(cell, opts, bool(ray.get_gpu_ids()))


def collect(ray: ModuleType, ref: Any) -> Done | Failed | Died:
    """The state of a finished task: its rows, a task that raised outside ``run_cell``, or a dead worker."""
    try:
        outcome: CellOutcome = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        if isinstance(cause, StoreWriteError):
            raise cause from None  # a checkpoint could not be written: ends the run, as on the local launcher
        # raised outside run_cell (e.g. the task could not import the project on that node): not retried
        return Failed(f"ray task error: {type(cause).__name__}: {exception_line(cause)}")
    except ray.exceptions.RayError as exc:
        return Died("the Ray worker running this cell died", f"{type(exc).__name__}: {exception_line(exc)[:200]}")
    return Done(outcome)


# ---------------------------------------------------------------- the loop's backend

@dataclass
class RayBackend:
    """Cells as Ray tasks; a handle is the task's ObjectRef."""

    ray: ModuleType
    remote: Any  # ray_cell as a remote function, with each cell's resources
    opts: ExecOptions
    slots: int  # cells the cluster runs at once
    poll_s: float

    @property
    def window(self) -> int:
        return min(MAX_IN_FLIGHT, 2 * self.slots)  # keep the cluster busy without claiming the whole grid

    def submit(self, cells: list[Cell]) -> list[Any]:
        refs: list[Any] = []
        try:
            for cell in cells:
                refs.append(self.remote.remote(cell, self.opts))
        except BaseException:
            self.cancel(refs)  # the loop only learns of handles it got back
            raise
        return refs

    def poll(self, handles: list[Any]) -> list[State]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=self.poll_s)
        if ready:  # then take every result that is in, not one per wait
            ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=0)
        finished = set(ready)
        states: list[State] = []
        running = 0
        for ref in handles:
            if ref in finished:
                states.append(collect(self.ray, ref))
            elif running < self.slots:
                # Ray does not say which tasks run; it starts them in order, as many as fit at once
                running += 1
                states.append(Running())
            else:
                states.append(Queued())
        return states

    def cancel(self, handles: list[Any]) -> None:
        for ref in handles:
            try:
                # force: kill the worker. A KeyboardInterrupt raised inside it instead could land
                # in the middle of an import and leave that worker broken for the next cells.
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass


# ---------------------------------------------------------------- the launcher

@dataclass
class RayLauncher:
    options: LauncherOptions = field(default_factory=lambda: LauncherOptions(kind="ray"))
    poll_s: float = 0.5
    on_submit: SubmitObserver | None = None

    def __post_init__(self) -> None:
        # checks only: Ray itself is imported when the launcher runs
        check_cluster_options(self.options)
        g = self.options.gpus_per_cell
        if g > 1 and g != int(g):
            raise BenchError(f"--gpus-per-cell {g}: Ray takes a fraction up to 1 or a whole number of GPUs")

    # -- cluster
    def _connect(self, ray: ModuleType) -> bool:
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
            raise BenchError(f"--ray-address {address}: no Ray cluster there ({exception_line(exc)}); start one with "
                             "`ray start --head`, or omit --ray-address to start a local one") from None
        except Exception as exc:  # noqa: BLE001 - any start failure is one line for the user
            where = f"--ray-address {address}" if address else "starting a local Ray cluster"
            raise BenchError(f"{where}: {type(exc).__name__}: {exception_line(exc)}") from None
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
        fits: list[int] = []
        if cpus > 0:
            fits.append(int(have_cpu / cpus + 1e-9))
        if gpus > 0:
            fits.append(int(have_gpu / gpus + 1e-9))
        return max(1, min(fits) if fits else int(have_cpu) or 1)

    def _task_options(self) -> dict[str, Any]:
        return {
            "num_cpus": self.options.cpus_per_cell,
            "num_gpus": self.options.gpus_per_cell,
            "max_retries": 0,  # a dead worker's cell is resubmitted by the shared loop instead
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
            remote = ray.remote(ray_cell).options(**self._task_options())
            backend = RayBackend(ray, remote, absolute_options(opts), slots, self.poll_s)
            run_cells(cells, backend, hooks, self.options.max_retries, self.on_submit)
        finally:
            if connected_here:
                ray.shutdown()


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


def build(options: LauncherOptions, on_submit: SubmitObserver | None = None) -> RayLauncher:
    launcher = RayLauncher(options, on_submit=on_submit)  # checks the options without Ray
    import_extra("ray", "ray", "Ray")  # a missing extra is one line now, before any cell is claimed
    return launcher


SPEC = LauncherSpec("ray", (cluster.OPTIONS, OPTIONS), build, worker_device=cluster.worker_device)

__all__ = ["OPTIONS", "SPEC", "RayBackend", "RayLauncher", "collect", "ray_cell"]
