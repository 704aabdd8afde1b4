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
from typing import TYPE_CHECKING, Any

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
    select,
    stored_picks,
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
                  "precision_used", "device", "label_noise_rate", "train_size", *PICK_COLUMNS]
# what a cell's declared settings resolved to where it ran: a row mixing them is footnoted
PROVENANCE_COLUMNS = ("precision_used", "device")
_VALUE_COLUMNS = ["final_test_acc", "final_test_mi", "test_label_entropy", "num_classes"]


@dataclass(frozen=True)
class StoredFacts:
    """The store's cell rows as plain dicts, read once per report (every rule's table reads them):
    a DataFrame.loc per cell costs ~100 us (10 s at 100k cells)."""

    status: dict[str, str]
    done: dict[str, tuple]  # cell_id -> the _VALUE_COLUMNS of its done row
    provenance: dict[str, dict[str, Any]]
    regime: dict[str, tuple[float, int]]  # cell_id -> (realised noise rate, training size), when stored


def stored_facts(results: pd.DataFrame) -> StoredFacts:
    if results.empty:
        return StoredFacts({}, {}, {}, {})
    status = dict(zip(results["cell_id"].tolist(), results["status"].tolist()))
    done = results[results["status"] == "done"]
    ids = done["cell_id"].tolist()
    kept = [c for c in PROVENANCE_COLUMNS if c in done.columns]
    regime = {}
    if {"label_noise_rate", "train_size"} <= set(results.columns):
        regime = dict(zip(ids, zip(done["label_noise_rate"].tolist(), done["train_size"].tolist())))
    return StoredFacts(status, dict(zip(ids, zip(*(done[c].tolist() for c in _VALUE_COLUMNS)))),
                       {cid: dict(zip(kept, vals)) for cid, *vals in zip(ids, *(done[c].tolist() for c in kept))},
                       regime)


def collect(grid: str, cells: list[Cell], results: pd.DataFrame, baseline: str | None,
            selected: Selected | None = None, metric: Metric = DEFAULT,
            values: Mapping[str, float] | None = None, facts: StoredFacts | None = None) -> ReportData:
    """The table's data; with ``selected`` its cells and each done cell's accuracy come from a selection rule
    (default: every cell at its last epoch). ``values``: cell_id -> the value of ``metric`` (other than accuracy)
    at the selected epoch (:func:`metric_values`); a done cell missing from it lacks the metric. ``facts``:
    :func:`stored_facts` of ``results``, when the caller has them."""
    # a search grid's trials share their (row, loss): without a rule, its trial 0 (the defaults) is shown
    cells = selected.cells if selected is not None else [c for c in cells if c.trial in (None, 0)]
    facts = stored_facts(results) if facts is None else facts
    status_of, done_rows, provenance = facts.status, facts.done, facts.provenance
    seen: dict[tuple[str, str, str], dict[str, dict[str, int]]] = {}
    rows: list[tuple[str, str, str]] = []
    losses: list[str] = []
    entries: dict[tuple[tuple[str, str, str], str], Entry] = {}
    counts = {"done": 0, "failed": 0, "diverged": 0, "pending": 0}
    for cell in cells:
        row = (cell.dataset, cell.architecture, cell.variant)
        entry = entries.get((row, cell.loss))
        if entry is None:
            if row not in rows:
                rows.append(row)
            if cell.loss not in losses:
                losses.append(cell.loss)
            entry = entries[(row, cell.loss)] = Entry()
        entry.expected += 1
        status = status_of.get(cell.cell_id, "pending")
        counts[status] = counts.get(status, 0) + 1
        if status == "diverged":
            entry.diverged.add(cell.seed)
        elif status == "failed":
            entry.failed.add(cell.seed)
        rec = done_rows.get(cell.cell_id)
        for col, value in provenance.get(cell.cell_id, {}).items():
            if isinstance(value, str) and value:
                by_value = seen.setdefault(row, {}).setdefault(col, {})
                by_value[value] = by_value.get(value, 0) + 1
        if rec is not None:
            acc, mi, h_y, num_classes = rec
            if selected is not None:
                acc = selected.acc.get(cell.cell_id, acc)
            entry.acc[cell.seed] = float(acc)
            if metric.key == DEFAULT.key:
                entry.value[cell.seed] = float(acc)
            elif values is not None and cell.cell_id in values:
                entry.value[cell.seed] = values[cell.cell_id]
            entry.mi[cell.seed] = float(mi)
            entry.h_y[cell.seed] = float(h_y)
            entry.num_classes = int(num_classes)
    if baseline is not None and baseline not in losses:
        baseline = None
    mixed = {row: {col: values for col, values in cols.items() if len(values) > 1} for row, cols in seen.items()}
    return ReportData(grid, rows, losses, entries, baseline, counts, gauss_truths(cells),
                      {row: cols for row, cols in mixed.items() if cols},
                      selected.rule if selected is not None else RULES["last"],
                      dict(selected.trials) if selected is not None else {}, metric=metric,
                      regimes=regime_facts(cells, results, facts))


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
    if isinstance(hists, Picks) and shown.key != DEFAULT.key:
        raise TypeError(f"a report of {shown.key} reads its value from the histories: pass them, not their picks")
    facts = stored_facts(results)

    def under(r: Selection) -> ReportData:
        chosen = select(r, cells, hists)
        values = metric_values(shown, chosen, hists) if shown.key != DEFAULT.key else None
        return collect(grid, cells, results, baseline, chosen, shown, values, facts)

    data = under(main)
    data.others = [under(RULES[k]) for k in applicable(cells) if k != key]
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
    rule(key, grid, cells)
    shown = find_metric(metric, grid, cells)  # both refusals before anything is read
    if shown.key != DEFAULT.key:  # the metric's column at the picked epochs: in the histories only
        return collect_selected(grid, cells, results, load_histories(store, results, history_columns(metric)),
                                baseline, key, metric)
    hists: Histories | Picks
    hists, rest = stored_picks(results)
    if len(rest):
        older = load_histories(store, rest, RULE_COLUMNS)
        if len(older):
            hists = older if not len(hists) else hists + Picks.of(older)
    return collect_selected(grid, cells, results, hists, baseline, key, metric)


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
    cells among those shown, and for ``tuned`` how complete the search is."""
    from bench.config.cells import override_notes
    from bench.plan.code_fingerprint import stale_finished

    for d in (data, *data.others):
        d.overrides = override_notes(registry, grid, plan.overrides)
    mark_stale(data, plan.cells, stale_finished(plan.cells, store, registry.import_paths()))
    search = registry.grids[grid].search
    if search is not None:
        finished = set(results.loc[results["status"] == "done", "cell_id"]) if len(results) else set()
        mark_search(data, plan.cells, finished, search.trials, len(registry.grids[grid].seeds), accept_incomplete)
