"""The leaderboard of a suite (or search grid): per task each loss's tuned score, across tasks each loss
against the baseline, and what each number stands on. A pure function of the trials' scores.

Per task, a loss's *tuned* trial is the one with the best mean validation accuracy over seeds among its
complete trials (every seed finished; the lowest trial number wins ties), as ``bench report --select
tuned`` chooses, except that a trial lacking a seed is never chosen: it is counted as incomplete
(:mod:`bench.leaderboard.budget` is the one definition). Its per-seed test values are the loss's scores on
the task.

Across tasks, each loss is compared with the baseline on the tasks where both have a tuned trial:

* scores are normalised per task as the difference from the baseline's mean on that task, in the metric's
  displayed units (accuracy points), so a loss's aggregate does not move when another loss joins;
* IQM of those differences over (task, seed) runs with a 95% stratified-bootstrap interval, and the
  probability of improvement over the baseline with its interval (rliable; Agarwal et al. 2021);
* mean rank over the tasks, a Friedman test and Wilcoxon-Holm pairwise tests for the critical-difference
  diagram (Demšar 2006; Benavoli et al. 2016), with a plain statement when there are too few tasks;
* the probabilities that the loss is worse, practically equivalent within a ROPE, or better (the Bayesian
  signed-rank test over tasks; Benavoli et al. 2017);
* the number of random trials it needs to beat the untuned and the tuned baseline (Dodge et al. 2019).

A loss that lacks a tuned trial on some task is compared on the tasks it has, and its row says which it
lacks; a loss with none, or a baseline with none, is said so in the table, never dropped in silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.leaderboard import aggregate, budget
from bench.leaderboard.scores import TrialScores
from bench.metrics.table import Metric

# metrics shown in points (x100): accuracies and calibration errors are fractions
PERCENT = {"acc", "balanced_acc", "ece", "ece_ts"}
# default region of practical equivalence, in the displayed units: half a point, or 0.01 nats / Brier units
DEFAULT_ROPE = {"nll": 0.01, "brier": 0.01}


def display_scale(metric: Metric) -> float:
    return 100.0 if metric.key in PERCENT else 1.0


def default_rope(metric: Metric) -> float:
    return DEFAULT_ROPE.get(metric.key, 0.5)


@dataclass(frozen=True)
class TaskEntry:
    """One loss on one task: the tuned trial, its per-seed test values (displayed units), the untuned
    (trial 0) mean, and how complete the search is."""

    trial: int | None
    values: dict[str, Any]
    test: dict[int, float]
    untuned: float
    complete: int
    incomplete: list[int]
    failed: int

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.test.values()))) if self.test else math.nan

    @property
    def std(self) -> float:
        return float(np.std(list(self.test.values()), ddof=1)) if len(self.test) > 1 else math.nan


@dataclass(frozen=True)
class LossRow:
    """One loss against the baseline across tasks (module docstring); NaN/None where it cannot be computed."""

    loss: str
    tasks: list[str]  # the tasks it is compared on
    missing: list[str]  # the tasks where it has no tuned trial
    mean_rank: float
    iqm: tuple[float, float, float]
    poi: tuple[float, float, float]
    rope: Any  # aggregate.RopeResult or None
    verdict: str
    beat_untuned: dict[str, int | None]
    beat_tuned: dict[str, int | None]


@dataclass
class Leaderboard:
    name: str
    is_suite: bool
    metric: Metric
    baseline: str
    rope: float
    reps: int
    tasks: list[str]
    losses: list[str]
    seeds: list[int]
    trials: int
    entries: dict[tuple[str, str], TaskEntry]
    rows: list[LossRow]  # the baseline first, then by IQM
    cd: Any = None  # aggregate's critical-difference result (None with fewer than 2 complete losses)
    profiles: Any = None
    taus: Any = None
    curves: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return display_scale(self.metric)

    @property
    def better(self) -> str:
        return "lower" if self.metric.lower_is_better else "higher"


def build(scores: TrialScores, name: str, is_suite: bool, baseline: str, rope: float | None = None,
          reps: int = 10_000, seed: int = 0) -> Leaderboard:
    """The leaderboard of ``scores`` against ``baseline`` (a loss of the suite). Every statistic works in the
    metric's displayed units (accuracy points), signed so that higher is better."""
    metric = scores.metric
    rope = default_rope(metric) if rope is None else rope
    if not rope > 0:
        raise BenchError(f"--rope {rope:g}: the region of practical equivalence must be > 0 (in {units(metric)})")
    if baseline not in scores.losses:
        from bench.errors import closest

        raise BenchError(f"--baseline {baseline!r}: not a loss of {name!r}{closest(baseline, scores.losses)}")
    scale = display_scale(metric)
    frame = scores.frame
    # the budget module's input: one row per cell, the test value signed and in displayed units
    trials = frame[["task", "loss", "trial", "seed", "val", "status"]].assign(test=frame["score"] * scale)
    made = {s: budget.budget_curves(trials, scores.seeds, selection=s, n_trials=scores.trials) for s in budget.SELECTIONS}
    curves = pd.concat([m.curves for m in made.values()], ignore_index=True)
    summary = made["mean"].summary  # the tuned rule's convention chooses the reported trial
    entries = _entries(scores, summary, scale)
    tuned = {key for key, e in entries.items() if e.trial is not None}
    notes: list[str] = []
    base_tasks = [t for t in scores.tasks if (t, baseline) in tuned]
    if not base_tasks:
        notes.append(f"the baseline {baseline} has no trial finished on every seed on any task: no loss can be "
                     f"compared with it yet")
    complete = [loss for loss in scores.losses if all((t, loss) in tuned for t in scores.tasks)]
    cd = profiles = taus = None
    ranks: dict[str, float] = {}
    if len(complete) >= 2 and len(scores.tasks) >= 2:
        means = pd.DataFrame({loss: [_signed(metric, entries[(t, loss)].mean) for t in scores.tasks]
                              for loss in complete}, index=scores.tasks)
        cd = aggregate.critical_difference(means)
        ranks = {str(k): float(v) for k, v in cd.mean_ranks.items()}
        if baseline in complete:
            norm = aggregate.normalise(_runs(scores, entries, complete, scores.tasks), baseline)
            matrices = aggregate.score_matrices(norm, complete)
            low = min(float(m.min()) for m in matrices.values())
            high = max(float(m.max()) for m in matrices.values())
            taus = np.linspace(low, high, 101) if high > low else np.array([low - 1, low, low + 1])
            profiles = aggregate.performance_profile(matrices, taus, seed=seed)
        dropped = [loss for loss in scores.losses if loss not in complete]
        if dropped:
            notes.append(f"mean ranks, the critical-difference diagram and the performance profiles cover the "
                         f"losses with a tuned trial on every task; left out: {', '.join(dropped)}")
    elif len(scores.tasks) < 2:
        notes.append("one task: no cross-task ranks or critical-difference diagram")
    beats = {loss: budget.trials_to_beat(curves, summary, loss, baseline, selection="mean")
             for loss in scores.losses if loss != baseline}
    rows = [_compare(scores, entries, loss, baseline, base_tasks, tuned, rope, reps, seed, ranks, beats.get(loss))
            for loss in scores.losses]
    rows.sort(key=lambda r: (r.loss != baseline, -_key(r.iqm[0]), r.loss))
    return Leaderboard(name, is_suite, metric, baseline, rope, reps, scores.tasks, scores.losses, scores.seeds,
                       scores.trials, entries, rows, cd, profiles, taus, curves, summary, notes)


def units(metric: Metric) -> str:
    return "accuracy points" if metric.key in ("acc", "balanced_acc") else (
        f"{metric.short} points" if metric.key in PERCENT else metric.unit or f"{metric.short} units")


def _signed(metric: Metric, value: float) -> float:
    return -value if metric.lower_is_better else value


def _key(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _entries(scores: TrialScores, summary: pd.DataFrame, scale: float) -> dict[tuple[str, str], TaskEntry]:
    """Per (task, loss): the tuned trial the budget summary chose (complete trials only), its per-seed test
    values in displayed units (unsigned), and the untuned trial's mean."""
    frame = scores.frame
    by = {k: g for k, g in frame.groupby(["task", "loss"], sort=False)}
    out: dict[tuple[str, str], TaskEntry] = {}
    for row in summary.itertuples(index=False):
        group = by[(row.task, row.loss)]
        chosen = None if pd.isna(row.tuned_trial) else int(row.tuned_trial)
        test: dict[int, float] = {}
        values: dict[str, Any] = {}
        if chosen is not None:
            members = group[(group["trial"] == chosen) & group["seed"].isin(scores.seeds)]
            test = {int(s): float(v) * scale for s, v in zip(members["seed"], members["test"])}
            values = dict(members["values"].iloc[0])
        untuned = float(row.untuned_test) if bool(row.untuned_complete) else math.nan
        failed = int(group["status"].isin(["failed", "diverged"]).sum())
        out[(row.task, row.loss)] = TaskEntry(chosen, values, test, _signed(scores.metric, untuned),
                                              int(row.complete), [int(t) for t in row.incomplete], failed)
    return out


def _runs(scores: TrialScores, entries: dict, losses: list[str], tasks: list[str]) -> pd.DataFrame:
    """(task, loss, seed, score) of the tuned trials, signed (higher is better), in displayed units."""
    rows = [{"task": t, "loss": loss, "seed": s, "score": _signed(scores.metric, v)}
            for loss in losses for t in tasks for s, v in entries[(t, loss)].test.items()]
    return pd.DataFrame(rows, columns=["task", "loss", "seed", "score"])


def _compare(scores: TrialScores, entries: dict, loss: str, baseline: str, base_tasks: list[str], tuned: set,
             rope: float, reps: int, seed: int, ranks: dict[str, float], beat: pd.DataFrame | None) -> LossRow:
    """One loss against the baseline on the tasks both have a tuned trial on."""
    nan3 = (math.nan, math.nan, math.nan)
    tasks = [t for t in base_tasks if (t, loss) in tuned]
    missing = [t for t in scores.tasks if (t, loss) not in tuned]
    beat_untuned = {} if beat is None else {r.task: r.beats_untuned_at for r in beat.itertuples(index=False)}
    beat_tuned = {} if beat is None else {r.task: r.beats_tuned_at for r in beat.itertuples(index=False)}
    rank = ranks.get(loss, math.nan)
    if loss == baseline:
        return LossRow(loss, tasks, missing, rank, (0.0, 0.0, 0.0) if tasks else nan3, nan3, None, "baseline",
                       beat_untuned, beat_tuned)
    if not tasks:
        return LossRow(loss, [], missing, rank, nan3, nan3, None, "no data", beat_untuned, beat_tuned)
    norm = aggregate.normalise(_runs(scores, entries, [baseline, loss], tasks), baseline)
    mine, theirs = aggregate.score_matrix(norm, loss), aggregate.score_matrix(norm, baseline)
    iqm = tuple(aggregate.iqm({loss: mine}, reps=reps, seed=seed)[loss])
    poi = tuple(aggregate.probability_of_improvement(mine, theirs, reps=reps, seed=seed))
    diffs = [_signed(scores.metric, entries[(t, loss)].mean - entries[(t, baseline)].mean) for t in tasks]
    result = aggregate.rope_verdict(diffs, rope, seed=seed)
    return LossRow(loss, tasks, missing, rank, iqm, poi, result, aggregate.verdict(result), beat_untuned, beat_tuned)
