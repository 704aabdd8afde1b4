"""Figures of a grid's finished cells, one module per family; ``draw_all`` draws every family.

``draw_all`` is what ``bench report --figures`` calls. It draws only from the grid's cells whose
latest store row is ``done`` (history rows are picked by that row's attempt), writes each figure
as PNG and PDF under ``<target>/figures/`` (:mod:`.files`) and returns the PNG paths relative to
``target``, with the reason for each figure it could not draw (the grid sweeps no λ, no cell has
finished...):

* :mod:`.curves`: ``curves-<dataset>-<architecture>[-<variant>]``, test accuracy and test Î (nats)
  against the epoch, one line per loss, mean over seeds with a ±std band where there are ≥ 2 seeds
  (the paper's Figures 14–17); of a search grid, trial 0's cells (the registry defaults), as are
  the sweeps;
* :mod:`.sweeps`: ``sweep-<loss>-<parameter>``, final test accuracy against any numeric loss
  parameter the grid sweeps (focal's gamma, label smoothing's epsilon...), one line per (dataset,
  architecture, variant), celLoss's mean as a dashed reference; milLoss's λ is the paper's
  ``sweep-lambda`` (:mod:`bench.paper.figures`, log axis, the paper's Figure 5); and
  ``sweep-batch-size``, final test accuracy against the batch size (log2 axis), one line per
  (dataset, architecture, loss);
* :mod:`.mi_error`: ``mi-vs-error``, test error against test Î of every finished cell, coloured per
  loss, under the Theorem 4 and exact Fano bound curves, one panel per dataset and swept setting
  (a data regime: each noise rate its own panel), a Gaussian dataset's exact I(X;Y) and Bayes
  error marked, and a note saying when the plug-in Î is negative;
* :mod:`.calibration`: ``reliability-<dataset>-<architecture>[-<variant>]``, the last epoch's test
  split, one panel per loss, its seeds pooled per confidence bin (:func:`pool_reliability`), with
  temperature scaling where the grid has a validation split; ``ece-vs-acc-...``, each cell's final
  test ECE against its final test accuracy. Both show trial 0 of a search grid, and are skipped for
  a store written before the calibration metrics;
* :mod:`.tuning`: for a grid with a ``search:`` block and a validation split, per (dataset,
  architecture[, variant]): ``tuning-...``, the tuning landscape (one panel per searched key, each
  trial's validation score against the value it drew, trial 0 a hollow square, the trial the
  ``tuned`` rule selects a star) and ``tuned-curves-...``, the selected trial's validation and test
  accuracy beside trial 0's test accuracy. A grid without a search draws neither and says nothing
  of them.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global state);
the ``*_figure(s)`` functions return them unsaved so they can be inspected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.config.cells import Cell
from bench.config.search import Distribution
from bench.report.figures.calibration import (ece_accuracy_figure, ece_accuracy_figures, pool_reliability,
                                              reliability_figure, reliability_figures, reliability_table, table_ece)
from bench.report.figures.common import FinishedCell, done_cells, loss_colours, number
from bench.report.figures.curves import curves_stem, learning_curve_figures, seed_curve
from bench.report.figures.files import FIG_DIR, FORMATS, figure_stem, safe_name, save_figure, unique_name
from bench.report.figures.mi_error import NEGATIVE_MI_NOTE, bound_curves, mi_error_figure
from bench.report.figures.sweeps import (batch_sweep_figure, loss_param, loss_param_sweep_figure, sweep_gap,
                                         swept_loss_params)
from bench.report.figures.tuning import search_figures, tuned_curves_figure, tuning_figure
from bench.report.selection import RULES, has_search, has_validation, rule_picks, select
from bench.store.results import Store


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
# the history columns the figures draw (curves.py, tuning.py) and the tuned rule reads: only these are read,
# so memory follows the cells drawn, not the history's width (15 columns a row on a validation grid)
HISTORY_COLUMNS = ("test_acc", "test_mi", "val_acc")
CALIBRATION_FIGURES = ("reliability diagrams", "ECE vs accuracy")


def __getattr__(name: str) -> Any:
    # the paper's figures build on this package, so it imports them on first use rather than at import
    if name == "lambda_sweep_figure":
        from bench.paper.figures import lambda_sweep_figure

        return lambda_sweep_figure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def draw_all(grid: str, cells: list[Cell], store: Store, target: Path, results: pd.DataFrame | None = None,
             space: Mapping[str, Distribution] | None = None, formats: tuple[str, ...] = FORMATS) -> Drawn:
    """Draw every figure of ``grid``'s finished cells into ``target/figures``; say why any figure was not drawn.

    ``results``: the store's cell rows, when the caller has read them already (all columns).
    ``space``: the grid's search distributions (``SearchSpec.distributions()``), which say which
    searched settings get a log axis; see :func:`tuning_figure` for what happens without them.
    ``formats``: the files of each figure (:func:`save_figure`).
    """
    from bench.paper.figures import LAMBDA_WHAT  # the paper's figures build on this package: imported late

    results = store.cells() if results is None else results
    done = done_cells(cells, results)
    skipped: list[tuple[str, str]] = []
    if not done:
        why = "no finished cells" if cells else "the grid has no cells"
        names = ("learning curves", LAMBDA_WHAT, *(_sweep_what(*pair) for pair in _other_sweeps(cells)),
                 "batch-size sweep", "Î vs error", *CALIBRATION_FIGURES,
                 *(SEARCH_FIGURES if has_search(cells) else ()))
        return Drawn([], [(what, why) for what in names])
    # the tuned rule's choice from the rows' picks; the history read only for the cells drawn as curves:
    # trial 0 (the learning curves) and the chosen trials (the tuned curves), only the columns drawn
    chosen = select(RULES["tuned"], cells, rule_picks(store, results)) \
        if has_search(cells) and has_validation(cells) else None
    drawn_ids = {c.cell_id for c in chosen.cells} if chosen is not None else set()
    curves = [d.row["attempt_id"] for d in done if d.cell.trial in (None, 0) or d.cell.cell_id in drawn_ids]
    history = store.history(curves, columns=list(HISTORY_COLUMNS))
    colours = loss_colours(cells)
    # the curves and sweeps show a search grid's trial 0 (every loss at its registry defaults), as
    # the untuned selection rules report it: a mean over trials would mix settings, and the drawn λ
    # of the trials are no sweep (their learning rates differ too); the trials have figures of their own
    base_cells = [c for c in cells if c.trial in (None, 0)]
    base = [d for d in done if d.cell.trial in (None, 0)]
    figures: list[tuple[str, Figure]] = list(learning_curve_figures(base, history, colours, grid))
    drawn_rows = {name for name, _ in figures}
    rows = list(dict.fromkeys((d.cell.dataset, d.cell.architecture, d.cell.variant) for d in base))
    missing = [row for row in rows if curves_stem(*row) not in drawn_rows]
    if not base:
        skipped += [(what, "no trial-0 cell (the registry defaults) has finished")
                    for what in ("learning curves", LAMBDA_WHAT, *(_sweep_what(*pair) for pair in _other_sweeps(cells)),
                                 "batch-size sweep", *CALIBRATION_FIGURES)]
    elif len(missing) == len(rows):  # one note, not one per (dataset, model)
        skipped.append(("learning curves", "no per-epoch history in the store"))
    else:
        skipped += [(f"learning curves of {' / '.join(p for p in row if p)}", "no per-epoch history in the store")
                    for row in missing]
    if base:
        swept, gaps = _sweep_figures(base, base_cells, colours, grid)
        figures += swept
        skipped += gaps
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
        tuning = search_figures(cells, done, results, history, colours, grid, space, chosen)
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
        written.append(save_figure(fig, out_dir, stem, formats))
    return Drawn([f"{FIG_DIR}/{png}" for png in written], skipped)


def _sweep_figures(base: list[FinishedCell], base_cells: list[Cell], colours: dict[str, str],
                   grid: str) -> tuple[list[tuple[str, Figure]], list[tuple[str, str]]]:
    """The sweeps of trial-0 cells: the paper's λ, then every other swept loss parameter, then the batch size;
    a note for each that is not drawn (the λ and batch-size ones also where the grid does not sweep them)."""
    from bench.paper.figures import LAMBDA, LAMBDA_FIGURE, LAMBDA_WHAT, lambda_sweep_figure

    figures: list[tuple[str, Figure]] = []
    skipped: list[tuple[str, str]] = []
    sweeps = [(LAMBDA_FIGURE, LAMBDA_WHAT, lambda_sweep_figure(base, grid), lambda c: loss_param(c, *LAMBDA), "λ")]
    for loss, key in _other_sweeps(base_cells):
        sweeps.append((figure_stem("sweep", loss, key), _sweep_what(loss, key),
                       loss_param_sweep_figure(base, loss, key, grid),
                       lambda c, loss=loss, key=key: loss_param(c, loss, key), key))
    sweeps.append(("sweep-batch-size", "batch-size sweep", batch_sweep_figure(base, colours, grid),
                   lambda c: number(c.config["train"]["batch_size"]), "batch size"))
    for name, what, fig, value_of, label in sweeps:
        if fig is None:
            skipped.append((what, sweep_gap(base_cells, value_of, label)))
        else:
            figures.append((name, fig))
    return figures, skipped


def _other_sweeps(cells: list[Cell]) -> list[tuple[str, str]]:
    """The swept loss parameters other than the paper's λ (which has its own figure, note and name)."""
    from bench.paper.figures import LAMBDA

    return [pair for pair in swept_loss_params(c for c in cells if c.trial in (None, 0)) if pair != LAMBDA]


def _sweep_what(loss: str, key: str) -> str:
    return f"{loss} {key} sweep"


__all__ = ["CALIBRATION_FIGURES", "Drawn", "FinishedCell", "NEGATIVE_MI_NOTE", "SEARCH_FIGURES", "batch_sweep_figure",
           "bound_curves", "done_cells", "draw_all", "ece_accuracy_figure", "ece_accuracy_figures", "figure_stem",
           "lambda_sweep_figure", "learning_curve_figures", "loss_colours", "loss_param_sweep_figure",
           "mi_error_figure", "pool_reliability", "reliability_figure", "reliability_figures", "reliability_table",
           "safe_name", "save_figure", "search_figures", "seed_curve", "swept_loss_params", "table_ece",
           "tuned_curves_figure", "tuning_figure"]
