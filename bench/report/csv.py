"""The report as CSV: one row per (setting, loss, rule), every value unrounded."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.metrics.table import DEFAULT
from bench.report.collect import ReportData
from bench.report.content import comparison_rows, mi_rows
from bench.report.stats import mean_std


# ----------------------------------------------------------------------------- CSV
def render_csv(data: ReportData) -> str:
    """Long form, one line per (rule, row, loss): machine-readable, no formatting; ``status`` says what an empty
    value means. The report's own rule comes first, then every other rule the grid supports.

    Accuracy's columns are ``acc_mean``, ``acc_std``. Another metric adds a ``metric`` column (its key, after
    ``select``), names its columns after it (``ece_mean``, ``ece_std``), counts in ``n`` the seeds that have it
    and in ``n_without_metric`` the finished seeds whose history lacks it; ``diff_vs_baseline`` and its interval
    are then that metric's (loss minus baseline, whichever direction is better)."""
    recs = [rec for d in [data, *data.others] for rec in _csv_records(d)]
    hp_cols = sorted({k for r in recs for k in r if k.startswith("hp.")})
    return pd.DataFrame(recs, columns=[*(k for k in recs[0] if not k.startswith("hp.")), *hp_cols] if recs else None
                        ).to_csv(index=False, float_format="%.6g")


def _csv_records(data: ReportData) -> list[dict[str, Any]]:
    recs = []
    m = data.metric
    default = m.key == DEFAULT.key
    comp = {(r["dataset"], r["architecture"], r["variant"], r["loss"]): r for r in comparison_rows(data)}
    mis = {(r["dataset"], r["architecture"], r["variant"], r["loss"]): r for r in mi_rows(data)}
    nan = float("nan")
    for row in data.rows:
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None:
                continue
            mean, std, n = mean_std(list(e.value.values())) if e.value else (nan, nan, 0)
            key = (*row, loss)
            c = comp.get(key, {})
            mi = mis.get(key, {})
            choice = data.trials.get(key)
            recs.append({"grid": data.grid, "select": data.select.key, **({} if default else {"metric": m.key}),
                         "dataset": row[0], "architecture": row[1],
                         "setting": row[2], "loss": loss, "trial": choice.trial if choice is not None else "",
                         "status": e.status, "n": n, "n_expected": e.expected, "n_diverged": len(e.diverged),
                         "n_failed": len(e.failed), **({} if default else {"n_without_metric": e.lacking}),
                         f"{m.key}_mean": mean, f"{m.key}_std": std,
                         "diff_vs_baseline": c.get("diff", nan), "diff_lo": c.get("lo", nan),
                         "diff_hi": c.get("hi", nan), "p": c.get("p", nan), "p_holm": c.get("p_holm", nan),
                         "mi_nats": mi.get("mi_nats", nan),
                         "bound_thm4": mi.get("bound_thm4", nan), "bound_fano": mi.get("bound_fano", nan),
                         "overrides": "; ".join(data.overrides),
                         **{f"hp.{k}": v for k, v in (choice.values if choice is not None else {}).items()}})
    return recs
