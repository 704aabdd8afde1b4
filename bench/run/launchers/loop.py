"""The driver-side loop the cluster launchers share: claim, submit, poll, store, retry, cancel.

An engine (Ray, SLURM) provides a :class:`Backend`: how to submit cells, poll their handles and
cancel them. :func:`run_cells` does the rest in the driver process: it claims cells lazily (only as
many as ``backend.window`` keeps in flight, so a big grid is not locked up front), hands each result
to the driver's hooks, resubmits a cell whose worker died up to ``max_retries`` times (the new try
resumes from the cell's checkpoint), and on Ctrl-C or any error cancels what is still out and
releases every claim.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from bench.run.launchers.base import Hooks, SubmitObserver

if TYPE_CHECKING:
    from bench.config.cells import Cell
    from bench.train.cell import CellOutcome


@dataclass(frozen=True)
class Queued:
    """Submitted, not started yet."""


@dataclass(frozen=True)
class Running:
    """Started on a worker (shown as running; nothing to collect yet)."""


@dataclass(frozen=True)
class Done:
    """The worker sent the cell's rows back (whatever the cell's status)."""

    outcome: CellOutcome


@dataclass(frozen=True)
class Failed:
    """The engine ran the cell's task but it raised outside ``run_cell``: stored as failed, not retried."""

    message: str


@dataclass(frozen=True)
class Died:
    """The worker ended without a result (killed, crashed, preempted): the cell may be tried again.

    ``why`` names what died in the engine's words, ``detail`` what the engine said about it.
    """

    why: str
    detail: str


State = Queued | Running | Done | Failed | Died

H = TypeVar("H")


class Backend(Protocol[H]):
    """How one engine runs cells; ``H`` is its handle for one submitted cell."""

    @property
    def window(self) -> int:
        """How many cells to keep submitted at once."""
        ...

    def submit(self, cells: list[Cell]) -> list[H]:
        """Start the cells (a batch, so SLURM can submit one array); one handle per cell, in order."""
        ...

    def poll(self, handles: list[H]) -> list[State]:
        """Each handle's state, in order; when none has finished, only after a pause (the loop's pace).

        Raises what must end the whole run (e.g. a checkpoint that could not be written).
        """
        ...

    def cancel(self, handles: list[H]) -> None:
        """Stop these cells' jobs, best effort (the run is ending)."""
        ...


def death_message(death: Died, tries: int) -> str:
    """The failed row's message for a cell whose worker died on every try."""
    return (f"{death.why} {tries} time(s) ({death.detail}); rerun with --retry-failed (it resumes from its "
            "checkpoint where the checkpoint folder is shared)")


def run_cells(cells: list[Cell], backend: Backend[H], hooks: Hooks, max_retries: int,
              on_submit: SubmitObserver | None = None) -> None:
    """Run ``cells`` through ``backend``, handing each outcome to ``hooks`` in this process."""
    pending = deque(cells)
    retry: deque[Cell] = deque()  # claimed cells whose worker died, to submit again first
    in_flight: list[tuple[H, Cell]] = []  # in submission order: backends may show the oldest as running
    claimed: dict[str, Cell] = {}  # every cell this loop holds the claim of and has not finished
    tries: dict[str, int] = {}
    shown: set[str] = set()
    try:
        while pending or retry or in_flight:
            batch: list[Cell] = []
            while retry and len(in_flight) + len(batch) < backend.window:
                batch.append(retry.popleft())
            while pending and len(in_flight) + len(batch) < backend.window:
                cell = pending.popleft()
                if hooks.claim(cell):
                    claimed[cell.cell_id] = cell
                    batch.append(cell)
            if batch:
                in_flight.extend(zip(backend.submit(batch), batch))
                for cell in batch:
                    tries[cell.cell_id] = tries.get(cell.cell_id, 0) + 1
                    if on_submit is not None:
                        on_submit(cell, tries[cell.cell_id])
            if not in_flight:
                break
            states = backend.poll([handle for handle, _ in in_flight])
            still: list[tuple[H, Cell]] = []
            over: list[tuple[Cell, State]] = []
            for (handle, cell), state in zip(in_flight, states):
                if not isinstance(state, Queued) and cell.cell_id not in shown:
                    shown.add(cell.cell_id)
                    hooks.start(cell)
                if isinstance(state, (Queued, Running)):
                    still.append((handle, cell))
                elif isinstance(state, Died) and tries[cell.cell_id] <= max_retries:
                    retry.append(cell)  # stays shown as running: it is still this run's to finish
                else:
                    over.append((cell, state))
            # before the hooks run: should one raise, only what is still out gets cancelled
            in_flight = still
            for cell, state in over:
                del claimed[cell.cell_id]
                try:
                    hooks.finish(cell, _outcome(cell, state, tries[cell.cell_id]))
                finally:
                    hooks.release(cell)
    except BaseException:
        # Ctrl-C / SIGTERM / a store error: stop what is queued or running and free the claims.
        # Finished cells are already stored; the others resume from their checkpoints next time.
        try:
            backend.cancel([handle for handle, _ in in_flight])
        finally:
            for cell in claimed.values():
                hooks.release(cell)
        raise


def _outcome(cell: Cell, state: State, tries: int) -> CellOutcome:
    from bench.train.cell import failed_outcome

    if isinstance(state, Done):
        return state.outcome
    if isinstance(state, Failed):
        return failed_outcome(cell, state.message)
    if isinstance(state, Died):
        return failed_outcome(cell, death_message(state, tries))
    raise TypeError(f"no outcome in state {state!r}")


__all__ = ["Backend", "Died", "Done", "Failed", "Queued", "Running", "State", "death_message",
           "run_cells"]
