"""The static results page: every suite's leaderboard and every grid of a store (or an export) as HTML
pages that open from ``file://``, offline, rendered from Jinja2 templates."""
