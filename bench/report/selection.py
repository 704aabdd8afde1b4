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

A cell's row is written with what these rules pick in its history (:data:`PICK_COLUMNS`: each
rule's epoch and the test and validation accuracy there, computed here by :func:`history_picks`),
so a report of accuracy on 100,000 cells reads their rows and no history. Rows written before
those columns existed, or under another :data:`SELECTION_VERSION`, are read from their history
as before; both paths give the same numbers bit for bit (``tests/test_stored_picks.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bench.config.cells import Cell
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.store.results import Store

# what every rule reads: the reported value and the validation score
RULE_COLUMNS = ("test_acc", "val_acc")


@dataclass(frozen=True)
class Histories:
    """The done cells' histories as columns, one group of rows per cell in epoch order.

    The rows of cell ``cell_ids[g]`` are ``starts[g]:starts[g + 1]`` of every array of ``columns``
    (float64; NaN where a row has no number). Built by :func:`histories` from a frame, or by
    :func:`load_histories` from the store reading only the columns a report shows: a report on a
    large store never makes one Python object per history row.
    """

    cell_ids: list[str]
    starts: np.ndarray
    columns: Mapping[str, np.ndarray]
    # the rows each rule picked, by the column it maximises ("" for the last epoch): several rules share them
    _picked: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    _absent: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.cell_ids)

    @cached_property
    def index(self) -> dict[str, int]:
        """cell_id -> its group."""
        return {c: g for g, c in enumerate(self.cell_ids)}

    @property
    def rows(self) -> int:
        return int(self.starts[-1]) if len(self.starts) else 0

    def column(self, name: str) -> np.ndarray:
        """The column ``name`` (all NaN when no row has it, as in a store written before it was recorded)."""
        col = self.columns.get(name)
        if col is None:  # made once: every rule asks for the validation column
            col = self._absent.get(self.rows)
            if col is None:
                col = self._absent[self.rows] = np.full(self.rows, np.nan)
                col.flags.writeable = False
        return col

    def picked(self, by: str) -> np.ndarray:
        """Per cell, the row of the epoch a rule picks: the last (``by`` empty), or that of the largest
        finite value of column ``by``, the earliest on ties (:func:`argmax_earliest`)."""
        if by not in self._picked:
            self._picked[by] = self.starts[1:] - 1 if not by else argmax_earliest(self.column(by), self.starts)
        return self._picked[by]

    def at(self, name: str, epochs: Mapping[str, int]) -> dict[str, float]:
        """cell_id -> column ``name`` at the 1-based ``epochs[cell_id]`` of its rows (cells without history left out)."""
        index = self.index
        ids = [c for c in epochs if c in index]
        if not ids:
            return {}
        rows = self.starts[[index[c] for c in ids]] + np.fromiter((epochs[c] for c in ids), np.int64, len(ids)) - 1
        return dict(zip(ids, self.column(name)[rows].tolist()))


EMPTY = Histories([], np.zeros(1, np.int64), {})


def argmax_earliest(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per group ``starts[g]:starts[g + 1]`` (none empty), the row of its largest finite value, the earliest on
    ties; NaN and infinities never win, and a group without a finite value gets its last row."""
    finite = np.isfinite(values)
    key = np.where(finite, values, -np.inf)
    best = np.maximum.reduceat(key, starts[:-1])
    hits = np.flatnonzero(finite & (key == np.repeat(best, np.diff(starts))))
    # the first hit at or after each group's start: that group's, unless it lies past the group's end
    at = np.searchsorted(hits, starts[:-1])
    first = np.append(hits, starts[-1])[at]
    return np.where(first < starts[1:], first, starts[1:] - 1)


@dataclass(frozen=True)
class Selection:
    """An epoch-selection rule inside one cell: the epoch with the largest finite value of column ``by``, the
    earliest on ties (the last epoch when it has none), or the last epoch when ``by`` is empty."""

    key: str
    name: str
    by: str = ""
    needs_validation: bool = False
    across_trials: bool = False

    def pick(self, h: Histories) -> np.ndarray:
        """Per cell of ``h``, the row (an index into its columns) of the selected epoch."""
        return h.picked(self.by)

    def epoch(self, history: Sequence[Mapping[str, float]]) -> int:
        """0-based index of the selected epoch in ``history`` (non-empty, epoch order): :meth:`pick` on one cell."""
        names = {k for row in history for k in row}
        h = Histories(["."], np.array([0, len(history)], np.int64),
                      {k: np.array([float(row.get(k, math.nan)) for row in history]) for k in names})
        return int(self.pick(h)[0])


# ``tuned``: across the trials of a search, inside each cell the ``val`` epoch; the trial by its mean score
RULES: dict[str, Selection] = {
    "last": Selection("last", "last epoch"),
    "val": Selection("val", "best validation epoch", "val_acc", needs_validation=True),
    "oracle": Selection("oracle", "best test epoch (oracle: selects on the test set)", "test_acc"),
    "tuned": Selection("tuned", "tuned, the search trial with the best mean validation accuracy over seeds, "
                                "each cell at its best validation epoch", "val_acc", needs_validation=True,
                       across_trials=True),
}


# What a cell's row stores of its history when it is written (Store.write_result), so that a report of test
# accuracy reads no history: for each column a rule maximises ("" for the last epoch), the epoch picked (1-based
# position in the attempt's rows in epoch order, 0 without history) and RULE_COLUMNS there. Computed by this
# module's own rules; a row stored under another SELECTION_VERSION (or before it existed) is recomputed from its
# history, so change the number whenever a rule's definition changes.
SELECTION_VERSION = 1
SELECTION_VERSION_COLUMN = "selection_version"
PICKED_BY = tuple(dict.fromkeys(r.by for r in RULES.values()))


def _pick_prefix(by: str) -> str:
    return f"sel_best_{by}" if by else "sel_last"


PICK_EPOCH = {by: f"{_pick_prefix(by)}_epoch" for by in PICKED_BY}
PICK_VALUE = {by: {col: f"{_pick_prefix(by)}_{col}" for col in RULE_COLUMNS} for by in PICKED_BY}
PICK_COLUMNS = [SELECTION_VERSION_COLUMN, *(c for by in PICKED_BY for c in (PICK_EPOCH[by], *PICK_VALUE[by].values()))]


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


@dataclass(frozen=True, eq=False)
class _At:
    """Per done cell (``ids``), the 1-based epoch a rule picks and RULE_COLUMNS there."""

    ids: list[str]
    epoch: np.ndarray
    values: Mapping[str, np.ndarray]

    def by_cell(self, column: str) -> dict[str, Any]:
        return dict(zip(self.ids, (self.epoch if column == "epoch" else self.values[column]).tolist()))


_NOTHING = _At([], np.zeros(0, np.int64), {col: np.zeros(0) for col in RULE_COLUMNS})


@dataclass
class Selected:
    """What a rule reports: the cells shown, each done cell's selected test accuracy and epoch (1-based),
    and for ``tuned`` the trial chosen per (dataset, architecture, variant, loss). ``score``: each
    done cell's validation accuracy at its selected epoch (NaN without one), the score ``tuned``
    averages over seeds, for every cell given, shown or not. ``acc``, ``epoch`` and ``score`` are dicts
    made on first use from the rule's picks (``at``): a report of accuracy never asks for ``epoch``, and
    only ``tuned`` for ``score``."""

    rule: Selection
    cells: list[Cell]
    trials: dict[tuple[str, str, str, str], TrialChoice] = field(default_factory=dict)
    at: _At = field(default=_NOTHING, repr=False, compare=False)

    @cached_property
    def acc(self) -> dict[str, float]:
        return self.at.by_cell("test_acc")

    @cached_property
    def epoch(self) -> dict[str, int]:
        return self.at.by_cell("epoch")

    @cached_property
    def score(self) -> dict[str, float]:
        return self.at.by_cell("val_acc")


def _numbers(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64, NaN where a row holds no number (null, or text in a damaged file)."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return pd.to_numeric(pd.Series(col.to_pylist(), dtype=object), errors="coerce").to_numpy(np.float64)


def _attempt_codes(col: pa.ChunkedArray, attempts: pd.Index) -> np.ndarray:
    """Per row, the position of its attempt in ``attempts`` (-1 for any other): through each chunk's dictionary,
    so only the distinct ids are looked up, never the rows."""
    out = [np.zeros(0, np.int64)]
    last: pa.Array | None = None
    for chunk in col.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        if last is None or not chunk.dictionary.equals(last):  # a file's batches repeat its dictionary
            last = chunk.dictionary
            lookup = np.append(attempts.get_indexer(last.to_numpy(zero_copy_only=False)), -1).astype(np.int64)
        out.append(lookup[chunk.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)])
    return np.concatenate(out)


def histories_from_table(results: pd.DataFrame, table: pa.Table | None) -> Histories:
    """The done attempts' history rows of ``table`` (columns ``attempt_id``, ``epoch`` and any of values),
    grouped per cell, each group in epoch order (rows of one epoch in the order read): vectorised."""
    if table is None or results.empty or table.num_rows == 0 or "attempt_id" not in table.column_names:
        return EMPTY
    done = results[results["status"] == "done"]
    attempts = pd.Index(done["attempt_id"].astype(object))
    if not attempts.is_unique:  # one done row per cell, hence per attempt; a damaged store may repeat one
        done = done.drop_duplicates("attempt_id", keep="last")
        attempts = pd.Index(done["attempt_id"].astype(object))
    cell_of = done["cell_id"].tolist()
    codes = _attempt_codes(table.column("attempt_id"), attempts)
    keep = codes >= 0
    if not keep.any():
        return EMPTY
    every = bool(keep.all())  # the store's reader kept only done attempts' rows: nothing to drop then
    epochs = _numbers(table.column("epoch"))
    values = {name: _numbers(table.column(name)) for name in table.column_names
              if name not in ("attempt_id", "cell_id", "epoch")}
    if not every:
        epochs, codes, values = epochs[keep], codes[keep], {k: v[keep] for k, v in values.items()}
    return _grouped(cell_of, codes, epochs, values)


def _grouped(cell_of: list[str], codes: np.ndarray, epochs: np.ndarray, values: dict[str, np.ndarray]) -> Histories:
    """Rows of attempt ``codes[i]`` (cell ``cell_of[codes[i]]``) grouped per attempt, each group in epoch order."""
    # a store's files hold each attempt's rows together and in epoch order: sort only when they are not
    same = codes[1:] == codes[:-1]
    breaks = np.flatnonzero(~same) + 1
    if np.count_nonzero(np.bincount(codes)) != len(breaks) + 1 or np.any(same & (epochs[1:] < epochs[:-1])):
        order = np.lexsort((epochs, codes))  # stable: rows of one epoch stay in the order read
        codes, values = codes[order], {k: v[order] for k, v in values.items()}
        breaks = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate([[0], breaks, [len(codes)]]).astype(np.int64)
    return Histories([cell_of[c] for c in codes[starts[:-1]].tolist()], starts, values)


def histories(results: pd.DataFrame, history: pd.DataFrame | None) -> Histories:
    """The done attempts' histories in a frame of history rows (e.g. :meth:`Store.history`), as columns."""
    if history is None or history.empty or results.empty:
        return EMPTY
    table = pa.Table.from_pandas(history.reset_index(drop=True), preserve_index=False)
    return histories_from_table(results, table)


def load_histories(store: Store, results: pd.DataFrame, columns: Iterable[str] = RULE_COLUMNS) -> Histories:
    """The histories of ``results``' done attempts read from ``store``, only ``columns`` (and ``epoch``):
    what every selection rule, ``--metric`` and a figure of selected epochs need, with memory bounded by
    the rows of the cells shown times the columns asked for."""
    if results.empty or "attempt_id" not in results.columns:
        return EMPTY
    done = results[results["status"] == "done"]
    return histories_from_table(results, store.history_table(done["attempt_id"].tolist(), list(columns)))


@dataclass(frozen=True)
class Picks:
    """Per done cell with a history, what each rule's epoch holds: for each column a rule maximises (``by``, ""
    for the last epoch) the 1-based epoch picked (``epoch[by]``) and the values of RULE_COLUMNS there
    (``values[by][column]``). From the cells' stored rows (:func:`stored_picks`) or from their histories
    (:meth:`of`): the same numbers, as the rows' are computed by :meth:`of` when they are written."""

    cell_ids: list[str]
    epoch: Mapping[str, np.ndarray]
    values: Mapping[str, Mapping[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self.cell_ids)

    @classmethod
    def of(cls, h: Histories, by: Iterable[str] = PICKED_BY) -> Picks:
        epoch, values = {}, {}
        for b in by:
            rows = h.picked(b)
            epoch[b] = rows - h.starts[:-1] + 1
            values[b] = {col: h.column(col)[rows] for col in RULE_COLUMNS}
        return cls(list(h.cell_ids), epoch, values)

    def __add__(self, other: Picks) -> Picks:
        by = [b for b in self.epoch if b in other.epoch]
        return Picks(self.cell_ids + other.cell_ids, {b: np.concatenate([self.epoch[b], other.epoch[b]]) for b in by},
                     {b: {col: np.concatenate([self.values[b][col], other.values[b][col]]) for col in RULE_COLUMNS}
                      for b in by})


def pick_columns(h: Histories) -> dict[str, np.ndarray]:
    """The row columns of :data:`PICK_COLUMNS`, per cell of ``h``: what a cell's row stores of its history."""
    picks = Picks.of(h)
    out: dict[str, np.ndarray] = {SELECTION_VERSION_COLUMN: np.full(len(h), SELECTION_VERSION, np.int64)}
    for by in PICKED_BY:
        out[PICK_EPOCH[by]] = picks.epoch[by].astype(np.int64)
        out.update({PICK_VALUE[by][col]: picks.values[by][col] for col in RULE_COLUMNS})
    return out


def history_picks(history: pa.Table) -> dict[str, Any]:
    """One attempt's :data:`PICK_COLUMNS` from its history rows as the store writes them (any columns; ``epoch``
    orders them as a report reading them back does): epoch 0 and NaN values without rows."""
    if history.num_rows == 0:
        return {SELECTION_VERSION_COLUMN: SELECTION_VERSION,
                **{c: (0 if c in PICK_EPOCH.values() else math.nan) for c in PICK_COLUMNS[1:]}}
    n = history.num_rows
    epochs = _numbers(history.column("epoch")) if "epoch" in history.column_names else np.arange(1.0, n + 1)
    values = {col: _numbers(history.column(col)) for col in RULE_COLUMNS if col in history.column_names}
    h = _grouped(["."], np.zeros(n, np.int64), epochs, values)
    return {k: v[0].item() for k, v in pick_columns(h).items()}


def stored_picks(results: pd.DataFrame) -> tuple[Picks, pd.DataFrame]:
    """The picks the done rows of ``results`` store (:func:`history_picks`), and the done rows that store none
    (written before, or under another :data:`SELECTION_VERSION`): their picks must come from their histories.
    Rows stored with epoch 0 had no history: in neither."""
    done = results[results["status"] == "done"] if len(results) else results
    if done.empty or not set(PICK_COLUMNS) <= set(done.columns):
        return Picks([], {b: np.zeros(0, np.int64) for b in PICKED_BY},
                     {b: {col: np.zeros(0) for col in RULE_COLUMNS} for b in PICKED_BY}), done
    if not done["attempt_id"].is_unique:  # as histories_from_table: a damaged store may repeat an attempt
        done = done.drop_duplicates("attempt_id", keep="last")
    version = pd.to_numeric(done[SELECTION_VERSION_COLUMN], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    stored = version == SELECTION_VERSION
    epochs = {b: pd.to_numeric(done[PICK_EPOCH[b]], errors="coerce").to_numpy(np.float64, na_value=np.nan)
              for b in PICKED_BY}
    shown = stored & (epochs[""] > 0)
    ids = done["cell_id"].to_numpy(object)[shown].tolist()
    picks = Picks(ids, {b: epochs[b][shown].astype(np.int64) for b in PICKED_BY},
                  {b: {col: pd.to_numeric(done[PICK_VALUE[b][col]], errors="coerce")
                       .to_numpy(np.float64, na_value=np.nan)[shown] for col in RULE_COLUMNS} for b in PICKED_BY})
    return picks, done[~stored]


def rule_picks(store: Store, results: pd.DataFrame) -> Histories | Picks:
    """What the selection rules pick for the done rows of ``results``: the picks the rows store, and the histories
    (their rule columns only) of the rows written without them."""
    picks, rest = stored_picks(results)
    if len(rest):
        older = load_histories(store, rest, RULE_COLUMNS)
        if len(older):
            return older if not len(picks) else picks + Picks.of(older)
    return picks


def _at(source: Histories | Picks, by: str) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Per cell of ``source``: the 1-based epoch a rule maximising ``by`` picks, and RULE_COLUMNS there."""
    if isinstance(source, Picks):
        return source.cell_ids, source.epoch[by], source.values[by]
    rows = source.picked(by)
    return source.cell_ids, rows - source.starts[:-1] + 1, {col: source.column(col)[rows] for col in RULE_COLUMNS}


def select(r: Selection, cells: Sequence[Cell], hists: Histories | Picks) -> Selected:
    """Apply rule ``r`` to ``cells`` given each done cell's history, or the :class:`Picks` of it (cells without
    one stay unfinished)."""
    return select_all([r], cells, hists)[0]


def select_all(rules: Sequence[Selection], cells: Sequence[Cell], hists: Histories | Picks) -> list[Selected]:
    """:func:`select` of each of ``rules``; the rules maximising the same column (``val`` and ``tuned``) look up
    their cells' epochs once."""
    wanted = {c.cell_id for c in cells} if len(hists) else set()
    at_by: dict[str, _At] = {}
    out = []
    for r in rules:
        if r.by not in at_by:
            at_by[r.by] = _selected_at(hists, r.by, wanted)
        out.append(_select(r, cells, at_by[r.by]))
    return out


def _selected_at(hists: Histories | Picks, by: str, wanted: set[str]) -> _At:
    """The epoch a rule maximising ``by`` picks, and RULE_COLUMNS there, for the cells of ``hists`` among ``wanted``."""
    if not len(hists):
        return _NOTHING
    ids, epochs, at = _at(hists, by)
    keep = None if wanted.issuperset(ids) else [g for g, c in enumerate(ids) if c in wanted]
    if keep is not None:
        ids, epochs, at = [ids[g] for g in keep], epochs[keep], {col: v[keep] for col, v in at.items()}
    return _At(list(ids), epochs, at)


def _select(r: Selection, cells: Sequence[Cell], at: _At) -> Selected:
    if not r.across_trials:
        shown = [c for c in cells if c.trial in (None, 0)]
        last = {(c.dataset, c.architecture, c.variant, c.loss): c for c in shown if c.trial == 0}
        trials = {key: TrialChoice(0, dict(c.config["search"]["values"]), math.nan, 0) for key, c in last.items()}
        return Selected(r, shown, trials, at)
    score = at.by_cell("val_acc")
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
    chosen_rule = Selected(r, shown, trials, at)
    chosen_rule.__dict__["score"] = score  # already made: the cached property's value
    return chosen_rule
