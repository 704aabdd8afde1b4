"""The static results page: every suite's leaderboard and every grid of a store (or an export) as HTML
pages that open from ``file://``, offline, rendered from Jinja2 templates.

:mod:`.model` is what a page holds (``Page``, ``Section``, ``Table``, ``Cell``, ``Figure``), whoever builds
it; :mod:`.grids` builds a grid's page from what ``bench report`` computes; :mod:`.render` writes pages and
their index (``write_site``) from the templates in ``templates/``.
"""

from bench.site.model import Cell, Figure, Page, Section, Table
from bench.site.render import write_site

__all__ = ["Cell", "Figure", "Page", "Section", "Table", "write_site"]
