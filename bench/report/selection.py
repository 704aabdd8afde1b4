"""Selection rules: which epoch of a cell, and which trial of a search, a reported number comes from.

Each rule has a key (``bench report --select KEY``) and a human name that every caption prints,
as in DomainBed's ``model_selection``:

* ``last``: the final epoch (the paper's protocol);
* ``val``: the epoch with the best validation accuracy (the earliest on ties), reporting that
  epoch's test accuracy;
* ``oracle``: the epoch with the best test accuracy: it selects on the test set, an upper bound
  and not a fair result, and its name says so;
* ``tuned``: for each (dataset, architecture, loss), the search trial with the best mean
  validation score over seeds, a cell's score being its validation accuracy at its ``val``
  epoch; it reports that trial's test accuracy at those epochs.

The non-tuned rules report a search grid's trial 0 (every loss at its registry defaults), so one
grid shows the untuned and the tuned numbers side by side. Everything here is a pure function of
cells, stored rows and history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.config.cells import Cell
from bench.errors import BenchError


@dataclass(frozen=True)
class Selection:
    """An epoch-selection rule inside one cell."""

    key: str
    name: str
    needs_validation: bool = False
    across_trials: bool = False

    def epoch(self, history: Sequence[Mapping[str, float]]) -> int:
        """0-based index of the selected epoch in ``history`` (non-empty, epoch order)."""
        raise NotImplementedError


class LastEpoch(Selection):
    def epoch(self, history: Sequence[Mapping[str, float]]) -> int:
        return len(history) - 1


def _argmax_earliest(values: Sequence[float]) -> int:
    """Index of the largest finite value, the earliest on ties (NaN never wins)."""
    best = None
    for i, v in enumerate(values):
        if math.isfinite(v) and (best is None or v > values[best]):
            best = i
    return len(values) - 1 if best is None else best


class ValidationEpoch(Selection):
    def epoch(self, history: Sequence[Mapping[str, float]]) -> int:
        return _argmax_earliest([float(h.get("val_acc", math.nan)) for h in history])


class OracleEpoch(Selection):
    def epoch(self, history: Sequence[Mapping[str, float]]) -> int:
        return _argmax_earliest([float(h["test_acc"]) for h in history])


class TunedTrial(ValidationEpoch):
    """Across the trials of a search: inside each cell the ``val`` epoch; the trial by its mean score."""


RULES: dict[str, Selection] = {
    "last": LastEpoch("last", "last epoch"),
    "val": ValidationEpoch("val", "best validation epoch", needs_validation=True),
    "oracle": OracleEpoch("oracle", "best test epoch (oracle: selects on the test set)"),
    "tuned": TunedTrial("tuned", "tuned, the search trial with the best mean validation accuracy over seeds, "
                                 "each cell at its best validation epoch", needs_validation=True, across_trials=True),
}


def has_validation(cells: Sequence[Cell]) -> bool:
    return bool(cells) and all(float(c.config["train"].get("val_fraction", 0.0)) > 0 for c in cells)


def has_search(cells: Sequence[Cell]) -> bool:
    return any(c.trial is not None for c in cells)


def applicable(cells: Sequence[Cell]) -> list[str]:
    """The rules a grid's cells support, in display order."""
    val = has_validation(cells)
    return [k for k, r in RULES.items()
            if (val or not r.needs_validation) and (has_search(cells) or not r.across_trials)]


def rule(key: str, grid: str, cells: Sequence[Cell]) -> Selection:
    """The rule named ``key`` for these cells; an unknown name or a rule the grid cannot honour is one line."""
    if key not in RULES:
        raise BenchError(f"--select {key!r}: expected one of {', '.join(RULES)}")
    r = RULES[key]
    if r.across_trials and not has_search(cells):  # the search first: without one a validation split alone is no help
        val = has_validation(cells)
        raise BenchError(f"--select {key}: grid {grid!r} has no search: block, so there are no trials to choose from; "
                         f"add one to the grid in the registry, e.g. search: {{trials: 8, seed: 0, space: "
                         f"{{train.lr: 'loguniform(1e-3, 1e-1)'}}}}"
                         f"{'' if val else ' with a validation split (train: {val_fraction: 0.1})'}, "
                         f"or use --select {'val' if val else 'last'}")
    if r.needs_validation and not has_validation(cells):
        raise BenchError(f"--select {key}: grid {grid!r} has no validation split (train.val_fraction is 0); "
                         f"give it one (train: {{val_fraction: 0.1}}) or use --select last or oracle")
    return r


@dataclass(frozen=True)
class TrialChoice:
    """The trial a ``tuned`` entry reports: its number, drawn values and mean validation score."""

    trial: int
    values: dict[str, Any]
    score: float
    n: int


@dataclass
class Selected:
    """What a rule reports: the cells shown, each done cell's selected test accuracy and epoch (1-based),
    and for ``tuned`` the trial chosen per (dataset, architecture, variant, loss). ``score``: each
    done cell's validation accuracy at its selected epoch (NaN without one), the score ``tuned``
    averages over seeds, for every cell given, shown or not."""

    rule: Selection
    cells: list[Cell]
    acc: dict[str, float] = field(default_factory=dict)
    epoch: dict[str, int] = field(default_factory=dict)
    trials: dict[tuple[str, str, str, str], TrialChoice] = field(default_factory=dict)
    score: dict[str, float] = field(default_factory=dict)


def histories(results: pd.DataFrame, history: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    """cell_id -> its done attempt's history rows in epoch order."""
    if results.empty or history.empty:
        return {}
    done = results[results["status"] == "done"]
    attempt_of = dict(zip(done["attempt_id"].tolist(), done["cell_id"].tolist()))
    out: dict[str, list[dict[str, float]]] = {}
    hist = history[history["attempt_id"].isin(set(attempt_of))].sort_values("epoch", kind="stable")
    for rec in hist.to_dict("records"):
        out.setdefault(attempt_of[rec["attempt_id"]], []).append(rec)
    return out


def select(r: Selection, cells: Sequence[Cell], hists: Mapping[str, list[dict[str, float]]]) -> Selected:
    """Apply rule ``r`` to ``cells`` given each done cell's history (cells without one stay unfinished)."""
    acc: dict[str, float] = {}
    epoch: dict[str, int] = {}
    score: dict[str, float] = {}
    for c in cells:
        h = hists.get(c.cell_id)
        if h:
            i = r.epoch(h)
            acc[c.cell_id], epoch[c.cell_id] = float(h[i]["test_acc"]), i + 1
            score[c.cell_id] = float(h[i].get("val_acc", math.nan))
    if not r.across_trials:
        shown = [c for c in cells if c.trial in (None, 0)]
        trials = {(c.dataset, c.architecture, c.variant, c.loss): TrialChoice(
            0, dict(c.config["search"]["values"]), math.nan, 0) for c in shown if c.trial == 0}
        return Selected(r, shown, acc, epoch, trials, score)
    by_entry: dict[tuple[str, str, str, str], dict[int, list[Cell]]] = {}
    for c in cells:
        by_entry.setdefault((c.dataset, c.architecture, c.variant, c.loss), {}).setdefault(c.trial or 0, []).append(c)
    shown, trials = [], {}
    for key, by_trial in by_entry.items():
        best: tuple[float, int] | None = None
        for t, members in sorted(by_trial.items()):
            scores = [score[c.cell_id] for c in members if math.isfinite(score.get(c.cell_id, math.nan))]
            if scores:
                mean = sum(scores) / len(scores)
                if best is None or mean > best[0]:  # strict: the lowest trial number wins ties
                    best = (mean, t)
        chosen = best[1] if best is not None else 0
        members = by_trial[chosen]
        shown += members
        trials[key] = TrialChoice(chosen, dict(members[0].config.get("search", {}).get("values", {})),
                                  best[0] if best is not None else math.nan,
                                  sum(1 for c in members if c.cell_id in score))
    return Selected(r, shown, acc, epoch, trials, score)
