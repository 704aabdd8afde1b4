"""Figures from a fake store: learning curves, λ and batch-size sweeps, Î against test error."""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench.config.cells import Cell, expand_grid
from bench.report.figures import (batch_sweep_figure, done_cells, draw_all, lambda_sweep_figure, learning_curve_figures,
                           loss_colours, mi_error_figure)
from bench.config.registry import parse_registry
from bench.store.results import Store
from bench.paper.theory import fano_bound, theorem4_bound
from tests.conftest import gauss_registry

EPOCHS = 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# these fake rows predate the calibration columns: the calibration figures say so (tests/test_calibration_figures.py)
NO_CALIBRATION = ["reliability diagrams: no finished cell has the test_reliability table (a store written before "
                  "the calibration metrics lacks it)",
                  "ECE vs accuracy: no finished cell has a finite final_test_ece and final_test_acc (a store written "
                  "before the calibration metrics lacks it)"]


def registry():
    common = {"architectures": ["mlp"], "seeds": [0, 1], "train": {"epochs": EPOCHS, "batch_size": 64}}
    return parse_registry(gauss_registry(
        two={**common, "datasets": ["g"], "losses": ["celLoss", "milLoss"]},
        lam={**common, "datasets": ["g"], "losses": ["celLoss", {"milLoss": {"lam": [1, 10, 100]}}]},
        bs={**common, "datasets": ["g"], "losses": ["celLoss", "milLoss"], "train": {"epochs": EPOCHS, "batch_size": [32, 128]}},
        multi={**common, "datasets": ["g", "fm"], "losses": ["celLoss", "milLoss"], "seeds": [0]},
    ))


def cells_of(grid: str) -> list[Cell]:
    return expand_grid(registry(), grid)


def fake_history(cell: Cell, shift: float = 0.0) -> list[dict]:
    """Deterministic per-cell curves: accuracy rising with the epoch, differing by seed and loss."""
    rng = np.random.default_rng(zlib.crc32(cell.cell_id.encode()))
    base = 0.5 + 0.05 * rng.random() + shift
    out = []
    for e in range(1, EPOCHS + 1):
        acc = min(0.99, base + 0.08 * e + 0.01 * rng.random())
        out.append({"epoch": e, "train_loss": 1.0 / e, "train_acc": acc, "test_acc": acc, "test_loss": 1.0 / e,
                    "test_h_cond": 0.5 / e, "test_h_marg": 0.69, "test_mi": 0.69 - 0.5 / e, "epoch_time": 0.1})
    return out


def write(store: Store, cell: Cell, status: str = "done", shift: float = 0.0, k: int = 2, h_y: float = math.log(2),
          attempt: str | None = None, written_at: int = 0) -> list[dict]:
    history = fake_history(cell, shift) if status != "failed" else []
    last = history[-1] if history else {}
    row = {
        **cell.flat(),
        "attempt_id": attempt or f"a{cell.cell_id[:8]}{status[0]}{written_at}",
        "status": status,
        "message": "" if status == "done" else status,
        "epochs_done": len(history),
        "num_classes": k,
        "final_test_acc": last.get("test_acc", math.nan),
        "final_test_mi": last.get("test_mi", math.nan),
        "final_test_loss": last.get("test_loss", math.nan),
        "test_label_entropy": h_y,
        "written_at": 1_000_000 + written_at,
    }
    store.write_result(row, history)
    return history


def fill(store: Store, cells: list[Cell], **kw) -> dict[str, list[dict]]:
    return {c.cell_id: write(store, c, **kw) for c in cells}


def check_files(target: Path, names: list[str]) -> None:
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"figures/[A-Za-z0-9._-]+\.png", name), name
        png = target / name
        pdf = png.with_suffix(".pdf")
        assert png.resolve().parent == (target / "figures").resolve()
        assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (target / "figures").iterdir()) == sorted(
        [Path(n).name for n in names] + [Path(n).with_suffix(".pdf").name for n in names])


def line(ax, label_start: str):
    """The line labelled ``label_start...`` (an error-bar plot's data line is labelled by its container)."""
    lines = [(str(ln.get_label()), ln) for ln in ax.get_lines()]
    lines += [(str(c.get_label()), c.lines[0]) for c in ax.containers]
    found = [ln for label, ln in lines if label.startswith(label_start)]
    assert len(found) == 1, [label for label, _ in lines]
    return found[0]


def test_two_losses_curves_and_scatter(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("two")
    hist = fill(store, cells)
    target = tmp_path / "report" / "two"
    target.mkdir(parents=True)
    drawn = draw_all("two", cells, store, target)
    names = drawn.files
    assert names == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png"]
    check_files(target, names)
    assert drawn.notes() == ["lambda sweep: the grid sweeps no λ", "batch-size sweep: the grid sweeps no batch size",
                             *NO_CALIBRATION]

    # the curves' mean line and ±std band are the seeds' mean and sample std
    done = done_cells(cells, store.cells())
    figs = learning_curve_figures(done, store.history([d.row["attempt_id"] for d in done]), loss_colours(cells), "two")
    assert [n for n, _ in figs] == ["curves-g-mlp"]
    ax_acc, ax_mi = figs[0][1].axes
    colours = loss_colours(cells)
    for loss in ("celLoss", "milLoss"):
        seeds = [c for c in cells if c.loss == loss]
        acc = np.array([[h["test_acc"] for h in hist[c.cell_id]] for c in seeds])
        ln = line(ax_acc, loss)
        assert ln.get_color() == colours[loss]
        np.testing.assert_allclose(ln.get_xdata(), np.arange(1, EPOCHS + 1))
        np.testing.assert_allclose(ln.get_ydata(), acc.mean(axis=0))
        mi = np.array([[h["test_mi"] for h in hist[c.cell_id]] for c in seeds])
        np.testing.assert_allclose(line(ax_mi, loss).get_ydata(), mi.mean(axis=0))
    band = ax_acc.collections[0].get_paths()[0].vertices[:, 1]
    seeds = [c for c in cells if c.loss == "celLoss"]
    acc = np.array([[h["test_acc"] for h in hist[c.cell_id]] for c in seeds])
    std = acc.std(axis=0, ddof=1)
    assert np.isclose(band.max(), (acc.mean(axis=0) + std).max()) and np.isclose(band.min(), (acc.mean(axis=0) - std).min())
    assert len(ax_acc.collections) == 2 and "two" in figs[0][1].get_suptitle() and "g / mlp" in figs[0][1].get_suptitle()

    # one scatter point per cell at (Î, 1 − acc), the bounds drawn from the label entropy and K
    fig = mi_error_figure(done, colours, "two")
    ax = fig.axes[0]
    pts = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    assert len(pts) == 4
    want = sorted((h[-1]["test_mi"], 1 - h[-1]["test_acc"]) for h in hist.values())
    np.testing.assert_allclose(sorted(map(tuple, pts)), want)
    thm4 = line(ax, "Theorem 4")
    np.testing.assert_allclose(thm4.get_ydata(), theorem4_bound(math.log(2), thm4.get_xdata(), 2))
    assert thm4.get_xdata()[0] == 0 and np.isclose(thm4.get_xdata()[-1], math.log(2))
    assert line(ax, "exact Fano").get_ydata()[0] == pytest.approx(0.5)
    assert lambda_sweep_figure(done) is None and batch_sweep_figure(done, colours) is None


def test_failed_and_diverged_cells_are_ignored(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("two")
    cel0, cel1, mil0, mil1 = cells
    hist = {c.cell_id: write(store, c) for c in (cel0, mil0)}
    write(store, mil1, status="diverged", shift=-0.4)
    write(store, cel1, status="done", shift=-0.4, written_at=1)  # superseded by the failed attempt below
    write(store, cel1, status="failed", written_at=2)
    write(store, Cell("g", "mlp", "celLoss", "celLoss", 9, cel0.config, "not-in-grid"), shift=-0.4)
    done = done_cells(cells, store.cells())
    assert [d.cell for d in done] == [cel0, mil0]
    target = tmp_path / "out"
    names = draw_all("two", cells, store, target).files
    assert names == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png"]
    check_files(target, names)
    (_, fig), = learning_curve_figures(done, store.history(), loss_colours(cells))
    ax_acc = fig.axes[0]
    for cell in (cel0, mil0):
        ln = line(ax_acc, cell.loss)
        assert "(n=1)" in ln.get_label()
        np.testing.assert_allclose(ln.get_ydata(), [h["test_acc"] for h in hist[cell.cell_id]])
    assert len(ax_acc.collections) == 0  # no std band from a single seed
    pts = [c.get_offsets() for c in mi_error_figure(done, loss_colours(cells)).axes[0].collections]
    assert sum(len(p) for p in pts) == 2


def test_empty_store_and_only_failed_cells_draw_nothing(tmp_path):
    cells = cells_of("two")
    target = tmp_path / "out"
    nothing = draw_all("two", cells, Store(tmp_path / "none"), target)
    assert nothing.files == [] and nothing.notes() == [
        "learning curves: no finished cells", "lambda sweep: no finished cells", "batch-size sweep: no finished cells",
        "Î vs error: no finished cells", "reliability diagrams: no finished cells", "ECE vs accuracy: no finished cells"]
    store = Store(tmp_path / "results")
    fill(store, cells, status="failed")
    assert draw_all("two", cells, store, target) == nothing
    assert draw_all("two", [], store, target).files == []
    # a done row with neither history nor finite finals has nothing to draw either
    store.write_result({**cells[0].flat(), "attempt_id": "bare", "status": "done", "written_at": 2_000_000,
                        "final_test_acc": math.nan, "final_test_mi": math.nan, "num_classes": 2,
                        "test_label_entropy": math.log(2)}, [])
    assert len(done_cells(cells, store.cells())) == 1
    bare = draw_all("two", cells, store, target)
    assert bare.files == [] and bare.notes() == [
        "learning curves: no per-epoch history in the store", "lambda sweep: the grid sweeps no λ",
        "batch-size sweep: the grid sweeps no batch size", "Î vs error: no finished cell has a finite Î and test accuracy",
        *NO_CALIBRATION]
    assert not (target / "figures").exists()


def test_lambda_sweep(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("lam")
    assert {c.loss for c in cells} == {"celLoss", "milLoss(lam=1)", "milLoss(lam=10)", "milLoss(lam=100)"}
    hist = fill(store, cells)
    drawn = draw_all("lam", cells, store, tmp_path / "out")
    names = drawn.files
    assert names == ["figures/curves-g-mlp.png", "figures/sweep-lambda.png", "figures/mi-vs-error.png"]
    assert drawn.notes() == ["batch-size sweep: the grid sweeps no batch size", *NO_CALIBRATION]
    check_files(tmp_path / "out", names)

    fig = lambda_sweep_figure(done_cells(cells, store.cells()), "lam")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    final = {c.cell_id: hist[c.cell_id][-1]["test_acc"] for c in cells}
    mil = line(ax, "milLoss, g / mlp")
    np.testing.assert_allclose(mil.get_xdata(), [1, 10, 100])
    want = [np.mean([final[c.cell_id] for c in cells if c.loss == f"milLoss(lam={lam})"]) for lam in (1, 10, 100)]
    np.testing.assert_allclose(mil.get_ydata(), want)
    ref = line(ax, "celLoss, g / mlp")
    assert ref.get_linestyle() == "--"
    np.testing.assert_allclose(ref.get_ydata(), np.mean([final[c.cell_id] for c in cells if c.loss == "celLoss"]))


def test_batch_size_sweep(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("bs")
    assert {c.variant for c in cells} == {"batch_size=32", "batch_size=128"}
    hist = fill(store, cells)
    drawn = draw_all("bs", cells, store, tmp_path / "out")
    names = drawn.files
    assert drawn.notes() == ["lambda sweep: the grid sweeps no λ", *NO_CALIBRATION]
    assert names == ["figures/curves-g-mlp-batch_size_32.png", "figures/curves-g-mlp-batch_size_128.png",
                     "figures/sweep-batch-size.png", "figures/mi-vs-error.png"]
    check_files(tmp_path / "out", names)

    done = done_cells(cells, store.cells())
    fig = batch_sweep_figure(done, loss_colours(cells), "bs")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    for loss in ("celLoss", "milLoss"):
        ln = line(ax, loss)
        np.testing.assert_allclose(ln.get_xdata(), [32, 128])
        want = [np.mean([hist[c.cell_id][-1]["test_acc"] for c in cells
                         if c.loss == loss and c.config["train"]["batch_size"] == bs]) for bs in (32, 128)]
        np.testing.assert_allclose(ln.get_ydata(), want)
    assert lambda_sweep_figure(done) is None


def test_one_panel_per_dataset_with_its_own_bounds(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("multi")
    for c in cells:
        write(store, c, k=10 if c.dataset == "fm" else 2, h_y=math.log(10) if c.dataset == "fm" else math.log(2))
    names = draw_all("multi", cells, store, tmp_path / "out").files
    assert names == ["figures/curves-g-mlp.png", "figures/curves-fm-mlp.png", "figures/mi-vs-error.png"]
    check_files(tmp_path / "out", names)
    fig = mi_error_figure(done_cells(cells, store.cells()), loss_colours(cells))
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title().split(" ")[0] for a in axes] == ["g", "fm"]
    fm = axes[1]
    assert "K=10" in fm.get_title()
    fano = line(fm, "exact Fano")
    np.testing.assert_allclose(fano.get_ydata()[[0, 50, -1]], fano_bound(math.log(10), fano.get_xdata()[[0, 50, -1]], 10))
    assert fano.get_ydata()[0] == pytest.approx(0.9)


def test_file_names_are_sanitised_and_stay_inside_target(tmp_path):
    store = Store(tmp_path / "results")
    base = cells_of("two")
    cells = [dataclasses.replace(c, dataset="../../evil name/x", architecture="a\\b:c") for c in base]
    fill(store, cells)
    target = tmp_path / "report" / "g"
    names = draw_all("two", cells, store, target).files
    assert names == ["figures/curves-evil_name_x-a_b_c.png", "figures/mi-vs-error.png"]
    check_files(target, names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results"]


def test_a_sweep_with_too_few_finished_values_says_so(tmp_path):
    """λ swept by the grid but only one λ finished: the note names that, not a grid without a sweep."""
    store, cells = Store(tmp_path / "results"), cells_of("lam")
    fill(store, [c for c in cells if c.loss in ("celLoss", "milLoss(lam=10)")])
    drawn = draw_all("lam", cells, store, tmp_path / "out")
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png"]
    assert drawn.notes() == ["lambda sweep: fewer than two λ values have finished cells",
                             "batch-size sweep: the grid sweeps no batch size", *NO_CALIBRATION]


def test_curves_of_one_row_without_history_are_named(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("multi")
    for c in cells:
        if c.dataset == "g":
            write(store, c)
        else:  # finished, but its per-epoch history is gone
            store.write_result({**c.flat(), "attempt_id": f"bare{c.cell_id}", "status": "done", "written_at": 2_000_000,
                                "final_test_acc": 0.8, "final_test_mi": 1.0, "num_classes": 10,
                                "test_label_entropy": math.log(10)}, [])
    drawn = draw_all("multi", cells, store, tmp_path / "out")
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png"]
    assert drawn.notes()[0] == "learning curves of fm / mlp: no per-epoch history in the store"


def test_a_figure_is_written_in_the_formats_asked_for(tmp_path):
    """The site shows PNGs only and asks for no PDF (drawing one costs as much again); reports write both."""
    from matplotlib.figure import Figure

    from bench.report.figures.files import save_figure
    from bench.site.model import SITE_FORMATS

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    assert save_figure(fig, tmp_path / "both", "f") == "f.png"
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["f.pdf", "f.png"]
    assert save_figure(fig, tmp_path / "site", "f", SITE_FORMATS) == "f.png"
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["f.png"]
    for bad in (("pdf",), ("png", "svg"), ()):
        with pytest.raises(ValueError, match="expected png"):
            save_figure(fig, tmp_path / "bad", "f", bad)
    assert not (tmp_path / "bad").exists()
