"""What a report stands on: the grid's cells looked up in the store, per rule and metric, with the regime
facts and exact truths each table states.

The report is driven by the grid as the registry defines it now: its cells are expanded and
looked up in the store by identity, so a missing or failed cell shows as missing and a cell the
grid no longer contains never leaks in.

The main table, the paired differences and the side-by-side rules table show one metric
(:mod:`bench.metrics.table`, test accuracy by default), read from each cell's history at the
epoch its selection rule picks; the Î table always reads accuracy, the error its bounds are about.
A finished cell whose history lacks the metric (trained before it was recorded) is marked, never
counted as zero. The default (accuracy) report's text and CSV columns are those it had before the
metric was a choice; another metric's CSV adds a ``metric`` column and names its value columns
after it (``ece_mean``, ``ece_std``), so a column never means two things across files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.config.cells import Cell
from bench.metrics.table import DEFAULT, METRICS, Metric
from bench.metrics.table import metric as find_metric
from bench.report.selection import (
    PICK_COLUMNS,
    RULE_COLUMNS,
    RULES,
    Histories,
    Picks,
    Selected,
    Selection,
    TrialChoice,
    applicable,
    histories,
    load_histories,
    rule,
    rule_picks,
    select_all,
)

if TYPE_CHECKING:
    from bench.store.results import Store


@dataclass
class Entry:
    """One (row, loss) of the table: per-seed values of the finished cells, and which seeds went wrong.
    ``value``: the shown metric's, of the finished seeds that have it (for accuracy the same as ``acc``)."""

    acc: dict[int, float] = field(default_factory=dict)
    value: dict[int, float] = field(default_factory=dict)
    mi: dict[int, float] = field(default_factory=dict)
    h_y: dict[int, float] = field(default_factory=dict)
    num_classes: int = 0
    expected: int = 0
    diverged: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    stale: set[int] = field(default_factory=set)  # finished seeds that ran older loss/model code or other data

    @property
    def n(self) -> int:
        return len(self.acc)

    @property
    def collapsed(self) -> bool:
        """A collapsed model: its mean test accuracy within a tenth of the way from chance (1/K) to perfect, as a
        constant or near-constant prediction gives. Its calibration numbers can look excellent and mean little."""
        if not self.acc or self.num_classes < 2:
            return False
        chance = 1.0 / self.num_classes
        return sum(self.acc.values()) / len(self.acc) < chance + (1.0 - chance) / 10

    @property
    def lacking(self) -> int:
        """Finished seeds whose history has no value of the shown metric."""
        return self.n - len(self.value)

    @property
    def status(self) -> str:
        """done (every seed), partial, diverged / failed (no seed finished, some went wrong), pending."""
        if self.n:
            return "done" if self.n == self.expected else "partial"
        if self.diverged:
            return "diverged"
        return "failed" if self.failed else "pending"


@dataclass
class ReportData:
    grid: str
    rows: list[tuple[str, str, str]]  # (dataset, architecture, variant)
    losses: list[str]
    entries: dict[tuple[tuple[str, str, str], str], Entry]
    baseline: str | None
    counts: dict[str, int]
    truths: dict[str, dict[str, float]] = field(default_factory=dict)  # dataset -> exact MI, Bayes error
    # rows whose finished cells ran under different provenance: row -> {"precision_used": {"bf16": 3, ...}}
    mixed: dict[tuple[str, str, str], dict[str, dict[str, int]]] = field(default_factory=dict)
    select: Selection = RULES["last"]  # the rule the accuracies were selected by (bench.report.selection)
    trials: dict[tuple[str, str, str, str], TrialChoice] = field(default_factory=dict)  # tuned: the chosen trial
    others: list[ReportData] = field(default_factory=list)  # the other applicable rules, for the side-by-side table
    metric: Metric = DEFAULT  # what the main table, the differences and the rules table show
    # rows trained under a data regime: row -> (its regime, realised training noise rates, training sizes of done cells)
    regimes: dict[tuple[str, str, str], tuple[Any, list[float], list[int]]] = field(default_factory=dict)
    # the --set overrides that differ from the grid's definition, with its value: "train.epochs=6 (the grid's 77)"
    overrides: list[str] = field(default_factory=list)
    # tuned: (dataset, architecture, variant, loss) -> (trials with every seed finished, trials the search has)
    search: dict[tuple[str, str, str, str], tuple[int, int]] = field(default_factory=dict)
    accept_incomplete: bool = False  # show the verdicts of an incomplete search anyway (said in the note)

    @property
    def incomplete_search(self) -> bool:
        return any(done < total for done, total in self.search.values())

    @property
    def seed_counts(self) -> list[int]:
        """The numbers of seeds the grid asks per entry (one value unless a filter cut some)."""
        return sorted({e.expected for e in self.entries.values() if e.expected})


REPORT_COLUMNS = ["cell_id", "attempt_id", "status", "final_test_acc", "final_test_mi", "test_label_entropy", "num_classes",
                  "precision_used", "device", "label_noise_rate", "train_size", "code_fingerprint", *PICK_COLUMNS]
# what a cell's declared settings resolved to where it ran: a row mixing them is footnoted
PROVENANCE_COLUMNS = ("precision_used", "device")
_VALUE_COLUMNS = ["final_test_acc", "final_test_mi", "test_label_entropy", "num_classes"]


class StoredFacts:
    """The store's cell rows, read once per report (every rule's table reads them) and looked up per shown cell
    by position: a DataFrame.loc per cell costs ~100 us (10 s at 100k cells), and a dict of every row's values
    costs more than the lookups of the cells a table shows."""

    def __init__(self, results: pd.DataFrame):
        self._results = results
        ids = results["cell_id"].tolist() if len(results) else []
        self._row = dict(zip(ids, range(len(ids))))  # the last row of each cell: its status
        self._status = results["status"].to_numpy(object) if len(results) else np.zeros(0, object)
        self._done = (results["status"] == "done").to_numpy(bool) if len(results) else np.zeros(0, bool)
        # the last done row of each cell: its numbers (the same row, unless a frame repeats a cell)
        self._done_row = None if len(self._row) == len(ids) else {c: i for i, c in enumerate(ids) if self._done[i]}
        self._values = [results[c].to_numpy() for c in _VALUE_COLUMNS] if len(results) else []
        self._provenance = {c: results[c].to_numpy(object) for c in PROVENANCE_COLUMNS if c in results.columns}

    def of(self, cell_ids: list[str]) -> tuple[list[str], list[bool], list[list[Any]], dict[str, list[Any]]]:
        """Per cell: its status ("pending" without a row), whether it has a done row, that row's
        ``_VALUE_COLUMNS`` and its provenance columns (``None`` where it has no done row)."""
        n = len(cell_ids)
        pos = np.fromiter((self._row.get(c, -1) for c in cell_ids), np.int64, n)
        status = np.where(pos >= 0, self._status[pos] if len(self._status) else "", "pending").tolist()
        if self._done_row is None:
            done = (pos >= 0) & self._done[pos] if len(self._done) else np.zeros(n, bool)
        else:
            pos = np.fromiter((self._done_row.get(c, -1) for c in cell_ids), np.int64, n)
            done = pos >= 0
        values = [np.where(done, col[pos], None).tolist() for col in self._values] if len(self._values) \
            else [[None] * n for _ in _VALUE_COLUMNS]
        provenance = {c: np.where(done, col[pos], None).tolist() for c, col in self._provenance.items()}
        return status, done.tolist(), values, provenance

    @cached_property
    def regime(self) -> dict[str, tuple[float, int]]:
        """cell_id -> (realised noise rate, training size), when stored (read only for a grid with a regime)."""
        results = self._results
        if results.empty or not {"label_noise_rate", "train_size"} <= set(results.columns):
            return {}
        done = results[results["status"] == "done"]
        return dict(zip(done["cell_id"].tolist(), zip(done["label_noise_rate"].tolist(), done["train_size"].tolist())))


def stored_facts(results: pd.DataFrame) -> StoredFacts:
    return StoredFacts(results)


@dataclass
class _Shape:
    """One entry of a table before its accuracies: its cells' counts, and each done seed's stored numbers."""

    expected: int = 0
    diverged: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    done: list[tuple[int, str, float]] = field(default_factory=list)  # (seed, cell_id, final test accuracy)
    mi: dict[int, float] = field(default_factory=dict)
    h_y: dict[int, float] = field(default_factory=dict)
    num_classes: int = 0


@dataclass(frozen=True)
class _Table:
    """What a table of some shown cells says apart from their selected values: the same for every rule that
    shows those cells (``last``, ``val`` and ``oracle`` all show trial 0), so a report builds it once for them."""

    rows: list[tuple[str, str, str]]
    losses: list[str]
    shapes: dict[tuple[tuple[str, str, str], str], _Shape]
    counts: dict[str, int]
    mixed: dict[tuple[str, str, str], dict[str, dict[str, int]]]
    truths: dict[str, dict[str, float]]
    regimes: dict[tuple[str, str, str], tuple[Any, list[float], list[int]]]


def _table(cells: list[Cell], results: pd.DataFrame, facts: StoredFacts) -> _Table:
    ids = [c.cell_id for c in cells]
    statuses, done, (accs, mis, h_ys, classes), provenance = facts.of(ids)
    seen: dict[tuple[str, str, str], dict[str, dict[str, int]]] = {}
    rows: list[tuple[str, str, str]] = []
    losses: list[str] = []
    shapes: dict[tuple[tuple[str, str, str], str], _Shape] = {}
    counts = {"done": 0, "failed": 0, "diverged": 0, "pending": 0}
    for i, cell in enumerate(cells):
        row = (cell.dataset, cell.architecture, cell.variant)
        shape = shapes.get((row, cell.loss))
        if shape is None:
            if row not in rows:
                rows.append(row)
            if cell.loss not in losses:
                losses.append(cell.loss)
            shape = shapes[(row, cell.loss)] = _Shape()
        shape.expected += 1
        status = statuses[i]
        counts[status] = counts.get(status, 0) + 1
        if status == "diverged":
            shape.diverged.add(cell.seed)
        elif status == "failed":
            shape.failed.add(cell.seed)
        if not done[i]:
            continue
        for col, values in provenance.items():
            value = values[i]
            if isinstance(value, str) and value:
                by_value = seen.setdefault(row, {}).setdefault(col, {})
                by_value[value] = by_value.get(value, 0) + 1
        shape.done.append((cell.seed, ids[i], accs[i]))
        shape.mi[cell.seed] = float(mis[i])
        shape.h_y[cell.seed] = float(h_ys[i])
        shape.num_classes = int(classes[i])
    mixed = {row: {col: values for col, values in cols.items() if len(values) > 1} for row, cols in seen.items()}
    return _Table(rows, losses, shapes, counts, {row: cols for row, cols in mixed.items() if cols}, gauss_truths(cells),
                  regime_facts(cells, results, facts))


def collect(grid: str, cells: list[Cell], results: pd.DataFrame, baseline: str | None,
            selected: Selected | None = None, metric: Metric = DEFAULT,
            values: Mapping[str, float] | None = None, facts: StoredFacts | None = None,
            table: _Table | None = None) -> ReportData:
    """The table's data; with ``selected`` its cells and each done cell's accuracy come from a selection rule
    (default: every cell at its last epoch). ``values``: cell_id -> the value of ``metric`` (other than accuracy)
    at the selected epoch (:func:`metric_values`); a done cell missing from it lacks the metric. ``facts``:
    :func:`stored_facts` of ``results``, when the caller has them; ``table``: what the shown cells say apart from
    their values, when another rule showing the same cells built it."""
    # a search grid's trials share their (row, loss): without a rule, its trial 0 (the defaults) is shown
    cells = selected.cells if selected is not None else [c for c in cells if c.trial in (None, 0)]
    if table is None:
        table = _table(cells, results, stored_facts(results) if facts is None else facts)
    picked = selected.acc if selected is not None else {}
    entries: dict[tuple[tuple[str, str, str], str], Entry] = {}
    for key, shape in table.shapes.items():
        acc = {seed: float(picked.get(cid, final)) for seed, cid, final in shape.done}
        if metric.key == DEFAULT.key:
            value = dict(acc)
        elif values is not None:
            value = {seed: values[cid] for seed, cid, _ in shape.done if cid in values}
        else:
            value = {}
        entries[key] = Entry(acc=acc, value=value, mi=dict(shape.mi), h_y=dict(shape.h_y),
                             num_classes=shape.num_classes, expected=shape.expected, diverged=set(shape.diverged),
                             failed=set(shape.failed))
    if baseline is not None and baseline not in table.losses:
        baseline = None
    # each table's own containers (the rules sharing a _Table must not share what a caller may change)
    return ReportData(grid, list(table.rows), list(table.losses), entries, baseline, dict(table.counts),
                      dict(table.truths), dict(table.mixed), selected.rule if selected is not None else RULES["last"],
                      dict(selected.trials) if selected is not None else {}, metric=metric, regimes=dict(table.regimes))


def regime_facts(cells: list[Cell], results: pd.DataFrame,
                 facts: StoredFacts | None = None) -> dict[tuple[str, str, str], tuple[Any, list[float], list[int]]]:
    """Per row under a data regime: the regime, and the realised training noise rates and training
    sizes its done cells stored (older stores have neither column: the lists stay empty)."""
    out: dict[tuple[str, str, str], tuple[Any, list[float], list[int]]] = {}
    stored = (stored_facts(results) if facts is None else facts).regime
    for cell in cells:
        if not cell.config.get("regime"):  # no block: the default regime (validating one per cell is costly)
            continue
        regime = cell.regime
        if regime.is_default:
            continue
        row = (cell.dataset, cell.architecture, cell.variant)
        _, rates, sizes = out.setdefault(row, (regime, [], []))
        if cell.cell_id in stored:
            rate, size = stored[cell.cell_id]
            if isinstance(rate, float) and math.isfinite(rate):
                rates.append(rate)
            if size:
                sizes.append(int(size))
    return out

def metric_values(metric: Metric, selected: Selected, hists: Histories) -> dict[str, float]:
    """cell_id -> ``metric``'s history value at the epoch the rule selected, for each done cell that has one
    (an older store's history has no such column, or NaN where other cells' have it)."""
    return {c: v for c, v in hists.at(metric.column, selected.epoch).items() if math.isfinite(v)}


def collect_selected(grid: str, cells: list[Cell], results: pd.DataFrame,
                     history: pd.DataFrame | Histories | Picks | None, baseline: str | None, key: str = "last",
                     metric: str = DEFAULT.key) -> ReportData:
    """The report of ``metric`` under rule ``key`` (one error line when the grid cannot honour either), with every
    other rule the grid supports in ``others`` for the side-by-side table and the CSV. ``history``: the done
    cells' histories (:func:`~bench.report.selection.load_histories`), or a frame of history rows; for accuracy
    their :class:`~bench.report.selection.Picks` do."""
    main = rule(key, grid, cells)
    shown = find_metric(metric, grid, cells)
    hists = history if isinstance(history, (Histories, Picks)) else histories(results, history)
    return _collect_rules(grid, cells, results, hists, baseline, main, shown)


def _collect_rules(grid: str, cells: list[Cell], results: pd.DataFrame, hists: Histories | Picks,
                   baseline: str | None, main: Selection, shown: Metric) -> ReportData:
    """:func:`collect_selected` once its rule and metric are known good."""
    if isinstance(hists, Picks) and shown.key != DEFAULT.key:
        raise TypeError(f"a report of {shown.key} reads its value from the histories: pass them, not their picks")
    facts = stored_facts(results)
    tables: dict[tuple[str, ...], _Table] = {}  # by the cells shown: the rules showing trial 0 share one

    def under(chosen: Selected) -> ReportData:
        values = metric_values(shown, chosen, hists) if shown.key != DEFAULT.key else None
        ids = tuple(c.cell_id for c in chosen.cells)
        if ids not in tables:
            tables[ids] = _table(chosen.cells, results, facts)
        return collect(grid, cells, results, baseline, chosen, shown, values, facts, tables[ids])

    data, *others = [under(chosen) for chosen in
                     select_all([main, *(RULES[k] for k in applicable(cells) if k != main.key)], cells, hists)]
    data.others = others
    return data


def history_columns(metric: str = DEFAULT.key) -> list[str]:
    """The history columns a report of ``metric`` reads: the rules' and the metric's."""
    known = METRICS.get(metric)
    return list(dict.fromkeys([*RULE_COLUMNS, *([known.column] if known is not None else [])]))


def collect_from_store(grid: str, cells: list[Cell], results: pd.DataFrame, store: Store, baseline: str | None,
                       key: str = "last", metric: str = DEFAULT.key) -> ReportData:
    """:func:`collect_selected` on ``store``'s histories of the done cells of ``results``, reading only the history
    columns the report shows (:func:`history_columns`): memory grows with the cells, not with the history's width.
    A report of accuracy reads the rules' picks the cells' rows store (:func:`~bench.report.selection.stored_picks`)
    and the histories only of rows written without them."""
    main = rule(key, grid, cells)
    shown = find_metric(metric, grid, cells)  # both refusals before anything is read
    hists: Histories | Picks
    if shown.key != DEFAULT.key:  # the metric's column at the picked epochs: in the histories only
        hists = load_histories(store, results, history_columns(metric))
    else:
        hists = rule_picks(store, results)
    return _collect_rules(grid, cells, results, hists, baseline, main, shown)


def gauss_truths(cells: list[Cell]) -> dict[str, dict[str, float]]:
    """Exact MI and Bayes error of each gauss dataset's generating distribution."""
    out: dict[str, dict[str, float]] = {}
    for cell in cells:
        ds = cell.config["dataset"]
        if ds["kind"] == "gauss" and cell.dataset not in out:
            from bench.data import gauss_params  # imports torch: only for gauss grids
            from bench.paper.theory import gauss_bayes_error, gauss_delta, gauss_mi

            params = gauss_params(ds["params"])
            delta = gauss_delta(params["mu"], params["sigma2"])
            out[cell.dataset] = {"delta": delta, "mi_exact": float(gauss_mi(delta, params["prior"])),
                                 "bayes_error": float(gauss_bayes_error(delta, params["prior"]))}
    return out


def mark_stale(data: ReportData, cells: list[Cell], stale: set[str]) -> None:
    """Mark the finished seeds of the shown cells that are stale (ran an older version of their loss or model
    code, or other data): a report shows them, marked, never mixed in silently."""
    if not stale:
        return
    for d in (data, *data.others):
        for cell in cells:
            if cell.cell_id not in stale:
                continue
            row = (cell.dataset, cell.architecture, cell.variant)
            choice = d.trials.get((*row, cell.loss))
            if cell.trial not in (None, choice.trial if choice is not None else 0):
                continue  # another trial than the one this table shows
            entry = d.entries.get((row, cell.loss))
            if entry is not None and cell.seed in entry.acc:
                entry.stale.add(cell.seed)


def mark_search(data: ReportData, cells: list[Cell], finished: set[str], trials: int, seeds: int,
                accept_incomplete: bool = False) -> None:
    """For a ``tuned`` table: how many of the search's ``trials`` each entry was chosen from with all ``seeds``
    finished. A trial missing a seed is incomplete; until every trial is complete the verdicts are withheld."""
    if not data.select.across_trials:
        return
    done: dict[tuple[str, str, str, str], dict[int, int]] = {}
    for cell in cells:
        key = (cell.dataset, cell.architecture, cell.variant, cell.loss)
        per_trial = done.setdefault(key, {})
        per_trial[cell.trial or 0] = per_trial.get(cell.trial or 0, 0) + (cell.cell_id in finished)
    data.search = {key: (sum(1 for n in per_trial.values() if n >= seeds), trials) for key, per_trial in done.items()}
    data.accept_incomplete = accept_incomplete


def annotate(data: ReportData, registry: Any, grid: str, plan: Any, store: Any, results: pd.DataFrame,
             accept_incomplete: bool = False) -> None:
    """What the table stands on beyond its numbers: the settings that differ from the grid's definition, the stale
    cells among those shown, and for ``tuned`` how complete the search is. ``results``: the store's latest rows
    as the report read them (:data:`REPORT_COLUMNS`, or every column), so with their code fingerprints when the
    store has any."""
    from bench.config.cells import override_notes
    from bench.plan.code_fingerprint import stale_finished

    for d in (data, *data.others):
        d.overrides = override_notes(registry, grid, plan.overrides)
    mark_stale(data, plan.cells, stale_finished(plan.cells, store, registry.import_paths(), results))
    search = registry.grids[grid].search
    if search is not None:
        finished = set(results.loc[results["status"] == "done", "cell_id"].tolist()) if len(results) else set()
        mark_search(data, plan.cells, finished, search.trials, len(registry.grids[grid].seeds), accept_incomplete)
