"""Where a grid stands, for ``bench status``: counts per status word, problems with their messages,
interrupted and stale cells, and notes about the store's other cells of the grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.config.cells import set_flag
from bench.plan.data_fingerprint import CurrentData, data_stale_cells, data_stale_note
from bench.plan.planner import ReadPlan
from bench.plan.code_fingerprint import stale_cells
from bench.store.status import COUNTED, PROBLEMS, Status
from bench.store.results import Store


@dataclass
class GridStatus:
    grid: str
    total: int
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scope: str = ""  # which of the grid's cells these are, when not all of them (" of its last run (...)")

    def lines(self) -> list[str]:
        shown = [*COUNTED, *(s for s in (Status.INTERRUPTED, Status.STALE) if self.counts[s])]
        head = f"grid {self.grid!r}: {self.total} cells{self.scope}: " + ", ".join(f"{self.counts[s]} {s}" for s in shown)
        return [head, *self.problems, *(f"note: {n}" for n in self.notes)]

    @property
    def exit_code(self) -> int:
        """1 while the cells hold failed or diverged ones (as ``bench run``), else 0."""
        return 1 if any(self.counts[s] for s in PROBLEMS) else 0


def checkpointed_epoch(path: Path) -> int | None:
    """The epoch after which a cell's checkpoint was written; None when it cannot be read.

    Memory-mapped, so the weights are not read; torch is imported only when a checkpoint is there.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["epoch"])
    except Exception:  # noqa: BLE001 - any unreadable file: the next run trains the cell from the start
        return None


def interrupted_line(cell, path: Path) -> str:
    epoch = checkpointed_epoch(path)
    where = (f"checkpointed at epoch {epoch} of {cell.config['train']['epochs']}" if epoch is not None
             else "its checkpoint cannot be read, so the next run trains it from the start")
    return f"  {Status.INTERRUPTED}: {cell.cell_id} {cell.title}: {where}"


def other_run_cells(read: ReadPlan) -> set[str]:
    """The cells of the grid's runs with other settings that these settings do not hold."""
    if not read.other_runs:
        return set()
    mine = set(read.plan.cell_ids)
    return {c for r in read.other_runs for c in r.get("cell_ids", []) if c not in mine}


def other_settings_note(read: ReadPlan, statuses: dict[str, str]) -> str | None:
    """How many finished cells of the grid the store holds from runs with other settings, and how to show them
    (``statuses``: those of :func:`other_run_cells` at least)."""
    other = other_run_cells(read)
    done = sum(statuses.get(c) == Status.DONE for c in other)
    if not done:
        return None
    mine = set(read.plan.cell_ids)
    last = next(r for r in reversed(read.other_runs) if set(r.get("cell_ids", [])) - mine)
    flags = [set_flag(k, v) for k, v in sorted(last.get("overrides", {}).items())]
    flags += [f"--filter {k}={','.join(map(str, v))}" for k, v in sorted(last.get("filters", {}).items())]
    show = f"bench report --grid {read.plan.grid}" + (" " + " ".join(flags) if flags else "")
    return f"the store also holds {done} finished cells of grid {read.plan.grid!r} from runs with other settings; show them with: {show}"


def grid_status(read: ReadPlan, store: Store, import_paths: tuple[str, ...] = (),
                current_data: CurrentData | None = None, scope: str = "") -> GridStatus:
    """``current_data``: the fingerprint of each dataset as found now (None: the data side is not judged);
    ``scope``: which cells these are, for the first line (the last run's, or the whole grid)."""
    cells = read.plan.cells
    current = store.statuses()  # a cell whose stored history was lost counts as not run
    wanted = {c.cell_id for c in cells}
    columns = ["cell_id", "status", "message", "code_fingerprint", "data_fingerprint"]
    df = store.cells(columns)
    df = df[[c in wanted for c in df["cell_id"].tolist()]] if not df.empty else df
    messages = dict(zip(df["cell_id"].tolist(), df["message"].tolist())) if "message" in df else {}
    prints = dict(zip(df["cell_id"].tolist(), df["code_fingerprint"].tolist())) if "code_fingerprint" in df else {}
    done = [c for c in cells if current.get(c.cell_id) == Status.DONE]
    code_stale = set(stale_cells(done, {k: v for k, v in prints.items() if isinstance(v, str)}, import_paths))
    data_prints = dict(zip(df["cell_id"].tolist(), df["data_fingerprint"].tolist())) if "data_fingerprint" in df else {}
    data_stale = set(data_stale_cells(done, {k: v for k, v in data_prints.items() if isinstance(v, str)},
                                      current_data)) if current_data is not None else set()
    stale = code_stale | data_stale
    running = store.running(c.cell_id for c in cells if c.cell_id not in current)
    checkpoints = store.checkpointed(c.cell_id for c in cells if c.cell_id not in current)
    counts = {s: 0 for s in (*COUNTED, Status.INTERRUPTED, Status.STALE)}
    problems, interrupted = [], []
    for c in cells:
        status = current.get(c.cell_id)
        if status is None and c.cell_id in running:
            counts[Status.RUNNING] += 1
            continue
        if status is None and c.cell_id in checkpoints:
            counts[Status.INTERRUPTED] += 1
            interrupted.append(interrupted_line(c, checkpoints[c.cell_id]))
            continue
        if status is None:
            counts[Status.PENDING] += 1
            continue
        if status == Status.DONE and c.cell_id in stale:
            counts[Status.STALE] += 1
            continue
        counts[status] = counts.get(status, 0) + 1
        if status in PROBLEMS:
            tb = store.kept_traceback(c.cell_id)
            kept = f" (traceback: {tb})" if tb is not None else ""
            problems.append(f"  {status}: {c.cell_id} {c.title}: {messages.get(c.cell_id, '')}{kept}")
    notes = list(read.notes)
    if interrupted:
        flags = read.plan.settings_flags()
        notes.append(f"resume the interrupted cells from their checkpoints with: bench run --grid {read.plan.grid}"
                     + (f" {flags}" if flags else ""))
    if code_stale:
        notes.append(f"{len(code_stale)} finished cells ran an older version of their loss or model code (stale); "
                     f"retrain them with: bench run --grid {read.plan.grid} --rerun-stale")
    if data_stale:
        notes.append(data_stale_note([c for c in done if c.cell_id in data_stale], read.plan.grid, command=True))
    if any(counts[s] for s in PROBLEMS):
        notes.append(f"retry the failed and diverged cells with: bench run --grid {read.plan.grid} --retry-failed")
    other = other_settings_note(read, current)
    if other:
        notes.append(other)
    return GridStatus(read.plan.grid, len(cells), counts, [*problems, *interrupted], notes, scope)


# the rows' columns :func:`provenance` reads
PROVENANCE_COLUMNS = ["cell_id", "status", "finished_at_ns", "device", "torch_num_threads", "torch_version", "code_version"]


def provenance(read: ReadPlan, results: Any, store: Any, rendered: str = "rendered with",
               flag: str = "--grid") -> dict[str, str]:
    """What a page or leaderboard of ``read``'s cells stands on: the command of the grid's last run, when it was
    planned and its cells finished, the devices they ran on, the code versions they ran and that rendered it
    (under the label ``rendered``); ``flag``: how the command names it (``--grid`` or ``--suite``). ``results``:
    the store's rows (``PROVENANCE_COLUMNS`` at least). The host name is stored with each cell but left out:
    what this feeds may be published."""
    from bench.plan.code_fingerprint import code_version

    plan = read.plan
    flags = plan.settings_flags()
    out = {"command": f"bench run {flag} {plan.grid}" + (f" {flags}" if flags else "")}
    runs = store.runs(plan.grid)
    if runs and runs[-1].get("created_ns"):
        out["run planned"] = _utc(runs[-1]["created_ns"])
    mine = results[results["cell_id"].isin(plan.cell_ids)] if len(results) else results
    done = mine[mine["status"] == "done"] if len(mine) else mine
    if len(done) and "finished_at_ns" in done:
        stamps = [int(t) for t in done["finished_at_ns"].tolist() if isinstance(t, (int, float)) and t == t]
        if stamps:
            first, last = _utc(min(stamps)), _utc(max(stamps))
            out["cells finished"] = first if first == last else f"{first} to {last}"
    if len(done):
        out["machine"] = _machines(done)
        if "code_version" in done:
            versions = sorted({v for v in done["code_version"].tolist() if isinstance(v, str) and v})
            if versions:
                out["trained with"] = "; ".join(versions)
    out[rendered] = code_version()
    return {k: v for k, v in out.items() if v}


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _machines(done: Any) -> str:
    """The devices the finished cells ran on, with their torch thread counts and versions, and how many cells each."""
    cols = [c for c in ("device", "torch_num_threads", "torch_version") if c in done]
    if not cols:
        return ""
    counts: dict[str, int] = {}
    for values in zip(*(done[c].tolist() for c in cols)):
        what = dict(zip(cols, values))
        parts = [str(what.get("device") or "unknown device")]
        threads = what.get("torch_num_threads")
        if isinstance(threads, (int, float)) and threads == threads and threads > 0:
            parts.append(f"{int(threads)} torch thread{'s' * (int(threads) != 1)}")
        if what.get("torch_version"):
            parts.append(f"torch {what['torch_version']}")
        key = ", ".join(parts)
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{k} ({n} cell{'s' * (n != 1)})" for k, n in sorted(counts.items()))
