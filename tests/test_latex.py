"""The LaTeX report compiles in a plain ``article`` and every table fits its column.

Each grid's report is rendered from a synthetic store (finished, partly finished, diverged and
failed entries, ties, differences that round to zero), wrapped in ``\\documentclass{article}``
and compiled with pdflatex; any ``Overfull \\hbox`` (a table wider than the column) or ``Float too
large`` (taller than the page) in the log fails the test.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml

from bench.config.cells import Cell, expand_grid
from bench.config.registry import parse_registry
from bench.report.collect import collect
from bench.report.latex import latex_text, text_width_pt
from bench.report.render import render
from bench.store.results import Store
from tests.conftest import REPO

PREAMBLE = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"


def registry():
    data = yaml.safe_load((REPO / "registry.yaml").read_text())
    common = {"seeds": [0, 1, 2], "train": {"epochs": 2}}
    data["grids"]["nine"] = {**common, "datasets": ["fashion-mnist", "mnist"], "architectures": ["mlp", "cnn"],
                             "losses": ["celLoss", "celLossLSR", "celLossCP", "celLossLC",
                                        {"milLoss": {"lam": [0.5, 1, 5, 50, 500]}}]}
    data["grids"]["one-seed"] = {**common, "seeds": [0], "datasets": ["fashion-mnist"], "architectures": ["mlp"],
                                 "losses": ["celLoss", "milLoss"]}
    return parse_registry(data)


def pdflatex() -> str:
    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.fail("pdflatex is not installed: run scripts/setup.sh --test (it installs texlive-latex-base and "
                    "texlive-latex-recommended), the LaTeX report is checked by compiling it")
    return exe


def value(cell: Cell) -> float:
    """A deterministic accuracy per cell, different across seeds and losses."""
    return 0.8 + 0.1 * (zlib.crc32(cell.cell_id.encode()) % 1000) / 1000


def fill(store: Store, cells: list[Cell], clean: bool = False) -> None:
    """Every kind of entry the tables print: all seeds, some seeds, diverged, failed, pending, a tie at 3 digits.

    ``clean``: every cell finished (the tables' most compact layouts).
    """
    if clean:
        for c in cells:
            write(store, c, "done", value(c))
        return
    rows = list(dict.fromkeys((c.dataset, c.architecture, c.variant) for c in cells))
    losses = list(dict.fromkeys(c.loss for c in cells))
    first_row = rows[0]
    for c in cells:
        row = (c.dataset, c.architecture, c.variant)
        status, acc = "done", value(c)
        if row == first_row and len(losses) > 2 and c.loss == losses[-1]:
            status = "diverged"  # one entry diverged on every seed
        elif row == rows[-1] and c.loss == losses[-1] and c.seed == 0:
            status = "diverged"  # one seed of an entry diverged
        elif row == rows[-1] and len(losses) > 3 and c.loss == losses[2] and c.seed == 1:
            continue  # one seed still pending
        elif row == rows[-1] and len(losses) > 3 and c.loss == losses[3]:
            status = "failed"
        elif row == first_row and c.loss in losses[:2]:
            acc = 0.9001 + 0.0001 * (c.loss == losses[1]) + 0.01 * c.seed  # a tie at the printed precision
        write(store, c, status, acc)


def write(store: Store, c: Cell, status: str, acc: float) -> None:
    row = {**c.flat(), "attempt_id": f"a{c.cell_id}", "status": status, "message": "" if status == "done" else status,
           "final_test_acc": acc if status == "done" else math.nan, "final_test_mi": 1.5 + acc,
           "test_label_entropy": math.log(10), "num_classes": 10, "written_at": 1}
    store.write_result(row, [])


def compile_tex(tmp_path: Path, body: str) -> str:
    (tmp_path / "doc.tex").write_text(PREAMBLE + body + "\n\\end{document}\n")
    r = subprocess.run([pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert r.returncode == 0, log[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    return log


GRIDS = ["quick", "fashion-mnist", "cifar10", "nine", "lambda-sweep", "batch-sweep", "one-seed"]


@pytest.mark.parametrize("clean", [False, True], ids=["mixed", "all-done"])
@pytest.mark.parametrize("grid", GRIDS)
def test_latex_report_fits_a_single_column_article(grid, clean, tmp_path):
    cells = expand_grid(registry(), grid)
    store = Store(tmp_path / "res")
    fill(store, cells, clean)
    tex = render(collect(grid, cells, store.cells(), "celLoss"), "latex")
    # accuracy, paired differences, Î and bounds (a table taller than a page continues in a second one)
    labels = re.findall(r"\\label\{tab:(.*?)\}", tex)
    assert [x for x in labels if not re.search(r"-\d+$", x)] == [
        f"{grid}-accuracy", f"{grid}-differences", f"{grid}-mi"], labels
    assert tex.count("\\begin{table}") == len(labels)
    assert "\\resizebox" not in tex, "the shipped grids fit without scaling"
    assert ("diverged" in tex) != clean and "-0.000" not in tex
    log = compile_tex(tmp_path, tex)
    too_big = [line for line in log.splitlines() if "Overfull \\hbox" in line or "Float too large" in line]
    assert not too_big, f"{grid}: {too_big}\n{tex}"


def test_the_compile_check_catches_a_table_too_wide(tmp_path):
    """The Overfull check is real: the old layout (every loss a column of mean ± std) overflows with 5 losses."""
    cols = " & ".join(["0.863 $\\pm$ 0.003"] * 5)
    tex = ("\\begin{table}[t]\\centering\\begin{tabular}{llccccc}\\toprule\n"
           f"Dataset & Model & celLoss & celLossLSR & celLossCP & celLossLC & milLoss \\\\\\midrule\nfashion-mnist & mlp & {cols} \\\\\n"
           "\\bottomrule\\end{tabular}\\end{table}")
    log = compile_tex(tmp_path, tex)
    assert "Overfull \\hbox" in log


def test_width_estimate_is_an_upper_bound(tmp_path):
    """The layout choice trusts ``text_width_pt`` never to underestimate what pdflatex sets."""
    samples = ["milLoss(lam=500)", "efficientnet_b0", "0.863 ± 0.003 (n=2, 1 diverged)", "fashion-mnist / mobilenetv2",
               "+0.040 [-0.015, +0.065] *", "WWMM%#", "celLossLSR", "batch_size=1024"]
    tex_of = {s: latex_text(s) for s in samples}
    lines = ["\\newlength\\w"]
    for i, s in enumerate(samples):
        for bold in (False, True):
            text = f"\\textbf{{{tex_of[s]}}}" if bold else tex_of[s]
            lines.append(f"\\settowidth\\w{{{text}}}\\typeout{{WIDTH {i} {int(bold)} \\the\\w}}")
    log = compile_tex(tmp_path, "\n".join(lines) + "\nx")
    measured = re.findall(r"WIDTH (\d+) (\d) ([\d.]+)pt", log)
    assert len(measured) == 2 * len(samples)
    for i, bold, pt in measured:
        s = samples[int(i)]
        assert float(pt) <= text_width_pt(s, bool(int(bold))), (s, bold, pt, text_width_pt(s, bool(int(bold))))
