"""One answer per loss: each loss's tuned scores across a suite's tasks, compared with the baseline by
aggregate statistics (IQM, probability of improvement, performance profiles, ranks, practical equivalence)
and by tuning-budget curves, rendered as markdown, LaTeX, CSV and HTML."""
