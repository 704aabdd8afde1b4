"""The columnar selection equals the per-row one it replaced, rule by rule, bit for bit, on randomised stores.

``per_row_*`` below is the selection as it was computed before it became columnar (one dict per
history row, an epoch picked per cell in Python): kept here, as the oracle, and nowhere in bench/.
The randomised stores hold what a real store can: ties, NaN and infinite values, a validation
column some files lack, duplicate rows (a merge that crashed before removing its parts), rows out
of epoch order, attempts that are not the cell's latest, failed and missing cells.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.config.cells import Cell, expand_grid
from bench.config.registry import parse_registry
from bench.report.collect import REPORT_COLUMNS, collect_from_store, collect_selected, metric_values
from bench.metrics.table import METRICS  # noqa: I001 - after bench.report, which it imports in turn
from bench.report.selection import RULES, TrialChoice, histories, load_histories, select
from bench.store.results import Store
from tests.conftest import gauss_registry

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the per-row oracle (the code before)
def per_row_argmax_earliest(values: Sequence[float]) -> int:
    best = None
    for i, v in enumerate(values):
        if math.isfinite(v) and (best is None or v > values[best]):
            best = i
    return len(values) - 1 if best is None else best


def per_row_epoch(key: str, history: Sequence[Mapping[str, float]]) -> int:
    if key == "last":
        return len(history) - 1
    if key in ("val", "tuned"):
        return per_row_argmax_earliest([float(h.get("val_acc", math.nan)) for h in history])
    return per_row_argmax_earliest([float(h["test_acc"]) for h in history])


def per_row_histories(results: pd.DataFrame, history: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    if results.empty or history.empty:
        return {}
    done = results[results["status"] == "done"]
    attempt_of = dict(zip(done["attempt_id"].tolist(), done["cell_id"].tolist()))
    out: dict[str, list[dict[str, float]]] = {}
    hist = history[history["attempt_id"].isin(set(attempt_of))].sort_values("epoch", kind="stable")
    for rec in hist.to_dict("records"):
        out.setdefault(attempt_of[rec["attempt_id"]], []).append(rec)
    return out


def per_row_select(key: str, cells: Sequence[Cell], hists: Mapping[str, list[dict[str, float]]]):
    acc, epoch, score = {}, {}, {}
    for c in cells:
        h = hists.get(c.cell_id)
        if h:
            i = per_row_epoch(key, h)
            acc[c.cell_id], epoch[c.cell_id] = float(h[i]["test_acc"]), i + 1
            score[c.cell_id] = float(h[i].get("val_acc", math.nan))
    if not RULES[key].across_trials:
        shown = [c for c in cells if c.trial in (None, 0)]
        trials = {(c.dataset, c.architecture, c.variant, c.loss): TrialChoice(
            0, dict(c.config["search"]["values"]), math.nan, 0) for c in shown if c.trial == 0}
        return shown, acc, epoch, trials, score
    by_entry: dict = {}
    for c in cells:
        by_entry.setdefault((c.dataset, c.architecture, c.variant, c.loss), {}).setdefault(c.trial or 0, []).append(c)
    shown, trials = [], {}
    for k, by_trial in by_entry.items():
        best = None
        for t, members in sorted(by_trial.items()):
            scores = [score[c.cell_id] for c in members if math.isfinite(score.get(c.cell_id, math.nan))]
            if scores:
                mean = sum(scores) / len(scores)
                if best is None or mean > best[0]:
                    best = (mean, t)
        chosen = best[1] if best is not None else 0
        members = by_trial[chosen]
        shown += members
        trials[k] = TrialChoice(chosen, dict(members[0].config.get("search", {}).get("values", {})),
                                best[0] if best is not None else math.nan,
                                sum(1 for c in members if c.cell_id in score))
    return shown, acc, epoch, trials, score


def per_row_metric(column: str, epoch: Mapping[str, int], hists) -> dict[str, float]:
    out = {}
    for cell_id, e in epoch.items():
        try:
            value = float(hists[cell_id][e - 1].get(column, math.nan))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[cell_id] = value
    return out


# ---------------------------------------------------------------- randomised stores
def bits(d: Mapping) -> dict:
    """Floats by their exact bits (every NaN alike), so == compares bit for bit."""
    return {k: (v.hex() if isinstance(v, float) else v) for k, v in d.items()}


def trial_bits(trials: Mapping) -> dict:
    return {k: (t.trial, t.values, t.score.hex(), t.n) for k, t in trials.items()}


def grid_cells() -> list[Cell]:
    search = {"trials": 3, "seed": 0, "space": {"train.lr": "loguniform(1e-4, 1e-1)", "milLoss.lam": "uniform(0.5, 500)"}}
    reg = parse_registry(gauss_registry(s={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"],
                                           "seeds": [0, 1, 2], "train": {"epochs": 4, "val_fraction": 0.1},
                                           "search": search}))
    return expand_grid(reg, "s", validate=False)


VALUES = [0.1, 0.5, 0.5, 0.9, 0.9, -0.0, 0.0, math.nan, math.inf, -math.inf, 0.25]


def random_store(rng: np.random.Generator, cells: list[Cell], root: Path) -> tuple[pd.DataFrame, Store]:
    """Cell rows and history files written in the store's layout (parquet, several files)."""
    rows, files = [], [[] for _ in range(3)]
    for i, c in enumerate(cells):
        status = rng.choice(["done", "done", "done", "done", "failed", "missing"])
        if status == "missing":
            continue
        for attempt in range(int(rng.integers(1, 3))):  # an older attempt's rows must never be read
            aid = f"{c.cell_id}-{attempt}"
            rows.append({"cell_id": c.cell_id, "attempt_id": aid, "status": str(status), "written_at": 1000 * i + attempt,
                         "final_test_acc": 0.5, "final_test_mi": 0.1, "test_label_entropy": 0.69, "num_classes": 2})
            n = int(rng.integers(1, 7))
            epochs = list(range(1, n + 1))
            if rng.random() < 0.2:
                epochs += epochs[: int(rng.integers(1, n + 1))]  # duplicates
            if rng.random() < 0.3:
                rng.shuffle(epochs)  # out of order
            with_val = rng.random() < 0.8
            pick = lambda: float(VALUES[int(rng.integers(len(VALUES)))])  # noqa: E731
            recs = [{"cell_id": c.cell_id, "attempt_id": aid, "epoch": e, "test_acc": pick(), "test_ece": pick(),
                     **({"val_acc": pick()} if with_val else {})} for e in epochs]
            files[int(rng.integers(len(files)))].append(recs)
    (root / "cells").mkdir(parents=True)
    (root / "history").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "cells" / "merged-0.parquet")
    for k, parts in enumerate(files):
        if parts:
            for j, recs in enumerate(parts):  # files whose schemas differ (with and without val_acc)
                pq.write_table(pa.Table.from_pylist(recs), root / "history" / f"part-{k}-{j:03d}.parquet")
    store = Store(root)
    return store.cells(REPORT_COLUMNS), store


@pytest.mark.parametrize("seed", range(12))
def test_columnar_selection_equals_the_per_row_one_rule_by_rule(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cells = grid_cells()
    results, store = random_store(rng, cells, tmp_path / "r")
    frame = store.history(results["attempt_id"])
    reference = per_row_histories(results, frame)
    from_frame = histories(results, frame)
    from_store = load_histories(store, results, ["test_acc", "val_acc", "test_ece"])
    assert set(from_frame.cell_ids) == set(reference) == set(from_store.cell_ids)
    for key in RULES:
        shown, acc, epoch, trials, score = per_row_select(key, cells, reference)
        for hists in (from_frame, from_store):
            got = select(RULES[key], cells, hists)
            assert [c.cell_id for c in got.cells] == [c.cell_id for c in shown], key
            assert bits(got.acc) == bits(acc), key
            assert got.epoch == epoch, key
            assert bits(got.score) == bits(score), key
            assert trial_bits(got.trials) == trial_bits(trials), key
            assert bits(metric_values(METRICS["ece"], got, hists)) == bits(per_row_metric("test_ece", epoch, reference))


def test_a_cell_rule_on_one_history_is_the_columnar_rule() -> None:
    rows = [{"val_acc": math.nan, "test_acc": 0.2}, {"val_acc": 0.7, "test_acc": math.inf},
            {"val_acc": 0.7, "test_acc": 0.9}, {"test_acc": 0.9}]
    assert [RULES[k].epoch(rows) for k in ("last", "val", "oracle")] == [3, 1, 2]
    assert RULES["val"].epoch([{"val_acc": math.nan}, {"val_acc": -math.inf}]) == 1  # nothing finite: the last


def test_a_report_on_the_store_equals_one_on_the_frame_of_every_column(tmp_path: Path) -> None:
    cells = grid_cells()
    results, store = random_store(np.random.default_rng(99), cells, tmp_path / "r")
    for key in RULES:
        a = collect_from_store("s", cells, results, store, "celLoss", key, "ece")
        b = collect_selected("s", cells, results, store.history(results["attempt_id"]), "celLoss", key, "ece")
        for x, y in zip([a, *a.others], [b, *b.others]):
            assert {k: (bits(e.acc), bits(e.value)) for k, e in x.entries.items()} == \
                   {k: (bits(e.acc), bits(e.value)) for k, e in y.entries.items()}


# ---------------------------------------------------------------- memory bounded by what is shown
def peak_rss_mb(*args: str) -> float:
    """Peak resident memory of one `bench` subprocess (this helper runs in its own process, so the
    children's peak is that command's alone)."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "sys.exit(r.returncode) if r.returncode else print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "bench.cli", *args],
                         capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


def test_report_memory_grows_with_the_cells_shown_not_with_the_history_width(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import store_scale

    # rows without the rules' picks (an older version's): the report reads every done cell's history
    narrow = store_scale.build(tmp_path / "narrow", cells=2000, epochs=(50,), extra_columns=0, picks=False)
    wide = store_scale.build(tmp_path / "wide", cells=2000, epochs=(50,), extra_columns=60, picks=False)
    assert narrow["cells"] == wide["cells"] == 2000
    # 100,000 history rows x 60 more columns: 48 MB of floats, several times that as Python objects
    peaks = {}
    for name, ws in (("narrow", tmp_path / "narrow"), ("wide", tmp_path / "wide")):
        peaks[name] = peak_rss_mb("report", "--grid", "scale", "--registry", str(ws / "registry.yaml"),
                                  "--results", str(ws / "h50"), "--select", "tuned")
    assert peaks["wide"] - peaks["narrow"] < 25, peaks
