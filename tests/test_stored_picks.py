"""The selection rules' picks a cell's row stores equal the ones computed from its history, rule by rule, bit for bit.

A report of accuracy reads the picks each row stores (``bench.report.selection.PICK_COLUMNS``,
written by ``Store.write_result`` from the history committed with the row) and reads history only
for rows written without them. Here both paths run on randomised stores written through the
store (ties, NaN and infinite values, histories with and without validation accuracy, rows out of
epoch order or repeated within one attempt, older attempts, failed and missing cells, empty
histories), on stores mixing rows with and without picks, and against the per-row oracle of
``tests/test_selection_columnar.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.report.collect import REPORT_COLUMNS, collect_from_store, collect_selected
from bench.report.selection import (
    PICK_COLUMNS,
    PICK_EPOCH,
    PICK_VALUE,
    RULES,
    SELECTION_VERSION,
    SELECTION_VERSION_COLUMN,
    Picks,
    history_picks,
    load_histories,
    select,
    stored_picks,
)
from bench.store.results import Store
from tests.test_selection_columnar import VALUES, bits, grid_cells, per_row_histories, per_row_select, trial_bits


def random_history(rng: np.random.Generator) -> list[dict]:
    n = int(rng.integers(0, 7))
    epochs = list(range(1, n + 1))
    if n and rng.random() < 0.2:
        epochs += epochs[: int(rng.integers(1, n + 1))]  # an epoch recorded twice
    if rng.random() < 0.3:
        rng.shuffle(epochs)  # out of order
    with_val = rng.random() < 0.8

    def pick() -> float:
        return float(VALUES[int(rng.integers(len(VALUES)))])

    return [{"epoch": e, "train_loss": pick(), "test_acc": pick(), "test_ece": pick(),
             **({"val_acc": pick()} if with_val else {})} for e in epochs]


def write_random_store(rng: np.random.Generator, cells, root: Path) -> Store:
    """Every attempt through ``Store.write_result``: each row carries the picks of the history written with it."""
    store = Store(root)
    stamp = 0
    for c in cells:
        status = rng.choice(["done", "done", "done", "done", "failed", "missing"])
        if status == "missing":
            continue
        for attempt in range(int(rng.integers(1, 3))):  # an older attempt's rows must never be read
            stamp += 1
            history = random_history(rng) if status == "done" or rng.random() < 0.5 else []
            store.write_result({"cell_id": c.cell_id, "attempt_id": f"{c.cell_id}-{attempt}", "status": str(status),
                                "written_at": stamp, "final_test_acc": 0.5, "final_test_mi": 0.1,
                                "test_label_entropy": 0.69, "num_classes": 2}, history)
    return store


def same_selection(a, b, key: str) -> None:
    assert [c.cell_id for c in a.cells] == [c.cell_id for c in b.cells], key
    assert bits(a.acc) == bits(b.acc), key
    assert a.epoch == b.epoch, key
    assert bits(a.score) == bits(b.score), key
    assert trial_bits(a.trials) == trial_bits(b.trials), key


def entries(data) -> list:
    return [{k: (bits(e.acc), bits(e.value), bits(e.mi), e.expected, e.diverged, e.failed, e.status)
             for k, e in d.entries.items()} | {"counts": d.counts, "trials": trial_bits(d.trials), "rule": d.select.key}
            for d in (data, *data.others)]


@pytest.mark.parametrize("seed", range(12))
def test_stored_picks_equal_the_histories_rule_by_rule(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cells = grid_cells()
    store = write_random_store(rng, cells, tmp_path / "r")
    results = store.cells(REPORT_COLUMNS)
    picks, rest = stored_picks(results)
    assert rest.empty  # every row was written with its picks
    hists = load_histories(store, results)
    reference = per_row_histories(results, store.history(results["attempt_id"]))
    assert set(picks.cell_ids) == set(hists.cell_ids) == set(reference)
    for key in RULES:
        fast = select(RULES[key], cells, picks)
        same_selection(fast, select(RULES[key], cells, hists), key)
        shown, acc, epoch, trials, score = per_row_select(key, cells, reference)
        assert [c.cell_id for c in fast.cells] == [c.cell_id for c in shown], key
        assert (bits(fast.acc), fast.epoch, bits(fast.score), trial_bits(fast.trials)) == \
               (bits(acc), epoch, bits(score), trial_bits(trials)), key
        # the whole report: the rows' picks against every history row read again
        assert entries(collect_from_store("s", cells, results, store, "celLoss", key)) == \
               entries(collect_selected("s", cells, results, store.history(results["attempt_id"]), "celLoss", key))


def strip_picks(root: Path, keep: float, rng: np.random.Generator) -> None:
    """Rewrite the cell rows as an older version left them: a share ``1 - keep`` of them without picks, some with
    picks of another selection version (and nonsense numbers, which must never be read)."""
    files = sorted((root / "cells").glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    for p in files:
        p.unlink()
    older = rng.random(len(frame)) >= keep
    other_version = older & (rng.random(len(frame)) < 0.5)
    frame.loc[other_version, SELECTION_VERSION_COLUMN] = SELECTION_VERSION + 1
    for by, column in PICK_EPOCH.items():
        frame.loc[other_version, column] = 1
        for value_column in PICK_VALUE[by].values():
            frame.loc[other_version, value_column] = 123.0
    plain = older & ~other_version
    pq.write_table(pa.Table.from_pandas(frame[~plain], preserve_index=False), root / "cells" / "merged-1.parquet")
    pq.write_table(pa.Table.from_pandas(frame[plain].drop(columns=PICK_COLUMNS), preserve_index=False),
                   root / "cells" / "merged-0.parquet")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_rows_without_picks_are_read_from_their_histories(tmp_path: Path, seed: int, keep: float) -> None:
    rng = np.random.default_rng(100 + seed)
    cells = grid_cells()
    store = write_random_store(rng, cells, tmp_path / "r")
    strip_picks(tmp_path / "r", keep, rng)
    results = store.cells(REPORT_COLUMNS)
    picks, rest = stored_picks(results)
    assert len(rest) and (keep == 0.0) == (len(picks) == 0)
    frame = store.history(results["attempt_id"])
    for key in RULES:
        assert entries(collect_from_store("s", cells, results, store, "celLoss", key)) == \
               entries(collect_selected("s", cells, results, frame, "celLoss", key)), key
    # and another metric, read from the histories at the epochs the rules pick, whatever the rows store
    for key in RULES:
        a = collect_from_store("s", cells, results, store, "celLoss", key, "ece")
        b = collect_selected("s", cells, results, frame, "celLoss", key, "ece")
        assert [{k: bits(e.value) for k, e in d.entries.items()} for d in (a, *a.others)] == \
               [{k: bits(e.value) for k, e in d.entries.items()} for d in (b, *b.others)]


def test_one_history_picks_by_hand() -> None:
    table = pa.Table.from_pylist([{"epoch": 3, "test_acc": 0.9, "val_acc": 0.7},
                                  {"epoch": 1, "test_acc": 0.2, "val_acc": math.nan},
                                  {"epoch": 2, "test_acc": math.inf, "val_acc": 0.7}])
    got = history_picks(table)
    assert got[SELECTION_VERSION_COLUMN] == SELECTION_VERSION
    # in epoch order: (nan, .2), (.7, inf), (.7, .9): last 3, val 2 (the earliest tie), oracle 3 (inf never wins)
    assert [got[PICK_EPOCH[by]] for by in ("", "val_acc", "test_acc")] == [3, 2, 3]
    assert got[PICK_VALUE["val_acc"]["test_acc"]] == math.inf and got[PICK_VALUE["test_acc"]["val_acc"]] == 0.7
    none = history_picks(pa.table({}))
    assert none[PICK_EPOCH[""]] == 0 and math.isnan(none[PICK_VALUE[""]["test_acc"]])


def test_a_row_without_history_shows_its_final_accuracy_in_every_rule(tmp_path: Path) -> None:
    cells = grid_cells()
    store = Store(tmp_path / "r")
    for i, c in enumerate(cells):
        store.write_result({"cell_id": c.cell_id, "attempt_id": f"a{i}", "status": "done", "written_at": i,
                            "final_test_acc": 0.25 + i / 1000, "final_test_mi": 0.1, "test_label_entropy": 0.69,
                            "num_classes": 2}, [])
    results = store.cells(REPORT_COLUMNS)
    picks, rest = stored_picks(results)
    assert len(picks) == 0 and rest.empty  # known to have no history: nothing to read
    data = collect_from_store("s", cells, results, store, "celLoss", "last")
    assert sorted(v for e in data.entries.values() for v in e.acc.values()) == \
           sorted(0.25 + i / 1000 for i, c in enumerate(cells) if c.trial == 0)


def test_picks_add_up() -> None:
    a = Picks(["x"], {"": np.array([2])}, {"": {"test_acc": np.array([0.5]), "val_acc": np.array([0.4])}})
    b = Picks(["y"], {"": np.array([1])}, {"": {"test_acc": np.array([0.1]), "val_acc": np.array([np.nan])}})
    both = a + b
    assert both.cell_ids == ["x", "y"] and both.epoch[""].tolist() == [2, 1]


def test_a_report_imports_neither_torch_nor_scipy_optimize(tmp_path: Path) -> None:
    """What a report pays for before reading anything: a second of `import torch` (it trains nothing), and
    scipy.optimize's 0.3 s (Fano's bound is found by bisection)."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import store_scale

    ws = tmp_path / "ws"
    store_scale.build(ws, cells=400, epochs=(5,))
    code = ("import runpy, sys\n"
            f"sys.argv = ['bench', 'report', '--grid', 'scale', '--registry', {str(ws / 'registry.yaml')!r}, "
            f"'--results', {str(ws / 'h5')!r}, '--select', 'tuned']\n"
            "try:\n    runpy.run_module('bench.cli', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('torch', 'scipy.optimize') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "celLoss" in out.stdout and out.stdout.rstrip().endswith("[]"), out.stdout[-500:] + out.stderr[-2000:]
