"""bench.metrics.table: one entry per metric, and the names derived from it are the stored ones."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench.metrics.compute import NAMES
from bench.metrics.table import (
    EVAL,
    METRICS,
    SCALED,
    TABLE,
    TRAIN,
    Metric,
    columns,
    final_values,
    history_values,
)

STORE = Path(__file__).parent / "fixtures" / "store-0.1.0" / "results"
BOOKKEEPING = {"attempt_id", "cell_id", "epoch", "epoch_time", "eval_time", "lr"}  # the loop's own history columns
SPLIT_MI = ("h_cond", "h_marg", "mi")  # losses.SplitMI.compute()'s names


def _columns(folder: str) -> set[str]:
    return set().union(*(pd.read_parquet(p).columns for p in (STORE / folder).glob("*.parquet")))


def test_the_history_columns_are_those_a_0_1_0_store_holds():
    derived = [col for m in TABLE.values() for col in m.history.values()]
    assert len(derived) == len(set(derived))
    assert set(derived) == _columns("history") - BOOKKEEPING


def test_the_final_columns_are_those_a_0_1_0_store_holds():
    stored = _columns("cells")
    finals = [m.final for m in TABLE.values()]
    assert set(finals) <= stored
    # every stored final_ column but the validation summary comes from the table
    assert {c for c in stored if c.startswith("final_")} - {"final_val_acc"} == {f for f in finals if f.startswith("final_")}


def test_every_evaluated_metric_names_a_value_an_accumulator_computes():
    assert not set(NAMES) & set(SPLIT_MI)  # one namespace: the loop merges the two accumulators' results
    assert {m.computed for m in TABLE.values() if m.source == EVAL} <= set(NAMES) | set(SPLIT_MI)
    assert {m.computed for m in TABLE.values() if m.source == SCALED} <= set(NAMES) | {"temperature"}
    assert {m.computed for m in TABLE.values() if m.source == TRAIN} == {"loss", "acc"}


def test_names_derive_from_one_entry():
    m = Metric("x", EVAL, "brier", {"test": "test_x", "val": "val_x"}, name="X", short="x")
    assert m.final == "final_test_x" and m.column == "test_x" and m.reportable and not m.needs_validation
    assert TABLE["nll"].column == "test_loss" and TABLE["nll"].final == "final_test_loss"
    assert TABLE["aece"].history == {"test": "test_aece", "val": "val_aece"} and TABLE["aece"].final == "final_test_aece"
    assert TABLE["temperature"].final == "temperature" and TABLE["ece_ts"].needs_validation
    assert TABLE["train_loss"].final == "final_train_loss"


def test_history_and_final_values():
    computed = {name: float(i) for i, name in enumerate((*NAMES, *SPLIT_MI))}
    row = history_values("test", computed)
    assert row["test_loss"] == computed["h_cond"] and row["test_aece"] == computed["adaptive_ece"]
    assert set(row) == set(columns("test")) and "val_acc" in history_values("val", computed)
    assert columns("train", TRAIN) == ("train_loss", "train_acc")
    assert set(columns("test", SCALED)) == {"temperature", "test_ece_ts", "test_nll_ts"}
    final = final_values({**row, "train_loss": 0.5})
    assert final["final_test_aece"] == computed["adaptive_ece"] and final["final_train_loss"] == 0.5
    assert math.isnan(final["temperature"]) and math.isnan(final["final_train_acc"])


def test_reports_list_their_metrics_in_one_order():
    assert list(METRICS) == ["acc", "balanced_acc", "nll", "ece", "ece_ts", "brier"]
    assert all(m.reportable for m in METRICS.values()) and not TABLE["aece"].reportable


@pytest.mark.parametrize("key", list(METRICS))
def test_a_reported_metric_has_its_words(key):
    m = METRICS[key]
    assert m.short and (m.about or key == "acc") and m.digits in (3, 4)
