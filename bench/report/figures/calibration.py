"""Calibration figures: reliability diagrams (the seeds' last-epoch test tables pooled per bin) and each
cell's final test ECE against its final test accuracy, with temperature scaling where a cell has it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report.figures.common import (FinishedCell, as_float, by_setting, group_by, mode, number, seed_std, title,
                                         where)
from bench.report.figures.files import figure_stem


def reliability_table(value: Any) -> dict[str, list] | None:
    """A stored reliability table (``test_reliability`` JSON text) as lists; None where a row has none.

    None for an older store's missing, "" or NaN cell, and for text that is not such a table (a
    report draws what it can rather than failing on one odd row).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        table = json.loads(value)
    except ValueError:
        return None
    if not isinstance(table, dict):
        return None
    count, conf, acc = (table.get(key) for key in ("count", "confidence", "accuracy"))
    if not (isinstance(count, list) and isinstance(conf, list) and isinstance(acc, list)):
        return None
    if not count or not len(count) == len(conf) == len(acc):
        return None
    out: dict[str, list] = {"count": [], "confidence": [], "accuracy": []}
    for n, c, a in zip(count, conf, acc):
        if number(n) is None or n < 0 or n != int(n):
            return None
        if n and (number(c) is None or number(a) is None):
            return None
        out["count"].append(int(n))
        out["confidence"].append(float(c) if n else None)
        out["accuracy"].append(float(a) if n else None)
    return out


def pool_reliability(tables: Sequence[Mapping[str, list]]) -> dict[str, list]:
    """Several seeds' reliability tables as one: per bin the counts summed, the mean confidence and
    accuracy weighted by the counts (Σ count·mean / Σ count; None for a bin empty in every table)."""
    if not tables:
        raise ValueError("pool_reliability: no tables")
    n_bins = len(tables[0]["count"])
    if any(len(t["count"]) != n_bins for t in tables):
        raise ValueError("pool_reliability: the tables have different numbers of bins")
    count = [sum(int(t["count"][m]) for t in tables) for m in range(n_bins)]

    def mean(key: str, m: int) -> float | None:
        if not count[m]:
            return None
        return sum(t["count"][m] * t[key][m] for t in tables if t["count"][m]) / count[m]

    return {"count": count, "confidence": [mean("confidence", m) for m in range(n_bins)],
            "accuracy": [mean("accuracy", m) for m in range(n_bins)]}


def table_ece(table: Mapping[str, list]) -> float:
    """ECE of a reliability table: Σ_m (n_m/n) |acc_m − conf_m| (NaN for an empty table)."""
    n = sum(table["count"])
    if not n:
        return math.nan
    return sum(c / n * abs(a - p) for c, a, p in zip(table["count"], table["accuracy"], table["confidence"]) if c)


def _pooled(members: list[FinishedCell], column: str) -> tuple[dict[str, list] | None, list[FinishedCell]]:
    """The members' tables of ``column`` pooled, and the members they came from; the tables of the
    most common bin count only, so a table of another binning is left out rather than mixed in."""
    tables = [(d, t) for d in members if (t := reliability_table(d.row.get(column))) is not None]
    if not tables:
        return None, []
    n_bins = mode([len(t["count"]) for _, t in tables])
    kept = [(d, t) for d, t in tables if len(t["count"]) == n_bins]
    return pool_reliability([t for _, t in kept]), [d for d, _ in kept]






def reliability_figures(done: list[FinishedCell], colours: dict[str, str], grid: str = "") -> list[tuple[str, Figure]]:
    """One reliability figure per (dataset, architecture, variant) whose cells have reliability tables."""
    out = []
    for (ds, arch, variant), members in by_setting(done).items():
        fig = reliability_figure(members, colours, grid)
        if fig is not None:
            out.append((figure_stem("reliability", ds, arch, *([variant] if variant else [])), fig))
    return out


def reliability_figure(members: list[FinishedCell], colours: dict[str, str], grid: str = "") -> Figure | None:
    """One panel per loss (in ``colours``' order, the grid's): the seeds' last-epoch test tables pooled.

    ``members``: the finished cells of one (dataset, architecture, variant). None when none of
    them has a ``test_reliability`` table.
    """
    by_loss = group_by(members, lambda d: d.cell.loss)
    order = [loss for loss in colours if loss in by_loss] + [loss for loss in by_loss if loss not in colours]
    panels = []
    for loss in order:
        raw, seeds = _pooled(by_loss[loss], "test_reliability")
        if raw is not None:
            scaled, scaled_seeds = _pooled(by_loss[loss], "test_reliability_ts")
            temps = [t for d in scaled_seeds if math.isfinite(t := as_float(d.row.get("temperature")))]
            panels.append((str(loss), raw, len(seeds), scaled, temps))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(max(5.5, 4.6 * ncols), 4.6 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (loss, raw, n_seeds, scaled, temps) in zip(axes, panels):
        _reliability_panel(ax, loss, raw, n_seeds, scaled, temps, colours.get(loss, "black"))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].legend(fontsize="x-small", loc="upper left")
    first = members[0].cell
    fig.suptitle(title(grid, f"{where(first.dataset, first.architecture, first.variant)}: reliability on the "
                              "last epoch's test split") + "\nseeds pooled per confidence bin; ECE of the pooled table")
    return fig


def _reliability_panel(ax, loss: str, raw: dict[str, list], n_seeds: int, scaled: dict[str, list] | None,
                       temps: list[float], colour: str) -> None:
    n_bins = len(raw["count"])
    width = 1.0 / n_bins
    left = np.arange(n_bins) * width  # bin m (from 0) covers (m/M, (m+1)/M]
    total = sum(raw["count"])
    full = [m for m in range(n_bins) if raw["count"][m]]
    acc = np.array([raw["accuracy"][m] for m in full])
    conf = np.array([raw["confidence"][m] for m in full])
    ax.bar(left[full], acc, width=width, align="edge", color=colour, alpha=0.75, edgecolor="white", linewidth=0.5,
           label="accuracy", gid=f"acc:{loss}")
    ax.bar(left[full], np.abs(conf - acc), bottom=np.minimum(conf, acc), width=width, align="edge", fill=False,
           hatch="///", edgecolor="red", linewidth=0.6, label="gap to the mean confidence", gid=f"gap:{loss}")
    # narrow and on top of the accuracy bars, which would hide a full-width histogram behind them
    ax.bar(left + width / 2, np.array(raw["count"]) / total, width=0.35 * width, color="black", alpha=0.3, zorder=3,
           label="share of the examples", gid=f"share:{loss}")
    title = f"{loss} ({n_seeds} seed{'s' if n_seeds != 1 else ''}, n={total})\nECE {table_ece(raw):.4f}"
    if scaled is not None:
        full_ts = [m for m in range(len(scaled["count"])) if scaled["count"][m]]
        ax.bar(np.arange(len(scaled["count"]))[full_ts] / len(scaled["count"]),
               [scaled["accuracy"][m] for m in full_ts], width=1.0 / len(scaled["count"]), align="edge", fill=False,
               edgecolor="black", linewidth=1.1, label="accuracy after temperature scaling", gid=f"acc-ts:{loss}")
        title += f", after temperature scaling {table_ece(scaled):.4f}"
        if temps:
            title += f" (mean T {np.mean(temps):.3g})"
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration", gid="diagonal")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (largest predicted probability)", ylabel="accuracy",
           title=title)
    ax.title.set_fontsize("small")
    ax.grid(True, alpha=0.3)


def ece_accuracy_figures(done: list[FinishedCell], colours: dict[str, str], grid: str = "") -> list[tuple[str, Figure]]:
    """One ECE-against-accuracy figure per (dataset, architecture, variant) with a finite final test ECE."""
    out = []
    for (ds, arch, variant), members in by_setting(done).items():
        fig = ece_accuracy_figure(members, colours, grid)
        if fig is not None:
            out.append((figure_stem("ece-vs-acc", ds, arch, *([variant] if variant else [])), fig))
    return out


def ece_accuracy_figure(members: list[FinishedCell], colours: dict[str, str], grid: str = "") -> Figure | None:
    """Each cell's final test ECE against its final test accuracy, per loss; None without a finite pair.

    Artists carry gids: ``cells:<loss>`` (one point per cell), ``cells-ts:<loss>`` (hollow, after
    temperature scaling), ``links:<loss>`` (raw to scaled); the per-loss mean ± std is the error
    bar labelled ``<loss> ...``, the scaled mean the line ``mean-ts:<loss>``.
    """
    points = [d for d in members if math.isfinite(d.acc) and math.isfinite(as_float(d.row.get("final_test_ece")))]
    if not points:
        return None
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    by_loss = group_by(points, lambda d: d.cell.loss)
    any_scaled = False
    for loss in [loss for loss in colours if loss in by_loss] + [loss for loss in by_loss if loss not in colours]:
        group, colour = by_loss[loss], colours.get(str(loss), "black")
        acc = np.array([d.acc for d in group])
        ece = np.array([as_float(d.row.get("final_test_ece")) for d in group])
        ax.scatter(acc, ece, color=colour, s=20, alpha=0.55, edgecolors="none", gid=f"cells:{loss}")
        ax.errorbar([acc.mean()], [ece.mean()], xerr=[seed_std(acc)], yerr=[seed_std(ece)], fmt="o", markersize=9,
                    color=colour, markeredgecolor="black", capsize=3, zorder=4, label=f"{loss} (n={len(group)})")
        scaled = [(d.acc, e, e_ts) for d, e in zip(group, ece)
                  if math.isfinite(e_ts := as_float(d.row.get("final_test_ece_ts")))]
        if scaled:
            any_scaled = True
            xs, _, ts = (np.array(v) for v in zip(*scaled))
            # scaling by one T keeps every argmax, so a cell's accuracy (x) is unchanged: the link is vertical
            ax.add_collection(LineCollection([[(x, r), (x, t)] for x, r, t in scaled], colors=colour, linewidths=0.7,
                                             alpha=0.6, gid=f"links:{loss}"))
            ax.scatter(xs, ts, facecolors="none", edgecolors=colour, s=20, linewidths=0.9, gid=f"cells-ts:{loss}")
            ax.plot([xs.mean()], [ts.mean()], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                    markeredgecolor=colour, markeredgewidth=1.8, zorder=4, gid=f"mean-ts:{loss}")
    handles, _ = ax.get_legend_handles_labels()
    if any_scaled:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="none",
                              markeredgecolor="grey", markeredgewidth=1.5,
                              label="after temperature scaling (T fitted on the validation split)"))
    ax.legend(handles=handles, fontsize="small")
    ax.set(xlabel="final test accuracy", ylabel="final test ECE (equal-width bins, L1)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    first = members[0].cell
    place = where(first.dataset, first.architecture, first.variant)
    fig.suptitle(title(grid, f"{place}: final test ECE against final test accuracy")
                 + "\neach cell (small), each loss's mean ± std over seeds (large)")
    return fig
