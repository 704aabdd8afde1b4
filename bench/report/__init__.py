"""Reports from the store: selection rules, statistics, tables (markdown, LaTeX, CSV) and figures."""
