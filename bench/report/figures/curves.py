"""Learning curves: test accuracy and test Î against the epoch, one figure per (dataset, architecture, variant)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.report.figures.common import FinishedCell, by_setting, group_by, title, where
from bench.report.figures.files import figure_stem
from bench.report.figures.mi_error import NEGATIVE_MI_NOTE


def learning_curve_figures(done: list[FinishedCell], history: pd.DataFrame, colours: dict[str, str],
                           grid: str = "") -> list[tuple[str, Figure]]:
    """One figure per (dataset, architecture, variant): test accuracy and test Î against the epoch."""
    if history.empty or "epoch" not in history.columns:
        return []
    history = history.drop_duplicates(["attempt_id", "epoch"], keep="last")
    out = []
    for (ds, arch, variant), members in by_setting(done).items():
        fig = _curves_figure(ds, arch, variant, members, history, colours, grid)
        if fig is not None:
            out.append((curves_stem(ds, arch, variant), fig))
    return out


def curves_stem(ds: str, arch: str, variant: str) -> str:
    """The file stem of a (dataset, architecture, variant)'s learning curves."""
    return figure_stem("curves", ds, arch, *([variant] if variant else []))


def seed_curve(history: pd.DataFrame, attempt_ids: list[str], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean over seeds, sample std over seeds — NaN where fewer than 2 seeds)."""
    rows = history[history["attempt_id"].isin(attempt_ids)]
    if metric not in rows.columns or rows.empty:
        return np.array([]), np.array([]), np.array([])
    mat = rows.pivot(index="epoch", columns="attempt_id", values=metric).sort_index().astype(float)
    mean = mat.mean(axis=1).to_numpy()
    std = mat.std(axis=1, ddof=1).to_numpy()
    std = np.where(mat.count(axis=1).to_numpy() >= 2, std, np.nan)
    return mat.index.to_numpy(dtype=float), mean, std


def _curves_figure(ds: str, arch: str, variant: str, members: list[FinishedCell], history: pd.DataFrame,
                   colours: dict[str, str], grid: str) -> Figure | None:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_acc, ax_mi = fig.subplots(1, 2)
    drawn = False
    for loss, group in group_by(members, lambda d: d.cell.loss).items():
        attempts = [d.row["attempt_id"] for d in group]
        for ax, metric in ((ax_acc, "test_acc"), (ax_mi, "test_mi")):
            epochs, mean, std = seed_curve(history, attempts, metric)
            if not len(epochs):
                continue
            drawn = True
            colour = colours.get(loss, "black")
            ax.plot(epochs, mean, color=colour, label=f"{loss} (n={len(group)})", linewidth=1.5)
            if np.isfinite(std).any():
                ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    if not drawn:
        return None
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    ax_mi.set(xlabel="epoch", ylabel="test Î (nats)", title="test Î = H_θ(Y) − H_θ(Y|X)")
    for ax in (ax_acc, ax_mi):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.legend(fontsize="small", loc="lower right")
    fig.suptitle(title(grid, where(ds, arch, variant)) + " — mean ± std over seeds")
    fig.supxlabel(NEGATIVE_MI_NOTE, fontsize="small", wrap=True)
    return fig


