"""Learned Î against test error: one point per finished cell under the Theorem 4 and exact Fano bounds,
one panel per (dataset, swept setting), so cells trained under different data regimes are never mixed."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from bench.paper.theory import fano_bound, theorem4_bound
from bench.report.figures.common import MARKERS, FinishedCell, as_float, group_by, mode, number, title

# Why the learned Î can be negative, read off losses/mutual_information.py: both of its terms are cross entropies
# against the split's labels, H_θ(Y|X) = −mean_i log p_θ(y_i|x_i) and H_θ(Y) = −mean_i log p_θ(y_i), with
# p_θ(k) = mean_j p_θ(k|x_j) the model's mean predicted distribution; so Î = mean_i log[p_θ(y_i|x_i) / p_θ(y_i)].
NEGATIVE_MI_NOTE = ("Î = H_θ(Y) − H_θ(Y|X) is a plug-in estimate, not a mutual information: Î = mean over the test "
                    "examples of log p_θ(y|x) / p_θ(y), where p_θ(y) is the model's mean predicted probability of "
                    "class y over the split. It can be negative: it is below 0 when the model gives the true labels "
                    "less probability, on (log) average, than its mean prediction gives them, as confident mistakes or "
                    "a learned confusion of classes (label noise) do.")


def mi_error_figure(done: list[FinishedCell], colours: dict[str, str], grid: str = "") -> Figure | None:
    """Test error against test Î (nats) per cell, with the Theorem 4 and Fano bounds; one panel per dataset,
    and per variant where the grid sweeps a data regime or a training setting; a note says why Î can be < 0."""
    points = [d for d in done if math.isfinite(d.mi) and math.isfinite(d.acc)]
    if not points:
        return None
    panels = group_by(points, lambda d: (d.cell.dataset, d.cell.variant))
    archs = list(dict.fromkeys(d.cell.architecture for d in points))
    from bench.report.collect import gauss_truths  # the exact truths of a gauss dataset (imports torch for one)

    truths = gauss_truths(list(dict.fromkeys(d.cell for d in points)))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(max(6.5, 5.2 * ncols), 4.5 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, ((ds, variant), members) in zip(axes, panels.items()):
        _mi_error_panel(ax, ds, variant, members, colours, archs, truths.get(ds))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title(grid, "test error against learned test Î (nats)") + "\nwith the Theorem 4 and exact Fano lower bounds")
    negative = sum(d.mi < 0 for d in points)
    count = f"{negative} of the {len(points)} cells shown have Î < 0. " if negative else ""
    fig.supxlabel(count + NEGATIVE_MI_NOTE, fontsize="small", wrap=True)
    return fig


def bound_curves(h_y: float, k: int, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I from 0 to H(Y), Theorem 4 bound, exact Fano bound), all in nats."""
    mi = np.linspace(0.0, h_y, n)
    return mi, np.asarray(theorem4_bound(h_y, mi, k)), np.asarray(fano_bound(h_y, mi, k))


def _mi_error_panel(ax, ds: str, variant: str, members: list[FinishedCell], colours: dict[str, str], archs: list[str],
                    truth: dict[str, float] | None) -> None:
    for loss, cells in group_by(members, lambda d: d.cell.loss).items():
        label: str | None = loss  # one legend entry per loss, on its first architecture
        for j, arch in enumerate(archs):
            pts = [d for d in cells if d.cell.architecture == arch]
            if pts:
                ax.scatter([d.mi for d in pts], [1.0 - d.acc for d in pts], color=colours.get(loss, "black"),
                           marker=MARKERS[j % len(MARKERS)], s=28, alpha=0.85, edgecolors="none", label=label)
                label = None
    h_vals = [as_float(d.row.get("test_label_entropy")) for d in members]
    h_vals = [h for h in h_vals if math.isfinite(h) and h > 0]
    k = mode([int(d.row["num_classes"]) for d in members if number(d.row.get("num_classes")) is not None])
    subtitle = ds + (f" [{variant}]" if variant else "")
    if h_vals and k is not None and k >= 2:
        h_y = float(np.mean(h_vals))
        mi, thm4, fano = bound_curves(h_y, k)
        ax.plot(mi, thm4, color="black", linewidth=1.5, label="Theorem 4 bound")
        ax.plot(mi, fano, color="black", linestyle="--", linewidth=1.2, label="exact Fano bound")
        ax.axvline(h_y, color="grey", linestyle=":", linewidth=1, label="H(Y) (test)")
        # under a variant's name the bounds' facts go on a second line: one line would run into the next panel
        subtitle += ("\n" if variant else " ") + f"(K={k}, H(Y)={h_y:.3f} nats)"
    if truth is not None:
        from bench.paper.figures import gauss_truth_mark  # the paper's figures build on this package: imported late

        gauss_truth_mark(ax, truth)
    if any(d.mi < 0 for d in members):
        ax.axvline(0.0, color="red", linestyle=":", linewidth=1, label="Î = 0 (left of it: Î < 0, see the note)")
    if len(archs) > 1:
        for j, arch in enumerate(archs):
            ax.scatter([], [], color="grey", marker=MARKERS[j % len(MARKERS)], label=arch)
    ax.set(xlabel="test Î (nats)", ylabel="test error", title=subtitle)
    ax.title.set_fontsize("medium")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")
