"""A grid's page: what ``bench report`` shows of it, under every selection rule it supports, as a :class:`Page`.

The numbers and their words come from the report (:mod:`bench.report.collect` and
:mod:`bench.report.content`); this module only arranges them into sections of tables, so the page and
``bench report`` never disagree. The cells are those ``bench report`` shows: the grid's last run's
settings, rebuilt from its run record (:func:`bench.plan.planner.plan_read`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.report import content
from bench.report.collect import Entry, ReportData
from bench.report.selection import RULES
from bench.site.model import SITE_FORMATS, Cell, Figure, Page, Section, Table
from bench.store.overview import provenance
from bench.store.results import Store, safe_name

GRID_PREFIX = "grid-"  # grid pages' slugs, apart from the leaderboards' and the index


def grid_slug(grid: str) -> str:
    return GRID_PREFIX + safe_name(grid)


def grid_pages(registry: Any, store: Store, figure_root: Path, grids: Sequence[str] = (),
               data_root: Path | None = None) -> list[Page]:
    """A page for each grid of ``registry`` (or each of ``grids``, in that order) that has cells in ``store``,
    its figures drawn under ``figure_root/<slug>/``. A grid named in ``grids`` without cells in the store is
    one error line; none at all (an empty store) too."""
    from bench.plan.planner import plan_read

    results = store.cells()  # every column, read once: the figures read the sweep settings too
    stored = set(results["cell_id"].tolist()) if len(results) else set()
    pages = []
    for grid in dict.fromkeys(grids or registry.grids):
        read = plan_read(registry, grid, store.runs(grid), {}, {}, data_root)
        if not any(c.cell_id in stored for c in read.plan.cells):
            if grids:
                raise BenchError(f"--grid {grid}: --results {store.root} holds none of its cells (under its last run's "
                                 f"settings); train it first (bench run --grid {grid} --results {store.root}) or leave "
                                 f"--grid {grid} out")
            continue
        pages.append(grid_page(registry, grid, store, read, figure_root / grid_slug(grid), results))
    if not pages:
        raise BenchError(f"--results {store.root} holds no cells of any grid of {registry.source}; train one first "
                         f"(bench run --grid G --results {store.root}) or pass the --results folder it wrote")
    return pages


def grid_page(registry: Any, grid: str, store: Store, read: Any, figure_dir: Path,
              results: pd.DataFrame | None = None) -> Page:
    """The page of ``grid``: a section per selection rule the grid supports (its table of the shown metric and
    the paired differences against the baseline), the search's chosen trials (a search grid), Î and its bounds,
    the figures (drawn into ``figure_dir``) and the provenance of the cells.

    ``read``: the grid's :class:`~bench.plan.planner.ReadPlan` (the cells ``bench report`` shows);
    ``results``: the store's cell rows with every column, when the caller has read them.
    """
    from bench.config.cells import ADDED_LOSSES
    from bench.report import annotate, collect_from_store
    from bench.report.figures import draw_all
    from bench.store.overview import other_settings_note

    cells = read.plan.cells
    results = store.cells() if results is None else results
    baseline = registry.grids[grid].baseline_loss(registry.loss_names())
    baseline = baseline if baseline in {c.loss for c in cells} else None
    data = collect_from_store(grid, cells, results, store, baseline)
    annotate(data, registry, grid, read.plan, store, results)
    every = sorted([data, *data.others], key=lambda d: list(RULES).index(d.select.key))
    sections = [rule_section(d) for d in every]
    tuned = next((d for d in every if d.select.across_trials), None)
    if tuned is not None and tuned.trials:
        sections.append(trials_section(tuned))
    mis = content.mi_rows(data)
    if mis:
        sections.append(mi_section(data, mis))
    drawn = draw_all(grid, cells, store, figure_dir, results,
                     space=registry.search_space(grid, read.plan.overrides.get(ADDED_LOSSES, [])) or None,
                     formats=SITE_FORMATS)
    if drawn.files or drawn.skipped:
        sections.append(Section("Figures", [f"Not drawn: {note}." for note in drawn.notes()],
                                figures=[Figure(figure_dir / f, figure_caption(Path(f).stem, data.rows))
                                         for f in drawn.files]))
    other = other_settings_note(read, store.statuses())
    spec = registry.grids[grid]
    trials = spec.search.trials if spec.search is not None else 0
    summary = (f"{spec.description}; " if spec.description else "") + grid_summary(data, trials)
    flag = "--suite" if grid in registry.suites else "--grid"
    return Page(grid_slug(grid), f"Grid {grid}", summary, sections,
                provenance(read, results, store, "page rendered with", flag),
                [*read.notes, *([other] if other else [])], kind="grid")


def grid_summary(data: ReportData, trials: int = 0) -> str:
    """``2 settings × 2 losses, 2 seeds; cells: 8 done; baseline celLoss``. A search grid's counts are of trial 0's
    cells (the page's first rule shows them), and say so: ``..., 2 seeds, 4 trials; trial 0's cells: 8 done; ...``."""
    rows = f"{len(data.rows)} setting{'s' * (len(data.rows) != 1)}"
    losses = f"{len(data.losses)} loss{'es' * (len(data.losses) != 1)}"
    base = f"; baseline {data.baseline}" if data.baseline else ""
    shown = f", {trials} trials; trial 0's cells" if trials else "; cells"
    return f"{rows} × {losses}, {content.seeds_phrase(data)}{shown}: {content.count_line(data.counts)}{base}"


# ----------------------------------------------------------------------------- sections
def _label_heads(data: ReportData) -> list[str]:
    return ["dataset", "architecture"] + (["setting"] if any(r[2] for r in data.rows) else [])


def _labels(data: ReportData, row: tuple[str, str, str]) -> list[Cell]:
    return [Cell.label(p) for p in row[:len(_label_heads(data))]]


def _seeds_title(e: Entry, digits: int) -> str:
    """The per-seed values behind an entry's mean, for its tooltip."""
    return ", ".join(f"seed {s}: {content.fmt_num(v, digits + 1)}" for s, v in sorted(e.value.items()))


def rule_section(data: ReportData) -> Section:
    """One selection rule: its table of the shown metric (best per row marked) and the paired differences."""
    m = data.metric
    acc = content.accuracy_cells(data)
    rows = []
    for row, line in zip(data.rows, acc):
        cells = _labels(data, row)
        for loss, (text, best) in zip(data.losses, line):
            e = data.entries.get((row, loss))
            value = sum(e.value.values()) / len(e.value) if e is not None and e.value else None
            cells.append(Cell(text, value, _seeds_title(e, m.digits) if e is not None else "",
                              "best" if best else "" if value is not None else "muted"))
        rows.append(cells)
    heads = _label_heads(data)
    title = content.rule_title(data) + content.settings_note(data)
    main = Table(title[0].upper() + title[1:], heads + data.losses, rows, len(heads))
    notes = [content.accuracy_note(data, content.table_marks(data, acc)), content.provenance_note(data),
             content.regime_note(data), content.search_note(data)]
    tables = [main]
    comp = content.comparison_rows(data)
    if comp:
        tables.append(diff_table(data, comp))
        notes += [content.holm_note(data) if data.select.across_trials else "", content.diff_note(data, comp)]
    return Section(f"Selection: {data.select.name}", [n for n in notes if n], tables)


def diff_table(data: ReportData, comp: list[dict[str, Any]]) -> Table:
    """Each loss minus the baseline, paired by seed: Δ, its interval and, across trials, the Holm verdict."""
    m = data.metric
    holm = data.select.across_trials
    rows = []
    for r in comp:
        diff, interval = content.diff_text(r, with_note=True, digits=m.digits)
        better = r["diff"] < 0 if m.lower_is_better else r["diff"] > 0
        css = ("better" if better else "worse") if r["n"] >= 2 and r["significant"] else ""
        title = f"p = {content.fmt_num(r['p'])}" if math.isfinite(r["p"]) else ""
        line = [*_labels(data, (r["dataset"], r["architecture"], r["variant"])), Cell.label(r["loss"]),
                Cell(diff, r["diff"] if r["n"] else None, title, css),
                Cell(interval, r["lo"] if r["n"] >= 2 else None)]
        if holm:
            verdict = r["verdict"]
            line.append(Cell(f"{verdict} (p={content.fmt_num(r['p_holm'])})" if verdict else content.MISSING,
                             r["p_holm"] if verdict else None, "",
                             {"better": "better", "worse": "worse"}.get(verdict, "")))
        rows.append(line)
    heads = _label_heads(data)
    return Table(content.diff_heading(data).replace("`", ""),
                 heads + ["loss", f"Δ {m.short}", "95% interval"] + (["Holm–Bonferroni verdict"] if holm else []),
                 rows, len(heads) + 1)


def trials_section(data: ReportData) -> Section:
    """The search trial the ``tuned`` rule chose per (setting, loss): its number, score and drawn values."""
    keys = sorted({k for choice in data.trials.values() for k in choice.values})
    heads = _label_heads(data)
    rows = []
    for (ds, arch, variant, loss), choice in data.trials.items():
        rows.append([*_labels(data, (ds, arch, variant)), Cell.label(loss), Cell(str(choice.trial), choice.trial),
                     Cell(content.fmt_num(choice.score), choice.score), Cell(str(choice.n), choice.n),
                     *(Cell(content.format_hp(choice.values[k]), choice.values[k]
                            if isinstance(choice.values[k], (int, float)) else str(choice.values[k]))
                       if k in choice.values else Cell(content.MISSING) for k in keys)])
    table = Table("The trial each loss's tuned result comes from, and the values it drew",
                  heads + ["loss", "trial", "mean validation accuracy", "seeds", *keys], rows, len(heads) + 1)
    notes = ["Trial 0 runs every loss at its registry defaults; the others draw from the grid's search space. "
             "The tuned rule picks the trial with the best mean validation accuracy over seeds."]
    return Section("Selected hyperparameters", [*notes, content.search_note(data)] if data.incomplete_search else notes,
                   [table])


def mi_section(data: ReportData, mis: list[dict[str, Any]]) -> Section:
    """Î and the error lower bounds it implies (the report's last-epoch table), and a Gaussian model's truth."""
    heads = _label_heads(data)
    keys = ("mi_nats", "h_y_nats", "test_error", "bound_thm4", "bound_fano")
    rows = []
    for r in mis:
        texts = content.mi_texts(r)
        gone = r["status"] in ("diverged", "failed")
        values = [Cell(t, None if gone else r[k]) for t, k in zip(texts, keys)]
        holds = texts[-1]
        rows.append([*_labels(data, (r["dataset"], r["architecture"], r["variant"])), Cell.label(r["loss"]), *values,
                     Cell(holds, holds or None, "", "worse" if holds == "no" else "")])
    tables = [Table(content.MI_TITLE, heads + ["loss", *content.MI_HEADS], rows, len(heads) + 1)]
    notes = [content.MI_NOTE]
    if data.truths:
        tables.append(Table(content.TRUTH_TITLE, content.TRUTH_HEADS,
                            [[Cell.label(t[0]), *(Cell(text, data.truths[ds][k]) for text, k in
                                                  zip(t[1:], ("delta", "mi_exact", "bayes_error")))]
                             for ds in data.truths for t in [content.truth_texts(ds, data.truths[ds])]], 1))
        notes.append(content.TRUTH_NOTE)
    return Section("Mutual information and error bounds (last epoch)", notes, tables)


# the figure families of bench.report.figures, by file-name prefix (longest first: tuned-curves before curves)
FIGURE_CAPTIONS = (
    ("tuned-curves-", "The tuned trial's validation and test accuracy beside trial 0's test accuracy"),
    ("tuning-", "Tuning landscape: each trial's validation score against the values it drew (trial 0 hollow, "
                "the selected trial a star)"),
    ("curves-", "Learning curves: test accuracy and test Î against the epoch, mean over seeds (±std band)"),
    ("reliability-", "Reliability diagrams of the last epoch's test split, the seeds pooled"),
    ("ece-vs-acc-", "Final test ECE against final test accuracy, one point per cell"),
    ("sweep-batch-size", "Final test accuracy against the batch size"),
    ("sweep-lambda", "Final test accuracy against milLoss's λ"),
    ("sweep-", "Final test accuracy against a swept loss parameter"),
    ("mi-vs-error", "Test error against test Î of every finished cell, under the Theorem 4 and Fano bounds"),
)


def figure_caption(stem: str, rows: list[tuple[str, str, str]]) -> str:
    """A figure's caption from its file stem: its family's words and, per (dataset, architecture), which."""
    from bench.report.figures import figure_stem

    for prefix, words in FIGURE_CAPTIONS:
        if stem.startswith(prefix):
            rest = stem[len(prefix):]
            which = next(("/".join(p for p in row if p) for row in rows if figure_stem(*(p for p in row if p)) == rest),
                         rest)
            return f"{words}: {which}" if which else words
    return stem


# ----------------------------------------------------------------------------- provenance
