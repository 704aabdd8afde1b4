"""A suite's leaderboard as a page of the site: the rows and notes of :mod:`bench.leaderboard.content` in the
site's sortable tables, with the leaderboard's figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.leaderboard.build import Leaderboard
from bench.leaderboard.content import (TASK_HEADS, Shown, overall_heads, caption, overall_notes, overall_rows,
                                       task_caption, task_rows)
from bench.site.model import SITE_FORMATS, Cell, Figure, Page, Section, Table

LEADERBOARD_PREFIX = "leaderboard-"


def leaderboard_slug(name: str) -> str:
    from bench.report.figures.files import safe_name

    return LEADERBOARD_PREFIX + safe_name(name)


def _cells(row: list[Shown]) -> list[Cell]:
    return [Cell(s.text, s.key, css="best" if s.best else "") for s in row]


def leaderboard_page(board: Leaderboard, figure_dir: Path | None, formats: tuple[str, ...] | None = None) -> Page:
    """The page of ``board``; its figures drawn into ``figure_dir`` (None: tables only) as ``formats``
    (:func:`bench.leaderboard.make.draw`)."""
    from bench.leaderboard.make import draw
    from bench.leaderboard.render import figure_slug

    names = draw(board, figure_dir, formats) if figure_dir is not None else []
    heads = overall_heads(board)
    overall = Table(caption(board), heads, [_cells(r) for r in overall_rows(board)], row_headers=1)
    shared = [Figure(figure_dir / n, _figure_caption(n, board)) for n in names if not n.startswith("budget-")] \
        if figure_dir is not None else []
    sections = [Section("Across tasks", overall_notes(board), [overall], shared)]
    for task in board.tasks:
        budget = [Figure(figure_dir / n, f"{task}: expected test {board.metric.name} of the best of k trials "
                                         f"(Dodge et al. 2019) for each loss; untuned: trial 0")
                  for n in names if n == f"{figure_slug(task)}.png"] if figure_dir is not None else []
        table = Table(task_caption(board, task), TASK_HEADS, [_cells(r) for r in task_rows(board, task)], row_headers=1)
        sections.append(Section(task, [], [table], budget))
    best = [r for r in board.rows if r.verdict == "better"]
    summary = (f"{len(board.tasks)} tasks, {len(board.losses)} losses, {board.trials} trials x {len(board.seeds)} seeds, "
               f"test {board.metric.name} against {board.baseline}: "
               + (f"better with probability > 0.95: {', '.join(r.loss for r in best)}" if best
                  else "no loss is better with probability > 0.95"))
    return Page(leaderboard_slug(board.name), f"Leaderboard {board.name}", summary, sections, board.provenance,
                list(board.notes), kind="leaderboard")


def _figure_caption(name: str, board: Leaderboard) -> str:
    if name.startswith("profiles"):
        return (f"Performance profiles: the fraction of (task, seed) runs whose {board.metric.name} exceeds "
                f"τ + {board.baseline}'s mean on the task, with 95% stratified-bootstrap bands (Agarwal et al. 2021)")
    if name.startswith("critical-difference"):
        return ("Critical-difference diagram: mean ranks over tasks; a bar joins losses the Holm-corrected "
                "Wilcoxon tests do not separate (Demšar 2006; Benavoli et al. 2016)")
    return name


def leaderboard_pages(registry: Any, store: Any, figure_root: Path, suites: Sequence[str] = (),
                      data_root: Path | None = None, trials: int | None = None) -> list[Page]:
    """A page for each suite of ``registry`` (or each of ``suites``) with a finished cell in ``store``; ``trials``:
    each compared on its losses' first ``trials`` trials (``bench leaderboard --trials``)."""
    from bench.leaderboard.make import NothingFinished, make_leaderboard
    from bench.metrics.table import DEFAULT

    pages = []
    for name in dict.fromkeys(suites or registry.suites):
        try:
            made = make_leaderboard(registry, name, store, {}, DEFAULT, None, None, 10_000, data_root, trials=trials)
        except NothingFinished:
            if suites:
                raise
            continue  # a suite with nothing finished yet has no page; any other problem is the user's to see
        pages.append(leaderboard_page(made.board, figure_root / leaderboard_slug(name), SITE_FORMATS))
    return pages


def standalone_html(board: Leaderboard, figure_dir: Path | None = None) -> str:
    """One HTML file of the leaderboard (``bench leaderboard --format html``): the site's page, its figures
    (when drawn into ``figure_dir``, the folder the file is written to) referenced beside it."""
    from bench.site.render import environment

    page = leaderboard_page(board, figure_dir)
    hrefs = {fig: Path(fig.source).name for section in page.sections for fig in section.figures}
    return environment().get_template("page.html.j2").render(site_title=f"lossbench leaderboard {board.name}",
                                                              page=page, hrefs=hrefs)
