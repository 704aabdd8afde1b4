"""Registry validation and grid expansion: cell identity, Cartesian products, overrides, filters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from bench.config.cells import cell_identity, expand_grid, loss_label, parse_filters, parse_set
from bench.errors import BenchError
from bench.config.registry import load_registry, parse_registry
from tests.conftest import gauss_registry

REPO = Path(__file__).resolve().parents[1]


def base_registry() -> dict:
    return gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": "all", "seeds": [0, 1],
                              "train": {"epochs": 2, "batch_size": 64}})


def test_shipped_registry_loads_and_counts():
    reg = load_registry(REPO / "registry.yaml")
    assert set(reg.grids) >= {"quick", "mnist", "fashion-mnist", "cifar10", "lambda-sweep", "batch-sweep"}
    assert len(expand_grid(reg, "quick")) == 15
    assert len(expand_grid(reg, "fashion-mnist")) == 30
    assert len(expand_grid(reg, "cifar10")) == 75
    cells = expand_grid(reg, "cifar10")
    assert {c.config["train"]["batch_size"] for c in cells} == {256}
    assert {c.config["train"]["epochs"] for c in cells} == {100}
    lam = expand_grid(reg, "lambda-sweep")
    assert {c.loss for c in lam} >= {"celLoss", "milLoss(lam=1)", "milLoss(lam=50)"}
    bs = expand_grid(reg, "batch-sweep")
    assert {c.variant for c in bs} >= {"batch_size=64", "batch_size=512"}


def test_identity_stable_under_key_and_list_order():
    reg1 = parse_registry(base_registry())
    data = base_registry()
    data["grids"]["g1"]["seeds"] = [1, 0]
    data["grids"]["g1"]["train"] = {"batch_size": 64, "epochs": 2}
    data["losses"] = dict(reversed(list(data["losses"].items())))
    reg2 = parse_registry(data)
    ids1 = {c.cell_id for c in expand_grid(reg1, "g1")}
    ids2 = {c.cell_id for c in expand_grid(reg2, "g1")}
    assert ids1 == ids2 and len(ids1) == 4


@pytest.mark.parametrize("change", [
    ("train", "epochs", 3), ("train", "lr", 0.01), ("train", "batch_size", 32), ("train", "momentum", 0.5),
    ("train", "weight_decay", 1e-4), ("train", "precision", "fp32"),
])
def test_identity_changes_with_any_setting(change):
    base = expand_grid(parse_registry(base_registry()), "g1")
    data = base_registry()
    data["grids"]["g1"]["train"][change[1]] = change[2]
    # the identity is the declared config: an explicit fp32 is another cell than 'auto', even where
    # auto resolves to fp32 (the resolved precision is provenance, stored with the result)
    assert not ({c.cell_id for c in expand_grid(parse_registry(data), "g1")} & {c.cell_id for c in base})


def test_identity_changes_with_loss_params_and_data_params():
    base = {c.cell_id for c in expand_grid(parse_registry(base_registry()), "g1")}
    data = base_registry()
    data["losses"]["milLoss"]["params"]["lam"] = 10.0
    changed = {c.cell_id for c in expand_grid(parse_registry(data), "g1")}
    assert len(base & changed) == 2  # celLoss cells unchanged, milLoss cells new
    data = base_registry()
    data["datasets"]["g"]["params"]["d"] = 3
    assert not (base & {c.cell_id for c in expand_grid(parse_registry(data), "g1")})


def test_same_cell_from_two_grids_has_one_identity():
    data = base_registry()
    data["grids"]["g2"] = {"datasets": ["g"], "architectures": ["mlp"], "losses": ["milLoss"], "seeds": [1],
                           "train": {"batch_size": 64, "epochs": 2}}
    reg = parse_registry(data)
    g1 = {c.cell_id for c in expand_grid(reg, "g1")}
    g2 = {c.cell_id for c in expand_grid(reg, "g2")}
    assert g2 <= g1


def test_identity_is_a_hash_of_canonical_config():
    a = {"x": 1.0, "y": [1, 2], "z": {"b": 1, "a": 2}}
    b = {"z": {"a": 2, "b": 1}, "y": [1, 2], "x": 1}
    assert cell_identity(a) == cell_identity(b)
    assert cell_identity(a) != cell_identity({**a, "x": 1.5})


def test_loss_overrides_sweep_as_product():
    data = base_registry()
    data["grids"]["g1"]["losses"] = ["celLoss", {"milLoss": {"lam": [1, 10, 50]}}]
    cells = expand_grid(parse_registry(data), "g1")
    assert [c.loss for c in cells if c.seed == 0] == ["celLoss", "milLoss(lam=1)", "milLoss(lam=10)", "milLoss(lam=50)"]
    assert {c.config["loss"]["params"]["lam"] for c in cells if c.loss_name == "milLoss"} == {1, 10, 50}
    assert loss_label("milLoss", {"lam": 0.5}) == "milLoss(lam=0.5)"


def test_train_lists_sweep():
    data = base_registry()
    data["grids"]["g1"]["train"]["batch_size"] = [32, 64]
    cells = expand_grid(parse_registry(data), "g1")
    assert len(cells) == 8
    assert {c.variant for c in cells} == {"batch_size=32", "batch_size=64"}


def test_set_overrides_and_filters():
    reg = parse_registry(base_registry())
    cells = expand_grid(reg, "g1", overrides=parse_set(["train.epochs=5"]),
                        filters=parse_filters(["loss=milLoss", "seed=1"]))
    assert len(cells) == 1 and cells[0].config["train"]["epochs"] == 5 and cells[0].seed == 1


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["grids"]["g1"].update(datasets=["gaus"]), "grids.g1.datasets[0]: unknown dataset 'gaus' (valid: 'fm', 'g')"),
    (lambda d: d["grids"]["g1"].update(architectures=["mpl"]), "unknown architecture 'mpl' (closest: 'mlp')"),
    (lambda d: d["grids"]["g1"].update(losses=["milLos"]), "unknown loss 'milLos' (closest: 'milLoss'"),
    (lambda d: d["grids"]["g1"]["train"].update(lr=-1), "grids.g1.train.lr"),
    (lambda d: d["grids"]["g1"]["train"].update(batch_size=0), "grids.g1.train.batch_size"),
    (lambda d: d["grids"]["g1"]["train"].update(epohcs=3), "unknown training setting 'epohcs' (closest: 'epochs'"),
    (lambda d: d["grids"]["g1"].update(seeds=[]), "grids.g1.seeds"),
    (lambda d: d["datasets"]["g"].update(kind="imagenet"), "datasets.g.kind"),
    (lambda d: d["architectures"]["mlp"].update(sorce="native"), "unknown key 'sorce' (closest: 'source')"),
    (lambda d: d["losses"]["celLoss"].update(target="no colon"), "losses.celLoss.target"),
    (lambda d: d.pop("grids"), "grids: required key is missing"),
])
def test_bad_registry_is_one_line(mutate, needle):
    data = base_registry()
    mutate(data)
    with pytest.raises(BenchError) as exc:
        parse_registry(data, source="reg.yaml")
    msg = str(exc.value)
    assert needle in msg, msg
    assert msg.startswith("reg.yaml: ") and "\n" not in msg


def test_duplicate_key_and_malformed_yaml(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("datasets:\n  a: {kind: gauss}\n  a: {kind: mnist}\n")
    with pytest.raises(BenchError, match=r"r.yaml: line 3: duplicate key 'a'"):
        load_registry(p)
    p.write_text("datasets: [unclosed\n")
    with pytest.raises(BenchError, match="malformed YAML"):
        load_registry(p)
    p.write_text(yaml.safe_dump(base_registry()) + "\n!!python/object:os.system {}\n")
    with pytest.raises(BenchError):
        load_registry(p)


@pytest.mark.parametrize("target, params, needle", [
    ("losses.nope:X", {}, "cannot import module 'losses.nope'"),
    ("losses.cross_entropy:CelLos", {}, "has no 'CelLos' (closest: 'CelLoss'"),
    ("math:pi", {}, "is not a torch.nn.Module class"),
    ("losses.mutual_information:MilLoss", {"lam": -1.0}, "lam"),
    ("losses.cross_entropy:CelLossLSR", {"epsilon": 1.5}, "epsilon"),
    ("losses.cross_entropy:CelLossLSR", {"epsilonn": 0.1}, "unknown parameter 'epsilonn' (closest: 'epsilon')"),
])
def test_bad_loss_entries(target, params, needle):
    data = base_registry()
    data["losses"]["bad"] = {"target": target, "params": params}
    reg = parse_registry(data)
    with pytest.raises(BenchError) as exc:
        expand_grid(reg, "g1")
    assert needle in str(exc.value), str(exc.value)


def test_bad_set_and_filter():
    with pytest.raises(BenchError, match="closest: 'train.epochs'"):
        parse_set(["train.epoch=2"])
    with pytest.raises(BenchError, match="train.lr"):
        parse_set(["train.lr=-1"])
    with pytest.raises(BenchError, match="expected key=value"):
        parse_filters(["seed"])
    with pytest.raises(BenchError, match="closest: 'seed'"):
        parse_filters(["sed=1"])
    reg = parse_registry(base_registry())
    with pytest.raises(BenchError, match="matches no cell"):
        expand_grid(reg, "g1", filters=parse_filters(["loss=foo"]))


def test_unknown_grid_and_cuda_precision_on_cpu():
    from bench.plan.planner import check_device, make_plan

    reg = parse_registry(base_registry())
    with pytest.raises(BenchError, match="unknown grid 'g2' \\(closest: 'g1'\\)"):
        expand_grid(reg, "g2")
    plan = make_plan(reg, "g1", overrides={"precision": "bf16"})
    check_device(plan, "cuda")
    with pytest.raises(BenchError, match="needs a CUDA device"):
        check_device(plan, "cpu")


SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _registered_pairs():
    reg = load_registry(REPO / "registry.yaml")
    pairs = set()
    for grid in reg.grids.values():
        for ds in grid.datasets + ([grid.fallback_dataset] if grid.fallback_dataset else []):
            for arch in grid.architectures:
                pairs.add((ds, arch))
    return reg, sorted(pairs)


@pytest.mark.parametrize("pair", _registered_pairs()[1], ids=lambda p: f"{p[0]}-{p[1]}")
def test_every_registered_architecture_builds_for_its_datasets(pair):
    from bench.data import gauss_params
    from bench.models.zoo import build_model

    reg, _ = _registered_pairs()
    ds, arch_name = reg.datasets[pair[0]], reg.architectures[pair[1]]
    shape = SHAPES.get(ds.kind) or (1, 1, gauss_params(ds.params)["d"])
    classes = 2 if ds.kind == "gauss" else 10
    torch.manual_seed(0)
    model = build_model(arch_name.source, arch_name.name, shape, classes, dict(arch_name.params))
    model.train()
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    out.float().logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_one_identity_function_and_data_paths_outside_it(tmp_path):
    """The expansion's identities equal ``cell_identity`` of each config, and a project folder moved elsewhere
    keeps every cell's id: the registry's folder locates a user's data files, it is not part of what a cell is."""
    import shutil

    import numpy as np
    import yaml

    from bench.config.cells import ROOT, cell_identity, expand_grid
    from bench.config.registry import load_registry

    def project(folder):
        folder.mkdir()
        rng = np.random.default_rng(0)
        np.savez(folder / "arrays.npz", x_train=rng.integers(0, 255, (8, 4, 4), dtype=np.uint8),
                 y_train=np.arange(8) % 2, x_test=rng.integers(0, 255, (4, 4, 4), dtype=np.uint8),
                 y_test=np.arange(4) % 2)
        (folder / "registry.yaml").write_text(yaml.safe_dump({
            "datasets": {"mine": {"kind": "npz", "params": {"path": "arrays.npz"}}},
            "architectures": {"mlp": {"source": "native", "name": "mlp"}},
            "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"}},
            "grids": {"g": {"datasets": ["mine"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0, 1],
                            "train": {"epochs": 1}}}}))
        return expand_grid(load_registry(folder / "registry.yaml"), "g", validate=False)

    here = project(tmp_path / "here")
    assert all(c.cell_id == cell_identity(c.config) for c in here)
    assert all(c.config[ROOT] == str((tmp_path / "here").resolve()) for c in here)
    assert all(c.config["dataset"]["params"]["path"] == str((tmp_path / "here" / "arrays.npz").resolve()) for c in here)
    shutil.rmtree(tmp_path / "here")
    there = project(tmp_path / "elsewhere")
    assert [c.cell_id for c in there] == [c.cell_id for c in here]


def test_identities_of_many_values_are_identity_of_each():
    from bench.config.cells import canonical_json, identities, identity_of

    parts = {"dataset": canonical_json({"kind": "gauss"}), "loss": canonical_json({"a": [1, 2.5]}),
             "train": canonical_json({"lr": 0.1})}
    values = [canonical_json(v) for v in (0, 1, 17, -3, "s")]
    for key in ("aaa", "search", "seed", "zzz"):  # before, between and after the other parts
        assert identities(parts, key, values) == [identity_of({**parts, key: v}) for v in values]
    assert identities(parts, "seed", []) == []


def test_a_search_grid_under_a_regime_expands_to_the_one_identity():
    data = base_registry()
    data["grids"]["g1"].update(seeds=[0, 1, 2], search={"trials": 3, "seed": 0, "space": {"train.lr": "loguniform(1e-4, 1e-1)"}},
                               regime=[{"noise": "symmetric", "noise_rate": [0.2, 0.4]}])
    cells = expand_grid(parse_registry(data), "g1", validate=False)
    assert len({c.trial for c in cells}) == 3 and len({c.variant for c in cells}) == 2
    assert all(c.cell_id == cell_identity(c.config) for c in cells)
