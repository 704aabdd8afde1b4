"""Suites: a registry ``suites:`` block trains as one grid of tasks under one search; ``--losses`` adds a loss
with the same budget; each loss's own ``search:`` range; every malformed suite is one error line."""

from __future__ import annotations

import copy

import pytest
import yaml

from bench.config.cells import expand_grid, parse_losses
from bench.config.registry import load_registry, parse_registry
from bench.errors import BenchError
from tests.conftest import bench_inprocess, bench_subprocess, gauss_registry


def suite_registry(**suite_changes) -> dict:
    reg = gauss_registry()
    reg["losses"]["milLoss"]["search"] = {"lam": "loguniform(0.5, 500)"}
    reg["losses"]["lsr"] = {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1},
                            "search": {"epsilon": "uniform(0.0, 0.3)"}}
    suite = {"datasets": ["g"], "architectures": ["mlp"],
             "regimes": {"clean": {}, "sym-20": {"noise": "symmetric", "noise_rate": 0.2}},
             "losses": ["celLoss", "milLoss"], "seeds": [0, 1],
             "train": {"epochs": 2, "batch_size": 256, "val_fraction": 0.1},
             "search": {"trials": 3, "seed": 0, "space": {"train.lr": "loguniform(1e-3, 1e-1)"}}}
    suite.update(suite_changes)
    reg["suites"] = {"s": suite}
    return reg


def test_a_suite_expands_to_every_task_loss_trial_and_seed():
    reg = parse_registry(suite_registry())
    cells = expand_grid(reg, "s", validate=False)
    assert len(cells) == 1 * 1 * 2 * 2 * 3 * 2  # datasets x architectures x regimes x losses x trials x seeds
    assert {c.trial for c in cells} == {0, 1, 2}
    # a loss's own search range joins the suite's space: milLoss draws lam, celLoss only the lr
    mil = [c for c in cells if c.loss == "milLoss" and c.trial == 1][0]
    cel = [c for c in cells if c.loss == "celLoss" and c.trial == 1][0]
    assert set(mil.config["search"]["values"]) == {"milLoss.lam", "train.lr"}
    assert set(cel.config["search"]["values"]) == {"train.lr"}
    assert 0.5 <= mil.config["loss"]["params"]["lam"] <= 500
    # trial 0 is the protocol: the registry's defaults
    assert [c for c in cells if c.loss == "milLoss" and c.trial == 0][0].config["loss"]["params"]["lam"] == 50.0
    assert reg.suites["s"].baseline == "celLoss"


def test_the_grid_space_wins_over_a_loss_own_range():
    raw = suite_registry()
    raw["suites"]["s"]["search"]["space"]["milLoss.lam"] = "uniform(1, 2)"
    cells = expand_grid(parse_registry(raw), "s", validate=False)
    lams = [c.config["loss"]["params"]["lam"] for c in cells if c.loss == "milLoss" and c.trial]
    assert lams and all(1 <= v <= 2 for v in lams)


def test_added_losses_keep_every_other_cell_and_get_the_same_budget():
    reg = parse_registry(suite_registry())
    before = expand_grid(reg, "s", validate=False)
    after = expand_grid(reg, "s", parse_losses(["lsr"]), validate=False)
    assert {c.cell_id for c in before} < {c.cell_id for c in after}
    added = [c for c in after if c.loss == "lsr"]
    assert len(added) == len(before) // 2  # one more loss: as many cells as each of the others
    assert {c.trial for c in added} == {0, 1, 2}
    assert all(0.0 <= c.config["loss"]["params"]["epsilon"] <= 0.3 for c in added)
    # a loss the suite already has adds nothing
    assert [c.cell_id for c in expand_grid(reg, "s", parse_losses(["milLoss"]), validate=False)] == \
        [c.cell_id for c in before]


def test_an_unknown_added_loss_is_one_line():
    reg = parse_registry(suite_registry())
    with pytest.raises(BenchError, match=r"--losses milLos: unknown loss \(closest: 'milLoss'"):
        expand_grid(reg, "s", parse_losses(["milLos"]), validate=False)
    with pytest.raises(BenchError, match="expected loss names"):
        parse_losses([","])


@pytest.mark.parametrize("change, message", [
    ({"search": None}, r"suites\.s: a suite needs a search: block"),
    ({"train": {"epochs": 2}}, r"suites\.s: a suite needs a validation split"),
    ({"losses": ["celLoss", "nope"]}, r"suites\.s\.losses: unknown loss 'nope'"),
    ({"regimes": {"bad": {"noise_rat": 0.2}}}, r"suites\.s\.regimes\.bad\.noise_rat: unknown regime setting"),
    ({"regimes": {"bad": {"noise": "symmetric", "noise_rate": 2.0}}}, r"suites\.s\.regimes\.bad\.noise_rate"),
    ({"baseline": "lsr"}, r"suites\.s\.baseline: 'lsr' is not a loss of the grid"),
    ({"datasets": ["nowhere"]}, r"suites\.s\.datasets\[0\]: unknown dataset 'nowhere'"),
])
def test_a_malformed_suite_is_one_error_line(change, message):
    raw = suite_registry(**change)
    if change.get("search", 1) is None:
        del raw["suites"]["s"]["search"]
    with pytest.raises(BenchError, match=message) as info:
        parse_registry(raw)
    assert "\n" not in str(info.value)


def test_a_suite_and_a_grid_need_different_names():
    raw = suite_registry()
    raw["grids"] = {"s": copy.deepcopy(gauss_registry(x={"datasets": ["g"], "architectures": ["mlp"],
                                                         "seeds": [0]})["grids"]["x"])}
    with pytest.raises(BenchError, match="a suite and a grid need different names"):
        parse_registry(raw)


def test_a_loss_search_range_needs_a_default_and_a_distribution():
    raw = suite_registry()
    raw["losses"]["milLoss"]["search"] = {"lambda": "uniform(1, 2)"}
    with pytest.raises(BenchError, match=r"losses\.milLoss: search\.lambda: not a parameter of the loss"):
        parse_registry(raw)
    raw["losses"]["milLoss"]["search"] = {"lam": "gaussian(1, 2)"}
    with pytest.raises(BenchError, match="unknown distribution 'gaussian'"):
        parse_registry(raw)


def test_the_shipped_suites_cover_every_loss_and_the_paper_settings():
    reg = load_registry("registry.yaml")
    fm = reg.suites["fashion-mnist-suite"]
    assert fm.loss_names(reg.loss_names()) == reg.loss_names()
    assert set(fm.regimes) == {"clean", "sym-40", "asym-40", "lt-100"}
    space = reg.search_space("fashion-mnist-suite")
    # the ranges cover both the CIFAR-10 defaults and the MNIST-like settings of the reference configs
    for key, values in {"sce.alpha": (0.01, 0.1, 6.0), "sce.beta": (0.1, 1.0), "nce_rce.beta": (0.1, 1.0, 10.0),
                        "focal.gamma": (0.5, 2.0, 3.0), "gce.q": (0.7,)}.items():
        lo, hi = space[key].args
        assert all(lo <= v <= hi for v in values), key
    # a loss without parameters is tuned on the lr alone, with the same number of trials
    assert "mae" in fm.loss_names(reg.loss_names()) and not any(k.startswith("mae.") for k in space)


def test_cli_suite_flags(tmp_path):
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(suite_registry()))
    # the refusals through the app in this process; the dry run below as the console script
    r = bench_inprocess("run", "--suite", "t", "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: unknown suite 't'") and "the registry's suites: s" in r.stderr
    r = bench_inprocess("run", "--suite", "s", "--grid", "x", "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and "give one of them" in r.stderr
    r = bench_subprocess("run", "--suite", "s", "--losses", "lsr", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "36 cells" in r.stdout and "lsr" in r.stdout
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
