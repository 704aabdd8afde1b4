"""The figures of a search grid: the tuning landscape and the tuned trial's curves, from a fake store."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from bench.config.cells import Cell, expand_grid
from bench.report.figures import done_cells, draw_all, loss_colours, search_figures, tuning_figure
from bench.config.registry import parse_registry
from bench.config.search import parse_distribution
from bench.report.selection import RULES, histories, select
from bench.store.results import Store
from tests.conftest import gauss_registry
from tests.test_figures import NO_CALIBRATION, check_files

EPOCHS = 4
TRIALS = 4
SPACE = {"train.lr": "loguniform(1e-4, 1e-1)", "milLoss.lam": "uniform(0.5, 500)"}
BEST = {"celLoss": 0, "milLoss": 2}  # the trial whose validation curves are lifted: the one tuning must pick


def registry(space=None):
    common = {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0, 1]}
    search = {"trials": TRIALS, "seed": 0, "space": space or SPACE}
    return parse_registry(gauss_registry(
        s={**common, "train": {"epochs": EPOCHS, "batch_size": 64, "val_fraction": 0.1}, "search": search},
        noval={**common, "train": {"epochs": EPOCHS, "batch_size": 64}, "search": search},
    ))


def cells_of(grid: str, space=None) -> list[Cell]:
    return expand_grid(registry(space), grid, validate=False)


def space_of(space=None):
    return {k: parse_distribution(v) for k, v in (space or SPACE).items()}


def fake_history(cell: Cell, validation: bool = True) -> list[dict]:
    """Per-cell curves: validation accuracy that peaks at some epoch (not always the last), test accuracy rising."""
    rng = np.random.default_rng(zlib.crc32(cell.cell_id.encode()))
    lift = 0.2 if cell.trial == BEST.get(cell.loss) else 0.0
    out = []
    for e in range(1, EPOCHS + 1):
        test = 0.5 + 0.08 * e + 0.02 * rng.random()
        row = {"epoch": e, "train_loss": 1.0 / e, "train_acc": test, "test_acc": test, "test_loss": 1.0 / e,
               "test_h_cond": 0.5 / e, "test_h_marg": 0.69, "test_mi": 0.69 - 0.5 / e, "epoch_time": 0.1}
        if validation:
            row.update(val_acc=0.4 + lift + 0.3 * rng.random(), val_nll=1.0 / e)
        out.append(row)
    return out


def fill(store: Store, cells: list[Cell], validation: bool = True) -> dict[str, list[dict]]:
    out = {}
    for cell in cells:
        history = fake_history(cell, validation)
        store.write_result({**cell.flat(), "attempt_id": f"a{cell.cell_id}", "status": "done", "message": "",
                            "epochs_done": EPOCHS, "num_classes": 2, "final_test_acc": history[-1]["test_acc"],
                            "final_test_mi": history[-1]["test_mi"], "final_test_loss": history[-1]["test_loss"],
                            "test_label_entropy": math.log(2), "written_at": 1_000_000}, history)
        out[cell.cell_id] = history
    return out


def by_gid(ax, gid: str):
    found = [a for a in [*ax.get_lines(), *ax.collections] if a.get_gid() == gid]
    assert len(found) == 1, (gid, [a.get_gid() for a in [*ax.get_lines(), *ax.collections]])
    return found[0]


def gids(ax) -> set[str]:
    return {a.get_gid() for a in [*ax.get_lines(), *ax.collections] if a.get_gid()}


def hand_scores(cells: list[Cell], hist: dict[str, list[dict]]) -> dict[tuple[str, int], list[float]]:
    """(loss, trial) -> each seed's best validation accuracy (the value at its best validation epoch)."""
    out: dict[tuple[str, int], list[float]] = {}
    for c in cells:
        out.setdefault((c.loss, c.trial), []).append(max(h["val_acc"] for h in hist[c.cell_id]))
    return out


def figures(cells, store, space):
    done = done_cells(cells, store.cells())
    history = store.history([d.row["attempt_id"] for d in done])
    return dict(search_figures(cells, done, store.cells(), history, loss_colours(cells), "s", space))


def test_a_search_grid_draws_the_landscape_and_the_tuned_curves(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("s")
    assert len(cells) == 2 * TRIALS * 2
    hist = fill(store, cells)
    target = tmp_path / "out"
    drawn = draw_all("s", cells, store, target, space=space_of())
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png", "figures/tuning-g-mlp.png",
                           "figures/tuned-curves-g-mlp.png"]
    check_files(target, drawn.files)
    assert drawn.notes() == ["lambda sweep: the grid sweeps no λ", "batch-size sweep: the grid sweeps no batch size",
                             *NO_CALIBRATION]

    figs = figures(cells, store, space_of())
    assert list(figs) == ["tuning-g-mlp", "tuned-curves-g-mlp"]
    ax_lr, ax_lam = [a for a in figs["tuning-g-mlp"].axes if a.get_visible()]
    assert (ax_lr.get_title(), ax_lr.get_xscale()) == ("train.lr", "log")
    assert (ax_lam.get_title(), ax_lam.get_xscale()) == ("milLoss.lam", "linear")
    # a loss parameter's panel shows only that loss; the learning rate's every loss, in its colour
    assert gids(ax_lam) == {"seeds:milLoss", "mean:milLoss", "trial0:milLoss", "selected:milLoss"}
    assert {g.split(":")[1] for g in gids(ax_lr)} == {"celLoss", "milLoss"}
    colours = loss_colours(cells)

    scores = hand_scores(cells, hist)
    means = {k: sum(v) / len(v) for k, v in scores.items()}
    picked = {loss: max(range(TRIALS), key=lambda t: means[(loss, t)]) for loss in ("celLoss", "milLoss")}
    assert picked == BEST
    drawn_value = {(c.loss, c.trial, key): v for c in cells for key, v in c.config["search"]["values"].items()}
    assert drawn_value[("celLoss", 0, "train.lr")] == 1e-3 and drawn_value[("milLoss", 0, "milLoss.lam")] == 50.0
    for ax, key, losses in ((ax_lr, "train.lr", ("celLoss", "milLoss")), (ax_lam, "milLoss.lam", ("milLoss",))):
        for loss in losses:
            xs = [drawn_value[(loss, t, key)] for t in range(TRIALS)]
            order = np.argsort(xs)
            mean = by_gid(ax, f"mean:{loss}")
            assert mean.get_color() == colours[loss]
            np.testing.assert_allclose(mean.get_xdata(), np.array(xs)[order])
            np.testing.assert_allclose(mean.get_ydata(), np.array([means[(loss, t)] for t in range(TRIALS)])[order])
            seeds = by_gid(ax, f"seeds:{loss}").get_offsets()
            np.testing.assert_allclose(sorted(map(tuple, seeds)),
                                       sorted((drawn_value[(loss, t, key)], s) for t in range(TRIALS) for s in scores[(loss, t)]))
            trial0 = by_gid(ax, f"trial0:{loss}")
            assert trial0.get_marker() == "s" and trial0.get_markerfacecolor() == "none"
            np.testing.assert_allclose([trial0.get_xdata()[0], trial0.get_ydata()[0]], [xs[0], means[(loss, 0)]])
            star = by_gid(ax, f"selected:{loss}")
            assert star.get_marker() == "*"
            t = picked[loss]
            np.testing.assert_allclose([star.get_xdata()[0], star.get_ydata()[0]], [xs[t], means[(loss, t)]])
    # the star is the tuned rule's own choice, as bench report --select tuned reports it
    done = done_cells(cells, store.cells())
    chosen = select(RULES["tuned"], cells, histories(store.cells(), store.history([d.row["attempt_id"] for d in done])))
    assert {key[3]: c.trial for key, c in chosen.trials.items()} == picked

    # the tuned curves: per loss, the selected trial's val and test accuracy (mean over seeds), trial 0's test dashed
    axes = [a for a in figs["tuned-curves-g-mlp"].axes if a.get_visible()]
    assert [a.get_title().split(":")[0] for a in axes] == ["celLoss", "milLoss"]
    assert axes[0].get_title() == "celLoss: trial 0 (the registry defaults) selected"
    assert axes[1].get_title().startswith("milLoss: trial 2: lam=") and "lr=" in axes[1].get_title()
    for ax, loss in zip(axes, ("celLoss", "milLoss")):
        def curve(trial: int, metric: str) -> np.ndarray:
            return np.mean([[h[metric] for h in hist[c.cell_id]] for c in cells if c.loss == loss and c.trial == trial], axis=0)

        val, test = by_gid(ax, f"val:{loss}"), by_gid(ax, f"test:{loss}")
        np.testing.assert_allclose(val.get_xdata(), np.arange(1, EPOCHS + 1))
        np.testing.assert_allclose(val.get_ydata(), curve(picked[loss], "val_acc"))
        np.testing.assert_allclose(test.get_ydata(), curve(picked[loss], "test_acc"))
        assert test.get_linestyle() == "-" and test.get_color() == colours[loss]
        assert len(ax.collections) == 2  # the ±std bands of the selected trial's two curves (two seeds)
    base = by_gid(axes[1], "trial0-test:milLoss")
    np.testing.assert_allclose(base.get_ydata(), np.mean([[h["test_acc"] for h in hist[c.cell_id]] for c in cells
                                                          if c.loss == "milLoss" and c.trial == 0], axis=0))
    assert base.get_linestyle() == "--"
    assert "trial0-test:celLoss" not in gids(axes[0])  # trial 0 selected: its test curve is drawn once
    band = axes[1].collections[1].get_paths()[0].vertices[:, 1]
    test = np.array([[h["test_acc"] for h in hist[c.cell_id]] for c in cells if c.loss == "milLoss" and c.trial == 2])
    assert np.isclose(band.max(), (test.mean(0) + test.std(0, ddof=1)).max())


def test_the_distribution_not_the_values_decides_the_log_axis(tmp_path):
    space = {"train.lr": "uniform(1e-4, 1e-1)", "milLoss.lam": "loguniform(0.5, 500)"}
    store, cells = Store(tmp_path / "results"), cells_of("s", space)
    fill(store, cells)
    ax_lr, ax_lam = figures(cells, store, space_of(space))["tuning-g-mlp"].axes
    assert (ax_lr.get_xscale(), ax_lam.get_xscale()) == ("linear", "log")
    assert ax_lr.get_xlabel() == "train.lr (uniform)"
    # without the distributions: a log axis for positive values spanning two decades or more
    store, cells = Store(tmp_path / "results2"), cells_of("s")
    fill(store, cells)
    lr = [c.config["search"]["values"]["train.lr"] for c in cells]
    lam = [c.config["search"]["values"]["milLoss.lam"] for c in cells if c.loss == "milLoss"]
    assert max(lr) / min(lr) >= 100 and max(lam) / min(lam) < 100
    done = done_cells(cells, store.cells())
    chosen = select(RULES["tuned"], cells, histories(store.cells(), store.history()))
    ax_lr, ax_lam = tuning_figure(done, chosen, loss_colours(cells), "s").axes
    assert (ax_lr.get_xscale(), ax_lam.get_xscale()) == ("log", "linear")
    assert ax_lr.get_xlabel() == "train.lr"


def test_a_choice_of_names_is_a_category_axis(tmp_path):
    space = {"train.optimizer": "choice(sgd, adam)", "train.lr": "loguniform(1e-4, 1e-1)"}
    store, cells = Store(tmp_path / "results"), cells_of("s", space)
    hist = fill(store, cells)
    fig = figures(cells, store, space_of(space))["tuning-g-mlp"]
    ax = next(a for a in fig.axes if a.get_title() == "train.optimizer")
    fig.canvas.draw()
    names = {c.config["search"]["values"]["train.optimizer"] for c in cells}
    assert {t.get_text() for t in ax.get_xticklabels()} == names
    mean = by_gid(ax, "mean:celLoss")
    scores = hand_scores(cells, hist)
    want = {t: np.mean(scores[("celLoss", t)]) for t in range(TRIALS)}
    assert sorted(mean.get_ydata()) == pytest.approx(sorted(want.values()))


def test_a_search_without_validation_or_finished_cells_says_why(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of("noval")
    assert draw_all("noval", cells, store, tmp_path / "out").notes()[-2:] == [
        "tuning landscape: no finished cells", "tuned curves: no finished cells"]
    fill(store, cells, validation=False)
    drawn = draw_all("noval", cells, store, tmp_path / "out", space=space_of())
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png"]
    why = "the grid has no validation split (train.val_fraction is 0), so no trial has a validation score"
    assert drawn.notes()[-2:] == [f"tuning landscape: {why}", f"tuned curves: {why}"]

    # a validation split declared but no validation accuracy in the stored history
    store, cells = Store(tmp_path / "results2"), cells_of("s")
    fill(store, cells, validation=False)
    drawn = draw_all("s", cells, store, tmp_path / "out2", space=space_of())
    assert drawn.notes()[-1] == "tuned curves: no finished search cell has a validation accuracy in its history"
    assert not any("tun" in f for f in drawn.files)


def test_the_curves_and_sweeps_of_a_search_grid_are_trial_0s(tmp_path):
    """A mean over trials would mix settings, and the trials' drawn λ are no sweep: both show trial 0."""
    store, cells = Store(tmp_path / "results"), cells_of("s")
    fill(store, [c for c in cells if c.trial != 0])
    drawn = draw_all("s", cells, store, tmp_path / "out", space=space_of())
    assert drawn.files == ["figures/mi-vs-error.png", "figures/tuning-g-mlp.png", "figures/tuned-curves-g-mlp.png"]
    why = "no trial-0 cell (the registry defaults) has finished"
    assert drawn.notes() == [f"learning curves: {why}", f"lambda sweep: {why}", f"batch-size sweep: {why}",
                             f"reliability diagrams: {why}", f"ECE vs accuracy: {why}"]
    fill(store, [c for c in cells if c.trial == 0])
    drawn = draw_all("s", cells, store, tmp_path / "out", space=space_of())
    assert "figures/curves-g-mlp.png" in drawn.files and "lambda sweep: the grid sweeps no λ" in drawn.notes()


def test_the_figures_read_only_the_history_of_the_curves_they_draw(tmp_path, monkeypatch):
    """draw_all takes the tuned choice from the rows' stored picks and reads the history of trial 0 and the chosen
    trials only, three columns of it (memory follows what is drawn), and draws the same PNGs as the path that
    reads every trial's whole history."""
    from bench.report.figures import HISTORY_COLUMNS
    from bench.report.figures.files import save_figure

    store, cells = Store(tmp_path / "results"), cells_of("s")
    fill(store, cells)
    asked = []
    real = Store.history

    def spy(self, attempt_ids=None, columns=None):
        asked.append((list(attempt_ids), columns))
        return real(self, attempt_ids, columns)

    monkeypatch.setattr(Store, "history", spy)
    drawn = draw_all("s", cells, store, tmp_path / "out", space=space_of())
    [(ids, columns)] = asked
    want = {f"a{c.cell_id}" for c in cells if c.trial in (0, BEST[c.loss])}
    assert set(ids) == want and len(want) < len(cells)
    assert set(columns) == set(HISTORY_COLUMNS)
    monkeypatch.undo()
    for stem, fig in figures(cells, store, space_of()).items():  # every trial's whole history, the choice from it
        assert f"figures/{stem}.png" in drawn.files
        save_figure(fig, tmp_path / "full", stem, ("png",))
        assert (tmp_path / "full" / f"{stem}.png").read_bytes() == (tmp_path / "out" / "figures" / f"{stem}.png").read_bytes()
