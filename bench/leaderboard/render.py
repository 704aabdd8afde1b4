"""The leaderboard as markdown, LaTeX or CSV: the rows and notes of :mod:`bench.leaderboard.content`, laid out."""

from __future__ import annotations

import csv
import io

from bench.leaderboard.build import Leaderboard
from bench.leaderboard.content import (TASK_HEADS, Shown, overall_heads, caption, csv_records, overall_notes,
                                       overall_rows, task_caption, task_rows)

FORMATS = ("markdown", "latex", "csv")


def render(lb: Leaderboard, fmt: str, figures: list[str] | None = None) -> str:
    return {"markdown": render_markdown, "latex": render_latex, "csv": render_csv}[fmt](lb, figures or [])


def _md_cell(s: Shown) -> str:
    text = s.text.replace("|", "\\|")
    return f"**{text}**" if s.best else text


def _md_table(heads: list[str], rows: list[list[Shown]]) -> list[str]:
    out = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(lb: Leaderboard, figures: list[str]) -> str:
    heads = overall_heads(lb)
    lines = [f"# Leaderboard: {lb.name} ({lb.metric.name})", "", caption(lb), "", "## Across tasks", ""]
    lines += _md_table(heads, overall_rows(lb)) + [""]
    lines += [f"- {n}" for n in overall_notes(lb)] + [""]
    for name in figures:
        if not name.startswith("budget-"):
            lines += [f"![{name}]({name})", ""]
    for task in lb.tasks:
        lines += [f"## {task}", "", task_caption(lb, task), ""]
        lines += _md_table(TASK_HEADS, task_rows(lb, task)) + [""]
        lines += [f"![{name}]({name})" for name in figures if name == f"budget-{_slug(task)}.png"]
        if any(name == f"budget-{_slug(task)}.png" for name in figures):
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _slug(task: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in task)


def figure_slug(task: str) -> str:
    """The file name stem of a task's budget-curve figure."""
    return f"budget-{_slug(task)}"


def render_csv(lb: Leaderboard, figures: list[str]) -> str:  # noqa: ARG001 - one signature for every format
    recs = csv_records(lb)
    heads: list[str] = []
    for r in recs:
        heads += [k for k in r if k not in heads]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=heads, lineterminator="\n")
    w.writeheader()
    for r in recs:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def render_latex(lb: Leaderboard, figures: list[str]) -> str:  # noqa: ARG001
    from bench.report.latex import latex_text

    def cell(s: Shown) -> str:
        t = latex_text(s.text)
        return f"\\textbf{{{t}}}" if s.best else t

    def table(heads: list[str], rows: list[list[Shown]], cap: str, label: str) -> list[str]:
        return ["\\begin{table}[t]", "\\centering", "\\scriptsize", "\\resizebox{\\linewidth}{!}{%",
                "\\begin{tabular}{l" + "r" * (len(heads) - 1) + "}", "\\toprule",
                " & ".join(latex_text(h) for h in heads) + " \\\\", "\\midrule",
                *[" & ".join(cell(c) for c in row) + " \\\\" for row in rows],
                "\\bottomrule", "\\end{tabular}}", f"\\caption{{{latex_text(cap)}}}", f"\\label{{{label}}}",
                "\\end{table}", ""]

    out = [f"% lossbench leaderboard: {lb.name}; needs \\usepackage{{booktabs,graphicx}}", ""]
    heads = overall_heads(lb)
    out += table(heads, overall_rows(lb), caption(lb) + " " + " ".join(overall_notes(lb)), f"tab:{_slug(lb.name)}")
    for task in lb.tasks:
        out += table(TASK_HEADS, task_rows(lb, task), task_caption(lb, task), f"tab:{_slug(lb.name)}-{_slug(task)}")
    return "\n".join(out)
