"""Selection rules computed by hand from a small synthetic store: last, val, oracle; captions; bad input."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import yaml

from bench.config.cells import expand_grid
from bench.errors import BenchError
from bench.train.cell import failed_outcome
from bench.config.registry import parse_registry
from bench.report.collect import REPORT_COLUMNS, collect_selected
from bench.report.render import render
from bench.report.selection import RULES
from bench.store.results import Store
from tests.conftest import gauss_registry

# (loss, seed) -> per-epoch (val_acc, test_acc)
HISTORIES = {
    ("celLoss", 0): [(0.50, 0.60), (0.80, 0.70), (0.80, 0.75)],  # last .75, val .70 (earliest tie), oracle .75
    ("celLoss", 1): [(0.70, 0.66), (0.60, 0.72), (0.65, 0.68)],  # last .68, val .66, oracle .72
    ("milLoss", 0): [(0.40, 0.50), (0.90, 0.80), (0.85, 0.78)],  # last .78, val .80, oracle .80
    ("milLoss", 1): [(0.55, 0.81), (0.75, 0.79), (0.95, 0.77)],  # last .77, val .77, oracle .81
}
EXPECTED = {
    "last": {("celLoss", 0): 0.75, ("celLoss", 1): 0.68, ("milLoss", 0): 0.78, ("milLoss", 1): 0.77},
    "val": {("celLoss", 0): 0.70, ("celLoss", 1): 0.66, ("milLoss", 0): 0.80, ("milLoss", 1): 0.77},
    "oracle": {("celLoss", 0): 0.75, ("celLoss", 1): 0.72, ("milLoss", 0): 0.80, ("milLoss", 1): 0.81},
}


def registry(val_fraction: float = 0.1) -> dict:
    return gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"],
                              "seeds": [0, 1], "train": {"epochs": 3, "val_fraction": val_fraction}})


def done_row(cell, hist: list[tuple[float, float]]) -> tuple[dict, list[dict]]:
    row = failed_outcome(cell, "").row
    history = [{"epoch": i + 1, "train_loss": 0.1,
                "train_acc": 0.9, "test_acc": t, "test_loss": 0.5, "test_h_cond": 0.5, "test_h_marg": 0.69,
                "test_mi": 0.19, **({"val_acc": v, "val_nll": 0.5} if v is not None else {})}
               for i, (v, t) in enumerate(hist)]
    row.update(status="done", message="", final_test_acc=hist[-1][1], final_test_mi=0.19, test_label_entropy=0.69,
               num_classes=2, epochs_done=len(hist))
    return row, history


def write_store(root, cells, histories) -> Store:
    store = Store(root)
    for c in cells:
        row, hist = done_row(c, histories[(c.loss_name, c.seed)])
        store.write_result(row, hist)
    return store


def report_data(store: Store, cells, key: str):
    results = store.cells(REPORT_COLUMNS)
    return collect_selected("g1", cells, results, store.history(results["attempt_id"]), "celLoss", key)


@pytest.mark.parametrize("key", ["last", "val", "oracle"])
def test_each_rule_picks_the_epoch_computed_by_hand(tmp_path, key):
    cells = expand_grid(parse_registry(registry()), "g1", validate=False)
    store = write_store(tmp_path, cells, HISTORIES)
    data = report_data(store, cells, key)
    row = ("g", "mlp", "")
    for (loss, seed), acc in EXPECTED[key].items():
        assert data.entries[(row, loss)].acc[seed] == pytest.approx(acc)
    assert data.select.key == key
    md = render(data, "markdown")
    assert f"selection: {RULES[key].name}" in md.splitlines()[0]
    # the side-by-side table has every rule the grid supports
    assert "### Test accuracy under every selection rule" in md
    assert "| last " in md and "| val " in md and "| oracle " in md
    assert "oracle: selects on the test set" in md
    csv = pd.read_csv(io.StringIO(render(data, "csv")))
    assert list(csv["select"].drop_duplicates()) == [key] + [k for k in ("last", "val", "oracle") if k != key]
    for k in ("last", "val", "oracle"):
        mil = csv[(csv["select"] == k) & (csv["loss"] == "milLoss")].iloc[0]
        vals = [EXPECTED[k][("milLoss", s)] for s in (0, 1)]
        assert mil["acc_mean"] == pytest.approx(sum(vals) / 2, abs=1e-6)
        cel = [EXPECTED[k][("celLoss", s)] for s in (0, 1)]
        assert mil["diff_vs_baseline"] == pytest.approx((vals[0] - cel[0] + vals[1] - cel[1]) / 2, abs=1e-6)


def test_val_epoch_ignores_missing_validation_and_prefers_the_earliest_tie():
    rule = RULES["val"]
    assert rule.epoch([{"val_acc": 0.3}, {"val_acc": 0.9}, {"val_acc": 0.9}]) == 1
    assert rule.epoch([{"val_acc": float("nan")}, {"val_acc": 0.2}]) == 1


@pytest.mark.parametrize("key", ["val", "tuned"])
def test_a_rule_needing_a_validation_split_on_a_grid_without_one_is_an_error(tmp_path, key):
    cells = expand_grid(parse_registry(registry(0.0)), "g1", validate=False)
    store = write_store(tmp_path, cells, {k: [(None, t) for _, t in v] for k, v in HISTORIES.items()})
    # tuned needs a search first (the grid has none): that is what its error names
    missing = "validation split" if key == "val" else "search: block"
    with pytest.raises(BenchError, match=f"--select {key}: grid 'g1' has no {missing}"):
        report_data(store, cells, key)
    data = report_data(store, cells, "oracle")  # last and oracle need none
    assert data.entries[(("g", "mlp", ""), "celLoss")].acc == pytest.approx({0: 0.75, 1: 0.72})
    assert [d.select.key for d in data.others] == ["last"]


def test_select_val_without_a_split_is_one_error_line_in_the_cli(tmp_path, cli):
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(registry(0.0)))
    cells = expand_grid(parse_registry(registry(0.0)), "g1", validate=False)
    write_store(tmp_path / "res", cells, {k: [(None, t) for _, t in v] for k, v in HISTORIES.items()})
    r = cli("report", "--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--select", "val")
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "no validation split" in r.output
    r = cli("report", "--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--select", "best")
    assert r.exit_code == 2 and "expected one of last, val, oracle, tuned" in r.output
    r = cli("report", "--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--select", "oracle")
    assert r.exit_code == 0 and "selection: best test epoch (oracle" in r.output
