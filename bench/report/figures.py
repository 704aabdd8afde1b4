"""Figures of a grid's finished cells: learning curves, sweeps, and learned Î against test error.

``draw_all`` is what ``bench report --figures`` calls. It draws only from the grid's cells whose
latest store row is ``done`` (history rows are picked by that row's attempt), writes each figure
as PNG and PDF under ``<target>/figures/`` and returns the PNG paths relative to ``target``, with
the reason for each figure it could not draw (the grid sweeps no λ, no cell has finished...):

* ``curves-<dataset>-<architecture>[-<variant>]``: test accuracy and test Î (nats) against the
  epoch, one line per loss, mean over seeds with a ±std band where there are ≥ 2 seeds
  (the paper's Figures 14–17); of a search grid, trial 0's cells (the registry defaults), as are
  the two sweeps;
* ``sweep-lambda``: final test accuracy against milLoss's λ (log axis), one line per
  (dataset, architecture), celLoss's mean as a dashed reference (the paper's Figure 5);
* ``sweep-batch-size``: final test accuracy against the batch size (log2 axis), one line per
  (dataset, architecture, loss);
* ``mi-vs-error``: test error against test Î of every finished cell, coloured per loss, under the
  Theorem 4 and exact Fano bound curves, one panel per dataset;
* ``reliability-<dataset>-<architecture>[-<variant>]``: the last epoch's test split, one panel per
  loss, its seeds pooled per confidence bin (:func:`pool_reliability`): accuracy per bin as bars
  over the bin's range, the gap to the bin's mean confidence hatched, the diagonal, each bin's
  share of the examples as narrow grey bars, the pooled table's ECE in the panel's title; with a
  validation split also the accuracies after temperature scaling (hollow bars), their ECE and
  the mean T over seeds;
* ``ece-vs-acc-<dataset>-<architecture>[-<variant>]``: each cell's final test ECE against its
  final test accuracy, coloured per loss, each loss's mean ± std over seeds a larger marker; with
  temperature scaling the scaled ECE hollow, joined to the raw one by a thin line. Both
  calibration figures show trial 0 of a search grid, and are skipped for a store written before
  the calibration metrics;
* for a grid with a ``search:`` block and a validation split, per (dataset, architecture[, variant]):
  ``tuning-...``, the tuning landscape: one panel per searched key, each trial's validation score
  (the ``tuned`` rule's: validation accuracy at the cell's best validation epoch; mean over seeds,
  each seed a faint point) against the value it drew, trial 0 (the registry defaults) a hollow
  square, the trial the ``tuned`` rule selects a star; and ``tuned-curves-...``, one panel per
  loss: the selected trial's validation and test accuracy against the epoch (mean ± std over
  seeds) beside trial 0's test accuracy, dashed. A grid without a search draws neither and says
  nothing of them.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global state);
the ``*_figure(s)`` functions return them unsaved so they can be inspected.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter

from bench.config.cells import Cell
from bench.config.search import Distribution
from bench.fileio import atomic_write
from bench.paper.theory import fano_bound, theorem4_bound
from bench.report.selection import (
    RULES,
    Selected,
    has_search,
    has_validation,
    histories,
    select,
)
from bench.report.content import trial_text
from bench.store.results import Store

DPI = 150
FIG_DIR = "figures"
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_NAME_MAX = 120


@dataclass(frozen=True)
class Done:
    """A finished cell of the grid with its latest store row."""

    cell: Cell
    row: dict[str, Any]

    @property
    def acc(self) -> float:
        return _float(self.row.get("final_test_acc"))

    @property
    def mi(self) -> float:
        return _float(self.row.get("final_test_mi"))


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class Drawn:
    """What ``draw_all`` wrote and what it could not draw.

    ``files``: the PNG paths relative to the target folder (each has a PDF beside it);
    ``skipped``: (figure, why) for each figure it did not draw.
    """

    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per figure not drawn: ``lambda sweep: the grid sweeps no λ``."""
        return [f"{what}: {why}" for what, why in self.skipped]


SEARCH_FIGURES = ("tuning landscape", "tuned curves")
CALIBRATION_FIGURES = ("reliability diagrams", "ECE vs accuracy")


def draw_all(grid: str, cells: list[Cell], store: Store, target: Path, results: pd.DataFrame | None = None,
             space: Mapping[str, Distribution] | None = None) -> Drawn:
    """Draw every figure of ``grid``'s finished cells into ``target/figures``; say why any figure was not drawn.

    ``results``: the store's cell rows, when the caller has read them already (all columns).
    ``space``: the grid's search distributions (``SearchSpec.distributions()``), which say which
    searched settings get a log axis; see :func:`tuning_figure` for what happens without them.
    """
    results = store.cells() if results is None else results
    done = done_cells(cells, results)
    skipped: list[tuple[str, str]] = []
    if not done:
        why = "no finished cells" if cells else "the grid has no cells"
        names = ("learning curves", "lambda sweep", "batch-size sweep", "Î vs error", *CALIBRATION_FIGURES,
                 *(SEARCH_FIGURES if has_search(cells) else ()))
        return Drawn([], [(what, why) for what in names])
    history = store.history([d.row["attempt_id"] for d in done])
    colours = loss_colours(cells)
    # the curves and sweeps show a search grid's trial 0 (every loss at its registry defaults), as
    # the untuned selection rules report it: a mean over trials would mix settings, and the drawn λ
    # of the trials are no sweep (their learning rates differ too); the trials have figures of their own
    base_cells = [c for c in cells if c.trial in (None, 0)]
    base = [d for d in done if d.cell.trial in (None, 0)]
    figures: list[tuple[str, Figure]] = list(learning_curve_figures(base, history, colours, grid))
    drawn_rows = {name for name, _ in figures}
    rows = list(dict.fromkeys((d.cell.dataset, d.cell.architecture, d.cell.variant) for d in base))
    missing = [row for row in rows if _curves_stem(*row) not in drawn_rows]
    if not base:
        skipped += [(what, "no trial-0 cell (the registry defaults) has finished")
                    for what in ("learning curves", "lambda sweep", "batch-size sweep", *CALIBRATION_FIGURES)]
    elif len(missing) == len(rows):  # one note, not one per (dataset, model)
        skipped.append(("learning curves", "no per-epoch history in the store"))
    else:
        skipped += [(f"learning curves of {' / '.join(p for p in row if p)}", "no per-epoch history in the store")
                    for row in missing]
    if base:
        sweeps = (("sweep-lambda", "lambda sweep", lambda_sweep_figure(base, grid), _lam, "λ"),
                  ("sweep-batch-size", "batch-size sweep", batch_sweep_figure(base, colours, grid), _batch_size,
                   "batch size"))
        for name, what, fig, value_of, label in sweeps:
            if fig is None:
                skipped.append((what, _sweep_gap(base_cells, value_of, label)))
            else:
                figures.append((name, fig))
    scatter = mi_error_figure(done, colours, grid)
    if scatter is None:
        skipped.append(("Î vs error", "no finished cell has a finite Î and test accuracy"))
    else:
        figures.append(("mi-vs-error", scatter))
    if base:
        calibration = ((CALIBRATION_FIGURES[0], reliability_figures(base, colours, grid),
                        "the test_reliability table"),
                       (CALIBRATION_FIGURES[1], ece_accuracy_figures(base, colours, grid),
                        "a finite final_test_ece and final_test_acc"))
        for what, drawn_figures, needs in calibration:
            figures += drawn_figures
            if not drawn_figures:
                skipped.append((what, f"no finished cell has {needs} (a store written before the calibration "
                                      "metrics lacks it)"))
    if has_search(cells):
        tuning = search_figures(cells, done, results, history, colours, grid, space)
        figures += tuning
        if not tuning:
            why = ("the grid has no validation split (train.val_fraction is 0), so no trial has a validation score"
                   if not has_validation(cells) else "no finished search cell has a validation accuracy in its history")
            skipped += [(what, why) for what in SEARCH_FIGURES]
    out_dir = Path(target) / FIG_DIR
    written: list[str] = []
    used: set[str] = set()
    for name, fig in figures:
        stem = unique_name(safe_name(name), used)
        written.append(save_figure(fig, out_dir, stem))
    return Drawn([f"{FIG_DIR}/{png}" for png in written], skipped)


def _lam(cell: Cell) -> float | None:
    return _number(cell.config["loss"]["params"].get("lam")) if cell.loss_name == "milLoss" else None


def _batch_size(cell: Cell) -> float | None:
    return _number(cell.config["train"]["batch_size"])


def _sweep_gap(cells: list[Cell], value_of: Callable[[Cell], float | None], what: str) -> str:
    """Why a sweep figure was not drawn: the grid does not sweep it, or too few of its values finished."""
    if len({v for v in map(value_of, cells) if v is not None}) < 2:
        return f"the grid sweeps no {what}"
    return f"fewer than two {what} values have finished cells"


def done_cells(cells: Iterable[Cell], results: pd.DataFrame) -> list[Done]:
    """The cells whose latest row is ``done``, in grid order (each cell once)."""
    if results.empty or "status" not in results.columns:
        return []
    done = results[results["status"] == "done"]
    # one conversion, not a DataFrame.loc per cell (~100 us each); a later row of an id wins
    rows = dict(zip(done["cell_id"].tolist(), done.to_dict("records")))
    out: list[Done] = []
    for cell in cells:
        row = rows.pop(cell.cell_id, None)  # popped: a cell listed twice is drawn once
        if row is not None:
            out.append(Done(cell, row))
    return out


def loss_colours(cells: Iterable[Cell]) -> dict[str, str]:
    """One colour per loss label, by first appearance in the grid, so it is the same in every figure."""
    out: dict[str, str] = {}
    for cell in cells:
        if cell.loss not in out:
            out[cell.loss] = _PALETTE[len(out) % len(_PALETTE)]
    return out


# --------------------------------------------------------------------------- files


def figure_stem(*parts: str) -> str:
    """File stem from name parts, each made safe on its own and joined by '-'."""
    return "-".join(safe_name(p) for p in parts)


def safe_name(name: str) -> str:
    """A file stem of [A-Za-z0-9._-] only, not starting or ending with '.' or '_', at most ~120 characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    stem = re.sub(r"\.{2,}", ".", stem).strip("._") or "figure"
    if len(stem) > _NAME_MAX:
        stem = stem[:_NAME_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return stem


def unique_name(stem: str, used: set[str]) -> str:
    name, i = stem, 2
    while name.lower() in used:  # case-insensitive filesystems
        name, i = f"{stem}-{i}", i + 1
    used.add(name.lower())
    return name


def save_figure(fig: Figure, out_dir: Path, stem: str) -> str:
    """Write ``stem.png`` and ``stem.pdf`` atomically into ``out_dir``; returns the PNG's file name.

    The layout is computed once, for the PNG, and then frozen (the figure's layout engine is
    removed), so both files have the same layout and the PDF costs no second layout pass.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", stem):
        raise ValueError(f"unsafe figure name {stem!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for ext, meta in (("png", None), ("pdf", {"CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=DPI, metadata=meta)
        atomic_write(out_dir / f"{stem}.{ext}", buf.getvalue(), "figure")
        fig.set_layout_engine("none")
    return f"{stem}.png"


# --------------------------------------------------------------------------- learning curves


def learning_curve_figures(done: list[Done], history: pd.DataFrame, colours: dict[str, str],
                           grid: str = "") -> list[tuple[str, Figure]]:
    """One figure per (dataset, architecture, variant): test accuracy and test Î against the epoch."""
    if history.empty or "epoch" not in history.columns:
        return []
    history = history.drop_duplicates(["attempt_id", "epoch"], keep="last")
    out = []
    for (ds, arch, variant), members in _group(done, lambda d: (d.cell.dataset, d.cell.architecture, d.cell.variant)).items():
        fig = _curves_figure(ds, arch, variant, members, history, colours, grid)
        if fig is not None:
            out.append((_curves_stem(ds, arch, variant), fig))
    return out


def _curves_stem(ds: str, arch: str, variant: str) -> str:
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


def _curves_figure(ds: str, arch: str, variant: str, members: list[Done], history: pd.DataFrame,
                   colours: dict[str, str], grid: str) -> Figure | None:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_acc, ax_mi = fig.subplots(1, 2)
    drawn = False
    for loss, group in _group(members, lambda d: d.cell.loss).items():
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
    fig.suptitle(_title(grid, f"{ds} / {arch}" + (f" ({variant})" if variant else "")) + " — mean ± std over seeds")
    return fig


# --------------------------------------------------------------------------- sweeps


def lambda_sweep_figure(done: list[Done], grid: str = "") -> Figure | None:
    """Final test accuracy against milLoss's λ, one line per (dataset, architecture); None unless λ varies."""
    mil = [d for d in done if d.cell.loss_name == "milLoss" and _number(d.cell.config["loss"]["params"].get("lam")) is not None]
    lams = {_number(d.cell.config["loss"]["params"]["lam"]) for d in mil}
    if len(lams) < 2:
        return None

    def key(d: Done) -> tuple:
        other = {k: v for k, v in d.cell.config["loss"]["params"].items() if k != "lam"}
        return d.cell.dataset, d.cell.architecture, d.cell.variant, repr(sorted(other.items()))

    groups = _group(mil, key)
    cel = _group([d for d in done if d.cell.loss_name == "celLoss"],
                 lambda d: (d.cell.dataset, d.cell.architecture, d.cell.variant))
    multi_params = len({k[3] for k in groups}) > 1
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, ((ds, arch, variant, other), members) in enumerate(groups.items()):
        colour = _PALETTE[i % len(_PALETTE)]
        label = f"{ds} / {arch}" + (f" ({variant})" if variant else "") + (f" {other}" if multi_params else "")
        xs, mean, std = _sweep_points(members, lambda d: _number(d.cell.config["loss"]["params"]["lam"]))
        ax.errorbar(xs, mean, yerr=std, color=colour, marker=_MARKERS[i % len(_MARKERS)], capsize=3,
                    label=f"milLoss, {label}")
        ref = [d.acc for d in cel.get((ds, arch, variant), []) if math.isfinite(d.acc)]
        if ref:
            ax.axhline(float(np.mean(ref)), color=colour, linestyle="--", linewidth=1,
                       label=f"celLoss, {label} (n={len(ref)})")
    _log_axis(ax, sorted(lams), base=10)
    ax.set(xlabel="λ (milLoss)", ylabel="final test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(_title(grid, "final test accuracy against λ") + " — mean ± std over seeds")
    return fig


def batch_sweep_figure(done: list[Done], colours: dict[str, str], grid: str = "") -> Figure | None:
    """Final test accuracy against the batch size, one line per (dataset, architecture, loss); None unless it varies."""
    sizes = {int(d.cell.config["train"]["batch_size"]) for d in done}
    if len(sizes) < 2:
        return None

    def key(d: Done) -> tuple:
        rest = ",".join(p for p in d.cell.variant.split(",") if p and not p.startswith("batch_size="))
        return d.cell.dataset, d.cell.architecture, d.cell.loss, rest

    groups = _group(done, key)
    pairs = list(dict.fromkeys((k[0], k[1]) for k in groups))
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for (ds, arch, loss, rest), members in groups.items():
        j = pairs.index((ds, arch))
        xs, mean, std = _sweep_points(members, lambda d: int(d.cell.config["train"]["batch_size"]))
        label = f"{loss}" + (f", {ds} / {arch}" if len(pairs) > 1 else "") + (f" ({rest})" if rest else "")
        ax.errorbar(xs, mean, yerr=std, color=colours.get(loss, "black"), marker=_MARKERS[j % len(_MARKERS)],
                    linestyle=("-", "--", ":", "-.")[j % 4], capsize=3, label=label)
    _log_axis(ax, sorted(sizes), base=2)
    ax.set(xlabel="batch size", ylabel="final test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    what = f"{pairs[0][0]} / {pairs[0][1]}: " if len(pairs) == 1 else ""
    fig.suptitle(_title(grid, f"{what}final test accuracy against batch size") + " — mean ± std over seeds")
    return fig


def _sweep_points(members: list[Done], x_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) over seeds per x value, sorted by x; std is 0 where fewer than 2 finite values."""
    by_x: dict[float, list[float]] = {}
    for d in members:
        if math.isfinite(d.acc):
            by_x.setdefault(x_of(d), []).append(d.acc)
    xs = sorted(by_x)
    mean = np.array([np.mean(by_x[x]) for x in xs], dtype=float)
    std = np.array([np.std(by_x[x], ddof=1) if len(by_x[x]) >= 2 else 0.0 for x in xs], dtype=float)
    return np.array(xs, dtype=float), mean, std


def _log_axis(ax, values: list[float], base: int) -> None:
    """Log x axis ticked at the swept values (symlog when a value is 0 or negative)."""
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


# --------------------------------------------------------------------------- Î against error


def mi_error_figure(done: list[Done], colours: dict[str, str], grid: str = "") -> Figure | None:
    """Test error against test Î (nats) per cell, with the Theorem 4 and Fano bounds; one panel per dataset."""
    points = [d for d in done if math.isfinite(d.mi) and math.isfinite(d.acc)]
    if not points:
        return None
    by_ds = _group(points, lambda d: d.cell.dataset)
    archs = list(dict.fromkeys(d.cell.architecture for d in points))
    ncols = min(3, len(by_ds))
    nrows = math.ceil(len(by_ds) / ncols)
    fig = Figure(figsize=(max(6.5, 5.2 * ncols), 4.5 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (ds, members) in zip(axes, by_ds.items()):
        _mi_error_panel(ax, ds, members, colours, archs)
    for ax in axes[len(by_ds):]:
        ax.set_visible(False)
    fig.suptitle(_title(grid, "test error against learned test Î (nats)") + "\nwith the Theorem 4 and exact Fano lower bounds")
    return fig


def bound_curves(h_y: float, k: int, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I from 0 to H(Y), Theorem 4 bound, exact Fano bound), all in nats."""
    mi = np.linspace(0.0, h_y, n)
    return mi, np.asarray(theorem4_bound(h_y, mi, k)), np.asarray(fano_bound(h_y, mi, k))


def _mi_error_panel(ax, ds: str, members: list[Done], colours: dict[str, str], archs: list[str]) -> None:
    for loss, group in _group(members, lambda d: d.cell.loss).items():
        label: str | None = loss  # one legend entry per loss, on its first architecture
        for j, arch in enumerate(archs):
            pts = [d for d in group if d.cell.architecture == arch]
            if pts:
                ax.scatter([d.mi for d in pts], [1.0 - d.acc for d in pts], color=colours.get(loss, "black"),
                           marker=_MARKERS[j % len(_MARKERS)], s=28, alpha=0.85, edgecolors="none", label=label)
                label = None
    h_vals = [_float(d.row.get("test_label_entropy")) for d in members]
    h_vals = [h for h in h_vals if math.isfinite(h) and h > 0]
    k = _mode([int(d.row["num_classes"]) for d in members if _number(d.row.get("num_classes")) is not None])
    subtitle = ds
    if h_vals and k is not None and k >= 2:
        h_y = float(np.mean(h_vals))
        mi, thm4, fano = bound_curves(h_y, k)
        ax.plot(mi, thm4, color="black", linewidth=1.5, label="Theorem 4 bound")
        ax.plot(mi, fano, color="black", linestyle="--", linewidth=1.2, label="exact Fano bound")
        ax.axvline(h_y, color="grey", linestyle=":", linewidth=1, label="H(Y) (test)")
        subtitle += f" (K={k}, H(Y)={h_y:.3f} nats)"
    if len(archs) > 1:
        for j, arch in enumerate(archs):
            ax.scatter([], [], color="grey", marker=_MARKERS[j % len(_MARKERS)], label=arch)
    ax.set(xlabel="test Î (nats)", ylabel="test error", title=subtitle)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


# --------------------------------------------------------------------------- search: tuning landscape, tuned curves


def search_figures(cells: list[Cell], done: list[Done], results: pd.DataFrame, history: pd.DataFrame,
                   colours: dict[str, str], grid: str = "",
                   space: Mapping[str, Distribution] | None = None) -> list[tuple[str, Figure]]:
    """The tuning landscape and the tuned curves of each (dataset, architecture, variant) with scored trials.

    The scores and the selected trials are the ``tuned`` rule's (:func:`bench.report.selection.select`),
    so the star marks exactly the trial ``bench report --select tuned`` reports.
    """
    if not has_validation(cells) or history.empty or "epoch" not in history.columns:
        return []
    history = history.drop_duplicates(["attempt_id", "epoch"], keep="last")
    chosen = select(RULES["tuned"], cells, histories(results, history))
    out: list[tuple[str, Figure]] = []
    searched = [d for d in done if d.cell.trial is not None]
    for (ds, arch, variant), members in _group(searched, lambda d: (d.cell.dataset, d.cell.architecture, d.cell.variant)).items():
        suffix = [variant] if variant else []
        landscape = tuning_figure(members, chosen, colours, grid, space)
        if landscape is not None:
            out.append((figure_stem("tuning", ds, arch, *suffix), landscape))
            curves = tuned_curves_figure(members, chosen, history, colours, grid)
            if curves is not None:
                out.append((figure_stem("tuned-curves", ds, arch, *suffix), curves))
    return out


def _searched_keys(members: list[Done]) -> list[str]:
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


def _trial_scores(members: list[Done], key: str, chosen: Selected) -> dict[int, tuple[Any, list[float]]]:
    """trial -> (its drawn value of ``key``, its seeds' finite scores), for the trials that drew ``key``."""
    out: dict[int, tuple[Any, list[float]]] = {}
    for d in members:
        values = d.cell.config["search"]["values"]
        score = chosen.score.get(d.cell.cell_id, math.nan)
        if key in values and math.isfinite(score):
            out.setdefault(int(d.cell.trial or 0), (values[key], []))[1].append(score)
    return out


def tuning_figure(members: list[Done], chosen: Selected, colours: dict[str, str], grid: str = "",
                  space: Mapping[str, Distribution] | None = None) -> Figure | None:
    """One panel per searched key: validation score against the drawn value, per loss; None without scores.

    ``members``: the finished search cells of one (dataset, architecture, variant); ``chosen``:
    the ``tuned`` rule applied to the grid. A loss appears in the panels of the keys it draws
    (every ``train.*`` key, its own parameters). Each loss's trials are its colour's dots at the
    mean score over seeds, its seeds faint dots; trial 0 a hollow square; the selected trial a star.
    """
    keys = _searched_keys(members)
    panels = [(key, _group([d for d in members if key in d.cell.config["search"]["values"]], lambda d: d.cell.loss))
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
    fig.suptitle(_title(grid, f"{where}: tuning landscape") + "\nvalidation accuracy at each cell's best validation "
                 "epoch, mean over seeds (faint: each seed)")
    return fig


def _tuning_panel(ax, key: str, by_loss: dict[Hashable, list[Done]], chosen: Selected, colours: dict[str, str],
                  space: Mapping[str, Distribution] | None) -> None:
    numeric = all(_number(v) is not None for group in by_loss.values()
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


def tuned_curves_figure(members: list[Done], chosen: Selected, history: pd.DataFrame, colours: dict[str, str],
                        grid: str = "") -> Figure | None:
    """One panel per loss: the selected trial's validation and test accuracy, and trial 0's test accuracy dashed."""
    by_loss = {loss: group for loss, group in _group(members, lambda d: d.cell.loss).items()
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
    fig.suptitle(_title(grid, f"{where}: the tuned trial of each loss against trial 0") + " — mean ± std over seeds")
    return fig


# --------------------------------------------------------------------------- calibration: reliability diagrams, ECE against accuracy


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
        if _number(n) is None or n < 0 or n != int(n):
            return None
        if n and (_number(c) is None or _number(a) is None):
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


def _pooled(members: list[Done], column: str) -> tuple[dict[str, list] | None, list[Done]]:
    """The members' tables of ``column`` pooled, and the members they came from; the tables of the
    most common bin count only, so a table of another binning is left out rather than mixed in."""
    tables = [(d, t) for d in members if (t := reliability_table(d.row.get(column))) is not None]
    if not tables:
        return None, []
    n_bins = _mode([len(t["count"]) for _, t in tables])
    kept = [(d, t) for d, t in tables if len(t["count"]) == n_bins]
    return pool_reliability([t for _, t in kept]), [d for d, _ in kept]


def _where(ds: str, arch: str, variant: str) -> str:
    return f"{ds} / {arch}" + (f" ({variant})" if variant else "")


def _by_setting(done: list[Done]) -> dict[Hashable, list[Done]]:
    return _group(done, lambda d: (d.cell.dataset, d.cell.architecture, d.cell.variant))


def reliability_figures(done: list[Done], colours: dict[str, str], grid: str = "") -> list[tuple[str, Figure]]:
    """One reliability figure per (dataset, architecture, variant) whose cells have reliability tables."""
    out = []
    for (ds, arch, variant), members in _by_setting(done).items():
        fig = reliability_figure(members, colours, grid)
        if fig is not None:
            out.append((figure_stem("reliability", ds, arch, *([variant] if variant else [])), fig))
    return out


def reliability_figure(members: list[Done], colours: dict[str, str], grid: str = "") -> Figure | None:
    """One panel per loss (in ``colours``' order, the grid's): the seeds' last-epoch test tables pooled.

    ``members``: the finished cells of one (dataset, architecture, variant). None when none of
    them has a ``test_reliability`` table.
    """
    by_loss = _group(members, lambda d: d.cell.loss)
    order = [loss for loss in colours if loss in by_loss] + [loss for loss in by_loss if loss not in colours]
    panels = []
    for loss in order:
        raw, seeds = _pooled(by_loss[loss], "test_reliability")
        if raw is not None:
            scaled, scaled_seeds = _pooled(by_loss[loss], "test_reliability_ts")
            temps = [t for d in scaled_seeds if math.isfinite(t := _float(d.row.get("temperature")))]
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
    fig.suptitle(_title(grid, f"{_where(first.dataset, first.architecture, first.variant)}: reliability on the "
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


def ece_accuracy_figures(done: list[Done], colours: dict[str, str], grid: str = "") -> list[tuple[str, Figure]]:
    """One ECE-against-accuracy figure per (dataset, architecture, variant) with a finite final test ECE."""
    out = []
    for (ds, arch, variant), members in _by_setting(done).items():
        fig = ece_accuracy_figure(members, colours, grid)
        if fig is not None:
            out.append((figure_stem("ece-vs-acc", ds, arch, *([variant] if variant else [])), fig))
    return out


def ece_accuracy_figure(members: list[Done], colours: dict[str, str], grid: str = "") -> Figure | None:
    """Each cell's final test ECE against its final test accuracy, per loss; None without a finite pair.

    Artists carry gids: ``cells:<loss>`` (one point per cell), ``cells-ts:<loss>`` (hollow, after
    temperature scaling), ``links:<loss>`` (raw to scaled); the per-loss mean ± std is the error
    bar labelled ``<loss> ...``, the scaled mean the line ``mean-ts:<loss>``.
    """
    points = [d for d in members if math.isfinite(d.acc) and math.isfinite(_float(d.row.get("final_test_ece")))]
    if not points:
        return None
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    by_loss = _group(points, lambda d: d.cell.loss)
    any_scaled = False
    for loss in [loss for loss in colours if loss in by_loss] + [loss for loss in by_loss if loss not in colours]:
        group, colour = by_loss[loss], colours.get(str(loss), "black")
        acc = np.array([d.acc for d in group])
        ece = np.array([_float(d.row.get("final_test_ece")) for d in group])
        ax.scatter(acc, ece, color=colour, s=20, alpha=0.55, edgecolors="none", gid=f"cells:{loss}")
        ax.errorbar([acc.mean()], [ece.mean()], xerr=[_std(acc)], yerr=[_std(ece)], fmt="o", markersize=9,
                    color=colour, markeredgecolor="black", capsize=3, zorder=4, label=f"{loss} (n={len(group)})")
        scaled = [(d.acc, e, e_ts) for d, e in zip(group, ece)
                  if math.isfinite(e_ts := _float(d.row.get("final_test_ece_ts")))]
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
    where = _where(first.dataset, first.architecture, first.variant)
    fig.suptitle(_title(grid, f"{where}: final test ECE against final test accuracy")
                 + "\neach cell (small), each loss's mean ± std over seeds (large)")
    return fig


def _std(values: np.ndarray) -> float:
    """Sample std over seeds; 0 (no bar) for one seed."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0


# --------------------------------------------------------------------------- helpers


def _group(items: Iterable[Done], key) -> dict[Hashable, list[Done]]:
    out: dict[Hashable, list[Done]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def _title(grid: str, text: str) -> str:
    return f"{grid}: {text}" if grid else text


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    x = _float(value)
    return x if math.isfinite(x) else None


def _mode(values: list[int]) -> int | None:
    if not values:
        return None
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)])


__all__ = ["Drawn", "draw_all", "done_cells", "loss_colours", "learning_curve_figures", "lambda_sweep_figure",
           "batch_sweep_figure", "mi_error_figure", "search_figures", "tuning_figure", "tuned_curves_figure",
           "bound_curves", "seed_curve", "figure_stem", "safe_name", "save_figure", "reliability_table",
           "pool_reliability", "table_ece", "reliability_figures", "reliability_figure", "ece_accuracy_figures",
           "ece_accuracy_figure"]
