"""Reports from the store: selection rules, statistics, tables (markdown, LaTeX, CSV) and figures.

``collect`` / ``collect_selected`` gather what a report stands on (:mod:`bench.report.collect`);
``render`` writes it in one of ``FORMATS`` (:mod:`bench.report.markdown`, :mod:`bench.report.latex`,
:mod:`bench.report.csv`); the words of every table and note come from :mod:`bench.report.content`.
"""

from bench.report.collect import REPORT_COLUMNS, ReportData, annotate, collect, collect_from_store, collect_selected
from bench.report.render import FORMATS, metric_absent, nothing_finished, render

__all__ = ["FORMATS", "REPORT_COLUMNS", "ReportData", "annotate", "collect", "collect_from_store", "collect_selected", "metric_absent",
           "nothing_finished", "render"]
