"""The paper's own figures, drawn with the report's generic ones: the λ sweep of milLoss (the paper's
Figure 5) and, on a Gaussian dataset's Î-against-error panel, the exact truth of its generating model."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from bench.report.figures.common import FinishedCell
from bench.report.figures.sweeps import loss_param_sweep_figure

# milLoss's λ, the parameter the paper sweeps: its sweep is drawn and named (file, note) even where a grid does
# not sweep it, so a paper grid's report says "the grid sweeps no λ" rather than nothing
LAMBDA = ("milLoss", "lam")
LAMBDA_FIGURE = "sweep-lambda"
LAMBDA_WHAT = "lambda sweep"


def lambda_sweep_figure(done: list[FinishedCell], grid: str = "") -> Figure | None:
    """Final test accuracy against milLoss's λ (log axis), one line per (dataset, architecture), celLoss's
    mean as a dashed reference; None unless two or more λ have finished cells."""
    return loss_param_sweep_figure(done, *LAMBDA, grid, reference="celLoss", symbol="λ", log=True)


def gauss_truth_mark(ax, truth: Mapping[str, float]) -> None:
    """The exact I(X;Y) and Bayes error of a Gaussian dataset's generating model, one point on an Î-against-error
    panel (``truth``: :func:`bench.report.collect.gauss_truths`' entry): no classifier's error is below it, and a
    learned Î right of it overstates the information in the inputs."""
    ax.plot([truth["mi_exact"]], [truth["bayes_error"]], linestyle="none", marker="*", markersize=14,
            markerfacecolor="gold", markeredgecolor="black", zorder=5, gid="gauss-truth",
            label=f"true I(X;Y) = {truth['mi_exact']:.3f}, Bayes error {truth['bayes_error']:.3f}")
