"""The report as markdown: the main table, paired differences, Î and its bounds, the rules side by side."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from bench.metrics.table import DEFAULT
from bench.report.collect import ReportData
from bench.report import content
from bench.report.selection import (
    RULES,
)


# ----------------------------------------------------------------------------- markdown
def _row_label(row: tuple[str, str, str]) -> list[str]:
    return [row[0], row[1]] + ([row[2]] if row[2] else [])


def _has_variants(data: ReportData) -> bool:
    return any(r[2] for r in data.rows)


def render_markdown(data: ReportData, figures: list[str] | None = None) -> str:
    variants = _has_variants(data)
    label_heads = ["dataset", "architecture"] + (["setting"] if variants else [])

    def label(r: dict[str, Any] | tuple[str, str, str]) -> list[str]:
        parts = (r["dataset"], r["architecture"], r["variant"]) if isinstance(r, dict) else r
        return [parts[0], parts[1]] + ([parts[2]] if variants else [])

    acc = content.accuracy_cells(data)
    body = [label(row) + [f"**{t}**" if best else t for t, best in line] for row, line in zip(data.rows, acc)]
    parts = [
        f"## Grid `{data.grid}`: {content.rule_title(data)}{content.settings_note(data)} ("
        + ("one seed per cell" if data.seed_counts == [1] else f"mean ± std over {content.seeds_phrase(data)}") + ")",
        "",
        tabulate(body, headers=label_heads + data.losses, tablefmt="pipe", disable_numparse=True),
        "",
        content.accuracy_note(data, content.table_marks(data, acc)),
    ]
    if data.mixed:
        parts += ["", content.provenance_note(data)]
    if data.regimes:
        parts += ["", content.regime_note(data)]
    if data.incomplete_search:
        parts += ["", content.search_note(data)]
    comp = content.comparison_rows(data)
    if comp:
        m = data.metric
        holm_col = data.select.across_trials  # the tuned comparison carries the adjusted verdict
        rows = [label(r) + [r["loss"], " ".join(t for t in content.diff_text(r, digits=m.digits) if t)]
                + ([f"{r['verdict']} (p={content.fmt_num(r['p_holm'])})" if r["verdict"] else content.MISSING] if holm_col else [])
                for r in comp]
        heads = label_heads + ["loss", f"Δ {m.short}"] + (["Holm–Bonferroni verdict"] if holm_col else [])
        parts += ["", f"### {content.diff_heading(data)}", "",
                  tabulate(rows, headers=heads, tablefmt="pipe", disable_numparse=True)]
        if holm_col:
            parts += ["", content.holm_note(data)]
        note = content.diff_note(data, comp)
        if note:
            parts += ["", note]
    if data.others:
        parts += ["", *rules_table(data, label, label_heads)]
    mis = content.mi_rows(data)
    if mis:
        rows = []
        for r in mis:
            texts = content.mi_texts(r)
            texts[-1] = "**no**" if texts[-1] == "no" else texts[-1]
            rows.append(label(r) + [r["loss"]] + texts)
        parts += ["", f"### {content.MI_TITLE}", "",
                  tabulate(rows, headers=label_heads + ["loss", *content.MI_HEADS], tablefmt="pipe", disable_numparse=True),
                  "", content.MI_NOTE]
    if data.truths:
        parts += ["", f"### {content.TRUTH_TITLE}", "",
                  tabulate([content.truth_texts(ds, t) for ds, t in data.truths.items()],
                           headers=content.TRUTH_HEADS, tablefmt="pipe", disable_numparse=True),
                  "", content.TRUTH_NOTE]
    for fig in figures or []:
        parts += ["", f"![{fig}]({fig})"]
    return "\n".join(parts) + "\n"


def rules_table(data: ReportData, label: Any, label_heads: list[str]) -> list[str]:
    """One compact table, every selection rule side by side per (dataset, architecture, loss); the caption names each."""
    every = sorted([data, *data.others], key=lambda d: list(RULES).index(d.select.key))
    m = data.metric
    body = []
    lacking = max(sum(e.lacking for e in d.entries.values()) for d in every)
    for row in data.rows:
        for loss in data.losses:
            line = label(row) + [loss]
            for d in every:
                e = d.entries.get((row, loss))
                # the seeds averaged only: the main table says which diverged or failed
                text = content.value_text(e, m.digits, gone_wrong=False) if e is not None and e.n else content.MISSING
                choice = d.trials.get((*row, loss))
                line.append(text + (f" (trial {choice.trial})" if choice is not None else ""))
            body.append(line)
    names = "; ".join(f"`{d.select.key}`: {d.select.name}" for d in every)
    search = " The epoch rules show a search grid's trial 0 (every loss at its registry defaults)." if data.trials or any(
        d.trials for d in data.others) else ""
    if m.key == DEFAULT.key:
        heading = "### Test accuracy under every selection rule (mean ± std over seeds)"
        tail = ""
    else:
        heading = f"### Test {m.name} under every selection rule (mean ± std over seeds; {m.direction})"
        tail = (f" `tuned` chooses its trial by validation accuracy and shows that trial's test {m.name}."
                if any(d.select.across_trials for d in every) else "")
        tail += f" {content.lacking_note(data, lacking)}" if lacking else ""
    return [heading, "", tabulate(body, headers=label_heads + ["loss"] + [d.select.key for d in every],
                                  tablefmt="pipe", disable_numparse=True), "", f"Rules: {names}.{search}{tail}"]
