"""What a results page holds, independent of where its numbers come from: pages of sections of tables, notes
and figures, with the provenance of the results they show.

Whatever builds a page (a grid's report in :mod:`bench.site.grids`, a suite's leaderboard) fills these
plain dataclasses with finished texts; :func:`bench.site.render.write_site` only lays them out. Texts are
plain text (the templates escape them); a note may mark code with backticks, as the reports' notes do.

* :class:`Cell`: one table cell, its text as shown and the key its column sorts by;
* :class:`Table`: a caption, column headers, rows of cells;
* :class:`Figure`: an image file and its caption;
* :class:`Section`: a heading with notes, tables and figures;
* :class:`Page`: one HTML file (``<slug>.html``) with a title, a summary line for the index, sections and
  the provenance of its results.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# a page's file name without ``.html``: no folder, no leading dot, and never the index's
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# the kinds of page and their headings on the index, which lists them in this order (each kind in the given order)
KINDS = {"leaderboard": "Leaderboards", "grid": "Grids"}
CSS_CLASSES = ("", "best", "better", "worse", "muted")  # what the page's style sheet knows
# the figure files a page draws: it shows the PNG, and a PDF would cost as much again to draw
SITE_FORMATS = ("png",)


@dataclass(frozen=True)
class Cell:
    """One table cell.

    ``text``: what is shown. ``sort``: the key its column sorts by: a number (compared as numbers; NaN or
    infinity counts as missing), a string (compared alphabetically), or None: missing, sorted last whichever
    way the column is sorted. ``title``: a tooltip (e.g. the per-seed values behind a mean). ``css``: one of
    :data:`CSS_CLASSES`: ``best`` (the best entry of its row), ``better`` / ``worse`` (a difference that holds
    at the stated confidence), ``muted`` (nothing to show yet).
    """

    text: str
    sort: float | str | None = None
    title: str = ""
    css: str = ""

    @property
    def key(self) -> float | str | None:
        """The sort key as written into the page: None for a missing or non-finite number."""
        if self.sort is None or isinstance(self.sort, str):
            return self.sort
        value = float(self.sort)
        return value if math.isfinite(value) else None

    @classmethod
    def label(cls, text: str, title: str = "") -> Cell:
        """A text cell that sorts by its own text (a dataset, a loss)."""
        return cls(text, text, title)


@dataclass(frozen=True)
class Table:
    """A sortable table: ``caption``, one header per column, ``rows`` of as many cells.

    The first ``row_headers`` columns name the row (dataset, architecture, loss): they are marked up as row
    headers for screen readers. A column sorts as numbers when every key it has is a number, else as text.
    """

    caption: str
    headers: list[str]
    rows: list[list[Cell]]
    row_headers: int = 0

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"table {self.caption!r}: row {i} has {len(row)} cells for {len(self.headers)} headers")
            for cell in row:
                if cell.css not in CSS_CLASSES:
                    raise ValueError(f"table {self.caption!r}: css class {cell.css!r} is not one of {CSS_CLASSES}")

    def numeric(self, column: int) -> bool:
        """Whether ``column`` sorts as numbers: every key it has is a number (a column of none is text)."""
        keys = [row[column].key for row in self.rows if row[column].key is not None]
        return bool(keys) and all(isinstance(k, float) for k in keys)


@dataclass(frozen=True)
class Figure:
    """An image (PNG, SVG, JPEG) and its caption; the site copies ``source`` beside the page."""

    source: Path
    caption: str


@dataclass(frozen=True)
class Section:
    """A heading, then its tables, its notes (paragraphs read as the tables' footnotes), then its figures."""

    heading: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """One page of the site, written to ``<slug>.html`` (its figures under ``<slug>/``).

    ``summary``: the one line the index shows beside the title. ``notes``: paragraphs shown under the title,
    before the sections. ``provenance``: label -> text, in order, of what the results stand on (the command
    that produced them, when, on which machine, which code version); shown at the foot of the page.
    ``kind``: one of :data:`KINDS`: the index lists leaderboards first, then grids.
    """

    slug: str
    title: str
    summary: str
    sections: list[Section] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kind: str = "grid"

    def __post_init__(self) -> None:
        if not SLUG.fullmatch(self.slug) or self.slug == "index":
            raise ValueError(f"page slug {self.slug!r}: use letters, digits, '.', '_' and '-' (not starting with "
                             f"'.' or '-'), and not 'index'")
        if self.kind not in KINDS:
            raise ValueError(f"page {self.slug!r}: kind {self.kind!r} is not one of {tuple(KINDS)}")
