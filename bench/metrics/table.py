"""The one table of metrics: each metric one entry, from the value an accumulator computes to the report.

An entry names, once, everything the harness calls the metric:

- ``source`` and ``computed``: where its value comes from and its name there. ``TRAIN``: the
  training epoch's running figures (:class:`bench.train.loop.EpochMeter`: ``loss``, ``acc``);
  ``EVAL``: every epoch's evaluation pass of a split (a key of
  :meth:`bench.metrics.compute.SplitMetrics.compute` or of :meth:`losses.SplitMI.compute`, whose
  names are disjoint); ``SCALED``: temperature scaling at the end of a cell with a validation split
  (a key of the scaled test split's ``SplitMetrics.compute()``, or ``temperature``, the fitted T),
  recorded on the epochs a selection rule can pick (NaN in the other rows).
- ``history``: the history column recorded per split (``train``, ``test``, ``val``);
- ``final``: the cell row's column holding the last epoch's value (the train split's for a
  ``TRAIN`` metric, else the test split's): ``final_<column>`` unless the entry names another;
- for a metric a report can show (``bench report --metric KEY``; those with a ``name``): how captions
  name it (``name``), column heads (``short``), the table's note (``about``, ``unit``), decimals
  printed (``digits``) and which direction is better. The report reads the test column at the epoch
  each cell's selection rule picks (:mod:`bench.report.selection`); the rules choose epochs and
  trials by validation accuracy whatever the metric, since that is the search's fixed objective.

The training loop (:mod:`bench.train.loop`), the cell's row (:mod:`bench.train.cell`) and the reports
derive every name from here. The stored names are those of lossbench 0.1.0 (the test NLL's history
column is ``test_loss``, the paper's name; the fitted T is ``temperature`` in both the history and
the row), so results folders written before keep reading the same. Adding a metric is one entry
here and its formula in :mod:`bench.metrics.compute`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bench.errors import BenchError, closest

if TYPE_CHECKING:
    from bench.config.cells import Cell

TRAIN: Final = "train"
EVAL: Final = "eval"
SCALED: Final = "scaled"


@dataclass(frozen=True)
class Metric:
    """One metric (module docstring): ``key`` its one name (``--metric``'s value when reportable),
    ``source`` and ``computed`` where its value comes from, ``history`` split -> column, ``final``
    the row's column ("" derives ``final_<column>``); for reports ``name`` (captions' prose; "" for
    a metric no report shows), ``short`` (column heads, "Δ ..."), ``about`` (the table's note; ""
    for accuracy), ``unit`` ("" or "nats"), ``digits`` (decimals printed), ``lower_is_better``."""

    key: str
    source: str
    computed: str
    history: Mapping[str, str] = field(hash=False)
    final: str = ""
    name: str = ""
    short: str = ""
    about: str = ""
    unit: str = ""
    digits: int = 3
    lower_is_better: bool = False

    def __post_init__(self) -> None:
        if not self.final:
            object.__setattr__(self, "final", f"final_{self.summarised}")

    @property
    def summarised(self) -> str:
        """The history column whose last value the row's ``final`` column holds."""
        return self.history[TRAIN if self.source == TRAIN else "test"]

    @property
    def column(self) -> str:
        """The test split's history column (what a report reads at the selected epoch)."""
        return self.history["test"]

    @property
    def reportable(self) -> bool:
        return bool(self.name)

    @property
    def needs_validation(self) -> bool:
        """Temperature scaling fits T on the validation split: a cell without one has no such value."""
        return self.source == SCALED

    @property
    def direction(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"

    @property
    def head(self) -> str:
        """The column head of a table of the metric's values: ``Accuracy``, ``NLL``."""
        return self.short[:1].upper() + self.short[1:]


_BOTH = ("test", "val")


def _splits(key: str, splits: Sequence[str] = _BOTH, **named: str) -> dict[str, str]:
    """History columns ``<split>_<key>``, with the splits' columns ``named`` where they differ."""
    return {split: named.get(split, f"{split}_{key}") for split in splits}


# The order is the history's and the row's column order and the order reports list --metric's values in.
TABLE: Final[dict[str, Metric]] = {m.key: m for m in (
    Metric("train_loss", TRAIN, "loss", {"train": "train_loss"}, lower_is_better=True),
    Metric("train_acc", TRAIN, "acc", {"train": "train_acc"}),
    Metric("acc", EVAL, "accuracy", _splits("acc"), name="accuracy", short="accuracy"),
    Metric("balanced_acc", EVAL, "balanced_accuracy", _splits("balanced_acc"), name="balanced accuracy",
           short="balanced accuracy", about="the mean over the classes of the per-class recall"),
    # the NLL as SplitMI sums it (its h_cond): the paper's test loss
    Metric("nll", EVAL, "h_cond", _splits("nll", test="test_loss"), name="NLL", short="NLL",
           about="the negative log-likelihood of the true class, in nats", unit="nats", lower_is_better=True),
    Metric("nll_ts", SCALED, "nll", _splits("nll_ts", ("test",)), unit="nats", lower_is_better=True),
    Metric("h_cond", EVAL, "h_cond", _splits("h_cond", ("test",)), unit="nats", lower_is_better=True),
    Metric("h_marg", EVAL, "h_marg", _splits("h_marg", ("test",)), unit="nats"),
    Metric("mi", EVAL, "mi", _splits("mi"), unit="nats"),
    # ECEs of a few percent differ in the third decimal: a fourth keeps the differences readable
    Metric("ece", EVAL, "ece", _splits("ece"), name="ECE", short="ECE",
           about="expected calibration error, 15 equal-width confidence bins, L1", digits=4, lower_is_better=True),
    Metric("ece_ts", SCALED, "ece", _splits("ece_ts", ("test",)), name="ECE after temperature scaling",
           short="ECE (TS)", about="the ECE after temperature scaling, the temperature fitted on the validation "
           "split at the selected epoch", digits=4, lower_is_better=True),
    Metric("aece", EVAL, "adaptive_ece", _splits("aece"), digits=4, lower_is_better=True),
    Metric("brier", EVAL, "brier", _splits("brier"), name="Brier score", short="Brier",
           about="the multiclass Brier score, the squared error of the predicted distribution summed over classes",
           lower_is_better=True),
    Metric("temperature", SCALED, "temperature", {"test": "temperature"}, final="temperature"),
) if m is not None}


def columns(split: str, source: str = EVAL) -> tuple[str, ...]:
    """The history columns of ``split`` that the metrics of ``source`` record, in table order."""
    return tuple(m.history[split] for m in TABLE.values() if m.source == source and split in m.history)


def history_values(split: str, computed: Mapping[str, float], source: str = EVAL) -> dict[str, float]:
    """One split's history columns from what ``source`` computed (keyed by each metric's ``computed``)."""
    return {m.history[split]: computed[m.computed] for m in TABLE.values()
            if m.source == source and split in m.history}


def final_values(last: Mapping[str, float]) -> dict[str, float]:
    """The row's ``final`` columns from the last epoch's history row ``last`` (NaN where it lacks one)."""
    return {m.final: last.get(m.summarised, float("nan")) for m in TABLE.values()}


# the metrics a report can show (``bench report --metric KEY``), in the order they are listed
METRICS: Final[dict[str, Metric]] = {key: m for key, m in TABLE.items() if m.reportable}
DEFAULT: Final[Metric] = METRICS["acc"]


def metric(key: str, grid: str, cells: Sequence[Cell]) -> Metric:
    """The metric named ``key`` for these cells; an unknown name, or one the grid cannot have, is one line."""
    # the report's own predicate, imported when a report asks: training derives its names from this
    # table without loading the report package
    from bench.report.selection import has_validation

    if key not in METRICS:
        raise BenchError(f"--metric {key!r}: not a report metric{closest(key, METRICS)}; expected one of "
                         f"{', '.join(METRICS)}")
    m = METRICS[key]
    if m.needs_validation and not has_validation(cells):
        raise BenchError(f"--metric {key}: grid {grid!r} has no validation split (train.val_fraction is 0) and "
                         "temperature scaling is fitted on one; use --metric ece, or give the grid one "
                         "(train: {val_fraction: 0.1}) and train it")
    return m


__all__ = ["DEFAULT", "EVAL", "METRICS", "SCALED", "TABLE", "TRAIN", "Metric", "columns", "final_values",
           "history_values", "metric"]
