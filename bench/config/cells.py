"""Grids expand into cells: one (dataset, architecture, loss variant, seed, training settings, data regime).

A cell's identity is a hash of its fully resolved configuration, serialised canonically (sorted
keys, normalised numbers), so key order and grid list order never change it while any setting
does. Display names are not part of the identity: renaming an entry keeps its results.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.data.regimes import REGIME_FIELDS, RegimeConfig, check_regime_value, identity_regime, regime_error
from bench.errors import BenchError, closest
from bench.config.registry import TRAIN_FIELDS, Registry, TrainConfig, identity_train
from bench.config.search import draw_trial

ID_LENGTH = 16


@dataclass(frozen=True)
class Cell:
    """A fully resolved unit of work. ``config`` is what the identity hashes."""

    dataset: str
    architecture: str
    loss: str  # column label: registry name plus overrides, e.g. "milLoss(lam=10)"
    loss_name: str  # the registry name
    seed: int
    config: dict[str, Any] = field(repr=False, compare=False, hash=False)
    cell_id: str = ""
    variant: str = ""  # swept training and regime settings, e.g. "batch_size=64,noise_rate=0.4"; "" when none sweep
    trial: int | None = None  # the search trial (bench.config.search); None outside a search grid

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(**self.config["train"])

    @property
    def regime(self) -> RegimeConfig:
        """The data regime (bench.data.regimes); the default when the config has none."""
        return RegimeConfig(**self.config.get("regime", {}))

    @property
    def title(self) -> str:
        """How messages, progress lines and status name the cell: ``dataset/arch/loss [variant][/trial T]/seed N``."""
        variant = f" [{self.variant}]" if self.variant else ""
        trial = f"/trial {self.trial}" if self.trial is not None else ""
        return f"{self.dataset}/{self.architecture}/{self.loss}{variant}{trial}/seed {self.seed}"

    def flat(self) -> dict[str, Any]:
        """Config as flat columns for the store (``train.lr``, ``loss.params.lam``...)."""
        out: dict[str, Any] = {
            "cell_id": self.cell_id,
            "dataset": self.dataset,
            "architecture": self.architecture,
            "loss": self.loss,
            "loss_name": self.loss_name,
            "seed": self.seed,
            "variant": self.variant,
            "config_json": canonical_json(self.config),
        }
        # every setting as a column, including those the identity leaves out at their defaults
        for key, value in TrainConfig(**self.config["train"]).model_dump().items():
            out[f"train.{key}"] = value
        for key, value in self.regime.model_dump().items():
            out[f"regime.{key}"] = value
        out["dataset.kind"] = self.config["dataset"]["kind"]
        out["architecture.source"] = self.config["architecture"]["source"]
        out["architecture.name"] = self.config["architecture"]["name"]
        out["loss.target"] = self.config["loss"]["target"]
        out["loss.params"] = canonical_json(self.config["loss"]["params"])
        if self.trial is not None:  # a search cell: its trial and the values drawn for it, as columns
            out["trial"] = self.trial
            for key, value in self.config["search"]["values"].items():
                out[f"hp.{key}"] = value
        return out


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"))


# A cell config's key for the registry file's folder, set when the cell's data paths (an ``imagefolder`` or
# ``npz`` path, a ``target`` module's file, a ``noise_file``) lie under it: where the files are, not what the cell is.
ROOT = "root"


def _under(value: Any, root: str) -> Any:
    """``value`` with every path string under ``root`` made relative to it (the rest as it is)."""
    if isinstance(value, str):
        prefix = root.rstrip(os.sep) + os.sep
        return value[len(prefix):] if value.startswith(prefix) else value
    if isinstance(value, dict):
        return {k: _under(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_under(v, root) for v in value]
    return value


def identity_view(config: dict[str, Any]) -> dict[str, Any]:
    """What a cell's identity hashes: its config without the registry's folder, its data paths relative to it,
    so a project folder moved elsewhere (or checked out on another machine) keeps every cell's id."""
    root = config.get(ROOT)
    if root is None:
        return config
    return {k: _under(v, root) if k in ("dataset", "regime") else v for k, v in config.items() if k != ROOT}


def identity_of(parts: dict[str, str]) -> str:
    """The one identity function: the hash of a config given each top-level part as canonical JSON; the same as
    hashing ``canonical_json`` of the whole (keys sorted, no spaces), so a grid's expansion can serialise each
    part once instead of once per cell."""
    body = ",".join([f'"{k}":{parts[k]}' for k in sorted(parts)])  # the keys are plain names: no escaping
    return hashlib.sha256(("{" + body + "}").encode()).hexdigest()[:ID_LENGTH]


def identities(parts: dict[str, str], key: str, values: list[str]) -> list[str]:
    """``identity_of({**parts, key: v})`` for each canonical JSON ``v`` of ``values``: the other parts joined and
    hashed once, each value's cell hashing only its own part and what follows it (a grid's seeds: 2,500 cells
    per trial share everything but the seed)."""
    keys = sorted([*parts, key])
    at = keys.index(key)
    head = "".join(f'"{k}":{parts[k]},' for k in keys[:at])
    tail = "".join(f',"{k}":{parts[k]}' for k in keys[at + 1:]).encode() + b"}"
    base = hashlib.sha256(("{" + head + f'"{key}":').encode())
    out = []
    for value in values:
        h = base.copy()
        h.update(value.encode() + tail)
        out.append(h.hexdigest()[:ID_LENGTH])
    return out


def cell_identity(config: dict[str, Any]) -> str:
    return identity_of({str(k): canonical_json(v) for k, v in identity_view(config).items()})


def _format_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def loss_label(name: str, overrides: dict[str, Any]) -> str:
    if not overrides:
        return name
    inner = ",".join(f"{k}={_format_value(v)}" for k, v in sorted(overrides.items()))
    return f"{name}({inner})"


def _sweep(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product of a mapping whose list values sweep."""
    keys = sorted(mapping)
    values = [mapping[k] if isinstance(mapping[k], list) else [mapping[k]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def parse_assignments(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"{what} {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


REGIME_PREFIX = "regime."


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set train.epochs=2`` / ``--set regime.noise_rate=0.4`` overrides, each value validated.

    Training settings are keyed by their bare name (as run records have always stored them),
    regime settings by ``regime.KEY``; :func:`set_flag` turns either back into its flag.
    """
    raw = parse_assignments(items, "--set")
    out: dict[str, Any] = {}
    valid = [f"train.{f}" for f in TRAIN_FIELDS] + [f"{REGIME_PREFIX}{f}" for f in REGIME_FIELDS]
    for key, value in raw.items():
        if key not in valid:
            raise BenchError(f"--set {key}: unknown setting{closest(key, valid)}")
        parsed = _parse_scalar(value)
        if key.startswith(REGIME_PREFIX):
            try:
                check_regime_value(key.removeprefix(REGIME_PREFIX), parsed)
            except ValueError as exc:
                raise BenchError(f"--set {key}={value}: {exc}") from None
            out[key] = parsed
            continue
        field_name = key.removeprefix("train.")
        try:
            TrainConfig(**{field_name: parsed})
        except Exception as exc:  # pydantic ValidationError
            msg = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
            raise BenchError(f"--set {key}={value}: {msg}") from None
        out[field_name] = parsed
    return out


# the override key of ``--losses``: losses joined to a grid (or suite) for a run, with the grid's search budget;
# kept with the ``--set`` overrides so a run record, and every reader after it, rebuilds the same cells
ADDED_LOSSES = "losses"


def parse_losses(items: list[str]) -> dict[str, Any]:
    """``--losses a,b`` (repeatable) as an override: {ADDED_LOSSES: [a, b]}; {} when none. Names are checked
    against the registry when the grid expands."""
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    if items and not names:
        raise BenchError("--losses: expected loss names, e.g. --losses focal,my_loss")
    return {ADDED_LOSSES: list(dict.fromkeys(names))} if names else {}


def set_flag(key: str, value: Any) -> str:
    """The flag of one parsed override (a key of :func:`parse_set`'s or :func:`parse_losses`' result)."""
    if key == ADDED_LOSSES:
        return f"--losses {','.join(value)}"
    return f"--set {key}={value}" if key.startswith(REGIME_PREFIX) else f"--set train.{key}={value}"


def override_notes(registry: Registry, grid_name: str, overrides: dict[str, Any]) -> list[str]:
    """Each ``--set`` override that differs from the grid's registry definition, with what the grid declares:
    ``train.epochs=6 (the grid's 77)``. A report states these, so a shortened run never reads as the protocol."""
    grid = registry.grids[grid_name]
    notes = []
    for key, value in sorted(overrides.items()):
        if key == ADDED_LOSSES:
            notes.append(f"losses {', '.join(value)} added to the grid's with the same search (--losses)")
            continue
        if key.startswith(REGIME_PREFIX):
            name = key.removeprefix(REGIME_PREFIX)
            default = RegimeConfig.model_fields[name].default if name in RegimeConfig.model_fields else None
            declared_values = [block.get(name, default) for block in grid.regime_blocks()]
            declared: Any = declared_values[0] if len(set(map(repr, declared_values))) == 1 else declared_values
            shown = key
        else:
            declared = grid.train.get(key, TrainConfig.model_fields[key].default if key in TrainConfig.model_fields
                                      else None)
            shown = f"train.{key}"
        if declared != value:
            notes.append(f"{shown}={_format_value(value)} (the grid's {_format_value(declared)})")
    return notes


def _parse_scalar(value: str) -> Any:
    try:
        import yaml

        return yaml.safe_load(value)
    except Exception:  # noqa: BLE001
        return value


FILTER_KEYS = ("dataset", "architecture", "loss", "loss_name", "seed", "variant", "trial", "cell_id")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    raw: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value:
            raise BenchError(f"--filter {item!r}: expected key=value with key one of {', '.join(FILTER_KEYS)}")
        if key not in FILTER_KEYS:
            raise BenchError(f"--filter {key}: unknown key{closest(key, FILTER_KEYS)}; use one of {', '.join(FILTER_KEYS)}")
        raw.setdefault(key, []).extend(v.strip() for v in value.split(","))
    return raw


def _settings_variants(grid_name: str, grid: Any, overrides: dict[str, Any]) -> tuple[dict[str, Any], list[tuple]]:
    """The grid's training settings (with ``--set``) and its variants: (label, training settings, regime identity)
    for every swept training setting under every regime."""
    train_overrides = {k: v for k, v in overrides.items() if not k.startswith(REGIME_PREFIX) and k != ADDED_LOSSES}
    regime_overrides = {k.removeprefix(REGIME_PREFIX): v for k, v in overrides.items() if k.startswith(REGIME_PREFIX)}
    train_grid = {**TrainConfig().model_dump(), **grid.train, **train_overrides}
    swept = sorted(k for k, v in train_grid.items() if isinstance(v, list) and len(v) > 1)
    train_variants = []
    for t in _sweep(train_grid):
        label = ",".join(f"{k}={_format_value(t[k])}" for k in swept)
        train_variants.append((label, identity_train(TrainConfig(**t).model_dump())))
    regime_variants = _regime_variants(grid_name, grid.regime_blocks(), regime_overrides)
    return train_grid, [(",".join(part for part in (t_label, r_label) if part), train, regime)
                        for t_label, train in train_variants for r_label, regime in regime_variants]


def _added_losses(registry: Registry, grid_name: str, names: list[str]) -> list[str]:
    """The ``--losses`` names the grid does not already hold at their defaults; an unknown name is one line."""
    for name in names:
        if name not in registry.losses:
            raise BenchError(f"--losses {name}: unknown loss{closest(name, registry.losses)}; register it under "
                             f"losses: in {registry.source} (`bench list` shows the losses)")
    plain = {g.name for g in registry.grids[grid_name].grid_losses(registry.loss_names()) if not g.overrides}
    return [n for n in names if n not in plain]


def _loss_variants(registry: Registry, grid_name: str, train_grid: dict[str, Any], substitute: dict[str, str],
                   validate: bool, added: list[str]) -> list[tuple[str, str, str, dict[str, Any], int | None, dict[str, Any]]]:
    """(label, registry name, target, params, trial, drawn values) of each loss variant (trial None outside a
    search), the grid's losses then ``added``; with ``validate``, each one checked once (import, parameters,
    one batch)."""
    from bench.config.registry import GridLoss

    grid = registry.grids[grid_name]
    search = grid.search
    space = registry.search_space(grid_name, added) if search is not None else {}
    loss_variants: list[tuple[str, str, str, dict[str, Any], int | None, dict[str, Any]]] = []
    if validate:
        from bench.data import dataset_shape
        from bench.plan.preflight import check_loss

        classes = sorted({dataset_shape(registry.datasets[substitute.get(d, d)].kind,
                                        registry.datasets[substitute.get(d, d)].params)[1] for d in grid.datasets})
    for gl in grid.grid_losses(registry.loss_names()) + [GridLoss(name=n) for n in added]:

        spec = registry.losses[gl.name]
        searched = sorted(k for k in gl.overrides if f"{gl.name}.{k}" in space)
        if searched:
            # the draws would overwrite the grid's values, and the variants' trials collapse into one another
            raise BenchError(f"grid {grid_name!r}: {gl.name}.{searched[0]} is both set in the grid's losses and searched "
                             f"in its search: space; drop one (search it, or fix it and leave it out of the space)")
        for ov in _sweep(gl.overrides):
            # every loss gets the grid's one number of trials: the same tuning budget for all
            trials = [(t, draw_trial(search.seed, gl.name, t, space) or _defaults(gl.name, {**spec.params, **ov}, train_grid, space))
                      for t in range(search.trials)] if search else [(None, {})]
            for trial, values in trials:
                drawn = {k.split(".", 1)[1]: v for k, v in values.items() if not k.startswith("train.")}
                params = {**spec.params, **ov, **drawn}
                label = loss_label(gl.name, ov)
                if validate:
                    check_loss(label if trial is None else f"{label} (trial {trial})", spec.target, params, classes,
                               registry.import_paths())
                loss_variants.append((label, gl.name, spec.target, params, trial, values))
    return loss_variants


def expand_grid(
    registry: Registry,
    grid_name: str,
    overrides: dict[str, Any] | None = None,
    filters: dict[str, list[str]] | None = None,
    dataset_substitute: dict[str, str] | None = None,
    validate: bool = True,
) -> list[Cell]:
    """Every cell of a grid, in a stable order (dataset, architecture, loss, then seed).

    A cell's identity is its declared configuration: ``auto`` settings stay ``auto`` (what they
    resolve to on the device that trains the cell is recorded with its result, as provenance).
    ``validate=False`` skips the loss checks (status and report only read the store; the identity
    does not depend on them), so no torch import is needed.
    """
    if grid_name not in registry.grids:
        raise BenchError(f"unknown grid {grid_name!r}{closest(grid_name, registry.grids)}; `bench list` shows the grids")
    grid = registry.grids[grid_name]
    substitute = dataset_substitute or {}
    train_grid, variants = _settings_variants(grid_name, grid, overrides or {})
    added = _added_losses(registry, grid_name, list((overrides or {}).get(ADDED_LOSSES, [])))
    loss_variants = _loss_variants(registry, grid_name, train_grid, substitute, validate, added)

    cells: list[Cell] = []
    root = str(Path(registry.source).resolve().parent)
    # each part of the identity serialised once (identity_of), not once per cell
    seed_json = [canonical_json(seed) for seed in grid.seeds]
    regime_json = [canonical_json(_under(regime, root)) if regime else "" for _, _, regime in variants]
    regime_located = [bool(regime) and _under(regime, root) != regime for _, _, regime in variants]
    train_json = [canonical_json(train) for _, train, _ in variants]
    for ds_name in grid.datasets:
        ds_actual = substitute.get(ds_name, ds_name)
        ds = registry.datasets[ds_actual]
        ds_cfg = {"kind": ds.kind, "params": dict(ds.params)}
        ds_json = canonical_json(_under(ds_cfg, root))
        ds_located = _under(ds_cfg, root) != ds_cfg
        for arch_name in grid.architectures:
            arch = registry.architectures[arch_name]
            arch_cfg = {"source": arch.source, "name": arch.name, "params": dict(arch.params)}
            for label, lname, target, params, trial, values in loss_variants:
                loss_cfg = {"target": target, "params": dict(params)}
                if trial is not None:
                    cells += _search_cells(ds_actual, arch_name, label, lname, grid.seeds, seed_json, ds_cfg, arch_cfg,
                                           loss_cfg, variants, trial, values, root)
                    continue
                head = {"architecture": canonical_json(arch_cfg), "dataset": ds_json, "loss": canonical_json(loss_cfg)}
                for (variant, train, regime), r_json, t_json, r_located in zip(variants, regime_json, train_json,
                                                                               regime_located):
                    parts = {**head, "train": t_json}
                    if regime:  # only a regime away from the default: every other cell keeps its identity
                        parts["regime"] = r_json
                    for seed, cell_id in zip(grid.seeds, identities(parts, "seed", seed_json)):
                        # the sub-dicts are shared between cells and never mutated (run_cell copies)
                        config = {"dataset": ds_cfg, "architecture": arch_cfg, "loss": loss_cfg, "seed": seed, "train": train}
                        if regime:
                            config["regime"] = regime
                        if ds_located or r_located:
                            config[ROOT] = root
                        cells.append(Cell(ds_actual, arch_name, label, lname, seed, config, cell_id, variant))
    cells = _apply_filters(cells, filters or {})
    return _dedupe(cells)


def _defaults(loss: str, params: dict[str, Any], train: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """Trial 0's values: the searched keys of ``loss`` at the registry's and the grid's values (a swept
    training setting has no one value, and is left out)."""
    from bench.config.search import keys_for

    out: dict[str, Any] = {}
    for key in keys_for(loss, space):
        head, name = key.split(".", 1)
        value = train.get(name) if head == "train" else params.get(name)
        if value is not None and not isinstance(value, list):
            out[key] = value
    return out


def _regime_variants(grid_name: str, blocks: list[dict[str, Any]], overrides: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, identity) of every regime of a grid: each block's sweep under the ``--set regime.*``
    overrides, in order, duplicates dropped; the label names the settings that differ between them."""
    regimes: dict[str, RegimeConfig] = {}
    for block in blocks:
        for values in _sweep({**block, **overrides}):
            try:
                regime = RegimeConfig(**values)
            except ValidationError as exc:
                shown = ",".join(f"{k}={_format_value(v)}" for k, v in values.items())
                raise BenchError(f"grid {grid_name!r}: regime {{{shown}}}: {regime_error(exc)}") from None
            regimes.setdefault(canonical_json(regime.model_dump()), regime)
    varying = [k for k in REGIME_FIELDS if len({getattr(r, k) for r in regimes.values()}) > 1]
    return [(",".join(f"{k}={_format_value(getattr(r, k))}" for k in varying), identity_regime(r))
            for r in regimes.values()]


def _search_cells(dataset: str, arch_name: str, label: str, lname: str, seeds: list[int], seed_json: list[str],
                  ds_cfg: dict, arch_cfg: dict, loss_cfg: dict, variants: list[tuple[str, dict[str, Any], dict[str, Any]]],
                  trial: int, values: dict[str, Any], root: str) -> list[Cell]:
    """The cells of one search trial: its drawn training settings applied to every (training, regime)
    variant, the trial number and drawn values part of the configuration (so of the identity)."""
    drawn_train = {k.removeprefix("train."): v for k, v in values.items() if k.startswith("train.")}
    out = []
    search = {"trial": trial, "values": dict(values)}
    located = _under(ds_cfg, root) != ds_cfg
    # each part of the identity serialised once per trial (identity_of), not once per cell
    head = {"architecture": canonical_json(arch_cfg), "dataset": canonical_json(_under(ds_cfg, root)),
            "loss": canonical_json(loss_cfg), "search": canonical_json(search)}
    for variant, train, regime in variants:
        if drawn_train:
            try:
                train = identity_train(TrainConfig(**{**train, **drawn_train}).model_dump())
            except ValidationError as exc:
                err = exc.errors()[0]
                raise BenchError(f"search trial {trial} of {label}: train.{err['loc'][0]}={err.get('input')!r}: "
                                 f"{err['msg']}; narrow the distribution in the grid's search: space") from None
        parts = {**head, "train": canonical_json(train)}
        if regime:
            parts["regime"] = canonical_json(_under(regime, root))
        here = located or bool(regime and _under(regime, root) != regime)
        for seed, cell_id in zip(seeds, identities(parts, "seed", seed_json)):
            config = {"dataset": ds_cfg, "architecture": arch_cfg, "loss": loss_cfg, "seed": seed, "train": train,
                      "search": search}
            if regime:
                config["regime"] = regime
            if here:
                config[ROOT] = root
            out.append(Cell(dataset, arch_name, label, lname, seed, config, cell_id, variant, trial))
    return out


def _dedupe(cells: list[Cell]) -> list[Cell]:
    seen: set[str] = set()
    out = []
    for c in cells:
        if c.cell_id not in seen:
            seen.add(c.cell_id)
            out.append(c)
    return out


def _regroup(parts: list[str], have: set[str]) -> list[str]:
    """Comma-split filter values joined back where a value itself holds commas: a variant label
    (``noise=symmetric,noise_rate=0.4``) or a loss label (``milLoss(lam=10,tau=2)``). The longest run
    of parts that names a value wins; a part that joins none stays as it is."""
    out, i = [], 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            joined = ",".join(parts[i:j])
            if joined in have:
                out.append(joined)
                i = j
                break
        else:
            out.append(parts[i])
            i += 1
    return out


def _apply_filters(cells: list[Cell], filters: dict[str, list[str]]) -> list[Cell]:
    for key, wanted in filters.items():
        have = {str(getattr(c, key)) for c in cells}
        wanted = _regroup(wanted, have)
        missing = [w for w in wanted if w not in have]
        if missing:
            raise BenchError(f"--filter {key}={missing[0]}: matches no cell of this grid{closest(missing[0], have)}")
        cells = [c for c in cells if str(getattr(c, key)) in wanted]
    return cells
