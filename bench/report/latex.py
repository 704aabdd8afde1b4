"""The report as LaTeX (booktabs): tables sized to a 10pt article's column, split where taller than a page."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bench.metrics.table import DEFAULT
from bench.report.collect import ReportData
from bench.report.content import (
    Marks,
    COLLAPSED_NOTE,
    accuracy_cells,
    comparison_rows,
    count_line,
    diff_text,
    fmt_num,
    lacking_note,
    metric_note,
    mi_rows,
    mi_texts,
    provenance_note,
    regime_note,
    rule_title,
    search_note,
    seeds_phrase,
    settings_note,
    stale_note,
    table_marks,
    zero_end,
)

# ----------------------------------------------------------------------------- LaTeX
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
# symbols the tables print, in math mode: pdflatex's default input encoding has no text glyph for them
_LATEX_SYMBOLS = {"±": r"$\pm$", "—": "--", "Î": r"$\hat{I}$", "Δ": r"$\Delta$", "≥": r"$\geq$", "λ": r"$\lambda$",
                  "δ": r"$\delta$", "θ": r"$\theta$", "−": "$-$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
                  "η": r"$\eta$", "⌊": r"$\lfloor$", "⌋": r"$\rfloor$", "–": "--", "§": r"\S{}"}

# Why an estimate of the glyph widths rather than a LaTeX mechanism: ``longtable`` (TeX breaks the pages) stops
# with an error in a two-column document and cannot be scaled, so its width needs an estimate anyway, and a plain
# character budget is no upper bound (64 characters of digits fit a column, 64 of W do not); a ``\resizebox`` of
# every table would shrink the font of tables that a taller layout prints at full size. The estimate keeps
# every shipped grid's table at 10pt in a float that works in one or two columns; scaling stays the fallback
# for labels too long for any layout.
# The text width of a plain 10pt ``article`` (its \columnwidth in one column) and the default \tabcolsep.
COLUMN_WIDTH_PT = 345.0
TABCOLSEP_PT = 6.0
# Upper bounds of Computer Modern glyph widths at 10pt, by class (measured: cmr10's widest glyph of each
# class, rounded up; "-" as wide as the minus sign numbers print with), so the estimate of a table's width
# errs on the wide side and a table estimated to fit does fit; bold (cmbx10) is at most 1.2 times as wide.
_WIDTH_CLASSES = ((3.1, "!',.:;<[]`ilfj"), (4.0, "_I()trs"), (4.8, "cez>?"), (3.4, " "),
                  (5.6, "0123456789abdghknopquvxy$\"*/\\^{}~JS"), (7.9, "ABCDEFGHKLNOPQRTUVXYZw&+=@-"))
_WIDTH_OF = {ch: w for w, chars in _WIDTH_CLASSES for ch in chars}
_WIDTH_OTHER = 10.3  # m, M, W, %, #, | and any symbol
_BOLD = 1.2


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


_NUMBER_MINUS = re.compile(r"(?:(?<=^)|(?<=[\s\[(,]))-(?=\d)")


def latex_text(text: str) -> str:
    tex = "".join(_LATEX_SYMBOLS.get(ch) or _LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    return _NUMBER_MINUS.sub(lambda _: "$-$", tex)  # a minus sign, not a hyphen, before a number


def text_width_pt(text: str, bold: bool = False) -> float:
    """An upper estimate of ``text``'s width in points, typeset in 10pt Computer Modern."""
    return sum(_WIDTH_OF.get(ch, _WIDTH_OTHER) for ch in text) * (_BOLD if bold else 1.0)


@dataclass(frozen=True)
class Shown:
    """One table cell as printed: its text and whether it is bold."""

    text: str
    bold: bool = False


@dataclass
class _Tabular:
    """A booktabs tabular: heads, column alignments, body rows or group titles spanning every column."""

    heads: list[str]
    align: str
    body: list[list[Shown] | str] = field(default_factory=list)

    def width_pt(self) -> float:
        cols = [text_width_pt(h) for h in self.heads]
        titles = [0.0]
        for row in self.body:
            if isinstance(row, str):
                titles.append(text_width_pt(row, bold=True))  # italic titles: within the bold bound
                continue
            for i, cell in enumerate(row):
                cols[i] = max(cols[i], text_width_pt(cell.text, cell.bold))
        return max(sum(cols) + 2 * TABCOLSEP_PT * (len(cols) - 1), max(titles))

    def fits(self) -> bool:
        return self.width_pt() <= COLUMN_WIDTH_PT

    def lines(self) -> list[str]:
        # @{} at both ends: the outer \tabcolsep would only push the rules past the text
        out = [f"\\begin{{tabular}}{{@{{}}{self.align}@{{}}}}", "\\toprule",
               " & ".join(latex_text(h) for h in self.heads) + " \\\\", "\\midrule"]
        first = True
        for row in self.body:
            if isinstance(row, str):
                if not first:
                    out.append("\\addlinespace")
                out.append(f"\\multicolumn{{{len(self.heads)}}}{{@{{}}l}}{{\\emph{{{latex_text(row)}}}}} \\\\")
            else:
                cells = (f"\\textbf{{{latex_text(c.text)}}}" if c.bold else latex_text(c.text) for c in row)
                out.append(" & ".join(cells) + " \\\\")
            first = False
        return out + ["\\bottomrule", "\\end{tabular}"]


def _label(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


@dataclass(frozen=True)
class _Scope:
    """Which parts of the (dataset, architecture, setting) row label vary; the constant ones go in the caption."""

    vary: tuple[bool, bool, bool]
    common: str

    @staticmethod
    def of(rows: list[tuple[str, str, str]]) -> _Scope:
        ds, arch, variant = (len({r[i] for r in rows}) > 1 for i in range(3))
        vary = (ds, arch, variant)
        common = " / ".join(rows[0][i] for i in range(3) if rows and not vary[i] and rows[0][i])
        return _Scope(vary, common)

    def label(self, row: tuple[str, str, str]) -> str:
        return " / ".join(row[i] for i in range(3) if self.vary[i])

    @property
    def grouped(self) -> bool:
        return any(self.vary)


def _accuracy_layouts(data: ReportData, scope: _Scope, acc: list[list[tuple[str, bool]]]) -> list[_Tabular]:
    """The accuracy table three ways, the most compact reading first: losses as columns, losses as rows
    with one column per (dataset, model), one (dataset, model) group of loss rows after another."""
    heads = [h for h, v in zip(("Dataset", "Model", "Setting"), scope.vary) if v]
    wide = _Tabular(heads + data.losses, "l" * len(heads) + "c" * len(data.losses))
    for row, line in zip(data.rows, acc):
        wide.body.append([Shown(row[i]) for i in range(3) if scope.vary[i]] + [Shown(t, b) for t, b in line])
    labels = [scope.label(row) for row in data.rows] if scope.grouped else [data.metric.head]
    tall = _Tabular(["Loss"] + labels, "l" + "c" * len(labels))
    for j, loss in enumerate(data.losses):
        tall.body.append([Shown(loss)] + [Shown(*line[j]) for line in acc])
    long = _Tabular(["Loss", data.metric.head], "lc")
    for row, line in zip(data.rows, acc):
        if scope.grouped:
            long.body.append(scope.label(row))
        long.body += [[Shown(loss), Shown(t, b)] for loss, (t, b) in zip(data.losses, line) if t]
    return [wide, tall, long]


# Heights in a plain 10pt article (measured): its \textheight, a tabular row, the booktabs rules of a table, the
# \addlinespace before a group title and the skip above a caption; a float taller than the text is split.
TEXT_HEIGHT_PT = 550.0
ROW_PT = 12.0
RULES_PT = 11.2
GAP_PT = 5.0
CAPTION_SKIP_PT = 10.0
_CAPTION_PREFIX_PT = 45.0  # "Table 10: "


def _height_pt(body: list[list[Shown] | str], caption: str) -> float:
    # the caption is measured on its TeX source, whose macros are longer than what they print: an upper bound
    lines = math.ceil((text_width_pt(caption) + _CAPTION_PREFIX_PT) / COLUMN_WIDTH_PT)
    gaps = sum(isinstance(row, str) for row in body[1:])
    return CAPTION_SKIP_PT + ROW_PT * lines + RULES_PT + ROW_PT * (1 + len(body)) + GAP_PT * gaps


def _split(tab: _Tabular, caption: str, continued: str) -> list[_Tabular]:
    """``tab`` as one table or, when taller than a page, several, broken between groups where it can be."""
    budget = 0.95 * TEXT_HEIGHT_PT
    groups: list[list[list[Shown] | str]] = []
    for row in tab.body:
        if isinstance(row, str) or not groups:
            groups.append([row])
        else:
            groups[-1].append(row)
    parts: list[list[list[Shown] | str]] = []
    cur: list[list[Shown] | str] = []
    for group in groups:
        if cur and _height_pt(cur + group, continued if parts else caption) > budget:
            parts.append(cur)  # the next group starts the next table
            cur = []
        title = group[0] if isinstance(group[0], str) else None
        for row in group:
            if cur and _height_pt(cur + [row], continued if parts else caption) > budget:
                # one group taller than a page: break inside it, the next part repeats its title
                parts.append(cur)
                cur = [f"{title} (continued)"] if title else []
            cur.append(row)
    parts.append(cur)
    return [_Tabular(tab.heads, tab.align, body) for body in parts]


def _table(tab: _Tabular, caption: str, continued: str, label: str) -> list[str]:
    """The table environment(s) of ``tab``: the caption on the first, ``continued`` on any later part."""
    out = []
    parts = _split(tab, caption, continued)
    for i, part in enumerate(parts):
        body = part.lines()
        if not part.fits():
            # names too long for any layout (a user's own loss or model labels): scaled to the column rather than
            # running into the margin
            out.append("% \\resizebox needs \\usepackage{graphicx}")
            body = ["\\resizebox{\\columnwidth}{!}{%", *body, "}"]
        head = [f"\\caption{{{caption}}}", f"\\label{{{label}}}"] if i == 0 else [
            f"\\caption{{{continued}}}", f"\\label{{{label}-{i + 1}}}"]
        # [tbp]: a table taller than a [t] float may be (70% of the page) goes on a page of floats
        out += ["\\begin{table}[tbp]", "\\centering", *head, *body, "\\end{table}", ""]
    return out


def _caption_scope(data: ReportData, scope: _Scope) -> str:
    where = f" on {latex_text(scope.common)}" if scope.common else ""
    return f"grid \\texttt{{{latex_escape(data.grid)}}}{where}"


def render_latex(data: ReportData) -> str:
    """Three booktabs tables (the metric, paired differences, Î and bounds), each fitting a plain article's column."""
    scope = _Scope.of(data.rows)
    tag = _label(data.grid)
    return "\n".join(["% requires \\usepackage{booktabs}", "", *_metric_table(data, scope, tag),
                      *_differences_table(data, scope, tag), *_mi_table(data, scope, tag)])


def _metric_notes(data: ReportData, scope: _Scope, marks: Marks) -> list[str]:
    """The main table's notes: what it stands on, then each mark it carries."""
    m = data.metric
    notes = [latex_text(metric_note(data))] if m.key != DEFAULT.key else []
    notes.append(f"Cells: {count_line(data.counts)}.")
    for present, note in ((data.mixed, provenance_note), (data.regimes, regime_note),
                          (data.incomplete_search, search_note)):
        if present:
            notes.append(latex_text(note(data)))
    for present, note in ((marks.partial, "(n=$k$): only $k$ seeds finished."), (marks.missing, "--: no finished seed yet."),
                          (marks.diverged, "diverged: stopped on a non-finite loss."),
                          (marks.failed, "failed: the cell raised an error.")):
        if present:
            notes.append(note)
    if marks.lacking:
        notes.append(lacking_note(data, marks.lacking, tex=True))
    if marks.stale:
        notes.append(stale_note(data, marks.stale, tex=True))
    if marks.collapsed:
        notes.append(latex_text(COLLAPSED_NOTE.replace("`", "")))
    if marks.bold:
        per = " and ".join(w for w, v in zip(("dataset", "model", "setting"), scope.vary) if v) or "table"
        best = "Best (lowest)" if m.lower_is_better else "Best"
        notes.append(f"{best} per {per} in bold" + (", ties at the printed precision all bold." if marks.tie else "."))
    return notes


def _metric_table(data: ReportData, scope: _Scope, tag: str) -> list[str]:
    acc = accuracy_cells(data)
    layouts = _accuracy_layouts(data, scope, acc)
    tab = next((t for t in layouts if t.fits()), layouts[-1])
    seeds = "one seed per cell" if data.seed_counts == [1] else f"mean $\\pm$ sample std over {seeds_phrase(data)}"
    notes = _metric_notes(data, scope, table_marks(data, acc))
    title = (f"{rule_title(data)[0].upper()}{rule_title(data)[1:]}{latex_text(settings_note(data))}, "
             f"{_caption_scope(data, scope)}")
    return _table(tab, f"{title} ({seeds}). {' '.join(notes)}", f"{title} (continued).", f"tab:{tag}-accuracy")


def _differences_table(data: ReportData, scope: _Scope, tag: str) -> list[str]:
    m = data.metric
    comp = comparison_rows(data)
    if not comp:
        return []
    dtab = _Tabular(["Loss", "Δ", "95% CI"], "lcc")
    last = None
    dagger = False
    for r in comp:
        row = (r["dataset"], r["architecture"], r["variant"])
        if scope.grouped and row != last:
            dtab.body.append(scope.label(row))
            last = row
        diff, ci = diff_text(r, with_note=False, digits=m.digits)
        short = r["status"] in ("done", "pending") and 0 < r["n"] < r["expected"]
        dagger |= short
        dtab.body.append([Shown(r["loss"] + ("†" if short else "")), Shown(diff), Shown(ci)])
    one_seed = bool(data.seed_counts) and data.seed_counts[-1] < 2
    dnotes = []
    if one_seed:
        dnotes.append("With one seed per cell there is no interval.")
    elif any(r["n"] >= 2 for r in comp):
        dnotes.append(f"* marks an interval that excludes zero; with {seeds_phrase(data)} an interval is wide, "
                      "so a difference without * is not evidence of a gain.")
    if zero_end(comp, m.digits):
        dnotes.append(f"An end printed as {fmt_num(0.0, m.digits)} is non-zero beyond the printed digits.")
    if dagger:
        dnotes.append("$^\\dagger$: fewer paired seeds than the grid asks.")
    title = f"Test {latex_text(m.name)} minus that of \\texttt{{{latex_escape(data.baseline or '')}}}"
    if m.key != DEFAULT.key:
        title += f" ({m.direction}; selection: {latex_text(data.select.name)})"
    return _table(dtab, f"{title}, paired by seed, with a 95\\% $t$ interval, {_caption_scope(data, scope)}. "
                        f"{' '.join(dnotes)}", f"{title} (continued).", f"tab:{tag}-differences")


_MI_NOTE = ("$\\hat I = H_\\theta(Y) - H_\\theta(Y|X)$ on the test split; Thm 4: Theorem 4's closed-form and "
            "Fano: the exact Fano lower bound on the error at $\\hat I$ and the test label entropy $H(Y)$. "
            "Holds: error $\\geq$ Fano; both bounds fall as $I$ grows, so one above the achieved error means "
            "$\\hat I$ understates the true $I(X;Y)$.")


def _mi_table(data: ReportData, scope: _Scope, tag: str) -> list[str]:
    mis = mi_rows(data)
    if not mis:
        return []
    mtab = _Tabular(["Loss", "Î (nats)", "Error", "Thm 4", "Fano", "Holds"], "lccccc")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in mis:
        groups.setdefault((r["dataset"], r["architecture"], r["variant"]), []).append(r)
    dagger = False
    entropies: list[str] = []
    for row, members in groups.items():
        h = _entropy_text([r for r in members if r["n"]])
        if scope.grouped:
            mtab.body.append(scope.label(row) + (f": {h}" if h else ""))
        elif h:
            entropies.append(h)
        for r in members:
            short = r["status"] == "partial"
            dagger |= short
            texts = mi_texts(r, with_note=False)
            del texts[1]  # H(Y) is the test split's, the same for every loss: in the group title
            mtab.body.append([Shown(r["loss"] + ("†" if short else ""))] + [Shown(t, t == "no") for t in texts])
    mnotes = [_MI_NOTE]
    if entropies:
        mnotes.append(f"Test {entropies[0]}.")
    if dagger:
        mnotes.append("$^\\dagger$: fewer finished seeds than the grid asks.")
    for ds, t in data.truths.items():
        mnotes.append(f"{latex_text(ds)}: exact $I(X;Y) = {fmt_num(t['mi_exact'])}$ nats, Bayes error "
                      f"{fmt_num(t['bayes_error'])}.")
    title = "Learned test $\\hat I$ and the error lower bounds it implies"
    return _table(mtab, f"{title}, {_caption_scope(data, scope)}. {' '.join(mnotes)}", f"{title} (continued).",
                  f"tab:{tag}-mi")


def _entropy_text(members: list[dict[str, Any]]) -> str:
    """``H(Y) = 2.303 nats, K = 10`` of a group's finished entries (a range where they differ)."""
    if not members:
        return ""
    hs = sorted({fmt_num(r["h_y_nats"]) for r in members}, key=float)
    ks = sorted({r["num_classes"] for r in members})
    h = hs[0] if len(hs) == 1 else f"{hs[0]}–{hs[-1]}"
    return f"H(Y) = {h} nats, K = {'/'.join(map(str, ks))}"
