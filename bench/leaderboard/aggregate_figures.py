"""Figures of the cross-task statistics: performance profiles and the critical-difference diagram.

Each is drawn on a bare matplotlib Figure (no pyplot state, so it works headless) and written as PNG and
PDF with the report's :func:`bench.report.figures.files.save_figure`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs
from matplotlib.figure import Figure

from bench.errors import BenchError
from bench.leaderboard.aggregate import CriticalDifference, ProfileEstimate
from bench.report.figures.common import PALETTE
from bench.report.figures.files import FORMATS, save_figure


class _StableName(str):
    """A loss name whose hash is the same in every process. scikit-posthocs orders and draws the diagram's
    bars by iterating sets of names, and ``str``'s hash changes from one process to the next
    (PYTHONHASHSEED), so the same ranks drew a different PNG each run."""

    __slots__ = ()

    def __hash__(self) -> int:
        return zlib.crc32(self.encode())


def _colours(losses: Sequence[str], colours: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's colours where given, else the report's palette in the order the losses come."""
    given = dict(colours or {})
    return {loss: given.get(loss, PALETTE[i % len(PALETTE)]) for i, loss in enumerate(losses)}


def _save(fig: Figure, path_stem: Path | str, formats: tuple[str, ...]) -> list[Path]:
    path_stem = Path(path_stem)
    try:
        png = save_figure(fig, path_stem.parent, path_stem.name, formats)
    except ValueError as err:
        raise BenchError(f"cannot use {path_stem.name!r} as a figure name ({err}): "
                         "use letters, digits, '.', '_' and '-' only") from err
    stem = png[: -len(".png")]
    return [path_stem.parent / f"{stem}.{ext}" for ext in formats]


def draw_performance_profiles(
    profiles: Mapping[str, ProfileEstimate],
    taus: Sequence[float] | np.ndarray,
    path_stem: Path | str,
    metric: str = "score",
    baseline: str = "the baseline",
    colours: Mapping[str, str] | None = None,
    confidence: float = 0.95,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Draw each loss's run-score distribution with its confidence band; write ``path_stem``.png and .pdf (``formats``).

    ``profiles`` comes from :func:`bench.leaderboard.aggregate.performance_profile` over the same ``taus``;
    tau is the score minus ``baseline``'s mean on the task, in ``metric``'s units. A curve above another is
    better across the whole distribution (Agarwal et al. 2021). ``confidence`` is the level the profiles'
    bands were computed at, for the title. Returns the written paths.
    """
    grid = np.asarray(taus, dtype=float).ravel()
    if not profiles:
        raise BenchError("no performance profiles to draw: compute them with performance_profile first")
    for loss, est in profiles.items():
        if np.shape(est.profile) != grid.shape:
            raise BenchError(f"the profile of {loss!r} has {np.size(est.profile)} points but taus has "
                             f"{grid.size}: pass the taus the profiles were computed at")
    palette = _colours(list(profiles), colours)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for loss, est in profiles.items():
        ax.plot(grid, est.profile, color=palette[loss], linewidth=1.6, label=loss)
        ax.fill_between(grid, est.low, est.high, color=palette[loss], alpha=0.2, linewidth=0)
    ax.axvline(0.0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_xlim(grid.min(), grid.max())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ: {metric} minus {baseline}'s mean on the task")
    ax.set_ylabel(f"fraction of runs with {metric} > τ")
    ax.set_title(f"Performance profiles of {metric}\n({confidence:.0%} bands: stratified bootstrap)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path_stem, formats)


def draw_cd_diagram(
    cd_result: CriticalDifference,
    path_stem: Path | str,
    metric: str = "score",
    colours: Mapping[str, str] | None = None,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Draw the critical-difference diagram (Demšar 2006) of mean ranks; write ``path_stem``.png and .pdf (``formats``).

    Drawn by ``scikit_posthocs.critical_difference_diagram``: mean ranks on the axis (1 = best), and a bar
    joining losses that the Holm-corrected pairwise Wilcoxon tests do not separate at ``cd_result.alpha``.
    The caveat for too few tasks, if any, is printed under the diagram. Returns the written paths.
    """
    losses = [str(x) for x in cd_result.mean_ranks.index]
    height = 1.6 + 0.3 * len(losses) + (0.35 if cd_result.caveat else 0.0)
    fig = Figure(figsize=(7.5, height), layout="constrained")
    ax = fig.subplots()
    # every name scikit-posthocs sees, the palette's keys included; an object index keeps the str subclass
    stable = pd.Index([_StableName(name) for name in losses], dtype=object)
    ranks = pd.Series(cd_result.mean_ranks.to_numpy(), index=stable)
    p_values = pd.DataFrame(cd_result.p_values.loc[losses, losses].to_numpy(), index=stable, columns=stable)
    palette = _colours(losses, colours)
    scikit_posthocs.critical_difference_diagram(
        ranks, p_values, alpha=cd_result.alpha, ax=ax, color_palette={name: palette[str(name)] for name in stable},
        label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}")
    friedman = "" if cd_result.friedman_p is None else f", Friedman p = {cd_result.friedman_p:.3g}"
    ax.set_title(f"Mean rank by {metric} over {cd_result.n_tasks} tasks (1 = best){friedman}\n"
                 f"bars join losses not separated by Wilcoxon + Holm at alpha {cd_result.alpha:g}",
                 fontsize="medium", pad=22)
    if cd_result.caveat:
        # supxlabel, not fig.text: the constrained layout makes room for it below the labels
        fig.supxlabel(cd_result.caveat[0].upper() + cd_result.caveat[1:] + ".", fontsize="small", color="0.3",
                      wrap=True)
    return _save(fig, path_stem, formats)
