"""Progress display: rich bars on a terminal, plain lines otherwise.

The trainer calls ``Display.step`` at most every ``bench.train.PROGRESS_INTERVAL_S`` during an
epoch and once after it; the rich display reads the device (the running loss and accuracy) at
most twice a second, the plain one only prints the finished epoch's row.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.cells import Cell
from bench.train import Progress as StepProgress


def cell_title(cell: Cell) -> str:
    variant = f" [{cell.variant}]" if cell.variant else ""
    return f"{cell.dataset}/{cell.architecture}/{cell.loss}{variant}/seed {cell.seed}"


class Display(Protocol):
    def start_grid(self, total: int, skipped: int) -> None: ...
    def start_cell(self, cell: Cell) -> None: ...
    def step(self, cell: Cell, p: StepProgress) -> None: ...
    def finish_cell(self, cell: Cell, status: str, summary: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """One line per epoch and per finished cell; for logs, pipes and CI."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.total = 0
        self.done = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start_grid(self, total: int, skipped: int) -> None:
        self.total = total

    def start_cell(self, cell: Cell) -> None:
        self._print(f"[{self.done + 1}/{self.total}] {cell_title(cell)} ({cell.cell_id}) started")

    def step(self, cell: Cell, p: StepProgress) -> None:
        if p.last_epoch is not None:
            e = p.last_epoch
            self._print(f"  epoch {p.epoch}/{p.epochs} train_loss {e['train_loss']:.4f} train_acc {e['train_acc']:.4f} "
                        f"test_acc {e['test_acc']:.4f} test_mi {e['test_mi']:.4f} ({e['epoch_time']:.2f} s)")

    def finish_cell(self, cell: Cell, status: str, summary: str) -> None:
        self.done += 1
        self._print(f"[{self.done}/{self.total}] {cell_title(cell)}: {status} {summary}")

    def close(self) -> None:
        pass


class RichDisplay:
    """A bar for the grid (cells done / total, ETA) and one for the running cell."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, refresh_per_second=4,
        )
        self.grid_task = None
        self.cell_tasks: dict[str, int] = {}
        self._last_read = 0.0

    def start_grid(self, total: int, skipped: int) -> None:
        self.progress.start()
        self.grid_task = self.progress.add_task("grid", total=total, info=f"({skipped} skipped)" if skipped else "")

    def start_cell(self, cell: Cell) -> None:
        self.cell_tasks[cell.cell_id] = self.progress.add_task(cell_title(cell), total=cell.config["train"]["epochs"], info="")

    def step(self, cell: Cell, p: StepProgress) -> None:
        task = self.cell_tasks.get(cell.cell_id)
        if task is None:
            return
        now = time.monotonic()
        if p.last_epoch is not None:
            e = p.last_epoch
            self.progress.update(task, completed=p.epoch,
                                 info=f"loss {e['train_loss']:.4f} acc {e['train_acc']:.3f} test {e['test_acc']:.3f}")
        elif now - self._last_read > 0.5 and p.meter is not None and p.seen:
            # at most two host reads a second, whatever the step rate (the trainer calls this
            # every PROGRESS_INTERVAL_S at most, and never reads the device itself mid-epoch)
            self._last_read = now
            running = p.running()
            if running is None:
                return
            loss, acc = running
            self.progress.update(task, completed=p.epoch + p.step / p.steps,
                                 info=f"step {p.step}/{p.steps} loss {loss:.4f} acc {acc:.3f}")

    def finish_cell(self, cell: Cell, status: str, summary: str) -> None:
        task = self.cell_tasks.pop(cell.cell_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.console.print(f"{cell_title(cell)}: {status} {summary}")
        if self.grid_task is not None:
            self.progress.advance(self.grid_task)

    def close(self) -> None:
        self.progress.stop()


def make_display(plain: bool | None = None) -> Display:
    if plain is None:
        plain = not sys.stdout.isatty()
    return PlainDisplay() if plain else RichDisplay()
