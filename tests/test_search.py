"""The search: distributions, reproducible and independent draws, equal budget, tuned selection by hand, resume."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.config.cells import expand_grid
from bench.errors import BenchError
from bench.config.registry import parse_registry
from bench.report.render import render
from bench.config.search import draw_trial, parse_distribution
from bench.store.results import Store
from tests.conftest import gauss_registry
from tests.test_selection import report_data

SPACE = {"train.lr": "loguniform(1e-4, 1e-1)", "milLoss.lam": "loguniform(0.5, 500)"}


def registry(trials: int = 3, losses=("celLoss", "milLoss"), space=None, **search) -> dict:
    return gauss_registry(s={"datasets": ["g"], "architectures": ["mlp"], "losses": list(losses), "seeds": [0, 1],
                             "train": {"epochs": 2, "val_fraction": 0.1, "batch_size": 128},
                             "search": {"trials": trials, "seed": 0, "space": space or SPACE, **search}})


def cells_of(data: dict):
    return expand_grid(parse_registry(data), "s", validate=False)


def test_the_documented_example_parses_inside_a_grid():
    data = registry(space={"train.lr": "loguniform(1e-4, 1e-1)", "celLossLSR.epsilon": "uniform(0.0, 0.3)",
                           "milLoss.lam": "loguniform(0.5, 500)"}, losses=("celLoss", "celLossLSR", "milLoss"))
    data["losses"]["celLossLSR"] = {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1}}
    data["grids"]["s"]["search"]["trials"] = 8
    cells = cells_of(data)
    assert len(cells) == 3 * 8 * 2
    lsr = [c for c in cells if c.loss == "celLossLSR" and c.seed == 0]
    assert [c.trial for c in lsr] == list(range(8))
    assert lsr[0].config["loss"]["params"]["epsilon"] == 0.1  # trial 0: the registry default
    eps = [c.config["loss"]["params"]["epsilon"] for c in lsr[1:]]
    assert all(0.0 <= e < 0.3 for e in eps) and len(set(eps)) == 7
    assert "lam" not in lsr[3].config["search"]["values"] and "milLoss.lam" not in lsr[3].config["search"]["values"]


def test_distributions_draw_inside_their_bounds():
    rng = np.random.default_rng(0)
    log = [parse_distribution("loguniform(1e-4, 1e-1)").draw(rng) for _ in range(200)]
    assert all(1e-4 <= v <= 1e-1 for v in log) and np.median(np.log10(log)) == pytest.approx(-2.5, abs=0.3)
    ints = {parse_distribution("int(1, 3)").draw(rng) for _ in range(100)}
    assert ints == {1, 2, 3}
    assert {parse_distribution("choice(64, 128)").draw(rng) for _ in range(50)} == {64, 128}
    assert parse_distribution("loguniform(1e-4, 1e-1)").log and not parse_distribution("uniform(0, 1)").log


def test_draws_are_reproducible_and_depend_only_on_seed_loss_and_trial():
    space = parse_registry(registry()).grids["s"].search.distributions()
    a = draw_trial(0, "milLoss", 2, space)
    assert a == draw_trial(0, "milLoss", 2, space) and set(a) == {"train.lr", "milLoss.lam"}
    assert a != draw_trial(1, "milLoss", 2, space) and a != draw_trial(0, "milLoss", 3, space)
    assert draw_trial(0, "milLoss", 0, space) == {}  # trial 0: the defaults
    base = {(c.loss, c.trial, c.seed): c.cell_id for c in cells_of(registry(3))}
    # more trials and another loss leave every existing cell (its draws, its identity) as it was
    data = registry(5, losses=("celLoss", "milLoss", "celLossLSR"))
    data["losses"]["celLossLSR"] = {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1}}
    more = {(c.loss, c.trial, c.seed): c.cell_id for c in cells_of(data)}
    assert all(more[k] == v for k, v in base.items())
    assert len(more) == 3 * 5 * 2


def test_every_loss_gets_the_same_number_of_trials():
    cells = cells_of(registry(4))
    per_loss = {loss: {c.trial for c in cells if c.loss == loss} for loss in ("celLoss", "milLoss")}
    assert per_loss == {"celLoss": {0, 1, 2, 3}, "milLoss": {0, 1, 2, 3}}
    data = registry()
    data["grids"]["s"]["search"]["trials"] = {"celLoss": 2, "milLoss": 8}  # a per-loss budget is refused
    with pytest.raises(BenchError, match=r"grids\.s\.search\.trials"):
        parse_registry(data)


@pytest.mark.parametrize("change, message", [
    ({"space": {"train.lrr": "uniform(0.1, 0.2)"}}, r"search\.space\.train\.lrr: not a training setting.*train\.lr"),
    ({"space": {"milLoss.lamb": "uniform(0.1, 0.2)"}}, r"not a training setting nor a parameter.*milLoss\.lam"),
    ({"space": {"train.lr": "uniform(0.2, 0.1)"}}, r"low must be below high"),
    ({"space": {"train.lr": "uniform(0.1, 0.1)"}}, r"low must be below high"),
    ({"space": {"train.lr": "loguniform(0, 0.1)"}}, r"loguniform needs positive bounds"),
    ({"space": {"train.lr": "gaussian(0, 0.1)"}}, r"unknown distribution 'gaussian'"),
    ({"space": {"train.batch_size": "int(5, 1)"}}, r"low <= high"),
    ({"trials": 0}, r"search\.trials: .*greater than or equal to 1"),
])
def test_bad_search_blocks_are_one_error_line(change, message):
    data = registry()
    data["grids"]["s"]["search"].update(change)
    with pytest.raises(BenchError, match=message) as info:
        parse_registry(data)
    assert "\n" not in str(info.value)


def test_a_drawn_setting_training_refuses_is_an_error():
    with pytest.raises(BenchError, match=r"search trial 1 of celLoss: train\.momentum=.*narrow the distribution"):
        cells_of(registry(space={"train.momentum": "uniform(1.0, 2.0)"}))


def test_tuned_selection_by_hand(tmp_path):
    cells = cells_of(registry(2))
    # (loss, trial, seed) -> [(val, test)] per epoch; a cell's score is its best val accuracy
    hist = {
        ("celLoss", 0, 0): [(0.70, 0.71), (0.72, 0.73)], ("celLoss", 0, 1): [(0.74, 0.70), (0.60, 0.75)],
        ("celLoss", 1, 0): [(0.80, 0.79), (0.78, 0.81)], ("celLoss", 1, 1): [(0.70, 0.72), (0.76, 0.74)],
        ("milLoss", 0, 0): [(0.90, 0.85), (0.80, 0.88)], ("milLoss", 0, 1): [(0.82, 0.84), (0.86, 0.83)],
        ("milLoss", 1, 0): [(0.88, 0.87), (0.89, 0.86)], ("milLoss", 1, 1): [(0.84, 0.82), (0.85, 0.89)],
    }
    # mean scores: celLoss trial 0 (0.72+0.74)/2=0.73, trial 1 (0.80+0.76)/2=0.78 -> trial 1, test 0.79 and 0.74
    #              milLoss trial 0 (0.90+0.86)/2=0.88, trial 1 (0.89+0.85)/2=0.87 -> trial 0, test 0.85 and 0.83
    store = Store(tmp_path)
    from tests.test_selection import done_row
    for c in cells:
        row, h = done_row(c, hist[(c.loss, c.trial, c.seed)])
        store.write_result(row, h)
    data = report_data(store, cells, "tuned")
    key = ("g", "mlp", "")
    assert data.trials[(*key, "celLoss")].trial == 1 and data.trials[(*key, "milLoss")].trial == 0
    assert data.trials[(*key, "celLoss")].score == pytest.approx(0.78)
    assert data.entries[(key, "celLoss")].acc == pytest.approx({0: 0.79, 1: 0.74})
    assert data.entries[(key, "milLoss")].acc == pytest.approx({0: 0.85, 1: 0.83})
    lr1 = next(c for c in cells if c.loss == "celLoss" and c.trial == 1).config["train"]["lr"]
    md = render(data, "markdown")
    assert f"trial 1: lr={lr1:.3g}" in md and "trial 0: lam=50, lr=0.001" in md
    assert "Holm–Bonferroni verdict" in md
    csv = pd.read_csv(io.StringIO(render(data, "csv")))
    tuned = csv[csv["select"] == "tuned"].set_index("loss")
    assert tuned.loc["celLoss", "trial"] == 1 and tuned.loc["celLoss", "hp.train.lr"] == pytest.approx(lr1, rel=1e-5)
    # paired by seed against the tuned baseline: (0.85-0.79 + 0.83-0.74)/2 = 0.075
    assert tuned.loc["milLoss", "diff_vs_baseline"] == pytest.approx(0.075)
    # the epoch rules show trial 0, the defaults: last epoch 0.73/0.75 for celLoss
    last = csv[csv["select"] == "last"].set_index("loss")
    assert last.loc["celLoss", "acc_mean"] == pytest.approx(0.74) and last.loc["celLoss", "trial"] == 0


def test_a_second_run_trains_only_the_missing_trials(tmp_path, cli):
    reg = tmp_path / "registry.yaml"
    data = registry(2)
    data["datasets"]["g"]["params"] = {"d": 2, "n_train": 300, "n_test": 100}
    data["grids"]["s"]["seeds"] = [0]
    reg.write_text(yaml.safe_dump(data))
    common = ["--grid", "s", "--registry", reg, "--results", tmp_path / "res"]
    r = cli("run", *common, "--plain", "--no-report", "--filter", "trial=0")
    assert r.exit_code == 0, r.output
    store = Store(tmp_path / "res")
    first = set(store.attempts()["attempt_id"])
    assert len(first) == 2
    r = cli("run", *common, "--plain", "--no-report")
    assert r.exit_code == 0, r.output
    attempts = store.attempts()
    assert len(attempts) == 4 and first <= set(attempts["attempt_id"])  # trial 0 was not trained again
    rows = store.cells()
    assert sorted(rows["trial"].tolist()) == [0, 0, 1, 1] and rows["hp.train.lr"].notna().all()
    r = cli("report", *common, "--select", "tuned")
    assert r.exit_code == 0 and "selection: tuned" in r.output and "[trial " in r.output, r.output


def test_a_loss_parameter_both_swept_and_searched_is_refused(tmp_path):
    """A swept (or fixed) loss parameter that the search also draws would be overwritten by the draws, and the
    variants' trials would collapse into one: one error line, nothing planned."""
    import yaml

    from bench.config.cells import expand_grid
    from bench.config.registry import load_registry
    from bench.errors import BenchError

    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump({
        "datasets": {"g": {"kind": "gauss", "params": {"d": 2}}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}},
        "losses": {"milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 50.0}}},
        "grids": {"s": {"datasets": ["g"], "architectures": ["mlp"], "losses": [{"milLoss": {"lam": [1, 10]}}],
                        "seeds": [0], "train": {"epochs": 1, "val_fraction": 0.1},
                        "search": {"trials": 2, "seed": 0, "space": {"milLoss.lam": "loguniform(0.5, 50)"}}}}}))
    with pytest.raises(BenchError, match=r"milLoss\.lam is both set in the grid's losses and searched"):
        expand_grid(load_registry(reg), "s", validate=False)
