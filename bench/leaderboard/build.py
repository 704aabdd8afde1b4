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
    """The leaderboard of ``scores`` against ``baseline`` (a loss of the suite)."""
    metric = scores.metric
    rope = default_rope(metric) if rope is None else rope
    if not rope > 0:
        raise BenchError(f"--rope {rope:g}: the region of practical equivalence must be > 0 (in {units(metric)})")
    if baseline not in scores.losses:
        from bench.errors import closest

        raise BenchError(f"--baseline {baseline!r}: not a loss of {name!r}{closest(baseline, scores.losses)}")
    scale = display_scale(metric)
    frame = scores.frame
    trials = frame.rename(columns={"score": "signed"}).assign(
        test=frame["score"], status=frame["status"].where(frame["status"].eq("done"), "missing"))
    curves = pd.concat([budget.budget_curves(trials, scores.seeds, selection=s)[0] for s in budget.SELECTIONS])
    _, summary = budget.budget_curves(trials, scores.seeds, selection="mean")
    entries = _entries(scores, summary, scale)
    notes: list[str] = []
    tuned = {(t, l): e for (t, l), e in entries.items() if e.trial is not None}
    base_tasks = [t for t in scores.tasks if (t, baseline) in tuned]
    if not base_tasks:
        notes.append(f"the baseline {baseline} has no complete trial on any task: no loss can be compared with it yet")
    rows: list[LossRow] = []
    for loss in scores.losses:
        have = [t for t in base_tasks if (t, loss) in tuned]
        missing = [t for t in scores.tasks if (t, loss) not in tuned]
        rows.append(_compare(scores, entries, loss, baseline, have, missing, rope, reps, seed, curves, summary))
    cd = profiles = taus = None
    complete = [loss for loss in scores.losses if all((t, loss) in tuned for t in scores.tasks)]
    if len(complete) >= 2 and len(scores.tasks) >= 2:
        means = pd.DataFrame({loss: [tuned[(t, loss)].mean * (-1 if metric.lower_is_better else 1)
                                     for t in scores.tasks] for loss in complete}, index=scores.tasks)
        cd = aggregate.critical_difference(means)
        matrices = {loss: aggregate.score_matrix(_normalised(scores, entries, complete, baseline), loss)
                    for loss in complete}
        taus = np.linspace(min(m.min() for m in matrices.values()), max(m.max() for m in matrices.values()), 101)
        profiles = aggregate.performance_profile(matrices, taus)
    elif len(scores.tasks) < 2:
        notes.append("one task: no cross-task ranking or critical-difference diagram")
    dropped = [loss for loss in scores.losses if loss not in complete]
    if cd is not None and dropped:
        notes.append(f"the ranks and the critical-difference diagram cover the losses with a tuned trial on every "
                     f"task; left out: {', '.join(dropped)}")
    rows.sort(key=lambda r: (r.loss != baseline, -_key(r.iqm[0])))
    return Leaderboard(name, is_suite, metric, baseline, rope, reps, scores.tasks, scores.losses, scores.seeds,
                       scores.trials, entries, rows, cd, profiles, taus, curves, summary, notes)


def units(metric: Metric) -> str:
    return "accuracy points" if metric.key in ("acc", "balanced_acc") else (
        f"{metric.short} points" if metric.key in PERCENT else metric.unit or f"{metric.short} units")


def _key(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _entries(scores: TrialScores, summary: pd.DataFrame, scale: float) -> dict[tuple[str, str], TaskEntry]:
    frame = scores.frame
    out: dict[tuple[str, str], TaskEntry] = {}
    by = {k: g for k, g in frame.groupby(["task", "loss"], sort=False)}
    for row in summary.itertuples(index=False):
        group = by[(row.task, row.loss)]
        chosen = row.tuned_trial if row.tuned_trial is not None and not pd.isna(row.tuned_trial) else None
        test: dict[int, float] = {}
        values: dict[str, Any] = {}
        if chosen is not None:
            chosen = int(chosen)
            members = group[group["trial"] == chosen]
            test = {int(s): float(v) * scale for s, v in zip(members["seed"], members["test"])}
            values = dict(members["values"].iloc[0])
        zero = group[(group["trial"] == 0) & group["status"].eq("done")]
        untuned = float(zero["test"].mean()) * scale if len(zero) == len(scores.seeds) else math.nan
        failed = int(group["status"].isin(["failed", "diverged"]).sum())
        out[(row.task, row.loss)] = TaskEntry(chosen, values, test, untuned, int(row.complete),
                                              list(row.incomplete), failed)
    return out


def _normalised(scores: TrialScores, entries: dict, losses: list[str], baseline: str) -> pd.DataFrame:
    """Per (task, loss, seed) of the tuned trials, the signed score in displayed units (higher is better),
    as aggregate.normalise takes it."""
    sign = -1.0 if scores.metric.lower_is_better else 1.0
    rows = [{"task": t, "loss": loss, "seed": s, "score": sign * v}
            for loss in dict.fromkeys([baseline, *losses]) for t in scores.tasks
            for s, v in entries[(t, loss)].test.items()]
    return aggregate.normalise(pd.DataFrame(rows), baseline)


def _compare(scores: TrialScores, entries: dict, loss: str, baseline: str, tasks: list[str], missing: list[str],
             rope: float, reps: int, seed: int, curves: pd.DataFrame, summary: pd.DataFrame) -> LossRow:
    nan3 = (math.nan, math.nan, math.nan)
    beat = budget.trials_to_beat(curves[curves["selection"] == "mean"], summary, loss, baseline)
    beat_untuned = {t: beat[t][0] for t in beat}
    beat_tuned = {t: beat[t][1] for t in beat}
    if not tasks:
        return LossRow(loss, [], missing, math.nan, nan3, nan3, None, "no data", beat_untuned, beat_tuned)
    sign = -1.0 if scores.metric.lower_is_better else 1.0
    norm = _normalised(ScoresOn(scores, tasks), entries, [loss], baseline)
    mine = aggregate.score_matrix(norm, loss)
    if loss == baseline:
        return LossRow(loss, tasks, missing, math.nan, (0.0, 0.0, 0.0), nan3, None, "baseline", beat_untuned, beat_tuned)
    theirs = aggregate.score_matrix(norm, baseline)
    iqm = aggregate.iqm({loss: mine}, reps=reps, seed=seed)[loss]
    poi = aggregate.probability_of_improvement(mine, theirs, reps=reps, seed=seed)
    diffs = np.array([sign * (entries[(t, loss)].mean - entries[(t, baseline)].mean) for t in tasks])
    verdict_result = aggregate.rope_verdict(diffs, rope, seed=seed)
    return LossRow(loss, tasks, missing, math.nan, iqm, poi, verdict_result, aggregate.verdict(verdict_result),
                   beat_untuned, beat_tuned)


class ScoresOn:
    """``scores`` seen on some tasks only (the tasks both losses have)."""

    def __init__(self, scores: TrialScores, tasks: list[str]):
        self.metric, self.tasks = scores.metric, tasks
