"""Plan a run: registry + grid + overrides + filters + dataset substitutions -> the cells, checked.

``make_plan`` is a pure function of its inputs: it reads no data and trains nothing. Whether a
dataset is available (and so whether a grid's ``fallback_dataset`` stands in for it) is decided
by the caller, which passes the substitutions in (``fallbacks`` computes them from a probe). With
``validate`` the plan checks every component it references before anything runs: each loss is
built and probed once (bench.plan.preflight), each architecture is built for its dataset's input shape
on the meta device (no memory, no init cost) so a misspelt parameter fails here and not in every
cell, and each dataset's parameters are validated without reading the data (first, since the
loss checks run at the datasets' class counts).

:func:`plan_run` is the whole order of checks ``bench run`` makes (those that need no data first,
then the fallbacks and the checks that read it through a :class:`DataProbe`); :func:`plan_read`
rebuilds the cells ``bench status`` and ``bench report`` show.

A :class:`Plan` serialises to the run record that ``bench run`` stores, so ``bench status`` and
``bench report`` can rebuild the same cells without repeating the run's flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config.cells import Cell, expand_grid, set_flag
from bench.errors import BenchError
from bench.config.registry import DatasetSpec, Registry


@dataclass(frozen=True)
class Plan:
    grid: str
    cells: list[Cell]
    overrides: dict[str, Any] = field(default_factory=dict)  # parsed --set (bench.config.cells.parse_set's keys)
    filters: dict[str, list[str]] = field(default_factory=dict)
    substitutions: dict[str, str] = field(default_factory=dict)  # dataset -> the fallback dataset used instead

    @property
    def cell_ids(self) -> list[str]:
        return [c.cell_id for c in self.cells]

    def record(self) -> dict[str, Any]:
        """What ``bench run`` stores about this plan (JSON-serialisable)."""
        return {"grid": self.grid, "overrides": dict(self.overrides), "filters": {k: list(v) for k, v in self.filters.items()},
                "substitutions": dict(self.substitutions), "cell_ids": self.cell_ids}

    def settings_flags(self) -> str:
        """The ``--set``/``--filter`` flags that reproduce this plan, for hints ("" when none)."""
        flags = [set_flag(k, v) for k, v in sorted(self.overrides.items())]
        flags += [f"--filter {k}={','.join(v)}" for k, v in sorted(self.filters.items())]
        return " ".join(flags)


def fallbacks(registry: Registry, grid: str, problem: Callable[[str, DatasetSpec], str | None]) -> dict[str, str]:
    """Datasets of ``grid`` to replace by its ``fallback_dataset``: those for which ``problem``
    (a probe the caller supplies: it may read data) returns why they cannot be read."""
    spec = registry.grids.get(grid)
    if spec is None or spec.fallback_dataset is None:
        return {}
    out: dict[str, str] = {}
    for name in spec.datasets:
        if problem(name, registry.datasets[name]) is not None:
            out[name] = spec.fallback_dataset
    return out


def make_plan(registry: Registry, grid: str, overrides: Mapping[str, Any] | None = None,
              filters: Mapping[str, list[str]] | None = None, substitutions: Mapping[str, str] | None = None,
              validate: bool = True) -> Plan:
    """The cells of ``grid`` under these overrides, filters and dataset substitutions.

    ``validate=False`` (status and report, which only read the store) skips the component checks
    and needs no torch import.
    """
    subs = dict(substitutions or {})
    if validate and grid in registry.grids:
        shapes = dataset_shapes(registry, grid, subs)  # first: the loss checks need the class counts
    cells = expand_grid(registry, grid, dict(overrides or {}), {k: list(v) for k, v in (filters or {}).items()},
                        subs, validate=validate)
    if validate:
        check_architectures(registry, grid, shapes)
        check_recipes(grid, cells)
        check_regimes(cells)
    return Plan(grid, cells, dict(overrides or {}), {k: list(v) for k, v in (filters or {}).items()}, subs)


def dataset_shapes(registry: Registry, grid: str, substitutions: Mapping[str, str]) -> dict[tuple, str]:
    """(input shape, classes) -> a dataset of the grid with it; each dataset's parameters checked, no data read."""
    from bench.data import dataset_shape

    shapes: dict[tuple, str] = {}
    for name in registry.grids[grid].datasets:
        actual = substitutions.get(name, name)
        ds = registry.datasets[actual]
        try:
            shapes.setdefault(dataset_shape(ds.kind, ds.params), actual)
        except BenchError as exc:
            raise BenchError(f"{registry.source}: datasets.{actual}: {exc}") from None
    return shapes


def check_architectures(registry: Registry, grid: str, shapes: Mapping[tuple, str]) -> None:
    """Build each architecture of the grid for each input shape on the meta device, and check its logits' shape."""
    from bench.plan.architectures import check_architecture

    for arch_name in registry.grids[grid].architectures:
        arch = registry.architectures[arch_name]
        for (in_shape, classes), ds_name in shapes.items():
            check_architecture(f"{registry.source}: architectures.{arch_name}", arch, in_shape, classes, ds_name,
                               registry.import_paths())


def check_recipes(grid: str, cells: list[Cell]) -> None:
    """Each distinct (dataset, training settings) of the cells through bench.config.recipe: schedule parameters
    that do not apply, a warm-up as long as the run, an augmentation the dataset cannot take."""
    from bench.config.cells import canonical_json
    from bench.data import dataset_shape
    from bench.config.recipe import check_recipe

    seen: set[tuple[str, str]] = set()
    for cell in cells:
        train = cell.train.model_dump()
        key = (cell.dataset, canonical_json(train))
        if key in seen:
            continue
        seen.add(key)
        ds = cell.config["dataset"]
        try:
            check_recipe(train, ds["kind"], dataset_shape(ds["kind"], ds["params"])[0])
        except BenchError as exc:
            where = f" [{cell.variant}]" if cell.variant else ""
            raise BenchError(f"grid {grid!r}, dataset {cell.dataset!r}{where}: {exc}") from None


def check_regimes(cells: list[Cell]) -> None:
    """A regime a dataset kind cannot take, known without its data: asymmetric noise needs the kind's
    class map (bench.data.noise.ASYMMETRIC_MAPS)."""
    from bench.data.noise import asymmetric_map  # no torch: the maps are plain tables

    seen: set[str] = set()
    for cell in cells:
        kind = cell.config["dataset"]["kind"]
        if kind in seen or cell.config.get("regime", {}).get("noise") != "asymmetric":
            continue
        seen.add(kind)
        try:
            asymmetric_map(kind)
        except BenchError as exc:
            raise BenchError(f"dataset {cell.dataset!r}: {exc}") from None


def check_device(plan: Plan, device_type: str) -> None:
    """Settings the device that trains the plan cannot honour: one line before anything runs."""
    for cell in plan.cells:
        precision = cell.config["train"]["precision"]
        if precision in ("bf16", "fp16") and device_type != "cuda":
            raise BenchError(f"precision {precision!r} needs a CUDA device; use --set train.precision=fp32 "
                             f"(or auto) on {device_type}")


def check_validation(plan: Plan, train_labels: Mapping[str, tuple[Any, int]]) -> None:
    """A validation fraction a dataset's classes cannot afford: one line before anything runs.

    ``train_labels``: dataset name -> (its training labels as a numpy array, its class count),
    read by the caller's data probe; datasets missing from it are not checked here (their cells
    fail with the same message).
    """
    from bench.data.validation import holdout_counts

    seen: set[tuple[str, float]] = set()
    for cell in plan.cells:
        key = (cell.dataset, float(cell.config["train"].get("val_fraction", 0.0)))
        if key in seen or key[1] == 0.0 or cell.dataset not in train_labels:
            continue
        seen.add(key)
        labels, classes = train_labels[cell.dataset]
        try:
            holdout_counts(labels, key[1], classes)
        except BenchError as exc:
            raise BenchError(f"dataset {cell.dataset!r}: {exc}") from None


def check_regime_data(plan: Plan, train_labels: Mapping[str, tuple[Any, int]], import_paths: tuple[str, ...] = ()) -> None:
    """A regime a dataset's training labels cannot afford: one line before anything trains.

    The labels each cell will train on are computed from ``train_labels`` (as for
    :func:`check_validation`) through the functions the cell itself runs
    (:func:`bench.data.regimes.planned_training_labels`): a subset larger than the training split
    left after the validation holdout, an imbalance ratio that empties the smallest class, and a
    loss that takes the training class priors (``losses.hooks.PRIORS_HOOK``) on labels that leave a
    class with no example (its log prior would be -inf).
    """
    import torch

    from bench.data.regimes import planned_training_labels, regime_label
    from bench.config.registry import import_target
    from losses.hooks import PRIORS_HOOK

    takes_priors: dict[str, bool] = {}
    checked: dict[tuple, Any] = {}
    for cell in plan.cells:
        if cell.dataset not in train_labels:
            continue
        target = cell.config["loss"]["target"]
        if target not in takes_priors:
            takes_priors[target] = hasattr(import_target(target, import_paths), PRIORS_HOOK)
        regime = cell.regime
        if regime.is_default and not takes_priors[target]:
            continue
        train = cell.config["train"]
        fraction, split_seed = float(train.get("val_fraction", 0.0)), int(train.get("split_seed", 0))
        key = (cell.dataset, fraction, split_seed, regime)
        where = f"dataset {cell.dataset!r}" + (f", regime {regime_label(regime)}" if not regime.is_default else "")
        if key not in checked:
            labels, classes = train_labels[cell.dataset]
            try:
                y = planned_training_labels(labels, fraction, split_seed, regime, classes, cell.config["dataset"]["kind"])
            except BenchError as exc:
                raise BenchError(f"{where}: {exc}") from None
            checked[key] = torch.bincount(y, minlength=classes).tolist()
        counts = checked[key]
        if takes_priors[target] and min(counts) == 0:
            fix = "leave the loss out of this grid" if regime.is_default else (
                "use a larger subset or a smaller imbalance ratio, or leave the loss out of this grid")
            raise BenchError(f"{where}: class {counts.index(0)} has no training example, and loss {cell.loss_name!r} "
                             f"takes the training class priors (its log prior would be -inf); {fix}")


@dataclass(frozen=True)
class ReadPlan:
    """What ``status`` and ``report`` show: the plan of the grid's last run (or of the flags given),
    and notes about the store's other cells of the grid."""

    plan: Plan
    notes: list[str]
    other_runs: list[dict[str, Any]]  # records of runs of this grid under other settings


def plan_from_runs(registry: Registry, grid: str, runs: list[dict[str, Any]], overrides: Mapping[str, Any] | None,
                   filters: Mapping[str, list[str]] | None,
                   problem: Callable[[str, DatasetSpec], str | None] | None = None) -> ReadPlan:
    """Rebuild the cells a reader should show from the grid's stored run records (oldest first).

    The settings come from the last run (its ``--set`` overrides and its fallback datasets), or
    from ``overrides`` when given, under the substitutions a run with those settings used. A
    run's ``--filter`` only chose which cells to train now: readers show the whole grid under
    those settings (the untrained cells as pending) unless ``filters`` are given. Without any
    record the grid is planned as declared, its fallback decided by ``problem`` when given.
    """
    wanted = dict(overrides) if overrides else (dict(runs[-1].get("overrides", {})) if runs else {})
    same = [r for r in runs if r.get("overrides", {}) == wanted]
    subs = dict(same[-1].get("substitutions", {})) if same else (
        fallbacks(registry, grid, problem) if problem is not None else {})
    plan = make_plan(registry, grid, wanted, filters, subs, validate=False)
    notes: list[str] = []
    if same and not filters:
        recorded = {c for r in same if r.get("substitutions", {}) == subs for c in r.get("cell_ids", [])}
        gone = len(recorded - set(plan.cell_ids))
        if gone:
            notes.append(f"{gone} cells of earlier runs of grid {grid!r} with these settings are not in it any more: "
                         "the registry changed since (their results stay in the store)")
    mine = set(plan.cell_ids)
    others = [r for r in runs if not set(r.get("cell_ids", [])) <= mine]
    return ReadPlan(plan, notes, others)


class DataProbe:
    """Why a dataset cannot be read (None when it can), for the planner's fallbacks and checks;
    remembers which files each readable dataset came from, for the run to say, and its training
    labels, for the validation and regime checks."""

    def __init__(self, data_root: Path | None, cache_dir: Path | None):
        self.data_root, self.cache_dir = data_root, cache_dir
        self.sources: dict[str, str] = {}
        self.fingerprints: dict[str, str] = {}  # name -> the data's content fingerprint, for the stale check
        self.train_labels: dict[str, tuple] = {}  # name -> (training labels, classes)

    def __call__(self, name: str, ds: DatasetSpec) -> str | None:
        from bench.data import describe_source, load_splits

        try:
            splits = load_splits(ds.kind, dict(ds.params), self.data_root, False, self.cache_dir)
        except BenchError as exc:
            return str(exc)
        self.sources[name] = describe_source(splits)
        self.fingerprints[name] = splits.provenance.fingerprint if splits.provenance else ""
        self.train_labels[name] = (splits.train_y.numpy(), splits.num_classes)
        return None


@dataclass(frozen=True)
class RunPlan:
    """What ``bench run`` trains: the checked plan, the notes to show (fallbacks taken), and the
    files each dataset is read from (empty where no data was read)."""

    plan: Plan
    notes: list[str]
    sources: list[str]
    fingerprints: dict[str, str] = field(default_factory=dict)  # dataset -> its content now (none read: empty)


def plan_run(registry: Registry, grid: str, overrides: Mapping[str, Any], filters: Mapping[str, list[str]],
             probe: DataProbe | None, device_type: str) -> RunPlan:
    """Plan a run: every check that needs no data first (grid, settings, losses, models, the device),
    so a typo reads no data and writes nothing; then the fallbacks (``probe`` reads data; None: skip
    them and the data checks, as on a cluster whose workers hold the data); filter values are matched
    after the fallbacks."""
    declared = make_plan(registry, grid, overrides, None, {}, validate=True)
    check_device(declared, device_type)
    subs = fallbacks(registry, grid, probe) if probe is not None else {}
    notes = [f"dataset {name!r} unavailable ({probe(name, registry.datasets[name])}); grid {grid!r} "
             f"falls back to {fallback!r}" for name, fallback in subs.items()] if probe is not None else []
    plan = declared if not subs and not filters else make_plan(registry, grid, overrides, filters, subs,
                                                               validate=bool(subs))
    if probe is None:
        return RunPlan(plan, notes, [])
    datasets = list(dict.fromkeys(c.dataset for c in plan.cells))
    for name in datasets:  # a dataset that cannot be read is one error line now, not a failed row per cell
        why = probe(name, registry.datasets[name])
        if why is not None:
            raise BenchError(why)
    check_validation(plan, probe.train_labels)
    check_regime_data(plan, probe.train_labels, registry.import_paths())
    return RunPlan(plan, notes, [probe.sources[name] for name in datasets if name in probe.sources],
                   {name: probe.fingerprints[name] for name in datasets if probe.fingerprints.get(name)})


def plan_read(registry: Registry, grid: str, runs: list[dict[str, Any]], overrides: Mapping[str, Any],
              filters: Mapping[str, list[str]], data_root: Path | None, last_run_cells: bool = False) -> ReadPlan:
    """The cells ``status`` / ``report`` show: those of the grid's last run (``runs``: its stored
    run records), or of the settings given. Data is read only to decide a fallback no run recorded.

    ``last_run_cells`` (``status``): without flags, also that run's ``--filter``, so the cells shown
    are the ones it ran (the whole grid when the registry no longer has its filter's values)."""
    if grid not in registry.grids:
        expand_grid(registry, grid, validate=False)  # the unknown-grid error, with the closest names
    needs_probe = not runs and registry.grids[grid].fallback_dataset is not None
    probe = DataProbe(data_root, None) if needs_probe else None
    if last_run_cells and not overrides and not filters and runs and runs[-1].get("filters"):
        try:
            return plan_from_runs(registry, grid, runs, overrides,
                                  {k: [str(v) for v in vs] for k, vs in runs[-1]["filters"].items()}, probe)
        except BenchError:
            pass  # a filter value the registry lost: the whole grid, as without the run's filter
    return plan_from_runs(registry, grid, runs, overrides, filters, probe)
