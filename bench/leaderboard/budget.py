"""Tuning-budget curves: how good a loss gets with k trials of its search, and how many trials it needs
to beat the baseline untuned and tuned ("is it the loss, or the tuning?").

**The estimator** (:func:`expected_best`) is Dodge et al. 2019 ("Show Your Work: Improved Reporting of
Experimental Results", EMNLP): the expected maximum validation score of k trials drawn i.i.d., with
replacement, from the empirical distribution of the T trials observed,

    E[max_k V] = sum_i v_(i) [ (i/T)^k - ((i-1)/T)^k ],     v_(1) <= ... <= v_(T),

exactly, with no resampling; with the same weights, the expected *test* score of the trial that
validation selects among the k drawn. Among trials of equal validation score the lowest trial number
is selected, as the ``tuned`` rule does (:mod:`bench.report.selection`).

**Two selection conventions** (:data:`SELECTIONS`), each named wherever a curve is shown:

* ``mean``: a trial's validation and test scores are their means over seeds, and the curve is computed
  once: the ``tuned`` rule's convention, so the curve at large k meets the ``tuned`` score;
* ``per-seed``: the curve of each seed from that seed's scores alone, then averaged over seeds:
  DomainBed's convention (Gulrajani & Lopez-Paz 2021), in which each seed runs its own search.

**Complete trials only.** A trial is scored on all the expected seeds or not at all: a trial with a
failed or missing seed (status not ``done``, or a NaN score) is incomplete, left out of the pool of
both conventions and listed in the summary. Ranking it on fewer seeds would compare a noisier mean
with the others. Trial 0, the untuned protocol (the loss's registry defaults), belongs to the pool as
it does for ``tuned``, and is also reported apart as the *untuned* score. It is not a random draw of
the search, so the curves slightly bend Dodge et al.'s i.i.d. reading; keeping it makes the curve of
large k meet the ``tuned`` score the reports print.

The input is a tidy frame with one row per cell (task, loss, trial, seed), higher scores better (negate
a lower-is-better metric first). Everything here is a pure function of that frame.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.errors import BenchError, closest

# selection convention -> the name a caption prints
SELECTIONS = MappingProxyType({
    "mean": "validation mean over seeds (the tuned rule's convention)",
    "per-seed": "validation per seed, curves averaged over seeds (DomainBed's convention)",
})

TRIAL_COLUMNS = ("task", "loss", "trial", "seed", "val", "test", "status")
CURVE_COLUMNS = ("task", "loss", "selection", "k", "expected_val", "expected_test", "val_std", "test_std")
SUMMARY_COLUMNS = ("task", "loss", "trials", "complete", "incomplete", "untuned_complete", "untuned_val",
                   "untuned_test", "tuned_trial", "tuned_val", "tuned_test")
BEAT_COLUMNS = ("task", "loss", "baseline", "selection", "trials", "baseline_untuned_test", "baseline_tuned_test",
                "beats_untuned_at", "beats_tuned_at")


class ExpectedBest(NamedTuple):
    """The expected best of k trials, for k = 1..k_max (arrays of length k_max).

    ``expected_val``: E[max of k validation scores]; ``expected_test``: E[test score of the trial
    validation selects]; ``val_std`` and ``test_std``: the standard deviations of those two over the
    draws of k trials (the ± Dodge et al. 2019 report).
    """

    k: np.ndarray
    expected_val: np.ndarray
    expected_test: np.ndarray
    val_std: np.ndarray
    test_std: np.ndarray


class BudgetCurves(NamedTuple):
    """:func:`budget_curves`' result: the tidy ``curves`` (:data:`CURVE_COLUMNS`, one row per
    (task, loss, k)) and the ``summary`` (:data:`SUMMARY_COLUMNS`, one row per (task, loss))."""

    curves: pd.DataFrame
    summary: pd.DataFrame


def expected_best(val: np.ndarray, test: np.ndarray, k_max: int | None = None, *,
                  trials: np.ndarray | None = None) -> ExpectedBest:
    """Dodge et al. 2019's exact expected best of k trials drawn i.i.d. (with replacement) from the T
    given ones, k = 1..``k_max`` (default T): the expected maximum validation score and the expected
    test score of the trial validation selects, with their standard deviations.

    ``val`` and ``test``: one finite score per trial, higher is better. Ties in validation go to the
    lowest trial number, as in the ``tuned`` rule: the trials are ranked by validation score and,
    among equal scores, the lowest trial number ranks highest, so the weight
    (i/T)^k - ((i-1)/T)^k of rank i (the probability that the best of k draws has rank i) falls on
    the trial that would be selected. ``trials`` gives the trial numbers; without it, a trial's
    number is its position (pass the scores in trial order).
    """
    v = _scores(val, "val")
    t = _scores(test, "test")
    n = len(v)
    if n == 0:
        raise BenchError("expected_best: no trials given; pass at least one trial's val and test scores")
    if len(t) != n:
        raise BenchError(f"expected_best: {n} val scores but {len(t)} test scores; pass one of each per trial")
    if trials is None:
        number = np.arange(n)
    else:
        number = np.asarray(trials)
        if number.shape != (n,) or not np.issubdtype(number.dtype, np.integer) or len(np.unique(number)) != n:
            raise BenchError(f"expected_best: trials must be {n} distinct integers, one per score; "
                             f"got {np.asarray(trials).tolist()!r}")
    if k_max is None:
        k_max = n
    if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)) or k_max < 1:
        raise BenchError(f"expected_best: k_max must be a positive integer, got {k_max!r}")
    # ascending rank: by validation score, then by trial number descending, so that among equal scores
    # the lowest trial number holds the highest rank and wins the draw as it wins the tuned rule
    rank = np.lexsort((-number.astype(np.int64), v))
    vs, ts = v[rank], t[rank]
    k = np.arange(1, int(k_max) + 1)
    cdf = (np.arange(1, n + 1) / n)[None, :] ** k[:, None]  # P(best of k has rank <= i)
    w = np.diff(cdf, axis=1, prepend=0.0)
    ev, et = w @ vs, w @ ts
    # centred second moments: E[X^2] - E[X]^2 loses the digits of a small spread around a large mean
    val_var = np.einsum("ki,ki->k", w, (vs[None, :] - ev[:, None]) ** 2)
    test_var = np.einsum("ki,ki->k", w, (ts[None, :] - et[:, None]) ** 2)
    return ExpectedBest(k, ev, et, np.sqrt(val_var), np.sqrt(test_var))


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise BenchError(f"expected_best: {name} holds non-numbers; pass one float score per trial") from None
    if a.ndim != 1:
        raise BenchError(f"expected_best: {name} must be one-dimensional (one score per trial), got shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if len(bad):
        raise BenchError(f"expected_best: {name} is not finite at positions {bad.tolist()[:8]}; "
                         f"leave out incomplete trials (budget_curves does) before calling")
    return a


def budget_curves(trials: pd.DataFrame, seeds: Sequence[int], selection: str = "mean", *,
                  n_trials: int | None = None) -> BudgetCurves:
    """Per (task, loss), the expected best of k trials for k = 1..T, T its complete trials, under the
    selection convention ``selection`` (``mean`` or ``per-seed``, :data:`SELECTIONS`), and a summary.

    ``trials``: one row per cell, columns :data:`TRIAL_COLUMNS`; a cell counts when its ``status`` is
    ``done`` and both scores are finite. ``seeds``: every seed a trial must have to be complete (rows
    of other seeds are not read). The trials of a (task, loss) are those in its rows, trial 0 always,
    and 0..``n_trials``-1 when ``n_trials`` is given: a trial with no row at all is then incomplete too.

    The curve stops at T, the complete trials: past it Dodge et al.'s estimate only repeats the
    trials observed. The summary per (task, loss): ``trials`` (considered), ``complete``,
    ``incomplete`` (a tuple of trial numbers), ``untuned_complete`` and ``untuned_val`` /
    ``untuned_test`` (trial 0's means over seeds, NaN when it is incomplete), and ``tuned_trial``,
    ``tuned_val`` / ``tuned_test``: the complete trial with the best mean validation score, the lowest
    trial on ties (the ``tuned`` rule), whichever the convention (``tuned_trial`` <NA> without one).
    """
    if selection not in SELECTIONS:
        raise BenchError(f"budget_curves: unknown selection {selection!r}{closest(selection, SELECTIONS)}; "
                         f"use {' or '.join(map(repr, SELECTIONS))}")
    frame = _checked_frame(trials)
    seed_list = _checked_seeds(seeds)
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer))
                                 or n_trials < 1):
        raise BenchError(f"budget_curves: n_trials must be a positive integer (the trials per search), got {n_trials!r}")
    if n_trials is not None and len(frame) and int(frame["trial"].max()) >= n_trials:
        raise BenchError(f"budget_curves: trial {int(frame['trial'].max())} is outside 0..{n_trials - 1}; "
                         f"pass the search's trial count as n_trials")
    curve_parts: list[pd.DataFrame] = []
    summary_rows: list[dict[str, object]] = []
    for (task, loss), group in frame.groupby(["task", "loss"], sort=False):
        numbers = sorted(set(group["trial"].tolist()) | {0} | set(range(n_trials or 0)))
        val, test = _score_tables(group, numbers, seed_list)
        complete = np.isfinite(val).all(axis=1) & np.isfinite(test).all(axis=1)
        idx = np.asarray(numbers, dtype=np.int64)
        # means as the tuned rule takes them: the sum over seeds divided by their count
        mean_val = val.sum(axis=1) / len(seed_list)
        mean_test = test.sum(axis=1) / len(seed_list)
        summary_rows.append(_summary_row(task, loss, idx, complete, mean_val, mean_test))
        if complete.any():
            curve_parts.append(_curve(task, loss, selection, idx[complete], val[complete], test[complete],
                                      mean_val[complete], mean_test[complete]))
    curves = (pd.concat(curve_parts, ignore_index=True) if curve_parts
              else pd.DataFrame({c: pd.Series(dtype=float if c.startswith(("expected", "val_", "test_")) else object)
                                 for c in CURVE_COLUMNS}))
    summary = pd.DataFrame(summary_rows, columns=list(SUMMARY_COLUMNS))
    summary["tuned_trial"] = summary["tuned_trial"].astype("Int64")
    return BudgetCurves(curves, summary)


def _checked_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns budget_curves reads, typed: integer trial and seed, float scores; bad input is one line."""
    if not isinstance(trials, pd.DataFrame):
        raise BenchError(f"budget_curves: trials must be a pandas DataFrame with columns {', '.join(TRIAL_COLUMNS)}, "
                         f"got {type(trials).__name__}")
    missing = [c for c in TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise BenchError(f"budget_curves: trials lacks column(s) {', '.join(missing)}; "
                         f"give one row per cell with {', '.join(TRIAL_COLUMNS)}")
    frame = trials.loc[:, list(TRIAL_COLUMNS)].copy()
    for name in ("task", "loss"):
        if frame[name].isna().any():
            raise BenchError(f"budget_curves: {int(frame[name].isna().sum())} row(s) have no {name}; "
                             f"name the {name} of every row")
    for name in ("trial", "seed"):
        frame[name] = _integers(frame[name], name)
    if (frame["trial"] < 0).any():
        raise BenchError(f"budget_curves: negative trial number {int(frame['trial'].min())}; trials count from 0")
    for name in ("val", "test"):
        try:
            frame[name] = pd.to_numeric(frame[name], errors="raise").astype(np.float64)
        except (TypeError, ValueError):
            raise BenchError(f"budget_curves: column {name} holds non-numbers; give float scores "
                             f"(NaN for a missing one)") from None
    repeated = frame.duplicated(["task", "loss", "trial", "seed"], keep=False)
    if repeated.any():
        first = frame[repeated].iloc[0]
        raise BenchError(f"budget_curves: {int(repeated.sum())} rows repeat a cell, e.g. task {first['task']!r}, "
                         f"loss {first['loss']!r}, trial {first['trial']}, seed {first['seed']}; "
                         f"keep one row per cell (its latest attempt)")
    return frame


def _integers(col: pd.Series, name: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() | (values != np.round(values))
    if bad.any():
        raise BenchError(f"budget_curves: column {name} holds {col[bad].iloc[0]!r}, not an integer; "
                         f"give every row an integer {name}")
    return values.astype(np.int64)


def _checked_seeds(seeds: Sequence[int]) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not len(seeds):
        raise BenchError(f"budget_curves: seeds must be the non-empty list of seeds every trial runs, got {seeds!r}")
    out: list[int] = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise BenchError(f"budget_curves: seed {s!r} is not an integer; pass the grid's seeds, e.g. [0, 1, 2]")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise BenchError(f"budget_curves: seeds {out} repeat a seed; list each seed once")
    return out


def _score_tables(group: pd.DataFrame, numbers: list[int], seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(val, test) as trial x seed arrays in the order of ``numbers`` and ``seeds``; NaN where a cell is
    missing, not done, or lacks a score, so that one NaN marks its trial incomplete."""
    usable = group[(group["status"] == "done") & group["seed"].isin(seeds)]
    tables = []
    for name in ("val", "test"):
        table = usable.pivot(index="trial", columns="seed", values=name).reindex(index=numbers, columns=seeds)
        tables.append(table.to_numpy(dtype=np.float64))
    return tables[0], tables[1]


def _summary_row(task: Hashable, loss: Hashable, idx: np.ndarray, complete: np.ndarray, mean_val: np.ndarray,
                 mean_test: np.ndarray) -> dict[str, object]:
    zero = int(np.flatnonzero(idx == 0)[0])
    untuned = bool(complete[zero])
    row: dict[str, object] = {
        "task": task, "loss": loss, "trials": len(idx), "complete": int(complete.sum()),
        "incomplete": tuple(int(t) for t in idx[~complete]), "untuned_complete": untuned,
        "untuned_val": float(mean_val[zero]) if untuned else math.nan,
        "untuned_test": float(mean_test[zero]) if untuned else math.nan,
        "tuned_trial": None, "tuned_val": math.nan, "tuned_test": math.nan,
    }
    if complete.any():
        pool = np.flatnonzero(complete)
        best = pool[int(np.argmax(mean_val[pool]))]  # argmax: the first, i.e. lowest trial, of equal means
        row.update(tuned_trial=int(idx[best]), tuned_val=float(mean_val[best]), tuned_test=float(mean_test[best]))
    return row


def _curve(task: Hashable, loss: Hashable, selection: str, idx: np.ndarray, val: np.ndarray, test: np.ndarray,
           mean_val: np.ndarray, mean_test: np.ndarray) -> pd.DataFrame:
    """The curve of one (task, loss) from its complete trials (rows of ``val`` / ``test``, seeds as columns)."""
    if selection == "mean":
        e = expected_best(mean_val, mean_test, trials=idx)
        k, ev, et, sv, st = e.k, e.expected_val, e.expected_test, e.val_std, e.test_std
    else:
        per = [expected_best(val[:, s], test[:, s], trials=idx) for s in range(val.shape[1])]
        k = per[0].k
        ev = np.mean([e.expected_val for e in per], axis=0)
        et = np.mean([e.expected_test for e in per], axis=0)
        # the spread of one seed's best of k, pooled over seeds (root mean square of the per-seed stds)
        sv = np.sqrt(np.mean([e.val_std ** 2 for e in per], axis=0))
        st = np.sqrt(np.mean([e.test_std ** 2 for e in per], axis=0))
    n = len(k)
    return pd.DataFrame({"task": [task] * n, "loss": [loss] * n, "selection": [selection] * n, "k": k,
                         "expected_val": ev, "expected_test": et, "val_std": sv, "test_std": st})


def curves_of(curves: pd.DataFrame, selection: str | None, caller: str) -> tuple[pd.DataFrame, str]:
    """The rows of one selection convention: ``selection``, or the only one ``curves`` holds."""
    missing = [c for c in CURVE_COLUMNS if c not in getattr(curves, "columns", ())]
    if missing:
        raise BenchError(f"{caller}: curves lacks column(s) {', '.join(missing)}; pass budget_curves(...).curves")
    present = list(dict.fromkeys(curves["selection"].tolist()))
    if selection is None:
        if len(present) > 1:
            raise BenchError(f"{caller}: curves hold several selection conventions ({', '.join(present)}); "
                             f"name one with selection=")
        selection = present[0] if present else "mean"
    elif selection not in SELECTIONS:
        raise BenchError(f"{caller}: unknown selection {selection!r}{closest(selection, SELECTIONS)}")
    return curves[curves["selection"] == selection], selection


def trials_to_beat(curves: pd.DataFrame, summary: pd.DataFrame, loss: str, baseline: str, *,
                   selection: str | None = None) -> pd.DataFrame:
    """Per task of ``loss``, the smallest k at which its expected test score (:func:`budget_curves`)
    exceeds (a) the baseline's untuned test score (``beats_untuned_at``) and (b) its tuned test score
    (``beats_tuned_at``): None when no k up to the loss's complete trials does, or when the baseline
    has no such score on that task (:func:`beat_text` says which). Columns :data:`BEAT_COLUMNS`.

    Beating (a) at small k but not (b) says the gain is the tuning's, not the loss's.
    """
    part, selection = curves_of(curves, selection, "trials_to_beat")
    missing = [c for c in SUMMARY_COLUMNS if c not in getattr(summary, "columns", ())]
    if missing:
        raise BenchError(f"trials_to_beat: summary lacks column(s) {', '.join(missing)}; "
                         f"pass budget_curves(...).summary")
    for name in (loss, baseline):
        if name not in set(summary["loss"]):
            raise BenchError(f"trials_to_beat: unknown loss {name!r}{closest(name, summary['loss'].astype(str))}")
    # dictionaries keyed by task, not an index: a task may be a tuple, which pandas would split into levels
    base = {task: (float(u), float(t)) for task, name, u, t in zip(summary["task"], summary["loss"],
                                                                   summary["untuned_test"], summary["tuned_test"])
            if name == baseline}
    mine = part[part["loss"] == loss]
    by_task: dict[Hashable, list[int]] = {}
    for row, task in enumerate(mine["task"].tolist()):
        by_task.setdefault(task, []).append(row)
    rows: list[dict[str, object]] = []
    for task, name in zip(summary["task"], summary["loss"]):
        if name != loss:
            continue
        curve = mine.iloc[by_task.get(task, [])].sort_values("k")
        untuned, tuned = base.get(task, (math.nan, math.nan))
        rows.append({"task": task, "loss": loss, "baseline": baseline, "selection": selection, "trials": len(curve),
                     "baseline_untuned_test": untuned, "baseline_tuned_test": tuned,
                     "beats_untuned_at": _first_k_above(curve, untuned),
                     "beats_tuned_at": _first_k_above(curve, tuned)})
    out = pd.DataFrame(rows, columns=list(BEAT_COLUMNS))
    for name in ("beats_untuned_at", "beats_tuned_at"):
        out[name] = pd.Series([r[name] for r in rows], index=out.index, dtype=object)  # None stays None, not NaN
    return out


def _first_k_above(curve: pd.DataFrame, reference: float) -> int | None:
    if not math.isfinite(reference):
        return None
    above = np.flatnonzero(curve["expected_test"].to_numpy(np.float64) > reference)  # NaN compares False
    return int(curve["k"].iloc[above[0]]) if len(above) else None


def beat_text(k: int | None, trials: int, reference: float) -> str:
    """How a :func:`trials_to_beat` entry reads: "k = 3", "not within 8 trials", or why there is no answer."""
    if not math.isfinite(reference):
        return "no baseline score (its trials are incomplete)"
    if k is not None:
        return f"k = {k}"
    if trials == 0:
        return "no complete trial"
    return f"not within {trials} trial{'s' if trials != 1 else ''}"
