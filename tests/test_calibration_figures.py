"""The calibration figures: seeds' reliability tables pooled, reliability diagrams, ECE against accuracy."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import yaml

from bench.config.cells import Cell, expand_grid
from bench.report.figures import (done_cells, draw_all, ece_accuracy_figure, loss_colours, pool_reliability,
                           reliability_figure, reliability_table, table_ece)
from bench.config.registry import parse_registry
from bench.store.results import Store
from tests.conftest import gauss_registry
from tests.test_figures import check_files
from tests.test_figures import fill as fill_without_calibration

BINS = 15


def test_pooling_two_seeds_by_hand():
    # bin 0 empty in both seeds, bin 2 empty in seed b only
    a = {"count": [0, 2, 3], "confidence": [None, 0.5, 0.9], "accuracy": [None, 0.5, 1.0]}
    b = {"count": [0, 4, 0], "confidence": [None, 0.6, None], "accuracy": [None, 0.25, None]}
    pooled = pool_reliability([a, b])
    assert pooled["count"] == [0, 6, 3]
    # bin 1: (2·0.5 + 4·0.6) / 6 = 3.4/6 and (2·0.5 + 4·0.25) / 6 = 2/6; bin 2 is seed a's alone
    assert pooled["confidence"][0] is None and pooled["accuracy"][0] is None
    assert pooled["confidence"][1:] == pytest.approx([3.4 / 6, 0.9])
    assert pooled["accuracy"][1:] == pytest.approx([1 / 3, 1.0])
    # (6/9)·|1/3 − 17/30| + (3/9)·|1.0 − 0.9| = 14/90 + 3/90
    assert table_ece(pooled) == pytest.approx(17 / 90)
    assert table_ece(a) == pytest.approx(0.4 * 0.0 + 0.6 * 0.1)
    assert pool_reliability([a]) == a
    with pytest.raises(ValueError, match="numbers of bins"):
        pool_reliability([a, {"count": [1], "confidence": [0.5], "accuracy": [1.0]}])
    with pytest.raises(ValueError, match="no tables"):
        pool_reliability([])
    assert math.isnan(table_ece({"count": [0, 0], "confidence": [None, None], "accuracy": [None, None]}))


@pytest.mark.parametrize("value", [None, "", "  ", math.nan, 0.3, "not json", "[1, 2]", '{"count": [1]}',
                                   '{"count": [1, 2], "confidence": [0.5], "accuracy": [1.0]}',
                                   '{"count": [1], "confidence": [null], "accuracy": [1.0]}',
                                   '{"count": [-1], "confidence": [0.5], "accuracy": [1.0]}'])
def test_a_missing_or_odd_table_is_absent(value):
    assert reliability_table(value) is None


def test_a_stored_table_reads_back():
    table = {"count": [0, 3], "confidence": [None, 0.75], "accuracy": [None, 2 / 3]}
    assert reliability_table(json.dumps(table)) == table


# --------------------------------------------------------------------------- a fabricated store


def registry():
    return parse_registry(gauss_registry(
        ts={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0, 1],
            "train": {"epochs": 2, "batch_size": 64, "val_fraction": 0.1}}))


def cells_of() -> list[Cell]:
    return expand_grid(registry(), "ts", validate=False)


def table(bins: dict[int, tuple[int, float, float]]) -> dict[str, list]:
    """A 15-bin table from {bin: (count, mean confidence, accuracy)}."""
    return {"count": [bins.get(m, (0,))[0] for m in range(BINS)],
            "confidence": [bins[m][1] if m in bins else None for m in range(BINS)],
            "accuracy": [bins[m][2] if m in bins else None for m in range(BINS)]}


# celLoss's tables by seed; milLoss's are these with every accuracy 0.1 lower
RAW = {0: {9: (10, 0.62, 0.5), 14: (30, 0.97, 0.9)}, 1: {9: (30, 0.64, 0.7), 12: (20, 0.83, 0.8)}}
SCALED = {0: {12: (40, 0.85, 0.825)}, 1: {12: (50, 0.82, 0.8)}}
TEMPERATURE = {0: 1.5, 1: 2.1}
FINAL = {("celLoss", 0): (0.80, 0.040, 0.020), ("celLoss", 1): (0.84, 0.060, 0.030),
         ("milLoss", 0): (0.70, 0.150, 0.050), ("milLoss", 1): (0.74, 0.110, 0.010)}  # acc, ECE, ECE after scaling


def lowered(bins: dict[int, tuple[int, float, float]], by: float) -> dict[int, tuple[int, float, float]]:
    return {m: (n, c, a - by) for m, (n, c, a) in bins.items()}


def calibrated_row(cell: Cell, scaled: bool = True) -> dict:
    by = 0.1 if cell.loss == "milLoss" else 0.0
    acc, ece, ece_ts = FINAL[(cell.loss, cell.seed)]
    return {**cell.flat(), "attempt_id": f"a{cell.cell_id[:10]}", "status": "done", "message": "", "epochs_done": 2,
            "num_classes": 2, "final_test_acc": acc, "final_test_mi": 0.3, "final_test_loss": 0.5,
            "test_label_entropy": math.log(2), "written_at": 1_000_000,
            "final_test_ece": ece, "final_test_ece_ts": ece_ts if scaled else math.nan,
            "temperature": TEMPERATURE[cell.seed] if scaled else math.nan,
            "test_reliability": json.dumps(table(lowered(RAW[cell.seed], by))),
            "test_reliability_ts": json.dumps(table(lowered(SCALED[cell.seed], by))) if scaled else ""}


def history(cell: Cell) -> list[dict]:
    acc = FINAL[(cell.loss, cell.seed)][0]
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": acc, "test_acc": acc, "test_loss": 0.5,
             "test_h_cond": 0.4, "test_h_marg": 0.69, "test_mi": 0.29, "epoch_time": 0.1} for e in (1, 2)]


def fill(store: Store, cells: list[Cell], scaled: bool = True) -> None:
    for cell in cells:
        store.write_result(calibrated_row(cell, scaled), history(cell))


def patches(ax, gid: str):
    return sorted((p for p in ax.patches if p.get_gid() == gid), key=lambda p: p.get_x())


def by_gid(ax, gid: str):
    found = [a for a in [*ax.get_lines(), *ax.collections] if a.get_gid() == gid]
    assert len(found) == 1, (gid, [a.get_gid() for a in [*ax.get_lines(), *ax.collections]])
    return found[0]


def title_number(title: str, pattern: str) -> float:
    match = re.search(pattern, title)
    assert match, (pattern, title)
    return float(match.group(1))


def test_the_reliability_diagram_pools_the_seeds(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of()
    fill(store, cells)
    target = tmp_path / "out"
    drawn = draw_all("ts", cells, store, target)
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png", "figures/reliability-g-mlp.png",
                           "figures/ece-vs-acc-g-mlp.png"]
    check_files(target, drawn.files)
    assert not any("reliability" in note or "ECE" in note for note in drawn.notes())

    done = done_cells(cells, store.cells())
    fig = reliability_figure(done, loss_colours(cells), "ts")
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title().split(" ")[0] for a in axes] == ["celLoss", "milLoss"]  # the grid's loss order
    assert "last epoch's test split" in fig.get_suptitle()
    cel, mil = axes
    # celLoss pooled by hand: bin 9 (40; conf (6.2 + 19.2)/40 = 0.635; acc (5 + 21)/40 = 0.65),
    # bin 12 (20; 0.83; 0.8), bin 14 (30; 0.97; 0.9)
    bars = patches(cel, "acc:celLoss")
    assert [p.get_x() for p in bars] == pytest.approx([9 / 15, 12 / 15, 14 / 15])
    assert [p.get_width() for p in bars] == pytest.approx([1 / 15] * 3)
    assert [p.get_height() for p in bars] == pytest.approx([0.65, 0.8, 0.9])
    gaps = patches(cel, "gap:celLoss")  # from the accuracy to the mean confidence
    assert [(p.get_y(), p.get_height()) for p in gaps] == [
        pytest.approx((0.635, 0.015)), pytest.approx((0.8, 0.03)), pytest.approx((0.9, 0.07))]
    share = patches(cel, "share:celLoss")
    assert len(share) == BINS and [share[m].get_height() for m in (9, 12, 14)] == pytest.approx([40 / 90, 20 / 90, 30 / 90])
    # ECE = (40·0.015 + 20·0.03 + 30·0.07) / 90 = 3.3/90
    assert title_number(cel.get_title(), r"\nECE ([0-9.]+)") == pytest.approx(3.3 / 90, abs=5e-5)
    assert "n=90" in cel.get_title() and "2 seeds" in cel.get_title()
    # after scaling, bin 12 alone: (40 + 50; conf (34 + 41)/90; acc (33 + 40)/90); ECE 2/90; T (1.5 + 2.1)/2
    scaled = patches(cel, "acc-ts:celLoss")
    assert [(p.get_x(), p.get_height()) for p in scaled] == [pytest.approx((12 / 15, 73 / 90))]
    assert not scaled[0].get_fill()
    assert title_number(cel.get_title(), r"after temperature scaling ([0-9.]+)") == pytest.approx(2 / 90, abs=5e-5)
    assert title_number(cel.get_title(), r"mean T ([0-9.]+)") == pytest.approx(1.8)
    np.testing.assert_allclose(by_gid(cel, "diagonal").get_xydata(), [[0, 0], [1, 1]])
    # milLoss: every accuracy 0.1 lower
    assert [p.get_height() for p in patches(mil, "acc:milLoss")] == pytest.approx([0.55, 0.7, 0.8])
    mil_ece = (40 * abs(0.55 - 0.635) + 20 * abs(0.7 - 0.83) + 30 * abs(0.8 - 0.97)) / 90
    assert title_number(mil.get_title(), r"\nECE ([0-9.]+)") == pytest.approx(mil_ece, abs=5e-5)


def test_the_scatter_of_ece_against_accuracy(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of()
    fill(store, cells)
    done = done_cells(cells, store.cells())
    colours = loss_colours(cells)
    ax = ece_accuracy_figure(done, colours, "ts").axes[0]
    for loss in ("celLoss", "milLoss"):
        rows = [FINAL[(loss, s)] for s in (0, 1)]
        acc, ece, ece_ts = (np.array(v) for v in zip(*rows))
        points = by_gid(ax, f"cells:{loss}")
        np.testing.assert_allclose(points.get_offsets(), np.c_[acc, ece])
        assert tuple(points.get_facecolor()[0][:3]) == pytest.approx(tuple(int(colours[loss][i:i + 2], 16) / 255
                                                                           for i in (1, 3, 5)))
        mean, = [c for c in ax.containers if str(c.get_label()).startswith(f"{loss} (n=2)")]
        np.testing.assert_allclose(mean.lines[0].get_xydata(), [[acc.mean(), ece.mean()]])
        # the vertical error bar spans the mean ± the sample std over the two seeds (|a − b| / √2)
        sy = abs(ece[0] - ece[1]) / math.sqrt(2)
        segments = [np.asarray(s) for col in mean.lines[2] for s in col.get_segments()]
        assert any(np.allclose(s, [[acc.mean(), ece.mean() - sy], [acc.mean(), ece.mean() + sy]]) for s in segments)
        hollow = by_gid(ax, f"cells-ts:{loss}")
        np.testing.assert_allclose(hollow.get_offsets(), np.c_[acc, ece_ts])
        assert len(hollow.get_facecolor()) == 0 or hollow.get_facecolor()[0][3] == 0
        links = by_gid(ax, f"links:{loss}").get_segments()
        np.testing.assert_allclose(np.array(links), [[[a, e], [a, t]] for a, e, t in rows])
        np.testing.assert_allclose(by_gid(ax, f"mean-ts:{loss}").get_xydata(), [[acc.mean(), ece_ts.mean()]])


def test_without_temperature_scaling_one_series(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of()
    fill(store, cells, scaled=False)
    done = done_cells(cells, store.cells())
    cel = reliability_figure(done, loss_colours(cells)).axes[0]
    assert patches(cel, "acc-ts:celLoss") == [] and "temperature" not in cel.get_title()
    ax = ece_accuracy_figure(done, loss_colours(cells)).axes[0]
    assert not any(str(a.get_gid()).startswith(("cells-ts", "links", "mean-ts")) for a in [*ax.get_lines(), *ax.collections])


def test_an_older_store_skips_both_with_a_reason(tmp_path):
    store, cells = Store(tmp_path / "results"), cells_of()
    fill_without_calibration(store, cells)  # rows written before the calibration columns
    drawn = draw_all("ts", cells, store, tmp_path / "out")
    assert drawn.files == ["figures/curves-g-mlp.png", "figures/mi-vs-error.png"]
    old = "(a store written before the calibration metrics lacks it)"
    assert drawn.notes()[-2:] == [f"reliability diagrams: no finished cell has the test_reliability table {old}",
                                  f"ECE vs accuracy: no finished cell has a finite final_test_ece and final_test_acc {old}"]
    # a newer row with the columns empty ("" and NaN) reads the same
    store = Store(tmp_path / "results2")
    for cell in cells:
        store.write_result({**calibrated_row(cell), "test_reliability": "", "test_reliability_ts": "",
                            "final_test_ece": math.nan, "final_test_ece_ts": math.nan}, history(cell))
    assert draw_all("ts", cells, store, tmp_path / "out2").notes()[-2:] == drawn.notes()[-2:]
    assert draw_all("ts", cells, Store(tmp_path / "none"), tmp_path / "out3").notes()[-2:] == [
        "reliability diagrams: no finished cells", "ECE vs accuracy: no finished cells"]


def test_report_figures_of_a_trained_grid(tmp_path, cli):
    """End to end: one epoch of the gauss model with a validation split, then the report's figures."""
    data = gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                              "train": {"epochs": 1, "batch_size": 128, "val_fraction": 0.2}})
    data["datasets"]["g"]["params"] = {"d": 2, "n_train": 400, "n_test": 100}
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(data))
    common = ["--grid", "g1", "--registry", reg, "--results", tmp_path / "res"]
    r = cli("run", *common, "--plain", "--no-report")
    assert r.exit_code == 0, r.output
    r = cli("report", *common, "--figures", "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    figures = tmp_path / "rep" / "g1" / "figures"
    for stem in ("reliability-g-mlp", "ece-vs-acc-g-mlp"):
        assert (figures / f"{stem}.png").stat().st_size > 1000 and (figures / f"{stem}.pdf").stat().st_size > 1000
    assert "reliability" not in r.stderr and "ECE vs accuracy" not in r.stderr
