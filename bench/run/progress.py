"""Progress display: rich bars on a terminal, plain lines otherwise.

The trainer calls ``Display.step`` at most every ``bench.train.loop.PROGRESS_INTERVAL_S`` during an
epoch and once after it; the rich display reads the device (the running loss and accuracy) at
most twice a second, the plain one only prints the finished epoch's row.

A display never fails a cell: :func:`make_display` wraps it in a :class:`GuardedDisplay`, whose first
error turns it off while the cells train on; a closed pipe (``bench run | head``) sends the rest of that
stream to os.devnull (:func:`write_line`), so neither a later line nor the flush at exit raises again.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column

from typing import TYPE_CHECKING

from bench.config.cells import Cell

if TYPE_CHECKING:  # annotations only: printing a line (every command's `say`) must not import torch
    from bench.train.loop import TrainProgress as StepProgress


# Fixed widths, so that no column moves as the cells, their titles and their numbers change: a title is
# padded (and, on a terminal, shortened in the middle) to TITLE_WIDTH, the running numbers to INFO_WIDTH.
TITLE_WIDTH = 44
INFO_WIDTH = 44  # "loss  12.3456 acc 0.9876 step 12345/12345"
COUNT_WIDTH = 11  # "12345/12345"


def fit(text: str, width: int = TITLE_WIDTH, shorten: bool = True) -> str:
    """``text`` padded to ``width``; longer ones cut in the middle (keeping the seed at the end) when ``shorten``."""
    if len(text) <= width or not shorten:
        return text.ljust(width)
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def running_info(loss: float, acc: float, step: int, steps: int) -> str:
    """Mid-epoch numbers; the loss and accuracy at the same positions as in :func:`epoch_info`."""
    return f"loss {loss:8.4f} acc {acc:6.4f} step {f'{step}/{steps}':>11}".ljust(INFO_WIDTH)


def epoch_info(loss: float, acc: float, test_acc: float) -> str:
    return f"loss {loss:8.4f} acc {acc:6.4f} test {test_acc:6.4f}".ljust(INFO_WIDTH)


def to_devnull(stream) -> None:
    """Send the rest of ``stream``'s output to os.devnull: Python's recipe for a closed pipe
    (the "Note on SIGPIPE" of the ``signal`` module's documentation). A stream with no file
    descriptor (a test's StringIO) has no pipe to close and is left as it is."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def write_line(text: str, stream=None) -> None:
    """Print one line and flush it; a closed pipe silences this and every later line of ``stream``."""
    stream = stream if stream is not None else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        to_devnull(stream)


class Display(Protocol):
    def start_grid(self, total: int, skipped: int) -> None: ...
    def start_cell(self, cell: Cell) -> None: ...
    def step(self, cell: Cell, p: StepProgress) -> None: ...
    def finish_cell(self, cell: Cell, status: str, summary: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """One line per epoch and per finished cell; for logs, pipes and CI.

    Fixed-width fields, so the lines of a log read as columns; titles are padded, never cut (a log keeps them whole).
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.total = 0
        self.done = 0

    def _print(self, text: str) -> None:
        write_line(text, self.stream)

    def _counter(self, i: int) -> str:
        return f"[{i:>{len(str(self.total))}}/{self.total}]"

    def start_grid(self, total: int, skipped: int) -> None:
        self.total = total

    def start_cell(self, cell: Cell) -> None:
        self._print(f"{self._counter(self.done + 1)} {fit(cell.title, shorten=False)} ({cell.cell_id}) started")

    def step(self, cell: Cell, p: StepProgress) -> None:
        if p.last_epoch is not None:
            e = p.last_epoch
            self._print(f"  epoch {p.epoch:>{len(str(p.epochs))}}/{p.epochs} train_loss {e['train_loss']:8.4f} "
                        f"train_acc {e['train_acc']:6.4f} test_acc {e['test_acc']:6.4f} test_mi {e['test_mi']:7.4f} "
                        f"({e['epoch_time']:7.2f} s)")

    def finish_cell(self, cell: Cell, status: str, summary: str) -> None:
        self.done += 1
        # the cell id on both lines, at the same column: a log is searched by it ("(<id>) started")
        self._print(f"{self._counter(self.done)} {fit(cell.title, shorten=False)} ({cell.cell_id}) {status:<8} {summary}")

    def close(self) -> None:
        pass


class _QuietOnClosedPipe(Console):
    """A rich console that falls silent when its pipe closes; rich's own answer exits the program."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        to_devnull(self.file)


class RichDisplay:
    """A bar for the grid (cells done / total, ETA) and one for the running cell."""

    def __init__(self, console: Console | None = None):
        self.console = console or _QuietOnClosedPipe()
        self.progress = Progress(
            # markup off: a title's "[batch_size=64]" is text, not a style tag
            TextColumn("{task.description}", markup=False, table_column=Column(width=TITLE_WIDTH, no_wrap=True)),
            BarColumn(),
            MofNCompleteColumn(table_column=Column(width=COUNT_WIDTH, justify="right", no_wrap=True)),
            TextColumn("{task.fields[info]}", markup=False, table_column=Column(width=INFO_WIDTH, no_wrap=True)),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, refresh_per_second=4,
        )
        self.grid_task = None
        self.cell_tasks: dict[str, int] = {}
        self._last_read = 0.0

    def start_grid(self, total: int, skipped: int) -> None:
        self.progress.start()
        self.grid_task = self.progress.add_task(fit("grid"), total=total, info=fit(f"({skipped} skipped)" if skipped else "",
                                                                              INFO_WIDTH))

    def start_cell(self, cell: Cell) -> None:
        self.cell_tasks[cell.cell_id] = self.progress.add_task(fit(cell.title), total=cell.config["train"]["epochs"],
                                                               info=fit("", INFO_WIDTH))

    def step(self, cell: Cell, p: StepProgress) -> None:
        task = self.cell_tasks.get(cell.cell_id)
        if task is None:
            return
        now = time.monotonic()
        if p.last_epoch is not None:
            e = p.last_epoch
            self.progress.update(task, completed=p.epoch, info=epoch_info(e["train_loss"], e["train_acc"], e["test_acc"]))
        elif now - self._last_read > 0.5 and p.meter is not None and p.seen:
            # at most two host reads a second, whatever the step rate (the trainer calls this
            # every PROGRESS_INTERVAL_S at most, and never reads the device itself mid-epoch)
            self._last_read = now
            running = p.running()
            if running is None:
                return
            loss, acc = running
            self.progress.update(task, completed=p.epoch + p.step / p.steps, info=running_info(loss, acc, p.step, p.steps))

    def finish_cell(self, cell: Cell, status: str, summary: str) -> None:
        task = self.cell_tasks.pop(cell.cell_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.console.print(f"{fit(cell.title, shorten=False)} {status:<8} {summary}", markup=False, highlight=False)
        if self.grid_task is not None:
            self.progress.advance(self.grid_task)

    def close(self) -> None:
        self.progress.stop()


class GuardedDisplay:
    """``inner``, whose errors never reach the training or the storing of a cell.

    The display runs inside the training loop (``step``) and between a cell's row and the next cell,
    so an error of its own (a terminal gone, a rendering bug) would otherwise fail the running cell or
    stop the run. The first one turns the display off, with one warning on stderr; the cells go on
    and the exit code still reflects only them.
    """

    def __init__(self, inner: Display, warn: Callable[[str], None] | None = None):
        self.inner = inner
        self.warn = warn if warn is not None else (lambda text: write_line(text, sys.stderr))
        self.off = False

    def _call(self, method: str, *args) -> None:
        if self.off:
            return
        try:
            getattr(self.inner, method)(*args)
        except Exception as exc:  # noqa: BLE001 - whatever a display raises, the cells go on without it
            self.off = True
            try:  # stderr may be the stream that failed
                self.warn(f"warning: the progress display stopped ({type(exc).__name__}: {exc}); "
                          "training goes on without it")
                if method != "close":
                    self.inner.close()  # a rich display's refresh thread and hidden cursor end with it
            except Exception:  # noqa: BLE001 - already off
                pass

    def start_grid(self, total: int, skipped: int) -> None:
        self._call("start_grid", total, skipped)

    def start_cell(self, cell: Cell) -> None:
        self._call("start_cell", cell)

    def step(self, cell: Cell, p: StepProgress) -> None:
        self._call("step", cell, p)

    def finish_cell(self, cell: Cell, status: str, summary: str) -> None:
        self._call("finish_cell", cell, status, summary)

    def close(self) -> None:
        self._call("close")


def make_display(plain: bool | None = None) -> Display:
    if plain is None:
        plain = not sys.stdout.isatty()
    return GuardedDisplay(PlainDisplay() if plain else RichDisplay())
