"""The tuning-budget figure of a task: each loss's expected test score of the best of k trials against k
(Dodge et al. 2019), the baseline drawn distinctly, each loss's untuned score (trial 0) apart at the left.

Read with :func:`bench.leaderboard.budget.trials_to_beat`: where a loss's curve crosses the baseline's
dashed untuned line it beats the untuned baseline; only where it crosses the dotted tuned line does it
beat the baseline given the same tuning.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from bench.errors import BenchError, closest, one_line
from bench.leaderboard.budget import SELECTIONS, SUMMARY_COLUMNS, curves_of
from bench.report.figures.common import PALETTE
from bench.report.figures.files import FORMATS, save_figure

BASELINE_COLOUR = "black"
X_SCALES = ("log2", "linear")
# the selection convention as the y axis names it (the caption gives :data:`SELECTIONS`' full name)
AXIS_SELECTIONS = MappingProxyType({"mean": "mean validation over seeds", "per-seed": "validation per seed, averaged"})


def draw_budget_curves(curves: pd.DataFrame, summary: pd.DataFrame, task: Hashable, metric_label: str,
                       path_stem: str | Path, baseline: str, *, selection: str | None = None, x_scale: str = "log2",
                       colours: Mapping[str, str] | None = None, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Draw ``task``'s budget curves (:func:`bench.leaderboard.budget.budget_curves`) and write
    ``path_stem``.png and .pdf (``formats``); returns the paths written.

    One line per loss of its expected test ``metric_label`` against k = 1..T (``x_scale`` ``log2`` or
    ``linear``, integer ticks), the ``baseline`` thick and black with a ±std band, its untuned score a
    dashed line and its tuned score a dotted one; each loss's untuned score (trial 0, registry
    defaults) a hollow square in the "untuned" column at the left. ``colours``: loss -> colour, to
    match other figures (default: the report's palette in order of appearance; 20 distinct colours,
    enough for a suite's losses). ``selection``: the convention drawn, needed only when ``curves``
    holds both.
    """
    fig = budget_figure(curves, summary, task, metric_label, baseline, selection=selection, x_scale=x_scale,
                        colours=colours)
    stem = Path(path_stem)
    try:
        save_figure(fig, stem.parent, stem.name, formats)
    except ValueError:
        raise BenchError(f"draw_budget_curves: figure name {stem.name!r} is not a safe file stem; build it with "
                         f"bench.report.figures.files.figure_stem") from None
    return [stem.parent / f"{stem.name}.{ext}" for ext in formats]


def budget_figure(curves: pd.DataFrame, summary: pd.DataFrame, task: Hashable, metric_label: str, baseline: str, *,
                  selection: str | None = None, x_scale: str = "log2",
                  colours: Mapping[str, str] | None = None) -> Figure:
    """The figure :func:`draw_budget_curves` writes, unsaved so it can be inspected."""
    if x_scale not in X_SCALES:
        raise BenchError(f"draw_budget_curves: unknown x_scale {x_scale!r}; use {' or '.join(map(repr, X_SCALES))}")
    part, selection = curves_of(curves, selection, "draw_budget_curves")
    missing = [c for c in SUMMARY_COLUMNS if c not in getattr(summary, "columns", ())]
    if missing:
        raise BenchError(f"draw_budget_curves: summary lacks column(s) {', '.join(missing)}; "
                         f"pass budget_curves(...).summary")
    tasks = list(dict.fromkeys(summary["task"].tolist()))
    if task not in tasks:
        raise BenchError(f"draw_budget_curves: unknown task {task!r}{closest(str(task), map(str, tasks))}")
    if baseline not in set(summary["loss"]):
        raise BenchError(f"draw_budget_curves: unknown baseline loss {baseline!r}"
                         f"{closest(baseline, summary['loss'].astype(str))}")
    rows = summary[[t == task for t in summary["task"]]]
    mine = part[[t == task for t in part["task"]]]
    losses = [str(x) for x in rows["loss"]]
    palette = dict(colours or {})
    for loss in losses:
        if loss not in palette and loss != baseline:
            palette[loss] = PALETTE[len(palette) % len(PALETTE)]
    palette[baseline] = BASELINE_COLOUR
    stats = {str(r["loss"]): r for r in rows.to_dict("records")}
    longest = int(mine["k"].max()) if len(mine) else 1

    fig = Figure(figsize=(9.0, 5.6 + 0.22 * math.ceil((len(losses) + 4) / 4)), layout="constrained")
    ax = fig.add_subplot()
    # the untuned column sits left of k = 1: one octave on a log2 axis, a tenth of the axis on a linear one
    untuned_x = 0.5 if x_scale == "log2" else 1.0 - max(1.0, 0.1 * longest)
    for loss in losses:
        is_base = loss == baseline
        curve = mine[mine["loss"] == loss].sort_values("k")
        colour = palette[loss]
        if len(curve):
            k = curve["k"].to_numpy(np.float64)
            y = curve["expected_test"].to_numpy(np.float64)
            ax.plot(k, y, color=colour, linewidth=2.6 if is_base else 1.4, zorder=4 if is_base else 3,
                    marker="o" if len(k) <= 16 else None, markersize=3.5 if is_base else 2.5, gid=f"curve:{loss}")
            if is_base:
                std = curve["test_std"].to_numpy(np.float64)
                if np.isfinite(std).any():
                    ax.fill_between(k, y - std, y + std, color=colour, alpha=0.08, linewidth=0, zorder=1,
                                    gid="baseline-band")
        untuned = float(stats[loss]["untuned_test"])
        if math.isfinite(untuned):
            ax.plot([untuned_x], [untuned], linestyle="none", marker="s", markersize=8, markerfacecolor="none",
                    markeredgecolor=colour, markeredgewidth=1.6, zorder=4, gid=f"untuned:{loss}")
    base = stats.get(baseline)
    if base is not None and math.isfinite(float(base["untuned_test"])):
        ax.axhline(float(base["untuned_test"]), color=BASELINE_COLOUR, linestyle="--", linewidth=1.1, zorder=2,
                   gid="baseline-untuned")
    if base is not None and math.isfinite(float(base["tuned_test"])):
        ax.axhline(float(base["tuned_test"]), color=BASELINE_COLOUR, linestyle=":", linewidth=1.3, zorder=2,
                   gid="baseline-tuned")
    _x_axis(ax, x_scale, longest, untuned_x)
    ax.set_xlabel("k, trials of the search drawn (expected best of k, Dodge et al. 2019)")
    ax.set_ylabel(f"expected test {metric_label} of the trial\nselected by {AXIS_SELECTIONS[selection]}")
    ax.grid(True, alpha=0.3)

    handles = [Line2D([], [], color=palette[loss], linewidth=2.6 if loss == baseline else 1.4,
                      label=f"{loss} (baseline)" if loss == baseline else loss) for loss in losses]
    handles.append(Line2D([], [], linestyle="none", marker="s", markersize=8, markerfacecolor="none",
                          markeredgecolor="dimgrey", label="untuned (trial 0, registry defaults)"))
    drawn = {line.get_gid() for line in ax.get_lines()} | {c.get_gid() for c in ax.collections}
    if "baseline-untuned" in drawn:
        handles.append(Line2D([], [], color=BASELINE_COLOUR, linestyle="--", linewidth=1.1, label=f"{baseline} untuned"))
    if "baseline-tuned" in drawn:
        handles.append(Line2D([], [], color=BASELINE_COLOUR, linestyle=":", linewidth=1.3, label=f"{baseline} tuned (tuned rule)"))
    if "baseline-band" in drawn:
        handles.append(Patch(color=BASELINE_COLOUR, alpha=0.08, label=f"{baseline}: ± std over draws of k trials"))
    # below the axes: with a suite's dozen losses any place inside covers curves
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize="small")
    fig.suptitle(f"{_task_text(task)}: expected test {metric_label} of the best of k trials\n"
                 f"selection: {SELECTIONS[selection]}" + _notes(rows, mine, baseline), fontsize="medium")
    return fig


def _x_axis(ax, x_scale: str, longest: int, untuned_x: float) -> None:
    """Integer ticks 1..T (powers of two, and T, on a log2 axis) and the "untuned" column at the left."""
    if x_scale == "log2":
        ax.set_xscale("log", base=2)
        ticks = sorted({2 ** i for i in range(int(math.log2(longest)) + 1)} | {longest})
        ax.set_xlim(untuned_x / 1.4, longest * 1.15)
    else:
        step = next(s for s in (1, 2, 4, 5, 10, 20, 25, 50, 100, 200, 250, 500) if longest / s <= 12) \
            if longest <= 6000 else math.ceil(longest / 12)
        # 1, the multiples of a round step, and T, without a tick crowding T
        ticks = sorted({1, longest} | {j for j in range(step, longest, step) if longest - j >= step / 2})
        ax.set_xlim(untuned_x - 0.5 * max(1.0, 0.05 * longest), longest + max(0.5, 0.02 * longest))
    ax.set_xticks([untuned_x, *ticks], ["untuned", *map(str, ticks)])
    ax.xaxis.set_minor_locator(NullLocator())
    # a rule between the untuned column and k = 1: trial 0 stands apart from the curves
    ax.axvline(math.sqrt(untuned_x) if x_scale == "log2" else (untuned_x + 1.0) / 2, color="grey", linewidth=0.6,
               alpha=0.6)


def _task_text(task: Hashable) -> str:
    return " / ".join(map(str, task)) if isinstance(task, tuple) else str(task)


def _notes(rows: pd.DataFrame, mine: pd.DataFrame, baseline: str) -> str:
    """A caption line for what the figure leaves out: incomplete trials (trial 0 among them: no untuned square),
    losses without a curve."""
    notes = []
    left = [f"{r['loss']} (trial{'s' if len(r['incomplete']) > 1 else ''} {', '.join(map(str, r['incomplete']))})"
            for r in rows.to_dict("records") if r["incomplete"]]
    if left:
        notes.append("incomplete trials left out: " + "; ".join(left))
    drawn = set(mine["loss"])
    empty = [str(x) for x in rows["loss"] if x not in drawn]
    if empty:
        notes.append("no complete trial: " + ", ".join(empty) + (" (the baseline)" if baseline in empty else ""))
    return ("\n" + one_line("; ".join(notes), 160)) if notes else ""
