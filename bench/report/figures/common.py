"""What every figure family shares: the grid's finished cells, one colour per loss, grouping and number helpers."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.config.cells import Cell

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


@dataclass(frozen=True)
class FinishedCell:
    """A cell of the grid whose latest store row is ``done``, with that row."""

    cell: Cell
    row: dict[str, Any]

    @property
    def acc(self) -> float:
        return as_float(self.row.get("final_test_acc"))

    @property
    def mi(self) -> float:
        return as_float(self.row.get("final_test_mi"))


def done_cells(cells: Iterable[Cell], results: pd.DataFrame) -> list[FinishedCell]:
    """The cells whose latest row is ``done``, in grid order (each cell once)."""
    if results.empty or "status" not in results.columns:
        return []
    done = results[results["status"] == "done"]
    # one conversion, not a DataFrame.loc per cell (~100 us each); a later row of an id wins
    rows = dict(zip(done["cell_id"].tolist(), done.to_dict("records")))
    out: list[FinishedCell] = []
    for cell in cells:
        row = rows.pop(cell.cell_id, None)  # popped: a cell listed twice is drawn once
        if row is not None:
            out.append(FinishedCell(cell, row))
    return out


def loss_colours(cells: Iterable[Cell]) -> dict[str, str]:
    """One colour per loss label, by first appearance in the grid, so it is the same in every figure."""
    out: dict[str, str] = {}
    for cell in cells:
        if cell.loss not in out:
            out[cell.loss] = PALETTE[len(out) % len(PALETTE)]
    return out


def group_by(items: Iterable[FinishedCell], key) -> dict[Hashable, list[FinishedCell]]:
    """``items`` by ``key(item)``, keys and members in first-appearance order."""
    out: dict[Hashable, list[FinishedCell]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def by_setting(done: list[FinishedCell]) -> dict[Hashable, list[FinishedCell]]:
    """``done`` by (dataset, architecture, variant): the rows of a report, one figure each."""
    return group_by(done, lambda d: (d.cell.dataset, d.cell.architecture, d.cell.variant))


def where(ds: str, arch: str, variant: str) -> str:
    return f"{ds} / {arch}" + (f" ({variant})" if variant else "")


def title(grid: str, text: str) -> str:
    return f"{grid}: {text}" if grid else text


def as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def number(value: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    x = as_float(value)
    return x if math.isfinite(x) else None


def mode(values: list[int]) -> int | None:
    if not values:
        return None
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)])


def seed_std(values: np.ndarray) -> float:
    """Sample std over seeds; 0 (no bar) for one seed."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0
