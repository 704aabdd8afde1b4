"""A report of a grid under data regimes states the convention and what each row realised; a filter names a variant or loss label that holds commas."""

from __future__ import annotations

import pytest

from bench.config.cells import expand_grid
from bench.errors import BenchError
from bench.train.cell import failed_outcome
from bench.config.registry import parse_registry
from bench.report.collect import REPORT_COLUMNS, collect
from bench.report.content import regime_note
from bench.report.render import render
from bench.store.results import Store
from tests.conftest import gauss_registry


def _cells():
    reg = gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"],
                             "seeds": [0, 1], "train": {"epochs": 1},
                             "regime": [{"noise": "symmetric", "noise_rate": [0.2, 0.4]},
                                        {"imbalance": "exp", "imbalance_ratio": 10}]})
    return expand_grid(parse_registry(reg), "g1", validate=False)


def _store(root, cells) -> Store:
    store = Store(root)
    for i, c in enumerate(cells):
        row = failed_outcome(c, "").row
        rate = c.regime.noise_rate + (0.001 * i if c.regime.noise != "none" else 0.0)
        row.update(status="done", message="", final_test_acc=0.8, final_test_mi=0.1, test_label_entropy=0.69,
                   num_classes=2, epochs_done=1, label_noise_rate=rate, train_size=400 - i)
        store.write_result(row, [{"epoch": 1, "train_loss": 0.1, "train_acc": 0.9, "test_acc": 0.8, "test_loss": 0.5,
                                  "test_h_cond": 0.5, "test_h_marg": 0.69, "test_mi": 0.1}])
    return store


def test_each_regime_row_states_its_convention_and_realised_rate(tmp_path):
    cells = _cells()
    store = _store(tmp_path, cells)
    data = collect("g1", cells, store.cells(REPORT_COLUMNS), "celLoss")
    assert len(data.regimes) == 3
    rates = {row[2]: facts[1] for row, facts in data.regimes.items()}
    sym40 = next(v for k, v in rates.items() if "noise_rate=0.4" in k)
    assert len(sym40) == 4 and all(0.4 <= r < 0.41 for r in sym40)
    note = regime_note(data)
    assert "symmetric label noise η = 0.4 (exactly ⌊ηN⌋ labels" in note
    assert f"realised training noise rate {min(sym40):.3f}–{max(sym40):.3f}" in note
    assert "long-tailed training split, profile exp, ratio 10" in note
    assert "the test labels are clean" in note
    md = render(data, "markdown")
    assert note in md
    tex = render(data, "latex")
    assert r"$\eta$ = 0.4" in tex and r"$\lfloor$" in tex and "η" not in tex


def test_a_grid_without_a_regime_has_no_note(tmp_path):
    reg = gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                             "train": {"epochs": 1}})
    cells = expand_grid(parse_registry(reg), "g1", validate=False)
    data = collect("g1", cells, _store(tmp_path, cells).cells(REPORT_COLUMNS), "celLoss")
    assert data.regimes == {} and regime_note(data) == "" and "Data regimes" not in render(data, "markdown")


def test_a_filter_selects_a_variant_or_loss_label_that_holds_commas():
    cells = _cells()
    from bench.config.cells import parse_filters

    reg = gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"],
                             "seeds": [0, 1], "train": {"epochs": 1},
                             "regime": [{"noise": "symmetric", "noise_rate": [0.2, 0.4]},
                                        {"imbalance": "exp", "imbalance_ratio": 10}]})
    variants = sorted({c.variant for c in cells})
    sym = next(v for v in variants if "noise_rate=0.4" in v)
    assert "," in sym
    picked = expand_grid(parse_registry(reg), "g1", validate=False, filters=parse_filters([f"variant={sym}"]))
    assert {c.variant for c in picked} == {sym} and len(picked) == 4
    two = expand_grid(parse_registry(reg), "g1", validate=False,
                      filters=parse_filters([f"variant={sym},{variants[0]}", "seed=0,1"]))
    assert {c.variant for c in two} == {sym, variants[0]} and {c.seed for c in two} == {0, 1}
    reg["grids"]["g1"]["losses"] = [{"milLoss": {"lam": [5, 10], "tau": 2}}]  # labels with two overrides
    labels = {c.loss for c in expand_grid(parse_registry(reg), "g1", validate=False)}
    assert labels == {"milLoss(lam=5,tau=2)", "milLoss(lam=10,tau=2)"}
    picked = expand_grid(parse_registry(reg), "g1", validate=False, filters=parse_filters(["loss=milLoss(lam=10,tau=2)"]))
    assert {c.loss for c in picked} == {"milLoss(lam=10,tau=2)"}
    with pytest.raises(BenchError, match="matches no cell"):
        expand_grid(parse_registry(reg), "g1", validate=False, filters=parse_filters(["loss=milLoss(lam=7,tau=2)"]))
