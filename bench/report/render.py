"""One entry point for every format, and the messages when there is nothing to report."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from bench.metrics.table import DEFAULT
from bench.report.collect import ReportData
from bench.report.content import count_line
from bench.report.csv import render_csv
from bench.report.latex import render_latex
from bench.report.markdown import render_markdown

FORMATS = ("markdown", "latex", "csv")

def render(data: ReportData, fmt: str, figures: list[str] | None = None) -> str:
    if fmt == "markdown":
        return render_markdown(data, figures)
    if fmt == "latex":
        return render_latex(data)
    return render_csv(data)


# ----------------------------------------------------------------------------- nothing to report
def run_command(grid: str, options: list[tuple[str, Any]], retry_failed: bool = False, force: bool = False) -> str:
    """The ``bench run`` command line that trains ``grid``'s cells; ``options``: (flag, value) pairs, None ones left out."""
    parts = ["bench", "run", "--grid", grid]
    for flag, value in options:
        if value is not None:
            parts += [flag, str(value)]
    if retry_failed:
        parts.append("--retry-failed")
    if force:
        parts.append("--force")
    return shlex.join(parts)


def nothing_finished(data: ReportData, results: Path | str, options: list[tuple[str, Any]]) -> str | None:
    """One line saying that no cell of the grid has finished, with the command that would train them; None otherwise."""
    if data.counts.get("done", 0):
        return None
    total = sum(data.counts.values())
    if not total:
        return f"grid {data.grid!r}: no cells to report"
    retry = not data.counts.get("pending", 0)  # every cell failed or diverged: a plain run would skip them all
    return (f"grid {data.grid!r}: no finished cell in {results} ({total} cell{'s' * (total != 1)}: {count_line(data.counts)}); "
            f"train them with: {run_command(data.grid, options, retry)}")


def metric_absent(data: ReportData, options: list[tuple[str, Any]]) -> str | None:
    """One line when finished cells exist but none of the main table's has the metric in its history (a store
    older than the metric), with the command that retrains them; None otherwise."""
    m = data.metric
    done = sum(e.n for e in data.entries.values())
    if m.key == DEFAULT.key or not done or any(e.value for e in data.entries.values()):
        return None
    cells = f"its {done} finished cell{'s' * (done != 1)}"
    # the stale check fingerprints only the loss and model code, so --rerun-stale would skip these cells
    return (f"--metric {m.key}: no finished cell of grid {data.grid!r} has the history column {m.column!r}: "
            f"{cells} (selection: {data.select.key}) predate{'s' * (done == 1)} it; --rerun-stale does not retrain "
            f"them (the code fingerprint covers only losses and models), so retrain them with: "
            f"{run_command(data.grid, options, force=True)}")
