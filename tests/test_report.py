"""Report tables from a synthetic store: means, stds, bold best and ties, n=, missing and diverged cells, footnotes, formats."""

from __future__ import annotations

import io
import math
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.config.cells import expand_grid
from bench.config.registry import parse_registry
from bench.report.collect import collect
from bench.report.content import fmt_num
from bench.report.latex import latex_escape
from bench.report.render import nothing_finished, render
from bench.store.results import Store



def registry():
    return parse_registry({
        "datasets": {"fm": {"kind": "fashion-mnist"}, "g": {"kind": "gauss", "params": {"d": 1, "mu": 1.0, "sigma2": 1.0}}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}, "cnn": {"source": "native", "name": "cnn"}},
        "losses": {
            "celLoss": {"target": "losses.cross_entropy:CelLoss"},
            "celLossLSR": {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1}},
            "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 50.0}},
        },
        "grids": {
            "t": {"datasets": ["fm"], "architectures": ["mlp", "cnn"], "losses": "all", "seeds": [0, 1, 2],
                  "train": {"epochs": 2}},
            "gg": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0], "train": {"epochs": 2}},
            "one": {"datasets": ["fm"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0],
                    "train": {"epochs": 2}},
        },
    })


ACC = {  # (architecture, loss) -> per-seed accuracies; None = not finished
    ("mlp", "celLoss"): [0.80, 0.82, 0.81],
    ("mlp", "celLossLSR"): [0.79, 0.80, None],
    ("mlp", "milLoss"): [0.85, 0.86, 0.84],
    ("cnn", "celLoss"): [0.90, 0.91, 0.92],
    ("cnn", "celLossLSR"): [None, None, None],
    ("cnn", "milLoss"): [0.88, 0.90, 0.89],
}


def fill(store: Store, cells, acc=ACC, status="done", mi=None):
    """``acc``: (architecture, loss) -> per-seed accuracy, None (not run) or a status word ("diverged", "failed")."""
    for c in cells:
        value = acc.get((c.architecture, c.loss), [None] * 3)[c.seed] if acc else 0.5
        if value is None:
            continue
        st = value if isinstance(value, str) else status
        value = math.nan if isinstance(value, str) else value
        row = {**c.flat(), "attempt_id": f"a{c.cell_id}", "status": st, "message": "" if st == "done" else st,
               "final_test_acc": value, "final_test_mi": 1.5 + value if mi is None else mi,
               "test_label_entropy": math.log(10), "num_classes": 10, "written_at": time.time_ns()}
        store.write_result(row, [{"epoch": 1, "test_acc": value, "test_mi": 1.0}])


def report_of(tmp_path, grid, acc, baseline="celLoss", **kw):
    cells = expand_grid(registry(), grid)
    store = Store(tmp_path / "res")
    fill(store, cells, acc, **kw)
    return collect(grid, cells, store.cells(), baseline)


def table_rows(md: str, start: str = "| fm") -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith(start)]


def section(md: str, heading: str) -> str:
    """The text of the markdown section whose heading contains ``heading``, up to the next heading."""
    part = md[md.index(heading):]
    nxt = part.find("\n#", 1)
    return part if nxt < 0 else part[:nxt]


@pytest.fixture()
def data(tmp_path):
    reg = registry()
    cells = expand_grid(reg, "t")
    store = Store(tmp_path / "res")
    fill(store, cells)
    return collect("t", cells, store.cells(), "celLoss")


def test_markdown_table(data):
    md = render(data, "markdown")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("| fm")]
    mlp, cnn = rows[0], rows[1]  # the accuracy table comes first, one line per (dataset, architecture)
    assert mlp == ["fm", "mlp", "0.810 ± 0.010", "0.795 ± 0.007 (n=2)", "**0.850 ± 0.010**"]  # sample std, n=, bold best
    assert cnn == ["fm", "cnn", "**0.910 ± 0.010**", "—", "0.890 ± 0.010"]  # no finished seed: —
    assert md.index("celLoss") < md.index("celLossLSR") < md.index("milLoss")  # registry order
    assert "Cells: 14 done, 4 pending." in md  # zero counts left out
    note = md.split("\n\n")[2]
    assert "over the grid's 3 seeds" in note and "`(n=k)`" in note and "—" in note
    assert "diverged" not in note and "failed" not in note  # no mark the table does not carry


def test_paired_differences(data):
    md = render(data, "markdown")
    # milLoss - celLoss on mlp: diffs 0.05, 0.04, 0.03 -> mean 0.04, t interval excludes zero
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("| fm")]
    assert ["fm", "mlp", "milLoss", "+0.040 [+0.015, +0.065] *"] in rows  # diffs .05,.04,.03: excludes zero
    assert ["fm", "mlp", "celLossLSR", "-0.015 [-0.079, +0.049] (n=2)"] in rows  # 2 pairs: wide, no star
    assert ["fm", "cnn", "celLossLSR", "—"] in rows  # nothing finished to pair
    assert "with 3 seeds an interval is wide" in md


def test_mi_and_bounds_section(data):
    md = render(data, "markdown")
    assert "Thm 4 bound" in md and "Fano bound" in md
    csv = pd.read_csv(io.StringIO(render(data, "csv")))
    row = csv[(csv["architecture"] == "mlp") & (csv["loss"] == "milLoss")].iloc[0]
    assert row["n"] == 3 and row["n_expected"] == 3
    assert row["acc_mean"] == pytest.approx(0.85)
    assert row["diff_vs_baseline"] == pytest.approx(0.04)
    assert row["mi_nats"] == pytest.approx(2.35)
    assert 0 <= row["bound_thm4"] <= row["bound_fano"] <= 1
    cnn_lsr = csv[(csv["architecture"] == "cnn") & (csv["loss"] == "celLossLSR")].iloc[0]
    assert cnn_lsr["n"] == 0 and math.isnan(cnn_lsr["acc_mean"]) and cnn_lsr["status"] == "pending"
    assert set(csv["status"]) == {"done", "partial", "pending"}


def test_failed_cells_do_not_count(tmp_path):
    reg = registry()
    cells = expand_grid(reg, "t")
    store = Store(tmp_path / "res")
    fill(store, cells, status="failed")
    data = collect("t", cells, store.cells(), "celLoss")
    assert all(e.n == 0 for e in data.entries.values())
    assert data.counts["failed"] == 14


def test_gauss_truth_section(tmp_path):
    reg = registry()
    cells = expand_grid(reg, "gg")
    store = Store(tmp_path / "res")
    fill(store, cells, acc={("mlp", "celLoss"): [0.84]})
    md = render(collect("gg", cells, store.cells(), "celLoss"), "markdown")
    assert "exact I(X;Y)" in md and "0.3368" in md and "0.1587" in md  # δ = 1: MI, Bayes error Φ(-1)


def test_latex_escapes_and_booktabs(data):
    tex = render(data, "latex")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\textbf{0.850 $\\pm$ 0.010}" in tex
    assert latex_escape("a_b&c%") == "a\\_b\\&c\\%"


def test_report_dir_cannot_escape(tmp_path):
    from bench.report.destination import report_dir

    target = report_dir(tmp_path / "out", "../../evil", "store:test")
    assert Path(tmp_path / "out") in target.parents


# ------------------------------------------------------------------ ties, negative zero, footnotes, diverged cells


def test_bold_marks_every_entry_tied_at_the_printed_precision(tmp_path):
    acc = {("mlp", "celLoss"): [0.8634] * 3, ("mlp", "celLossLSR"): [0.8626] * 3, ("mlp", "milLoss"): [0.8601] * 3,
           ("cnn", "celLoss"): [0.8636] * 3, ("cnn", "celLossLSR"): [0.8634] * 3, ("cnn", "milLoss"): [0.85] * 3}
    data = report_of(tmp_path, "t", acc)
    md = render(data, "markdown")
    mlp, cnn = table_rows(md)[:2]
    assert mlp[2:] == ["**0.863 ± 0.000**", "**0.863 ± 0.000**", "0.860 ± 0.000"]  # 0.8634 and 0.8626 both read 0.863
    assert cnn[2:] == ["**0.864 ± 0.000**", "0.863 ± 0.000", "0.850 ± 0.000"]  # 0.8636 reads 0.864: no tie
    assert "every entry tied with it at the printed precision" in md
    tex = render(data, "latex")
    assert tex.count("\\textbf{0.863 $\\pm$ 0.000}") == 2 and tex.count("\\textbf{0.864 $\\pm$ 0.000}") == 1
    assert "ties at the printed precision all bold" in tex


def test_no_negative_zero_anywhere(tmp_path):
    assert fmt_num(-0.0004) == "0.000" and fmt_num(-0.0004, signed=True) == "0.000"
    assert fmt_num(0.0004, signed=True) == "0.000" and fmt_num(-0.0006, signed=True) == "-0.001"
    assert fmt_num(-1e-12, 4) == "0.0000" and fmt_num(0.0) == "0.000" and fmt_num(math.nan) == "nan"
    # celLossLSR - celLoss: -0.0004, -0.0003, -0.0005 -> an interval of [-0.0006, -0.0002], excludes zero
    acc = {("mlp", "celLoss"): [0.8004, 0.8103, 0.8205], ("mlp", "celLossLSR"): [0.8, 0.81, 0.82],
           ("mlp", "milLoss"): [0.8, 0.81, 0.82]}
    data = report_of(tmp_path, "t", acc)
    for fmt in ("markdown", "latex"):
        text = render(data, fmt)
        assert not re.search(r"-0\.0+(?!\d*[1-9])\b", text.replace("$-$", "-")), fmt
    rows = table_rows(render(data, "markdown"))
    assert ["fm", "mlp", "celLossLSR", "0.000 [-0.001, 0.000] *"] in rows
    assert "An end printed as 0.000 is non-zero beyond the printed digits." in render(data, "markdown")


def test_footnotes_follow_a_one_seed_grid(tmp_path):
    data = report_of(tmp_path, "one", {("mlp", "celLoss"): [0.81], ("mlp", "milLoss"): [0.84]})
    md = render(data, "markdown")
    assert "3 seeds" not in md and "(n=k)" not in md and "—" not in md and "ddof" not in md
    assert "one seed per cell" in md.splitlines()[0]
    assert "One seed per cell, so no std." in md
    assert ["fm", "mlp", "milLoss", "+0.030"] in table_rows(md)  # one pair: no interval, no (n=1) mark
    assert "With one seed per cell there is no interval" in md and "`*`" not in md
    assert "Cells: 2 done." in md
    tex = render(data, "latex")
    assert "3 seeds" not in tex and "one seed per cell" in tex and "With one seed per cell there is no interval" in tex


def test_a_diverged_cell_is_diverged_in_every_table_and_format(tmp_path):
    acc = {("mlp", "celLoss"): [0.80, 0.82, 0.81], ("mlp", "celLossLSR"): ["diverged"] * 3,
           ("mlp", "milLoss"): [0.85, "diverged", 0.84], ("cnn", "celLoss"): [0.90, 0.91, 0.92],
           ("cnn", "celLossLSR"): ["failed", "failed", None], ("cnn", "milLoss"): [0.88, 0.90, 0.89]}
    data = report_of(tmp_path, "t", acc)
    md = render(data, "markdown")
    mlp, cnn = table_rows(md)[:2]
    assert mlp[3:] == ["diverged", "**0.845 ± 0.007 (n=2, 1 diverged)**"]
    assert cnn[3] == "failed (2 of 3)"
    assert "Cells: 11 done, 2 failed, 4 diverged, 1 pending." in md
    assert "`diverged`: training stopped on a non-finite loss" in md and "`failed`" in md
    diff = section(md, "### Difference")
    assert ["fm", "mlp", "celLossLSR", "diverged"] in table_rows(diff)
    assert ["fm", "cnn", "celLossLSR", "failed"] in table_rows(diff)
    assert any(r[:3] == ["fm", "mlp", "milLoss"] and r[3].endswith("(n=2, 1 diverged)") for r in table_rows(diff))
    mi = section(md, "### Learned mutual information")
    assert ["fm", "mlp", "celLossLSR", "diverged", "", "", "", "", ""] in table_rows(mi)
    tex = render(data, "latex")
    assert tex.count("diverged") >= 3  # the accuracy, differences and Î tables
    assert re.search(r"celLossLSR & diverged & +\\\\", tex) and "0.845 $\\pm$ 0.007 (n=2, 1 diverged)" in tex
    csv = pd.read_csv(io.StringIO(render(data, "csv"))).set_index(["architecture", "loss"])
    assert csv.loc[("mlp", "celLossLSR"), "status"] == "diverged" and csv.loc[("mlp", "celLossLSR"), "n_diverged"] == 3
    assert csv.loc[("mlp", "milLoss"), "status"] == "partial" and csv.loc[("mlp", "milLoss"), "n_diverged"] == 1
    assert csv.loc[("cnn", "celLossLSR"), "status"] == "failed" and csv.loc[("cnn", "celLossLSR"), "n_failed"] == 2


def test_mi_footnote_says_a_bound_above_the_error_means_the_estimate_understates(tmp_path):
    """On gauss (δ = 1, exact I = 0.337 nats) a learned Î of 0.011 implies a Fano bound far above the error."""
    data = report_of(tmp_path, "gg", {("mlp", "celLoss"): [0.84]}, mi=0.011)
    md = render(data, "markdown")
    row = table_rows(section(md, "### Learned mutual information"), "| g")[0]
    assert row[3] == "0.011" and float(row[-3]) > float(row[5]) and row[-1] == "**no**"
    assert "means Î understates the true I(X;Y)" in md and "overstates" not in md
    assert "docs/theory.md" in md and "FORMULAS" not in md and "shared/" not in md
    assert "0.3368" in md  # the exact I(X;Y) beside it
    tex = render(data, "latex")
    assert "\\textbf{no}" in tex and "understates" in tex and "overstates" not in tex
    assert "exact $I(X;Y) = 0.337$ nats" in tex


def test_nothing_finished_is_one_line_with_the_command(tmp_path):
    cells = expand_grid(registry(), "t")
    data = collect("t", cells, Store(tmp_path / "empty").cells(), "celLoss")
    line = nothing_finished(data, tmp_path / "empty", [("--registry", Path("my reg.yaml")), ("--results", None),
                                                       ("--filter", "loss=milLoss")])
    assert line == (f"grid 't': no finished cell in {tmp_path / 'empty'} (18 cells: 18 pending); "
                    "train them with: bench run --grid t --registry 'my reg.yaml' --filter loss=milLoss")
    failed = report_of(tmp_path, "t", None, status="failed")
    assert nothing_finished(failed, "res", []).endswith("bench run --grid t --retry-failed")  # a plain run skips them
    assert nothing_finished(report_of(tmp_path / "b", "t", ACC), "res", []) is None


def test_a_collapsed_model_is_flagged_and_never_bold(tmp_path):
    """A model at near-chance accuracy can have the lowest ECE of the row (a constant prediction of the class
    prior is well calibrated): it is marked collapsed and the bold goes to the best model that learned."""
    from bench.metrics.table import METRICS

    acc = {("mlp", "celLoss"): [0.86] * 3, ("mlp", "celLossLSR"): [0.85] * 3, ("mlp", "milLoss"): [0.178] * 3}
    cells = expand_grid(registry(), "t")
    store = Store(tmp_path / "res")
    fill(store, cells, acc)
    ece = {("mlp", "celLoss"): 0.02, ("mlp", "celLossLSR"): 0.09, ("mlp", "milLoss"): 0.0066}
    values = {c.cell_id: ece[(c.architecture, c.loss)] for c in cells if (c.architecture, c.loss) in ece}
    data = collect("t", cells, store.cells(), "celLoss", metric=METRICS["ece"], values=values)
    md = render(data, "markdown")
    mlp = table_rows(md)[0]
    assert mlp[2] == "**0.0200 ± 0.0000**" and mlp[4] == "0.0066 ± 0.0000 (collapsed)", mlp
    assert "never bold" in md
    tex = render(data, "latex")
    assert "(collapsed)" in tex and "\\textbf{0.0066" not in tex and "\\textbf{0.0200" in tex
    # accuracy at 0.25 on 10 classes is above chance's tenth of the way (0.19): not collapsed
    assert not any(e.collapsed for e in report_of(tmp_path / "b", "t", {("mlp", "celLoss"): [0.25] * 3}).entries.values())
