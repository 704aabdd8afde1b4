"""What the leaderboard's tables say, once, as text and sort keys: every format (markdown, LaTeX, CSV, the
HTML page) renders these rows and notes and computes nothing of its own."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from bench.leaderboard.build import Leaderboard, LossRow, TaskEntry, units
from bench.leaderboard.budget import SELECTIONS

TUNED_RULE = ("tuned: per task, the trial with the best mean validation accuracy over seeds among the trials "
              "finished on every seed (the lowest trial on ties), each cell at its best validation epoch")


@dataclass(frozen=True)
class Shown:
    """One table cell: its text, the number it sorts by (None: sorts last) and whether it is the column's best."""

    text: str
    key: float | str | None = None
    best: bool = False


def num(x: float, digits: int = 2, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def interval(t: tuple[float, float, float], digits: int = 2, signed: bool = False) -> str:
    point, lo, hi = t
    if not math.isfinite(point):
        return "—"
    return f"{num(point, digits, signed)} [{num(lo, digits, signed)}, {num(hi, digits, signed)}]"


def caption(lb: Leaderboard) -> str:
    """The sentence every format puts above the tables: metric, rule, ROPE, normalisation, budget."""
    what = "suite" if lb.is_suite else "search grid"
    return (f"{what} {lb.name}: test {lb.metric.name} ({units(lb.metric)}; {lb.better} is better), "
            f"{len(lb.tasks)} tasks, {len(lb.losses)} losses, {lb.trials} trials x {len(lb.seeds)} seeds each. "
            f"Selection rule: {TUNED_RULE}. Scores are normalised per task as the difference from the baseline "
            f"{lb.baseline}'s mean on that task (so 0 is {lb.baseline}; positive is better); IQM and probability of "
            f"improvement over (task, seed) runs with 95% stratified-bootstrap intervals ({lb.reps:,} resamples). "
            f"ROPE ±{lb.rope:g} {units(lb.metric)}: P(worse) / P(equivalent) / P(better) from the Bayesian "
            f"signed-rank test over tasks.")


def overall_heads(lb: Leaderboard) -> list[str]:
    return ["loss", "tasks", "mean rank", f"IQM Δ vs {lb.baseline} [95% CI]", "P(improvement) [95% CI]",
            "P(worse / equiv. / better)", "verdict", "trials to beat untuned", "trials to beat tuned"]


def _beats(row: LossRow, lb: Leaderboard, which: dict[str, int | None]) -> Shown:
    """Per task, the trials a loss needs (``>T``: not within its trials), in task order; sorted by the median."""
    if row.loss == lb.baseline or not which:
        return Shown("—")
    parts, ks = [], []
    for t in lb.tasks:
        if t not in which:
            continue
        entry = lb.entries.get((t, row.loss))
        if entry is None or entry.trial is None:  # no complete trial: nothing to count, not "never"
            parts.append("—")
            continue
        k = which[t]
        parts.append(str(k) if k is not None else f">{lb.trials}")
        ks.append(k if k is not None else lb.trials + 1)
    if not ks:
        return Shown(" · ".join(parts) if any(p != "—" for p in parts) else "—")
    ks.sort()
    return Shown(" · ".join(parts), float(ks[len(ks) // 2]) if ks else None)


def overall_rows(lb: Leaderboard) -> list[list[Shown]]:
    best_iqm = max((r.iqm[0] for r in lb.rows if r.loss != lb.baseline and math.isfinite(r.iqm[0])), default=None)
    out = []
    for r in lb.rows:
        tasks = f"{len(r.tasks)}/{len(lb.tasks)}" + (f" (lacks {', '.join(r.missing)})" if r.missing else "")
        if r.rope is not None:
            probs = f"{r.rope.p_worse:.2f} / {r.rope.p_equivalent:.2f} / {r.rope.p_better:.2f}"
            probs_key: float | None = r.rope.p_better
        else:
            probs, probs_key = "—", None
        out.append([
            Shown(r.loss + (" (baseline)" if r.loss == lb.baseline else ""), r.loss),
            Shown(tasks, float(len(r.tasks))),
            Shown(num(r.mean_rank), r.mean_rank if math.isfinite(r.mean_rank) else None),
            Shown(interval(r.iqm, signed=True), r.iqm[0] if math.isfinite(r.iqm[0]) else None,
                  best=best_iqm is not None and r.iqm[0] == best_iqm),
            Shown(interval(r.poi), r.poi[0] if math.isfinite(r.poi[0]) else None),
            Shown(probs, probs_key),
            Shown(r.verdict, r.verdict),
            _beats(r, lb, r.beat_untuned),
            _beats(r, lb, r.beat_tuned),
        ])
    return out


def overall_notes(lb: Leaderboard) -> list[str]:
    notes = [
        f"IQM Δ: the interquartile mean of (score − {lb.baseline}'s mean on the task) over the (task, seed) runs of "
        f"the loss's tuned trials, in {units(lb.metric)}. P(improvement): the probability that a run of the loss "
        f"scores better than a run of {lb.baseline} on a task drawn at random (Agarwal et al. 2021).",
        f"verdict: 'better' or 'worse' when that probability exceeds 0.95, 'equivalent' when P(equivalent) does "
        f"(within ±{lb.rope:g} {units(lb.metric)}), else 'undecided'.",
        f"trials to beat: per task ({' · '.join(lb.tasks)}), the smallest k for which the expected test score of the "
        f"best-of-k random trials (Dodge et al. 2019, {SELECTIONS['mean']}) beats {lb.baseline} untuned (its trial 0) "
        f"and tuned (its best-validation trial); >{lb.trials}: not within the loss's trials.",
    ]
    if lb.cd is not None and getattr(lb.cd, "caveat", ""):
        notes.append(f"critical-difference diagram: {lb.cd.caveat}")
    return notes + list(lb.notes)


TASK_HEADS = ["loss", "tuned (mean ± std)", "n", "untuned (trial 0)", "trial", "selected hyperparameters",
              "complete trials"]


def format_values(values: dict[str, Any]) -> str:
    parts = []
    for k, v in sorted(values.items()):
        v = f"{v:.3g}" if isinstance(v, float) else str(v)
        parts.append(f"{k}={v}")
    return ", ".join(parts) or "registry defaults"


def task_rows(lb: Leaderboard, task: str) -> list[list[Shown]]:
    entries = {loss: lb.entries[(task, loss)] for loss in lb.losses if (task, loss) in lb.entries}
    means = [e.mean for e in entries.values() if math.isfinite(e.mean)]
    best = (min(means) if lb.metric.lower_is_better else max(means)) if means else None
    digits = 2 if lb.scale == 100 else 4
    out = []
    for loss, e in entries.items():
        mean_text = "—" if not e.test else f"{num(e.mean, digits)} ± {num(e.std, digits)}"
        complete = f"{e.complete}/{lb.trials}" + (
            f" (incomplete: {', '.join(map(str, e.incomplete))})" if e.incomplete else "")
        if e.failed:
            complete += f"; {e.failed} failed or diverged cell{'s' if e.failed > 1 else ''}"
        out.append([
            Shown(loss + (" (baseline)" if loss == lb.baseline else ""), loss),
            Shown(mean_text, e.mean if math.isfinite(e.mean) else None, best=best is not None and e.mean == best),
            Shown(str(len(e.test)), float(len(e.test))),
            Shown(num(e.untuned, digits), e.untuned if math.isfinite(e.untuned) else None),
            Shown("—" if e.trial is None else str(e.trial), None if e.trial is None else float(e.trial)),
            Shown("—" if e.trial is None else format_values(e.values)),
            Shown(complete, float(e.complete)),
        ])
    return out


def task_caption(lb: Leaderboard, task: str) -> str:
    return (f"{task}: test {lb.metric.name} ({units(lb.metric)}) of each loss's tuned trial, mean ± std over "
            f"{len(lb.seeds)} seeds; untuned: trial 0, the loss's registry defaults.")


def csv_records(lb: Leaderboard) -> list[dict[str, Any]]:
    """One record per (task, loss) and one per loss across tasks (task ``all``), every number unrounded."""
    recs: list[dict[str, Any]] = []
    for task in lb.tasks:
        for loss in lb.losses:
            e: TaskEntry | None = lb.entries.get((task, loss))
            if e is None:
                continue
            recs.append({"suite": lb.name, "metric": lb.metric.key, "task": task, "loss": loss,
                         "mean": e.mean, "std": e.std, "n": len(e.test), "untuned": e.untuned,
                         "trial": e.trial, "hyperparameters": json.dumps(e.values, sort_keys=True),
                         "complete_trials": e.complete, "incomplete_trials": " ".join(map(str, e.incomplete)),
                         "failed_cells": e.failed})
    for r in lb.rows:
        rec = {"suite": lb.name, "metric": lb.metric.key, "task": "all", "loss": r.loss,
               "tasks_compared": len(r.tasks), "tasks_missing": " ".join(r.missing), "mean_rank": r.mean_rank,
               "iqm_delta": r.iqm[0], "iqm_low": r.iqm[1], "iqm_high": r.iqm[2],
               "p_improvement": r.poi[0], "p_improvement_low": r.poi[1], "p_improvement_high": r.poi[2],
               "p_worse": getattr(r.rope, "p_worse", math.nan), "p_equivalent": getattr(r.rope, "p_equivalent", math.nan),
               "p_better": getattr(r.rope, "p_better", math.nan), "rope": lb.rope, "verdict": r.verdict,
               "beats_untuned_at": " ".join(f"{t}={k}" for t, k in r.beat_untuned.items()),
               "beats_tuned_at": " ".join(f"{t}={k}" for t, k in r.beat_tuned.items())}
        recs.append(rec)
    return recs
