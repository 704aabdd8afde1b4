"""What the figures show: a sweep of any loss parameter, one Î panel per data regime, why Î can be negative."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from bench.config.cells import Cell, expand_grid
from bench.config.registry import parse_registry
from bench.paper.theory import gauss_bayes_error, gauss_delta, gauss_mi
from bench.report.figures import (NEGATIVE_MI_NOTE, done_cells, draw_all, learning_curve_figures, loss_colours,
                                  loss_param_sweep_figure, mi_error_figure, swept_loss_params)
from bench.store.results import Store
from losses.mutual_information import mi_terms
from tests.conftest import bench_subprocess, gauss_registry
from tests.test_figures import NO_CALIBRATION, check_files, fill, line, write

LOSSES = {"focal": {"target": "losses.focal:FocalLoss", "params": {"gamma": 2.0}},
          "celLossLSR": {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1}}}
COMMON = {"datasets": ["g"], "architectures": ["mlp"], "seeds": [0, 1], "train": {"epochs": 4, "batch_size": 64}}
GRIDS = {
    "params": {**COMMON, "losses": ["celLoss", {"focal": {"gamma": [0, 1, 2, 5]}}, {"celLossLSR": {"epsilon": [0.05, 0.2]}}]},
    "noisy": {**COMMON, "losses": ["celLoss", "milLoss"],
              "regime": [{"noise": "symmetric", "noise_rate": [0.2, 0.6]}, {"noise": "asymmetric", "noise_rate": 0.4}]},
}


def registry_data() -> dict:
    data = gauss_registry(**GRIDS)
    data["losses"].update(LOSSES)
    return data


def cells_of(grid: str) -> list[Cell]:
    return expand_grid(parse_registry(registry_data()), grid, validate=False)


def test_a_sweep_of_focal_gamma_and_label_smoothing_epsilon(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("params")
    assert swept_loss_params(cells) == [("focal", "gamma"), ("celLossLSR", "epsilon")]
    hist = fill(store, cells)
    drawn = draw_all("params", cells, store, tmp_path / "out")
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/sweep-focal-gamma.png",
                           "figures/sweep-celLossLSR-epsilon.png", "figures/mi-vs-error.png"]
    assert drawn.notes() == ["lambda sweep: the grid sweeps no λ", "batch-size sweep: the grid sweeps no batch size",
                             *NO_CALIBRATION]
    check_files(tmp_path / "out", drawn.files)

    done = done_cells(cells, store.cells())
    final = {c.cell_id: hist[c.cell_id][-1]["test_acc"] for c in cells}
    fig = loss_param_sweep_figure(done, "focal", "gamma", "params")
    ax = fig.axes[0]
    # 0 is a value of gamma, and 0..5 spans no decades: a linear axis, named after the parameter and its loss
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "gamma (focal)"
    assert "against gamma" in fig.get_suptitle()
    focal = line(ax, "focal, g / mlp")
    np.testing.assert_allclose(focal.get_xdata(), [0, 1, 2, 5])
    want = [np.mean([final[c.cell_id] for c in cells if c.loss_name == "focal"
                     and c.config["loss"]["params"]["gamma"] == g]) for g in (0, 1, 2, 5)]
    np.testing.assert_allclose(focal.get_ydata(), want)
    ref = line(ax, "celLoss, g / mlp")
    assert ref.get_linestyle() == "--"
    np.testing.assert_allclose(ref.get_ydata(), np.mean([final[c.cell_id] for c in cells if c.loss == "celLoss"]))
    eps = loss_param_sweep_figure(done, "celLossLSR", "epsilon").axes[0]
    np.testing.assert_allclose(line(eps, "celLossLSR, g / mlp").get_xdata(), [0.05, 0.2])
    assert eps.get_xlabel() == "epsilon (celLossLSR)"
    assert loss_param_sweep_figure(done, "celLoss", "gamma") is None  # not a parameter of celLoss


def test_a_parameter_sweep_with_one_finished_value_says_so(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("params")
    fill(store, [c for c in cells if c.loss_name != "focal" or c.config["loss"]["params"]["gamma"] == 1])
    drawn = draw_all("params", cells, store, tmp_path / "out")
    assert "figures/sweep-focal-gamma.png" not in drawn.files and "figures/sweep-celLossLSR-epsilon.png" in drawn.files
    assert "focal gamma sweep: fewer than two gamma values have finished cells" in drawn.notes()
    assert draw_all("params", cells, Store(tmp_path / "empty"), tmp_path / "o2").notes()[:4] == [
        "learning curves: no finished cells", "lambda sweep: no finished cells", "focal gamma sweep: no finished cells",
        "celLossLSR epsilon sweep: no finished cells"]


def test_the_mi_figure_has_one_panel_per_noise_setting(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("noisy")
    variants = list(dict.fromkeys(c.variant for c in cells))
    assert len(variants) == 3
    hist = fill(store, cells)
    fig = mi_error_figure(done_cells(cells, store.cells()), loss_colours(cells), "noisy")
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 3
    for ax, variant in zip(axes, variants):
        assert ax.get_title().startswith(f"g [{variant}]")
        pts = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
        # exactly the cells of this regime: every loss and seed, no other regime's
        want = sorted((hist[c.cell_id][-1]["test_mi"], 1 - hist[c.cell_id][-1]["test_acc"])
                      for c in cells if c.variant == variant)
        np.testing.assert_allclose(sorted(map(tuple, pts)), want)


def test_the_mi_figures_say_when_the_estimate_is_negative(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("noisy")
    for c in cells:
        write(store, c)
    # one cell whose Î came out negative, as nce_rce's did at 60% noise
    bad = cells[0]
    store.write_result({**bad.flat(), "attempt_id": "neg", "status": "done", "written_at": 3_000_000,
                        "final_test_acc": 0.3, "final_test_mi": -1.2, "num_classes": 2,
                        "test_label_entropy": math.log(2)}, [])
    done = done_cells(cells, store.cells())
    fig = mi_error_figure(done, loss_colours(cells))
    note = fig.get_supxlabel()
    assert NEGATIVE_MI_NOTE in note and "can be negative" in note
    assert note.startswith(f"1 of the {len(cells)} cells shown have Î < 0.")
    panel = next(a for a in fig.axes if a.get_title().startswith(f"g [{bad.variant}]"))
    assert line(panel, "Î = 0").get_xdata()[0] == 0
    curves = learning_curve_figures(done, store.history(), loss_colours(cells))
    assert curves and all(NEGATIVE_MI_NOTE in f.get_supxlabel() for _, f in curves)


def test_the_note_states_what_the_estimator_computes():
    """Î = mean_i log p(y_i|x_i) / p̄(y_i), p̄ the mean prediction: negative exactly when the model gives the true
    labels less (log) probability than its mean prediction does, not a property of the prediction entropies."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 3, (64,), generator=gen)
    probs = logits.softmax(1)
    mean_pred = probs.mean(0)
    by_hand = torch.log(probs[torch.arange(64), targets] / mean_pred[targets]).mean()
    assert mi_terms(logits, targets)["mi"].item() == pytest.approx(by_hand.item(), rel=1e-12)
    # a model that confidently predicts the next class: its per-example predictions are far sharper than its mean
    # prediction (so the predictive entropies alone would say "informative"), yet Î is negative
    wrong = 6.0 * torch.nn.functional.one_hot((targets + 1) % 3, 3).to(torch.float64)
    terms = mi_terms(wrong, targets)
    assert terms["mi"].item() < -1.0
    p = wrong.softmax(1)
    entropy_of_mean = -(p.mean(0) * p.mean(0).log()).sum()
    mean_entropy = -(p * p.log()).sum(1).mean()
    assert entropy_of_mean > mean_entropy  # the entropy gap says ~1 nat of information; Î says below zero


def test_a_gaussian_panel_marks_the_exact_truth(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("noisy")
    fill(store, cells)
    fig = mi_error_figure(done_cells(cells, store.cells()), loss_colours(cells))
    marks = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "gauss-truth"]
    assert len(marks) == 3
    from bench.data import gauss_params  # the dataset's generating model, read independently of the figure

    params = gauss_params({"d": 2})
    delta = gauss_delta(params["mu"], params["sigma2"])
    for mark in marks:
        assert mark.get_xdata()[0] == pytest.approx(gauss_mi(delta, params["prior"]))
        assert mark.get_ydata()[0] == pytest.approx(gauss_bayes_error(delta, params["prior"]))


def test_bench_report_draws_a_focal_gamma_sweep(tmp_path):
    """Through the real command: a registry sweeping focal's gamma, a store with its cells, `bench report --figures`."""
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry_data()))
    cells = cells_of("params")
    fill(Store(tmp_path / "results"), cells)
    r = bench_subprocess("report", "--grid", "params", "--registry", tmp_path / "registry.yaml", "--results",
                         tmp_path / "results", "--figures", "--out", tmp_path / "rep", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "figures/sweep-focal-gamma.png" in r.stdout and "figures/sweep-celLossLSR-epsilon.png" in r.stdout
    check_files(tmp_path / "rep" / "params", [f"figures/{p.name}" for p in
                                              (tmp_path / "rep" / "params" / "figures").glob("*.png")])
    assert (tmp_path / "rep" / "params" / "figures" / "sweep-focal-gamma.pdf").stat().st_size > 1000
