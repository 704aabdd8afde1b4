"""Every trial's scores, task by task: what the leaderboard and the tuning-budget curves stand on.

A *task* is a (dataset, architecture, data regime) of a suite, named after the suite's regime
(``fashion-mnist/sym-40``); in a plain search grid, a (dataset, architecture, variant). Each cell of a
search contributes one row: its task, loss, trial and seed, its status, and two numbers read from its
history at its best-validation epoch (the epoch the ``val`` and ``tuned`` rules of
:mod:`bench.report.selection` pick, the earliest on ties):

* ``val``: the validation accuracy there, the search's fixed objective (trials are chosen on it
  whatever the metric shown);
* ``test``: the shown metric's test value there (accuracy, NLL, ECE, ...).

``score`` is ``test`` signed so that higher is better (a lower-is-better metric negated), the one
convention every statistic downstream assumes. Nothing here selects or averages: that is
:mod:`bench.leaderboard.budget` (trials) and :mod:`bench.leaderboard.aggregate` (across tasks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.config.cells import Cell
from bench.errors import BenchError
from bench.metrics.table import Metric
from bench.report.selection import RULE_COLUMNS, RULES, load_histories, stored_picks

if TYPE_CHECKING:
    from bench.config.registry import Registry

VALIDATION = "val_acc"  # the search's objective: the tuned rule chooses on it, whatever the metric


@dataclass(frozen=True)
class TrialScores:
    """One row per cell of the search (module docstring), with the facts the tables state."""

    frame: pd.DataFrame  # task, loss, trial, seed, cell_id, status, val, test, score, values (the drawn settings)
    tasks: list[str]  # in the suite's order
    losses: list[str]  # in the registry's order, the added ones last
    seeds: list[int]
    trials: int
    metric: Metric


def task_names(registry: Registry, grid: str, cells: Sequence[Cell]) -> dict[str, str]:
    """cell_id -> its task's name: ``dataset/regime`` in a suite (``dataset/architecture/regime`` when it has
    several architectures), ``dataset/architecture`` (plus `` [variant]``) in a grid."""
    from bench.data.regimes import RegimeConfig

    suite = registry.suites.get(grid)
    if suite is None:
        return {c.cell_id: f"{c.dataset}/{c.architecture}" + (f" [{c.variant}]" if c.variant else "") for c in cells}
    regimes = [(name, RegimeConfig(**block)) for name, block in suite.regimes.items()]
    several = len(suite.architectures) > 1
    by_variant: dict[str, str] = {}  # a suite's variant label names its regime: one comparison per label
    out = {}
    for c in cells:
        if c.variant not in by_variant:
            by_variant[c.variant] = next((name for name, r in regimes if r == c.regime), c.variant or "default")
        out[c.cell_id] = "/".join([c.dataset, *([c.architecture] if several else []), by_variant[c.variant]])
    return out


def trial_scores(registry: Registry, grid: str, cells: Sequence[Cell], results: pd.DataFrame, store: Any,
                 metric: Metric) -> TrialScores:
    """The scores of every cell of ``grid``'s search (``cells``, as the planner expands them) from ``store``.

    ``results``: the store's rows (at least ``cell_id``, ``attempt_id``, ``status``, and the rules' picks where
    the rows hold them); a cell with no row is ``pending``. A row that stores its picks gives accuracy without
    its history; for the others (older rows, another metric) the histories' validation column and the metric's
    test column are read, nothing more.
    """
    if not any(c.trial is not None for c in cells):
        raise BenchError(f"grid {grid!r} has no search: block, so there are no trials to compare on equal budgets; "
                         "run a suite (bench run --suite NAME) or give the grid a search: block")
    if not all(float(c.config["train"].get("val_fraction", 0.0)) > 0 for c in cells):
        raise BenchError(f"grid {grid!r} has no validation split to choose trials on; give it train: {{val_fraction: 0.1}}")
    names = task_names(registry, grid, cells)
    rows = results
    if not rows.empty:
        wanted = set(names)
        rows = rows[[c in wanted for c in rows["cell_id"].tolist()]].drop_duplicates("cell_id", keep="last")
    status = dict(zip(rows["cell_id"].tolist(), rows["status"].tolist())) if not rows.empty else {}
    val: dict[str, float] = {}
    test: dict[str, float] = {}
    by = RULES["val"].by
    if metric.column in RULE_COLUMNS and not rows.empty:
        # rows written with the rules' picks hold what is needed: no history is read for them
        picks, rows = stored_picks(rows)
        val.update(zip(picks.cell_ids, picks.values[by][VALIDATION].tolist()))
        test.update(zip(picks.cell_ids, picks.values[by][metric.column].tolist()))
    hists = load_histories(store, rows, [VALIDATION, metric.column]) if not rows.empty else None
    if hists is not None and len(hists):
        picked = RULES["val"].pick(hists)
        val = dict(zip(hists.cell_ids, hists.column(VALIDATION)[picked].tolist()))
        test = dict(zip(hists.cell_ids, hists.column(metric.column)[picked].tolist()))
    sign = -1.0 if metric.lower_is_better else 1.0
    ids = [c.cell_id for c in cells]
    tests = np.array([test.get(i, math.nan) for i in ids], dtype=float)
    frame = pd.DataFrame({
        "task": [names[i] for i in ids], "loss": [c.loss for c in cells], "trial": [int(c.trial or 0) for c in cells],
        "seed": [c.seed for c in cells], "cell_id": ids, "status": [status.get(i, "pending") for i in ids],
        "val": np.array([val.get(i, math.nan) for i in ids], dtype=float), "test": tests, "score": sign * tests,
        # the drawn settings, shared by a trial's seeds (read, never changed)
        "values": [c.config.get("search", {}).get("values", {}) for c in cells]})
    # a finished cell without the metric (a store older than it) is no score: never a zero
    done = frame["status"].eq("done") & np.isfinite(frame["val"]) & np.isfinite(frame["test"])
    frame.loc[~done & frame["status"].eq("done"), "status"] = "no value"
    return TrialScores(frame, list(dict.fromkeys(names[c.cell_id] for c in cells)),
                       list(dict.fromkeys(c.loss for c in cells)), sorted({c.seed for c in cells}),
                       max(int(c.trial or 0) for c in cells) + 1, metric)
