"""A search grid's figures: the tuning landscape (validation score against each searched value) and the
tuned trial's curves beside trial 0's; scores and choices are the ``tuned`` selection rule's."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bench.config.cells import Cell
from bench.config.search import Distribution
from bench.report.content import trial_text
from bench.report.figures.common import FinishedCell, by_setting, group_by, number, title
from bench.report.figures.curves import seed_curve
from bench.report.figures.files import figure_stem
from bench.report.selection import RULES, Selected, has_validation, histories, select


def search_figures(cells: list[Cell], done: list[FinishedCell], results: pd.DataFrame, history: pd.DataFrame,
                   colours: dict[str, str], grid: str = "", space: Mapping[str, Distribution] | None = None,
                   chosen: Selected | None = None) -> list[tuple[str, Figure]]:
    """The tuning landscape and the tuned curves of each (dataset, architecture, variant) with scored trials.

    The scores and the selected trials are the ``tuned`` rule's (:func:`bench.report.selection.select`),
    so the star marks exactly the trial ``bench report --select tuned`` reports. ``chosen``: that rule's
    selection when the caller has it (from the rows' picks); ``history`` then needs only the rows of the
    curves drawn (trial 0 and the chosen trials), else every trial's.
    """
    if not has_validation(cells) or history.empty or "epoch" not in history.columns:
        return []
    history = history.drop_duplicates(["attempt_id", "epoch"], keep="last")
    if chosen is None:
        chosen = select(RULES["tuned"], cells, histories(results, history))
    out: list[tuple[str, Figure]] = []
    searched = [d for d in done if d.cell.trial is not None]
    for (ds, arch, variant), members in by_setting(searched).items():
        suffix = [variant] if variant else []
        landscape = tuning_figure(members, chosen, colours, grid, space)
        if landscape is not None:
            out.append((figure_stem("tuning", ds, arch, *suffix), landscape))
            curves = tuned_curves_figure(members, chosen, history, colours, grid)
            if curves is not None:
                out.append((figure_stem("tuned-curves", ds, arch, *suffix), curves))
    return out


def _searched_keys(members: list[FinishedCell]) -> list[str]:
    """The keys drawn by the members' trials: training settings first, then loss parameters, each sorted."""
    keys = {k for d in members for k in d.cell.config["search"]["values"]}
    return sorted(keys, key=lambda k: (not k.startswith("train."), k))


def _log_scale(key: str, values: list[float], space: Mapping[str, Distribution] | None) -> bool:
    """A log axis for a loguniform setting. Without the distributions (a caller that has no
    registry), for positive values spanning two decades or more, which is what a log-uniform
    draw over a tuning range looks like."""
    if space is not None and key in space:
        return space[key].log
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) >= 2 and max(positive) >= 100 * min(positive)


def _trial_scores(members: list[FinishedCell], key: str, chosen: Selected) -> dict[int, tuple[Any, list[float]]]:
    """trial -> (its drawn value of ``key``, its seeds' finite scores), for the trials that drew ``key``."""
    out: dict[int, tuple[Any, list[float]]] = {}
    for d in members:
        values = d.cell.config["search"]["values"]
        score = chosen.score.get(d.cell.cell_id, math.nan)
        if key in values and math.isfinite(score):
            out.setdefault(int(d.cell.trial or 0), (values[key], []))[1].append(score)
    return out


def tuning_figure(members: list[FinishedCell], chosen: Selected, colours: dict[str, str], grid: str = "",
                  space: Mapping[str, Distribution] | None = None) -> Figure | None:
    """One panel per searched key: validation score against the drawn value, per loss; None without scores.

    ``members``: the finished search cells of one (dataset, architecture, variant); ``chosen``:
    the ``tuned`` rule applied to the grid. A loss appears in the panels of the keys it draws
    (every ``train.*`` key, its own parameters). Each loss's trials are its colour's dots at the
    mean score over seeds, its seeds faint dots; trial 0 a hollow square; the selected trial a star.
    """
    keys = _searched_keys(members)
    panels = [(key, group_by([d for d in members if key in d.cell.config["search"]["values"]], lambda d: d.cell.loss))
              for key in keys]
    if not any(_trial_scores(group, key, chosen) for key, by_loss in panels for group in by_loss.values()):
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(max(6.0, 4.8 * ncols), 4.2 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (key, by_loss) in zip(axes, panels):
        _tuning_panel(ax, key, by_loss, chosen, colours, space)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    # one legend for all panels, below them: inside a panel it covers points wherever it goes
    losses = list(dict.fromkeys(str(d.cell.loss) for d in members))
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=6, color=colours.get(loss, "black"), label=loss)
               for loss in losses]
    handles += [Line2D([], [], linestyle="none", marker="s", markersize=9, markerfacecolor="none",
                       markeredgecolor="black", label="trial 0 (registry defaults)"),
                Line2D([], [], linestyle="none", marker="*", markersize=13, color="grey", markeredgecolor="black",
                       label="selected (tuned rule)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize="small")
    first = members[0].cell
    where = f"{first.dataset} / {first.architecture}" + (f" ({first.variant})" if first.variant else "")
    fig.suptitle(title(grid, f"{where}: tuning landscape") + "\nvalidation accuracy at each cell's best validation "
                 "epoch, mean over seeds (faint: each seed)")
    return fig


def _tuning_panel(ax, key: str, by_loss: dict[Hashable, list[FinishedCell]], chosen: Selected, colours: dict[str, str],
                  space: Mapping[str, Distribution] | None) -> None:
    numeric = all(number(v) is not None for group in by_loss.values()
                  for v, _ in _trial_scores(group, key, chosen).values())
    xs_all: list[float] = []
    for loss, group in by_loss.items():
        trials = _trial_scores(group, key, chosen)
        if not trials:
            continue
        colour = colours.get(str(loss), "black")
        # a choice of strings (or booleans) has no order to plot by: matplotlib's category axis places them
        x_of: Callable[[Any], Any] = float if numeric else str
        order = sorted(trials, key=lambda t: (x_of(trials[t][0]), t)) if numeric else sorted(trials)
        xs = [x_of(trials[t][0]) for t in order]
        means = [float(np.mean(trials[t][1])) for t in order]
        seeds_x = [x_of(trials[t][0]) for t in order for _ in trials[t][1]]
        seeds_y = [y for t in order for y in trials[t][1]]
        ax.scatter(seeds_x, seeds_y, color=colour, alpha=0.3, s=14, edgecolors="none", gid=f"seeds:{loss}")
        ax.plot(xs, means, linestyle="none", marker="o", markersize=6, color=colour, label=str(loss),
                           gid=f"mean:{loss}")
        if 0 in trials:
            ax.plot([x_of(trials[0][0])], [float(np.mean(trials[0][1]))], linestyle="none", marker="s", markersize=11,
                    markerfacecolor="none", markeredgecolor=colour, markeredgewidth=1.8, gid=f"trial0:{loss}")
        choice = chosen.trials.get(_entry_key(group[0].cell))
        if choice is not None and choice.trial in trials:
            t = choice.trial
            ax.plot([x_of(trials[t][0])], [float(np.mean(trials[t][1]))], linestyle="none", marker="*", markersize=17,
                    color=colour, markeredgecolor="black", markeredgewidth=0.8, zorder=5, gid=f"selected:{loss}")
        if numeric:
            xs_all += xs
    if numeric and _log_scale(key, xs_all, space):
        positive = [v for v in xs_all if v > 0]
        if len(positive) == len(xs_all):
            ax.set_xscale("log")
        else:  # a default of 0 beside log-uniform draws (weight decay): linear around 0
            ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    kind = f" ({space[key].kind})" if space is not None and key in space else ""
    ax.set(xlabel=f"{key}{kind}", ylabel="validation accuracy", title=key)
    ax.grid(True, alpha=0.3)


def _entry_key(cell: Cell) -> tuple[str, str, str, str]:
    """How :class:`bench.report.selection.Selected` keys a tuned entry."""
    return cell.dataset, cell.architecture, cell.variant, cell.loss


def tuned_curves_figure(members: list[FinishedCell], chosen: Selected, history: pd.DataFrame, colours: dict[str, str],
                        grid: str = "") -> Figure | None:
    """One panel per loss: the selected trial's validation and test accuracy, and trial 0's test accuracy dashed."""
    by_loss = {loss: group for loss, group in group_by(members, lambda d: d.cell.loss).items()
               if _entry_key(group[0].cell) in chosen.trials}
    if not by_loss:
        return None
    ncols = min(3, len(by_loss))
    nrows = math.ceil(len(by_loss) / ncols)
    fig = Figure(figsize=(max(6.0, 4.8 * ncols), 4.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharey=True)).ravel()
    drawn = False
    for ax, (loss, group) in zip(axes, by_loss.items()):
        choice = chosen.trials[_entry_key(group[0].cell)]
        colour = colours.get(str(loss), "black")
        picked = [d.row["attempt_id"] for d in group if d.cell.trial == choice.trial]
        # trial 0 selected: its test curve is the selected one, drawn once
        defaults = [d.row["attempt_id"] for d in group if d.cell.trial == 0] if choice.trial else []
        curves = ((picked, "val_acc", ":", colour, f"trial {choice.trial} validation", f"val:{loss}", True),
                  (picked, "test_acc", "-", colour, f"trial {choice.trial} test", f"test:{loss}", True),
                  (defaults, "test_acc", "--", "dimgrey", "trial 0 test (registry defaults)", f"trial0-test:{loss}", False))
        for attempts, metric, style, col, label, gid, band in curves:
            epochs, mean, std = seed_curve(history, attempts, metric) if attempts else (np.array([]),) * 3
            if not len(epochs):
                continue
            drawn = True
            ax.plot(epochs, mean, linestyle=style, color=col, linewidth=1.5, label=f"{label} (n={len(attempts)})", gid=gid)
            if band and np.isfinite(std).any():
                ax.fill_between(epochs, mean - std, mean + std, color=col, alpha=0.15, linewidth=0)
        selected = trial_text(choice) if choice.trial else "trial 0 (the registry defaults) selected"
        ax.set(xlabel="epoch", ylabel="accuracy", title=f"{loss}: {selected}")
        ax.title.set_fontsize("small")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="x-small", loc="lower right")
    for ax in axes[len(by_loss):]:
        ax.set_visible(False)
    if not drawn:
        return None
    first = members[0].cell
    where = f"{first.dataset} / {first.architecture}" + (f" ({first.variant})" if first.variant else "")
    fig.suptitle(title(grid, f"{where}: the tuned trial of each loss against trial 0") + " — mean ± std over seeds")
    return fig
