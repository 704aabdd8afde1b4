"""Report tables from a synthetic store: means, stds, bold best, n=, missing cells, formats, LaTeX compiles."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cells import expand_grid
from bench.registry import parse_registry
from bench.report import collect, latex_escape, render
from bench.store import Store

CPU = torch.device("cpu")


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


def fill(store: Store, cells, acc=ACC, status="done"):
    for c in cells:
        value = acc.get((c.architecture, c.loss), [None] * 3)[c.seed] if acc else 0.5
        if value is None:
            continue
        row = {**c.flat(), "attempt_id": f"a{c.cell_id}", "status": status, "message": "", "final_test_acc": value,
               "final_test_mi": 1.5 + value, "test_label_entropy": math.log(10), "num_classes": 10,
               "written_at": time.time_ns()}
        store.write_result(row, [{"epoch": 1, "test_acc": value, "test_mi": 1.0}])


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
    assert "Cells: 14 done, 0 failed, 0 diverged, 4 pending" in md


def test_paired_differences(data):
    md = render(data, "markdown")
    # milLoss - celLoss on mlp: diffs 0.05, 0.04, 0.03 -> mean 0.04, t interval excludes zero
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("| fm")]
    assert ["fm", "mlp", "milLoss", "+0.040 [+0.015, +0.065] *"] in rows  # diffs .05,.04,.03: excludes zero
    assert ["fm", "mlp", "celLossLSR", "-0.015 [-0.079, +0.049]"] in rows  # 2 pairs: wide, no star
    assert ["fm", "cnn", "celLossLSR", "n too small"] in rows


def test_mi_and_bounds_section(data):
    md = render(data, "markdown")
    assert "Thm 4 bound" in md and "Fano bound" in md
    csv = pd.read_csv(__import__("io").StringIO(render(data, "csv")))
    row = csv[(csv["architecture"] == "mlp") & (csv["loss"] == "milLoss")].iloc[0]
    assert row["n"] == 3 and row["n_expected"] == 3
    assert row["acc_mean"] == pytest.approx(0.85)
    assert row["diff_vs_baseline"] == pytest.approx(0.04)
    assert row["mi_nats"] == pytest.approx(2.35)
    assert 0 <= row["bound_thm4"] <= row["bound_fano"] <= 1
    cnn_lsr = csv[(csv["architecture"] == "cnn") & (csv["loss"] == "celLossLSR")].iloc[0]
    assert cnn_lsr["n"] == 0 and math.isnan(cnn_lsr["acc_mean"])


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


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (scripts/setup.sh installs it)")
def test_latex_compiles(data, tmp_path):
    (tmp_path / "table.tex").write_text(render(data, "latex"))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{table.tex}\n\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_report_dir_cannot_escape(tmp_path):
    from bench.cli import _report_dir

    target = _report_dir(tmp_path / "out", "../../evil")
    assert Path(tmp_path / "out") in target.parents
