"""The driver of ``bench run``: plan where the cells train, choose the cells to train, claim them,
launch, store each outcome.

The steps, in the order ``bench run`` calls them: :func:`plan_cells` (every check, the data read
where cells train here), :func:`dry_run_lines` or :func:`prepare_launch` (the store made ready, the
launcher built, the run recorded), :func:`bench.plan.code_fingerprint.stale_finished`, then :func:`run_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bench.config.cells import Cell
from bench.config.registry import Registry
from bench.plan.planner import DataProbe, Plan, RunPlan, plan_run
from bench.run import launchers
from bench.run.launchers import Hooks, Launcher, LauncherOptions, launcher_spec
from bench.run.progress import Display
from bench.seams import Seams
from bench.store.results import Store, clean_temp_files
from bench.store.status import PROBLEMS, STORED, Status
from bench.train.cell import CellOutcome, ExecOptions
from bench.train.loop import TrainProgress


@dataclass(frozen=True)
class PlannedRun:
    """A checked plan and where it trains: ``device`` None when the cells train on a cluster's workers."""

    planned: RunPlan
    device: Any  # torch.device | None

    @property
    def cells(self) -> list[Cell]:
        return self.planned.plan.cells

    @property
    def plan(self) -> Plan:
        return self.planned.plan


def plan_cells(registry: Registry, grid: str, overrides: dict[str, Any], filters: dict[str, list[str]],
               launcher: LauncherOptions, device: str | None, data_root: Path | None,
               cache_dir: Path | None) -> PlannedRun:
    """Plan the run for the launcher chosen: where cells train here, this machine's device and its
    data (read through ``cache_dir``; None writes no cache) are checked; on a cluster the data lives
    on the workers, so none is read (no fallbacks) and the settings are checked for the workers' device."""
    from bench.train.device import pick_device

    spec = launcher_spec(launcher.kind)
    if spec.worker_device is not None:
        return PlannedRun(plan_run(registry, grid, overrides, filters, None, spec.worker_device(launcher)), None)
    dev = pick_device(device)
    return PlannedRun(plan_run(registry, grid, overrides, filters, DataProbe(data_root, cache_dir), dev.type), dev)


def dry_run_lines(run: PlannedRun, statuses: dict[str, str]) -> list[str]:
    """``--dry-run``: each cell with its stored status, then the count of cells and of finished ones."""
    cells = run.cells
    lines = [f"{c.cell_id}  {statuses.get(c.cell_id, Status.PENDING):9s} {c.title}" for c in cells]
    where = f" on {run.device}" if run.device is not None else ""
    done = sum(statuses.get(c.cell_id) == Status.DONE for c in cells)
    return [*lines, f"{len(cells)} cells{where}; {done} done"]


def prepare_launch(run: PlannedRun, store: Store, registry: Registry, launcher: LauncherOptions,
                   data_root: Path | None, download: bool, cache_dir: Path, seams: Seams) -> tuple[Launcher, ExecOptions]:
    """Make the store ready, build the launcher (its options checked, its engine imported) and record
    the run: from here on, ``bench status`` and ``bench report`` show this run's cells."""
    store.ensure_writable()
    clean_temp_files(store)
    opts = ExecOptions(device=str(run.device) if run.device is not None else "cpu",
                       data_root=str(data_root) if data_root else None, download=download,
                       cache_dir=str(cache_dir), checkpoint_dir=str(store.checkpoints_dir),
                       import_paths=registry.import_paths(), seams=seams)
    chosen = launchers.make_launcher(launcher)  # through the package: a program may wrap it
    store.record_run(run.plan.record())  # every check passed: this run's cells are what status/report show
    return chosen, opts


def stale_note(stale: set[str]) -> str:
    return (f"{len(stale)} finished cells ran an older version of their loss or model code (stale); "
            "they are kept as they are: retrain them with --rerun-stale")


@dataclass
class RunSummary:
    total: int = 0
    skipped_done: int = 0
    skipped_failed: int = 0
    skipped_stale: int = 0  # finished, but by other code or on other data, and not asked to be retrained
    trained: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STORED})
    done_elsewhere: int = 0
    failed_messages: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 while the grid holds failed or diverged cells, whether trained now or skipped (as stored)."""
        return 1 if (any(self.trained[s] for s in PROBLEMS) or self.skipped_failed) else 0

    def line(self, grid: str, wall_s: float) -> str:
        """The end-of-run summary, one line: ``grid 'g': 15 cells; trained 3 (2 done, 1 diverged); skipped 12 finished; 41.0 s``.

        Counts that are zero are left out; how many cells were trained is always said, even none.
        """
        t = self.trained
        n = sum(t.values())
        parts = [f"grid {grid!r}: {self.total} cell{'s' * (self.total != 1)}", f"trained {n}" + (f" ({_nonzero(t)})" if n else "")]
        skipped = _nonzero({"finished": self.skipped_done, "stale (--rerun-stale retrains them)": self.skipped_stale,
                            "failed/diverged (--retry-failed retries them)": self.skipped_failed})
        if skipped:
            parts.append(f"skipped {skipped}")
        if self.done_elsewhere:
            parts.append(f"{self.done_elsewhere} finished by another run")
        return "; ".join(parts + [f"{wall_s:.1f} s"])


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)


def select_cells(cells: list[Cell], statuses: dict[str, str], force: bool, retry_failed: bool,
                 summary: RunSummary, rerun: set[str] | None = None, stale: set[str] | None = None) -> list[Cell]:
    """Drop finished cells (unless forced or in ``rerun``: stale ones asked to be retrained) and failed
    ones (unless retried); count what was dropped, the ``stale`` finished cells apart."""
    todo = []
    rerun, stale = rerun or set(), stale or set()
    for cell in cells:
        status = statuses.get(cell.cell_id)
        if status == Status.DONE and not force and cell.cell_id not in rerun:
            if cell.cell_id in stale:
                summary.skipped_stale += 1
            else:
                summary.skipped_done += 1
        elif status in PROBLEMS and not (force or retry_failed):
            summary.skipped_failed += 1
        else:
            todo.append(cell)
    return todo


@dataclass
class Driver:
    store: Store
    display: Display
    force: bool = False
    initial: dict[str, str] = field(default_factory=dict)  # statuses when the cells were selected
    summary: RunSummary = field(default_factory=RunSummary)
    _locks: dict[str, FileLock] = field(default_factory=dict)
    busy: list[Cell] = field(default_factory=list)
    wait_for_busy: bool = False

    def claim(self, cell: Cell) -> bool:
        lock = self.store.cell_lock(cell.cell_id)
        try:
            if self.wait_for_busy:
                lock.acquire(timeout=-1)
            else:
                lock.acquire()
        except Timeout:
            self.busy.append(cell)  # another process is training it; look again at the end
            return False
        # another process may have trained it between our scan and the lock
        if self.store.statuses([cell.cell_id]).get(cell.cell_id) != self.initial.get(cell.cell_id):
            lock.release()
            self.summary.done_elsewhere += 1
            return False
        if self.force:
            self.store.remove_checkpoint(cell.cell_id)
        self._locks[cell.cell_id] = lock
        return True

    def start(self, cell: Cell) -> None:
        self.display.start_cell(cell)

    def progress(self, cell: Cell, p: TrainProgress) -> None:
        self.display.step(cell, p)

    def finish(self, cell: Cell, outcome: CellOutcome) -> None:
        if outcome.traceback:  # before the row, so a row that says "failed" always has its traceback
            self.store.write_traceback(cell.cell_id, outcome.traceback)
        self.store.write_result(outcome.row, outcome.history)
        if outcome.status == Status.DONE:
            self.store.remove_checkpoint(cell.cell_id)
        status = outcome.status
        self.summary.trained[status] = self.summary.trained.get(status, 0) + 1
        row = outcome.row
        if status == Status.DONE:
            text = f"test_acc {row['final_test_acc']:.4f} test_mi {row['final_test_mi']:.4f} in {row['wall_time']:.1f} s"
            if row.get("resumed_from_epoch"):
                text += f" (resumed from epoch {row['resumed_from_epoch']})"
        else:
            text = row["message"]
            self.summary.failed_messages.append(f"{cell.cell_id} {cell.title}: {text}")
        self.display.finish_cell(cell, status, text)

    def release(self, cell: Cell) -> None:
        lock = self._locks.pop(cell.cell_id, None)
        if lock is not None:
            lock.release()

    def hooks(self) -> Hooks:
        return Hooks(self.claim, self.start, self.progress, self.finish, self.release)


def remove_leftover_checkpoints(store: Store, finished: list[Cell]) -> None:
    """A run stopped between storing a cell and removing its checkpoint leaves the checkpoint: remove it.

    Only while holding the cell's lock, so a ``--force`` retraining in another process keeps its checkpoint.
    """
    if not store.checkpoints_dir.is_dir():
        return
    present = {p.name for p in store.checkpoints_dir.glob("*.pt")}  # one listing, not a stat per finished cell
    for cell in finished:
        if store.checkpoint_path(cell.cell_id).name not in present:
            continue
        lock = store.cell_lock(cell.cell_id)
        try:
            lock.acquire()
        except Timeout:
            continue
        try:
            store.remove_checkpoint(cell.cell_id)
        finally:
            lock.release()


def run_grid(cells: list[Cell], store: Store, launcher: Launcher, opts: ExecOptions, display: Display,
             force: bool = False, retry_failed: bool = False, rerun: set[str] | None = None,
             stale: set[str] | None = None) -> RunSummary:
    summary = RunSummary(total=len(cells))
    statuses = store.statuses()
    todo = select_cells(cells, statuses, force, retry_failed, summary, rerun, stale)
    if not force:
        remove_leftover_checkpoints(store, [c for c in cells if statuses.get(c.cell_id) == Status.DONE])
    driver = Driver(store, display, force=force, initial=statuses, summary=summary)
    display.start_grid(len(todo), summary.skipped_done + summary.skipped_stale + summary.skipped_failed)
    try:
        launcher.run(todo, opts, driver.hooks())
        if driver.busy:
            # cells another run was training: wait for it, then train what it left unfinished
            busy, driver.busy = driver.busy, []
            driver.wait_for_busy = True
            launcher.run(busy, opts, driver.hooks())
    finally:
        display.close()
        for cell_id in list(driver._locks):
            driver._locks.pop(cell_id).release()
    return summary

