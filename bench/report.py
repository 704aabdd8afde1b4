"""Paper-style tables from the store: rows dataset x architecture, columns losses, mean ± std.

The report is driven by the grid as the registry defines it now: its cells are expanded and
looked up in the store by identity, so a missing or failed cell shows as missing and a cell the
grid no longer contains never leaks in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.cells import Cell
from bench.stats import mean_std, paired_diff_ci
from bench.theory import fano_bound, theorem4_bound

FORMATS = ("markdown", "latex", "csv")
MISSING = "—"


@dataclass
class Entry:
    """One (row, loss) of the table: per-seed values of the finished cells."""

    acc: dict[int, float] = field(default_factory=dict)
    mi: dict[int, float] = field(default_factory=dict)
    h_y: dict[int, float] = field(default_factory=dict)
    num_classes: int = 0
    expected: int = 0

    @property
    def n(self) -> int:
        return len(self.acc)


@dataclass
class ReportData:
    grid: str
    rows: list[tuple[str, str, str]]  # (dataset, architecture, variant)
    losses: list[str]
    entries: dict[tuple[tuple[str, str, str], str], Entry]
    baseline: str | None
    counts: dict[str, int]
    truths: dict[str, dict[str, float]] = field(default_factory=dict)  # dataset -> exact MI, Bayes error


REPORT_COLUMNS = ["cell_id", "status", "final_test_acc", "final_test_mi", "test_label_entropy", "num_classes"]


def collect(grid: str, cells: list[Cell], results: pd.DataFrame, baseline: str | None) -> ReportData:
    # the columns once into plain dicts: a DataFrame.loc per cell costs ~100 us (10 s at 100k cells)
    status_of = dict(zip(results["cell_id"].tolist(), results["status"].tolist())) if not results.empty else {}
    done_rows: dict[str, tuple] = {}
    if not results.empty:
        done = results[results["status"] == "done"]
        done_rows = dict(zip(done["cell_id"].tolist(), zip(*(done[c].tolist() for c in REPORT_COLUMNS[2:]))))
    rows: list[tuple[str, str, str]] = []
    losses: list[str] = []
    entries: dict[tuple[tuple[str, str, str], str], Entry] = {}
    counts = {"done": 0, "failed": 0, "diverged": 0, "pending": 0}
    for cell in cells:
        row = (cell.dataset, cell.architecture, cell.variant)
        entry = entries.get((row, cell.loss))
        if entry is None:
            if row not in rows:
                rows.append(row)
            if cell.loss not in losses:
                losses.append(cell.loss)
            entry = entries[(row, cell.loss)] = Entry()
        entry.expected += 1
        status = status_of.get(cell.cell_id, "pending")
        counts[status] = counts.get(status, 0) + 1
        rec = done_rows.get(cell.cell_id)
        if rec is not None:
            acc, mi, h_y, num_classes = rec
            entry.acc[cell.seed] = float(acc)
            entry.mi[cell.seed] = float(mi)
            entry.h_y[cell.seed] = float(h_y)
            entry.num_classes = int(num_classes)
    if baseline is not None and baseline not in losses:
        baseline = None
    return ReportData(grid, rows, losses, entries, baseline, counts, gauss_truths(cells))


def gauss_truths(cells: list[Cell]) -> dict[str, dict[str, float]]:
    """Exact MI and Bayes error of each gauss dataset's generating distribution."""
    out: dict[str, dict[str, float]] = {}
    for cell in cells:
        ds = cell.config["dataset"]
        if ds["kind"] == "gauss" and cell.dataset not in out:
            from bench.data import gauss_params  # imports torch: only for gauss grids
            from bench.theory import gauss_bayes_error, gauss_delta, gauss_mi

            params = gauss_params(ds["params"])
            delta = gauss_delta(params["mu"], params["sigma2"])
            out[cell.dataset] = {"delta": delta, "mi_exact": float(gauss_mi(delta, params["prior"])),
                                 "bayes_error": float(gauss_bayes_error(delta, params["prior"]))}
    return out


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "nan"


def accuracy_cells(data: ReportData) -> list[list[tuple[str, bool]]]:
    """For each row, each loss: (text, is_best)."""
    out = []
    for row in data.rows:
        means = {}
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is not None and e.n:
                means[loss] = mean_std(list(e.acc.values()))[0]
        best = max(means.values()) if means else None
        line = []
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None or e.expected == 0:
                line.append(("", False))
            elif not e.n:
                line.append((MISSING, False))
            else:
                mean, std, n = mean_std(list(e.acc.values()))
                text = _fmt(mean) + (f" ± {_fmt(std)}" if n > 1 else "")
                if n < e.expected:
                    text += f" (n={n})"
                line.append((text, best is not None and mean == best))
        out.append(line)
    return out


def comparison_rows(data: ReportData) -> list[dict[str, Any]]:
    """Each loss minus the baseline in the same row, paired by seed, with a 95% t interval."""
    if data.baseline is None:
        return []
    out = []
    for row in data.rows:
        base = data.entries.get((row, data.baseline))
        for loss in data.losses:
            if loss == data.baseline:
                continue
            e = data.entries.get((row, loss))
            if e is None or base is None:
                continue
            d = paired_diff_ci(e.acc, base.acc)
            out.append({"dataset": row[0], "architecture": row[1], "variant": row[2], "loss": loss,
                        "diff": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n, "significant": d.significant, "note": d.note})
    return out


def mi_rows(data: ReportData) -> list[dict[str, Any]]:
    """Final test Î and the error lower bounds it implies (Theorem 4 and exact Fano)."""
    out = []
    for row in data.rows:
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None or not e.n:
                continue
            mi, mi_std, n = mean_std(list(e.mi.values()))
            acc = mean_std(list(e.acc.values()))[0]
            h_y = sum(e.h_y.values()) / len(e.h_y)
            k = max(e.num_classes, 2)
            thm4 = theorem4_bound(h_y, max(mi, 0.0), k, unit="nats")
            fano = fano_bound(h_y, max(mi, 0.0), k, unit="nats")
            err = 1.0 - acc
            out.append({"dataset": row[0], "architecture": row[1], "variant": row[2], "loss": loss, "n": n,
                        "mi_nats": mi, "mi_std": mi_std, "mi_bits": mi / math.log(2), "h_y_nats": h_y,
                        "test_error": err, "bound_thm4": thm4, "bound_fano": fano,
                        "bound_holds": err >= fano - 1e-12})
    return out


# ----------------------------------------------------------------------------- rendering
def _row_label(row: tuple[str, str, str]) -> list[str]:
    return [row[0], row[1]] + ([row[2]] if row[2] else [])


def _has_variants(data: ReportData) -> bool:
    return any(r[2] for r in data.rows)


def render_markdown(data: ReportData, figures: list[str] | None = None) -> str:
    heads = ["dataset", "architecture"] + (["setting"] if _has_variants(data) else []) + data.losses
    body = []
    for row, line in zip(data.rows, accuracy_cells(data)):
        label = _row_label(row) if _has_variants(data) else [row[0], row[1]]
        body.append(label + [f"**{t}**" if best else t for t, best in line])
    c = data.counts
    parts = [
        f"## Grid `{data.grid}`: final test accuracy (mean ± std over seeds)",
        "",
        tabulate(body, headers=heads, tablefmt="pipe", disable_numparse=True),
        "",
        f"Cells: {c.get('done', 0)} done, {c.get('failed', 0)} failed, {c.get('diverged', 0)} diverged, "
        f"{c.get('pending', 0)} pending. Std is the sample std (ddof=1); `(n=k)` marks entries with fewer "
        f"finished seeds than the grid asks; {MISSING} marks entries with none. Best mean per row in bold.",
    ]
    comp = comparison_rows(data)
    if comp:
        parts += ["", f"### Difference to `{data.baseline}` (paired by seed, 95% t interval)", "",
                  tabulate([[r["dataset"], r["architecture"]] + ([r["variant"]] if _has_variants(data) else []) +
                            [r["loss"], _diff_text(r)] for r in comp],
                           headers=["dataset", "architecture"] + (["setting"] if _has_variants(data) else []) + ["loss", "Δ accuracy"],
                           tablefmt="pipe", disable_numparse=True),
                  "", "`*` marks an interval that excludes zero; with 3 seeds an interval is wide, "
                      "so a difference without `*` is not evidence of a gain."]
    mis = mi_rows(data)
    if mis:
        parts += ["", "### Learned mutual information and the error lower bounds it implies", "",
                  tabulate([[r["dataset"], r["architecture"]] + ([r["variant"]] if _has_variants(data) else []) +
                            [r["loss"], f"{_fmt(r['mi_nats'])} ± {_fmt(r['mi_std'])}" if r["n"] > 1 else _fmt(r["mi_nats"]),
                             _fmt(r["h_y_nats"]), _fmt(r["test_error"]), _fmt(r["bound_thm4"]), _fmt(r["bound_fano"]),
                             "yes" if r["bound_holds"] else "**no**"] for r in mis],
                           headers=["dataset", "architecture"] + (["setting"] if _has_variants(data) else []) +
                           ["loss", "test Î (nats)", "H(Y) test", "test error", "Thm 4 bound", "Fano bound", "error ≥ bound"],
                           tablefmt="pipe", disable_numparse=True),
                  "", "Î = H_θ(Y) − H_θ(Y|X) on the test split (FORMULAS.md); the bounds are Theorem 4's closed form "
                      "and the exact Fano bound evaluated at the learned Î and the test label entropy. "
                      "Î is an estimate from the model, so a bound above the achieved error means Î overstates the true I(X;Y)."]
    if data.truths:
        parts += ["", "### The generating distribution", "",
                  tabulate([[ds, _fmt(t["delta"], 4), _fmt(t["mi_exact"], 4), _fmt(t["bayes_error"], 4)] for ds, t in data.truths.items()],
                           headers=["dataset", "δ", "exact I(X;Y) (nats)", "Bayes error"], tablefmt="pipe", disable_numparse=True),
                  "", "Read the learned test Î against the exact I(X;Y), and the achieved test error against the Bayes error."]
    for fig in figures or []:
        parts += ["", f"![{fig}]({fig})"]
    return "\n".join(parts) + "\n"


def _diff_text(r: dict[str, Any]) -> str:
    if r["n"] < 2:
        return f"{r['diff']:+.3f} (n too small)" if math.isfinite(r["diff"]) else "n too small"
    star = " *" if r["significant"] else ""
    return f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]{star}"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def render_latex(data: ReportData) -> str:
    variants = _has_variants(data)
    label_cols = 3 if variants else 2
    cols = "l" * label_cols + "c" * len(data.losses)
    head = ["Dataset", "Model"] + (["Setting"] if variants else []) + [latex_escape(l) for l in data.losses]
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{Final test accuracy on grid \\texttt{{{latex_escape(data.grid)}}} (mean $\\pm$ std over seeds; best per row in bold).}}",
        f"\\label{{tab:{_label(data.grid)}}}",
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        " & ".join(head) + " \\\\",
        "\\midrule",
    ]
    for row, line in zip(data.rows, accuracy_cells(data)):
        label = [latex_escape(x) for x in (_row_label(row) if variants else [row[0], row[1]])]
        cells = []
        for text, best in line:
            t = latex_escape(text).replace("±", "$\\pm$").replace(MISSING, "--")
            cells.append(f"\\textbf{{{t}}}" if best else t)
        lines.append(" & ".join(label + cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _label(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def render_csv(data: ReportData) -> str:
    """Long form, one line per (row, loss): machine-readable, no formatting."""
    recs = []
    comp = {(r["dataset"], r["architecture"], r["variant"], r["loss"]): r for r in comparison_rows(data)}
    mis = {(r["dataset"], r["architecture"], r["variant"], r["loss"]): r for r in mi_rows(data)}
    for row in data.rows:
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None:
                continue
            mean, std, n = mean_std(list(e.acc.values())) if e.n else (float("nan"), float("nan"), 0)
            key = (*row, loss)
            c = comp.get(key, {})
            m = mis.get(key, {})
            recs.append({"grid": data.grid, "dataset": row[0], "architecture": row[1], "setting": row[2], "loss": loss,
                         "n": n, "n_expected": e.expected, "acc_mean": mean, "acc_std": std,
                         "diff_vs_baseline": c.get("diff", float("nan")), "diff_lo": c.get("lo", float("nan")),
                         "diff_hi": c.get("hi", float("nan")), "mi_nats": m.get("mi_nats", float("nan")),
                         "bound_thm4": m.get("bound_thm4", float("nan")), "bound_fano": m.get("bound_fano", float("nan"))})
    return pd.DataFrame(recs).to_csv(index=False, float_format="%.6g")


def render(data: ReportData, fmt: str, figures: list[str] | None = None) -> str:
    if fmt == "markdown":
        return render_markdown(data, figures)
    if fmt == "latex":
        return render_latex(data)
    return render_csv(data)
