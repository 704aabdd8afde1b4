"""What a run prints while it trains and when it ends: columns that stay put, and a one-line summary."""

from __future__ import annotations

import io
import os
import re

from rich.console import Console

from bench.config.cells import Cell, expand_grid
from bench.run.progress import TITLE_WIDTH, GuardedDisplay, PlainDisplay, RichDisplay, _QuietOnClosedPipe
from bench.config.registry import parse_registry
from bench.run.runner import RunSummary
from bench.train.loop import TrainProgress
from tests.conftest import gauss_registry



def cells() -> tuple[Cell, Cell]:
    """A short title and one longer than the title column (a swept λ and batch size)."""
    reg = parse_registry(gauss_registry(
        s={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0], "train": {"epochs": 12}},
        w={"datasets": ["g"], "architectures": ["mlp"], "losses": [{"milLoss": {"lam": [0.5, 500]}}], "seeds": [7],
           "train": {"epochs": 12, "batch_size": [64, 1024]}}))
    short = expand_grid(reg, "s")[0]
    long = expand_grid(reg, "w")[-1]
    assert len(short.title) < TITLE_WIDTH < len(long.title)
    return short, long


class Meter:
    """A stand-in for the trainer's epoch meter: the running loss and accuracy."""

    def __init__(self, loss: float, acc: float):
        self.seen = 1
        self._value = (loss, acc)

    def running(self) -> tuple[float, float]:
        return self._value


def epoch(e: int, loss: float, acc: float, test: float, mi: float, secs: float) -> TrainProgress:
    row = {"train_loss": loss, "train_acc": acc, "test_acc": test, "test_mi": mi, "epoch_time": secs}
    return TrainProgress(epoch=e, epochs=12, step=10, steps=10, last_epoch=row)


def columns(line: str, words: tuple[str, ...]) -> list[int]:
    return [line.index(w) for w in words]


def test_plain_lines_keep_their_columns():
    short, long = cells()
    out = io.StringIO()
    d = PlainDisplay(out)
    d.start_grid(12, 0)
    for i, cell in enumerate((short, long) * 5):
        d.start_cell(cell)
        d.step(cell, epoch(1 + 2 * i % 12, 12.5 if i == 3 else 0.1234, 0.9, 0.85 + 0.01 * i, -0.0012 if i == 4 else 1.5,
                           123.4 if i == 5 else 0.5))
        d.finish_cell(cell, ("done", "diverged", "failed")[i % 3], "test_acc 0.8000")
    lines = out.getvalue().splitlines()
    starts = [ln for ln in lines if ln.endswith(" started")]
    epochs = [ln for ln in lines if ln.startswith("  epoch")]
    ends = [ln for ln in lines if "test_acc 0.8000" in ln]
    assert len(starts) == len(epochs) == len(ends) == 10
    short_rows = [ln for ln in starts + ends if short.title in ln]
    # the cell id and the status word start at the same columns for every title no longer than the title column...
    assert len({(ln.index(f"({short.cell_id}) "), re.search(r"\) (started|done|diverged|failed)", ln).start())
                for ln in short_rows}) == 1
    assert all(long.title in ln for ln in starts + ends if short.title not in ln)  # ...a longer one stays whole
    assert len({ln.index("test_acc 0.8000") for ln in ends if short.title in ln}) == 1
    # epoch rows: every field at the same column whatever the epoch's digits or the values' sizes and signs
    assert len({tuple(columns(ln, ("train_loss", "train_acc", "test_acc", "test_mi", " s)"))) for ln in epochs}) == 1
    assert "[ 1/12]" in lines[0] and "[10/12]" in lines[-1]  # the counter is padded to the total's width


def render_rows(d: RichDisplay) -> list[str]:
    console = Console(file=io.StringIO(), width=200, color_system=None, legacy_windows=False)
    console.print(d.progress.make_tasks_table(d.progress.tasks))
    return console.file.getvalue().splitlines()


def test_rich_bars_keep_their_columns():
    short, long = cells()
    d = RichDisplay(Console(file=io.StringIO(), width=200, color_system=None))
    d.start_grid(12, 3)
    d.start_cell(short)
    frames = [render_rows(d)]
    d.start_cell(long)
    frames.append(render_rows(d))
    d.step(short, TrainProgress(epoch=0, epochs=12, step=3, steps=118, seen=96, meter=Meter(2.3456, 0.1)))
    d.step(long, epoch(1, 12.345, 0.5, 0.45, 1.0, 1.0))
    frames.append(render_rows(d))
    d._last_read = 0.0  # the next mid-epoch read is due
    d.step(short, TrainProgress(epoch=9, epochs=12, step=117, steps=118, seen=96, meter=Meter(0.0123, 0.987)))
    d.step(long, epoch(11, 0.1, 0.99, 0.985, 2.0, 1.0))
    frames.append(render_rows(d))
    d.close()
    rows = [row for frame in frames for row in frame]
    assert any("…" in row for row in rows), "a title longer than the column is shortened"
    assert any("loss   2.3456 acc 0.1000 step       3/118" in row for row in rows)
    assert any("loss  12.3450 acc 0.5000 test 0.4500" in row for row in rows)
    # the count column ends, and the info column starts, at one position in every row of every frame
    counts = {m.end() for row in rows for m in [re.search(r"\d+/\d+(?= )", row[TITLE_WIDTH:])] if m}
    info = {row.index("loss") for row in rows if "loss" in row}
    assert len(counts) == 1 and len(info) == 1, rows
    grid_rows = [row for row in rows if row.startswith("grid")]
    assert len({row.index("(3 skipped)") for row in grid_rows}) == 1 and grid_rows[0].index("(3 skipped)") == min(info)


def test_summary_line_leaves_out_zero_counts():
    s = RunSummary(total=15, skipped_done=12, trained={"done": 2, "failed": 0, "diverged": 1})
    assert s.line("quick", 41.04) == "grid 'quick': 15 cells; trained 3 (2 done, 1 diverged); skipped 12 finished; 41.0 s"
    s = RunSummary(total=2, skipped_done=2)
    assert s.line("two", 0.3) == "grid 'two': 2 cells; trained 0; skipped 2 finished; 0.3 s"
    s = RunSummary(total=4, skipped_failed=1, done_elsewhere=1, trained={"done": 2, "failed": 0, "diverged": 0})
    assert s.line("g", 1.0) == ("grid 'g': 4 cells; trained 2 (2 done); skipped 1 failed/diverged (--retry-failed "
                                "retries them); 1 finished by another run; 1.0 s")
    assert not re.search(r"(?<![\d.])0 ", s.line("g", 1.0))


def closed_pipe():
    """The write end of a pipe whose reader is gone, as after ``| head``."""
    read, write = os.pipe()
    os.close(read)
    return os.fdopen(write, "w")


def is_devnull(fd: int) -> bool:
    st, null = os.fstat(fd), os.stat(os.devnull)
    return (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino)


def test_a_closed_pipe_silences_the_plain_display():
    short, _ = cells()
    with closed_pipe() as stream:
        d = PlainDisplay(stream)
        d.start_grid(1, 0)
        d.start_cell(short)  # the first line meets the closed pipe: the stream goes to os.devnull
        assert is_devnull(stream.fileno())
        d.step(short, epoch(1, 0.5, 0.8, 0.79, 0.3, 1.0))
        d.finish_cell(short, "done", "test_acc 0.79")


def test_a_closed_pipe_silences_the_rich_display_instead_of_exiting():
    short, _ = cells()
    with closed_pipe() as stream:
        d = RichDisplay(_QuietOnClosedPipe(file=stream, force_terminal=True, width=160))
        d.start_grid(1, 0)
        d.start_cell(short)
        d.finish_cell(short, "done", "test_acc 0.79")  # rich's own console raises SystemExit here
        d.close()
        assert d.console.quiet and is_devnull(stream.fileno())


class Broken:
    """A display whose step fails: the guard must keep the error from the training loop."""

    def __init__(self):
        self.calls: list[str] = []

    def start_grid(self, total, skipped):
        self.calls.append("start_grid")

    def start_cell(self, cell):
        self.calls.append("start_cell")

    def step(self, cell, p):
        self.calls.append("step")
        raise OSError("terminal gone")

    def finish_cell(self, cell, status, summary):
        self.calls.append("finish_cell")

    def close(self):
        self.calls.append("close")


def test_a_display_error_turns_the_display_off_with_one_warning():
    short, _ = cells()
    inner, warnings = Broken(), []
    d = GuardedDisplay(inner, warn=warnings.append)
    d.start_grid(1, 0)
    d.start_cell(short)
    for e in (1, 2):
        d.step(short, epoch(e, 0.5, 0.8, 0.79, 0.3, 1.0))
    d.finish_cell(short, "done", "test_acc 0.79")
    d.close()
    assert inner.calls == ["start_grid", "start_cell", "step", "close"]  # closed once, right after its error
    assert warnings == ["warning: the progress display stopped (OSError: terminal gone); training goes on without it"]
