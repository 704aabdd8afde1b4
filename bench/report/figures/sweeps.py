"""Sweep figures: final test accuracy against a swept loss parameter (any loss, any numeric parameter) and
against the batch size, mean ± std over seeds."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from bench.config.cells import Cell
from bench.report.figures.common import MARKERS, PALETTE, FinishedCell, group_by, number, title, where


def loss_param(cell: Cell, loss_name: str, key: str) -> float | None:
    """The cell's numeric value of ``loss_name``'s parameter ``key``; None for another loss or a non-number."""
    return number(cell.config["loss"]["params"].get(key)) if cell.loss_name == loss_name else None


def swept_loss_params(cells: Iterable[Cell]) -> list[tuple[str, str]]:
    """(loss name, parameter) of every numeric loss parameter that takes two or more values in ``cells``,
    in the grid's order: what a grid sweeps with ``losses: [{focal: {gamma: [0, 1, 2]}}]``."""
    values: dict[tuple[str, str], set[float]] = {}
    for cell in cells:
        for key, value in cell.config["loss"]["params"].items():
            if (x := number(value)) is not None:
                values.setdefault((cell.loss_name, key), set()).add(x)
    return [pair for pair, seen in values.items() if len(seen) >= 2]


def sweep_gap(cells: list[Cell], value_of: Callable[[Cell], float | None], what: str) -> str:
    """Why a sweep figure was not drawn: the grid does not sweep it, or too few of its values finished."""
    if len({v for v in map(value_of, cells) if v is not None}) < 2:
        return f"the grid sweeps no {what}"
    return f"fewer than two {what} values have finished cells"


def loss_param_sweep_figure(done: list[FinishedCell], loss_name: str, key: str, grid: str = "",
                            reference: str | None = "celLoss", symbol: str | None = None,
                            log: bool | None = None) -> Figure | None:
    """Final test accuracy against ``loss_name``'s parameter ``key``, one line per (dataset, architecture,
    variant, the loss's other parameters); None unless two or more values of it have finished cells.

    ``reference``: a loss (registry name) whose mean over seeds is drawn as a dashed line per
    (dataset, architecture, variant); ``symbol``: how the axis and title name the parameter
    (default ``key``); ``log``: a log axis, by default where every value is positive and they
    span two decades or more (a λ from 0.5 to 500 yes, a smoothing ε from 0.05 to 0.2 no).
    """
    swept = [d for d in done if loss_param(d.cell, loss_name, key) is not None]
    values = sorted({loss_param(d.cell, loss_name, key) for d in swept})
    if len(values) < 2:
        return None

    def line_of(d: FinishedCell) -> tuple:
        other = {k: v for k, v in d.cell.config["loss"]["params"].items() if k != key}
        return d.cell.dataset, d.cell.architecture, d.cell.variant, repr(sorted(other.items()))

    lines = group_by(swept, line_of)
    refs = group_by([d for d in done if reference is not None and reference != loss_name
                     and d.cell.loss_name == reference],
                    lambda d: (d.cell.dataset, d.cell.architecture, d.cell.variant))
    multi_params = len({k[3] for k in lines}) > 1
    name = symbol or key
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, ((ds, arch, variant, other), members) in enumerate(lines.items()):
        colour = PALETTE[i % len(PALETTE)]
        label = where(ds, arch, variant) + (f" {other}" if multi_params else "")
        xs, mean, std = sweep_points(members, lambda d: loss_param(d.cell, loss_name, key))
        ax.errorbar(xs, mean, yerr=std, color=colour, marker=MARKERS[i % len(MARKERS)], capsize=3,
                    label=f"{loss_name}, {label}")
        ref = [d.acc for d in refs.get((ds, arch, variant), []) if math.isfinite(d.acc)]
        if ref:
            ax.axhline(float(np.mean(ref)), color=colour, linestyle="--", linewidth=1,
                       label=f"{reference}, {label} (n={len(ref)})")
    if log is None:
        log = values[0] > 0 and values[-1] >= 100 * values[0]
    value_axis(ax, values, base=10 if log else None)
    ax.set(xlabel=f"{name} ({loss_name})", ylabel="final test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(title(grid, f"final test accuracy against {name}") + " — mean ± std over seeds")
    return fig


def batch_sweep_figure(done: list[FinishedCell], colours: dict[str, str], grid: str = "") -> Figure | None:
    """Final test accuracy against the batch size, one line per (dataset, architecture, loss); None unless it varies."""
    sizes = {int(d.cell.config["train"]["batch_size"]) for d in done}
    if len(sizes) < 2:
        return None

    def key(d: FinishedCell) -> tuple:
        rest = ",".join(p for p in d.cell.variant.split(",") if p and not p.startswith("batch_size="))
        return d.cell.dataset, d.cell.architecture, d.cell.loss, rest

    groups = group_by(done, key)
    pairs = list(dict.fromkeys((k[0], k[1]) for k in groups))
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for (ds, arch, loss, rest), members in groups.items():
        j = pairs.index((ds, arch))
        xs, mean, std = sweep_points(members, lambda d: int(d.cell.config["train"]["batch_size"]))
        label = f"{loss}" + (f", {ds} / {arch}" if len(pairs) > 1 else "") + (f" ({rest})" if rest else "")
        ax.errorbar(xs, mean, yerr=std, color=colours.get(loss, "black"), marker=MARKERS[j % len(MARKERS)],
                    linestyle=("-", "--", ":", "-.")[j % 4], capsize=3, label=label)
    value_axis(ax, sorted(sizes), base=2)
    ax.set(xlabel="batch size", ylabel="final test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    what = f"{pairs[0][0]} / {pairs[0][1]}: " if len(pairs) == 1 else ""
    fig.suptitle(title(grid, f"{what}final test accuracy against batch size") + " — mean ± std over seeds")
    return fig


def sweep_points(members: list[FinishedCell], x_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) over seeds per x value, sorted by x; std is 0 where fewer than 2 finite values."""
    by_x: dict[float, list[float]] = {}
    for d in members:
        if math.isfinite(d.acc):
            by_x.setdefault(x_of(d), []).append(d.acc)
    xs = sorted(by_x)
    mean = np.array([np.mean(by_x[x]) for x in xs], dtype=float)
    std = np.array([np.std(by_x[x], ddof=1) if len(by_x[x]) >= 2 else 0.0 for x in xs], dtype=float)
    return np.array(xs, dtype=float), mean, std


def value_axis(ax, values: list[float], base: int | None) -> None:
    """An x axis ticked at the swept values: linear for ``base`` None, else log (symlog when a value is 0 or
    negative)."""
    if base is not None:
        positive = [v for v in values if v > 0]
        if len(positive) == len(values):
            ax.set_xscale("log", base=base)
        else:
            ax.set_xscale("symlog", base=base, linthresh=min(positive) if positive else 1.0)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)
