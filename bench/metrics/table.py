"""The metrics a report can show (``bench report --metric KEY``), defined once.

Each metric names the history column the trainer records every epoch on the test split
(:mod:`bench.train.loop`, formulas in :mod:`bench.metrics.compute`), how captions name it, how many decimals it
prints and which direction is better. The report reads the column at the epoch each cell's
selection rule picks (:mod:`bench.report.selection`); the rules themselves choose epochs and trials by
validation accuracy whatever the metric, since that is the search's fixed objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.config.cells import Cell
from bench.errors import BenchError, closest
from bench.report.selection import has_validation


@dataclass(frozen=True)
class Metric:
    """One reportable metric: ``key`` (the flag's value), ``column`` (the history's), ``name`` (captions' prose),
    ``short`` (column heads, "Δ ..."), ``about`` (what the number is, for the table's note; "" for accuracy),
    ``unit`` ("" or "nats"), ``digits`` (decimals printed), ``lower_is_better``, ``needs_validation``."""

    key: str
    column: str
    name: str
    short: str
    about: str
    unit: str = ""
    digits: int = 3
    lower_is_better: bool = False
    needs_validation: bool = False

    @property
    def direction(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"

    @property
    def head(self) -> str:
        """The column head of a table of the metric's values: ``Accuracy``, ``NLL``."""
        return self.short[:1].upper() + self.short[1:]


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("acc", "test_acc", "accuracy", "accuracy", ""),
    Metric("balanced_acc", "test_balanced_acc", "balanced accuracy", "balanced accuracy",
           "the mean over the classes of the per-class recall"),
    Metric("nll", "test_loss", "NLL", "NLL", "the negative log-likelihood of the true class, in nats",
           unit="nats", lower_is_better=True),
    # ECEs of a few percent differ in the third decimal: a fourth keeps the differences readable
    Metric("ece", "test_ece", "ECE", "ECE", "expected calibration error, 15 equal-width confidence bins, L1",
           digits=4, lower_is_better=True),
    Metric("ece_ts", "test_ece_ts", "ECE after temperature scaling", "ECE (TS)",
           "the ECE after temperature scaling, the temperature fitted on the validation split at the selected epoch",
           digits=4, lower_is_better=True, needs_validation=True),
    Metric("brier", "test_brier", "Brier score", "Brier",
           "the multiclass Brier score, the squared error of the predicted distribution summed over classes",
           lower_is_better=True),
)}
DEFAULT = METRICS["acc"]


def metric(key: str, grid: str, cells: Sequence[Cell]) -> Metric:
    """The metric named ``key`` for these cells; an unknown name, or one the grid cannot have, is one line."""
    if key not in METRICS:
        raise BenchError(f"--metric {key!r}: not a report metric{closest(key, METRICS)}; expected one of "
                         f"{', '.join(METRICS)}")
    m = METRICS[key]
    if m.needs_validation and not has_validation(cells):
        raise BenchError(f"--metric {key}: grid {grid!r} has no validation split (train.val_fraction is 0) and "
                         "temperature scaling is fitted on one; use --metric ece, or give the grid one "
                         "(train: {val_fraction: 0.1}) and train it")
    return m
