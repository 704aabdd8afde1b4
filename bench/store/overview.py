"""Where a grid stands, for ``bench status``: counts per status word, problems with their messages,
stale cells, and notes about the store's other cells of the grid."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config.cells import set_flag
from bench.plan.data_fingerprint import CurrentData, data_stale_cells, data_stale_note
from bench.plan.planner import ReadPlan
from bench.plan.provenance import stale_cells
from bench.store.status import COUNTED, PROBLEMS, Status
from bench.store.results import Store


@dataclass
class GridStatus:
    grid: str
    total: int
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        shown = [*COUNTED, *([Status.STALE] if self.counts[Status.STALE] else [])]
        head = f"grid {self.grid!r}: {self.total} cells: " + ", ".join(f"{self.counts[s]} {s}" for s in shown)
        return [head, *self.problems, *(f"note: {n}" for n in self.notes)]


def other_settings_note(read: ReadPlan, statuses: dict[str, str]) -> str | None:
    """How many finished cells of the grid the store holds from runs with other settings, and how to show them."""
    mine = set(read.plan.cell_ids)
    other = {c for r in read.other_runs for c in r.get("cell_ids", []) if c not in mine}
    done = sum(statuses.get(c) == Status.DONE for c in other)
    if not done:
        return None
    last = next(r for r in reversed(read.other_runs) if set(r.get("cell_ids", [])) - mine)
    flags = [set_flag(k, v) for k, v in sorted(last.get("overrides", {}).items())]
    flags += [f"--filter {k}={','.join(map(str, v))}" for k, v in sorted(last.get("filters", {}).items())]
    show = f"bench report --grid {read.plan.grid}" + (" " + " ".join(flags) if flags else "")
    return f"the store also holds {done} finished cells of grid {read.plan.grid!r} from runs with other settings; show them with: {show}"


def grid_status(read: ReadPlan, store: Store, import_paths: tuple[str, ...] = (),
                current_data: CurrentData | None = None) -> GridStatus:
    """``current_data``: the fingerprint of each dataset as found now (None: the data side is not judged)."""
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
    counts = {s: 0 for s in (*COUNTED, Status.STALE)}
    problems = []
    for c in cells:
        status = current.get(c.cell_id)
        if status is None:
            counts[Status.RUNNING if c.cell_id in running else Status.PENDING] += 1
            continue
        if status == Status.DONE and c.cell_id in stale:
            counts[Status.STALE] += 1
            continue
        counts[status] = counts.get(status, 0) + 1
        if status in PROBLEMS:
            tb = store.traceback_path(c.cell_id)
            kept = f" (traceback: {tb})" if tb.is_file() else ""
            problems.append(f"  {status}: {c.cell_id} {c.title}: {messages.get(c.cell_id, '')}{kept}")
    notes = list(read.notes)
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
    return GridStatus(read.plan.grid, len(cells), counts, problems, notes)
