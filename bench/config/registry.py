"""The registry: datasets, architectures, losses and grids, validated once when loaded.

Everything the harness needs to know about a benchmark lives in ``registry.yaml``. This module
turns that file into typed, immutable pydantic models and turns every problem with it into one
:class:`~bench.errors.BenchError` line naming the file, the key path and what was expected.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.config.augment_policy import AUGMENTS, DEFAULT_PADDING
from bench.data.kinds import KINDS
from bench.data.regimes import REGIME_FIELDS, RegimeConfig, check_regime_value, regime_error
from bench.errors import BenchError, closest
from bench.train.schedules import SCHEDULES

Scalar = Union[bool, int, float, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    kind: Literal[KINDS]  # type: ignore[valid-type]  # the kinds table is the one list of kinds
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


TARGET_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class ArchitectureSpec(_Strict):
    """A model: a ``name`` of the ``native``, ``timm`` or ``torchvision`` zoo (bench.models.zoo), or
    ``source: target`` with ``target: module:Class`` (or a builder function) called with
    ``in_shape``, ``num_classes`` and the entry's ``params``, found like a loss target.

    For a target the cell's configuration names the target in ``name`` (the one field the zoo
    sources use), so a cell's identity keeps one shape for every source.
    """

    source: Literal["native", "timm", "torchvision", "target"]
    name: str = ""
    target: str | None = Field(None, pattern=TARGET_PATTERN)
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _name_or_target(self) -> "ArchitectureSpec":
        if self.source == "target":
            if self.target is None:
                raise ValueError("source 'target' needs target: module:Class (or module:function)")
            if self.name and self.name != self.target:
                raise ValueError(f"source 'target' takes no name (got {self.name!r}); its target names it")
            object.__setattr__(self, "name", self.target)  # frozen model: set once, while validating
        elif self.target is not None:
            raise ValueError(f"target is for source 'target'; source {self.source!r} takes a name")
        elif not self.name:
            raise ValueError(f"source {self.source!r} needs a name")
        return self


class LossSpec(_Strict):
    """A loss: its ``target`` class, default ``params`` and, in ``search``, the distribution of each of its
    parameters a search draws from (``{gamma: "uniform(0, 5)"}``), so a search grid or a suite that adds the
    loss gives it its own space without naming it; a grid's ``search: space`` entry for the same key wins."""

    target: str = Field(pattern=TARGET_PATTERN)
    params: dict[str, Scalar] = Field(default_factory=dict)
    search: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _searched_params(self) -> "LossSpec":
        from bench.config.search import parse_distribution

        for name, text in self.search.items():
            if name not in self.params:  # trial 0 is the defaults: a searched parameter needs one
                raise ValueError(f"search.{name}: not a parameter of the loss; give it a default in params: "
                                 f"({', '.join(self.params) or 'it has none'})")
            try:
                parse_distribution(text)
            except ValueError as exc:
                raise ValueError(f"search.{name}: {exc}") from None
        return self


class TrainConfig(_Strict):
    """Training settings of one cell (a grid's ``train:`` block, ``--set train.KEY=VALUE``).

    Every setting is part of a cell's identity. ``auto`` values are resolved on the device the
    cell runs on and recorded with it.
    """

    epochs: int = Field(77, gt=0, description="passes over the training split")
    batch_size: int = Field(512, gt=0, description="training batch size (the last batch of an epoch may be smaller)")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="torch.optim SGD, Adam or AdamW")
    lr: float = Field(1e-3, gt=0, description="base learning rate (the peak of a schedule; constant without one)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by adam/adamw)")
    nesterov: bool = Field(False, description="SGD Nesterov momentum")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (decoupled for adamw)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast with fp32 weights on CUDA, fp32 on CPU; bf16/fp16 need CUDA")
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels_last memory format for image batches (auto: on)")
    compile: bool = Field(False, description="torch.compile the training forward")
    eval_batch_size: int = Field(4096, gt=0, description="batch size of the evaluation passes (no effect on results)")
    val_fraction: float = Field(
        0.0, ge=0, lt=0.5, description="stratified validation holdout of the training split, never trained on (0: none)")
    split_seed: int = Field(0, ge=0, description="seed of the validation holdout, shared by every cell of a grid (paired)")
    schedule: Literal[SCHEDULES] = Field(  # type: ignore[valid-type]  # bench.train.schedules is the one list
        "constant", description="lr schedule, stepped every iteration: constant, cosine, step, multistep, onecycle")
    warmup_epochs: int = Field(0, ge=0, description="epochs of linear warm-up to lr (onecycle: its rising phase)")
    min_lr: float = Field(0.0, ge=0, description="floor of cosine, final lr of onecycle (0: torch's default there)")
    milestones: str = Field("", description="multistep: epochs at which the lr is multiplied by gamma, e.g. '30,60'")
    gamma: float = Field(0.1, gt=0, description="step/multistep: the factor applied at each step")
    step_epochs: int = Field(0, ge=0, description="step: the period in epochs, counted from the end of warm-up")
    augment: Literal[AUGMENTS] = Field(  # type: ignore[valid-type]  # bench.config.augment_policy is the one list
        "none", description="on-device batch augmentation: none, flip, crop, crop-flip (flip only where the dataset allows)")
    crop_padding: int = Field(DEFAULT_PADDING, ge=1, description="crop/crop-flip: zero padding in pixels on each side")
    force_flip: bool = Field(False, description="flip even a dataset whose flip policy says no (bench.config.augment_policy)")
    grad_clip: float = Field(0.0, ge=0, description="clip the gradient's global L2 norm to this (0: off)")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="evaluate an EMA of the weights with this decay, e.g. 0.999 (0: off)")

    @field_validator("milestones", mode="before")
    @classmethod
    def _canonical_milestones(cls, v: Any) -> Any:
        # a single milestone reads as a number in YAML and in --set; the setting is its canonical text,
        # so "30, 60" and "30,60" are one cell (bench.train.schedules.parse_milestones refuses what is not epochs)
        from bench.train.schedules import parse_milestones

        if isinstance(v, bool) or not isinstance(v, int | str):
            return v
        try:
            return ",".join(map(str, parse_milestones(v)))
        except BenchError as exc:
            raise ValueError(str(exc)) from None


# Settings that only matter with a validation split: left out of a cell's identity when it has
# none, so cells without one keep the identity (and the stored results) they had before these
# settings existed.
VALIDATION_ONLY = ("val_fraction", "split_seed")
# Settings added after results were first stored (the strong-baseline recipe): each is left out
# of the identity while at its default, for the same reason.
RECIPE = ("schedule", "warmup_epochs", "min_lr", "milestones", "gamma", "step_epochs", "augment", "crop_padding",
          "force_flip", "grad_clip", "ema_decay")


def identity_train(train: dict[str, Any]) -> dict[str, Any]:
    """A cell's training settings as its identity hashes them (see ``VALIDATION_ONLY``, ``RECIPE``)."""
    defaults = TrainConfig.model_fields
    out = {k: v for k, v in train.items() if not (k in RECIPE and v == defaults[k].default)}
    if out.get("val_fraction", 0.0) == 0.0:
        return {k: v for k, v in out.items() if k not in VALIDATION_ONLY}
    return out


def train_settings() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every training setting, for ``bench run --help`` and the README."""
    from bench.config.settings import describe

    return describe(TrainConfig)


TRAIN_FIELDS = tuple(TrainConfig.model_fields)


class GridLoss(_Strict):
    """One loss of a grid: a registry loss name and parameter overrides (lists sweep)."""

    name: str
    overrides: dict[str, Union[Scalar, list[Scalar]]] = Field(default_factory=dict)


class SearchSpec(_Strict):
    """A grid's hyperparameter search (bench.config.search): ``trials`` per loss, the same for every loss of
    the grid (one number, so an equal tuning budget by construction), a seed, and a space of
    distributions keyed ``train.SETTING`` or ``LOSS.PARAM``."""

    trials: int = Field(ge=1)
    seed: int = Field(0, ge=0)
    space: dict[str, str] = Field(min_length=1)

    @field_validator("space")
    @classmethod
    def _distributions(cls, v: dict[str, str]) -> dict[str, str]:
        from bench.config.search import parse_distribution

        for key, text in v.items():
            try:
                parse_distribution(text)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    def distributions(self) -> dict[str, Any]:
        from bench.config.search import parse_distribution

        return {k: parse_distribution(t) for k, t in self.space.items()}

    def with_losses(self, losses: dict[str, "LossSpec"], fixed: dict[str, Any] | None = None) -> "SearchSpec":
        """The space with each of ``losses``' own ``search`` entries (``LOSS.PARAM``) it does not set itself,
        leaving out the parameters a grid fixes (``fixed``: loss name -> its overrides there)."""
        own = {f"{name}.{p}": text for name, spec in losses.items() for p, text in spec.search.items()
               if p not in (fixed or {}).get(name, {})}
        return self.model_copy(update={"space": {**own, **self.space}})


RegimeBlock = dict[str, Union[Scalar, list[Scalar]]]


DEFAULT_BASELINE = "celLoss"  # a grid's baseline when it names none: cross entropy, the question's reference


class GridSpec(_Strict):
    datasets: list[str] = Field(min_length=1)
    architectures: list[str] = Field(min_length=1)
    losses: Union[Literal["all"], list[Union[str, dict[str, dict[str, Union[Scalar, list[Scalar]]]]]]] = "all"
    seeds: list[int] = Field(min_length=1)
    train: dict[str, Union[Scalar, list[Scalar]]] = Field(default_factory=dict)
    # bench.data.regimes: one mapping (lists sweep), or a list of them (their sweeps side by side)
    regime: Union[RegimeBlock, list[RegimeBlock]] = Field(default_factory=dict)
    fallback_dataset: str | None = None
    search: SearchSpec | None = None
    # the reference loss of the paired differences (bench report --baseline); None: DEFAULT_BASELINE
    # where the grid has it, else no paired differences
    baseline: str | None = None
    description: str = ""

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @field_validator("datasets", "architectures")
    @classmethod
    def _unique_names(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("names must be unique")
        return v

    @field_validator("train")
    @classmethod
    def _known_train_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key not in TRAIN_FIELDS:
                raise ValueError(f"unknown training setting {key!r}{closest(key, TRAIN_FIELDS)}")
        return v

    @field_validator("regime")
    @classmethod
    def _known_regime_keys(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("empty list: give a mapping of regime settings, or a list of such mappings")
        for block in v if isinstance(v, list) else [v]:
            for key in block:
                if key not in REGIME_FIELDS:
                    raise ValueError(f"unknown regime setting {key!r}{closest(key, REGIME_FIELDS)}")
        return v

    def regime_blocks(self) -> list[dict[str, Any]]:
        """The ``regime:`` block as a list of mappings (one mapping is a list of one)."""
        return list(self.regime) if isinstance(self.regime, list) else [self.regime]

    def baseline_loss(self, registry_losses: list[str]) -> str | None:
        """The loss the grid's others are compared with: ``baseline:``, else :data:`DEFAULT_BASELINE`
        when the grid lists it (without parameter overrides), else None."""
        if self.baseline is not None:
            return self.baseline
        plain = [g.name for g in self.grid_losses(registry_losses) if not g.overrides]
        return DEFAULT_BASELINE if DEFAULT_BASELINE in plain else None

    def grid_losses(self, registry_losses: list[str]) -> list[GridLoss]:
        if self.losses == "all":
            return [GridLoss(name=n) for n in registry_losses]
        out: list[GridLoss] = []
        for item in self.losses:
            if isinstance(item, str):
                out.append(GridLoss(name=item))
            else:
                if len(item) != 1:
                    raise ValueError("a loss with overrides is a one-key mapping {name: {param: value}}")
                (name, overrides), = item.items()
                out.append(GridLoss(name=name, overrides=overrides))
        return out


class SuiteSpec(_Strict):
    """A standard benchmark: a set of tasks, each a (dataset, architecture, data regime), under one training
    protocol and one search (the same number of trials for every loss, judged on a validation split).

    ``regimes`` names each task's data regime (``clean: {}``, ``sym-40: {noise: symmetric, noise_rate: 0.4}``),
    one value per setting: a task is one regime. A suite trains as the grid :meth:`as_grid` compiles, so every
    command that takes ``--grid`` takes the suite's name too.
    """

    datasets: list[str] = Field(min_length=1)
    architectures: list[str] = Field(min_length=1)
    regimes: dict[str, dict[str, Scalar]] = Field(min_length=1)
    losses: Union[Literal["all"], list[str]] = "all"
    seeds: list[int] = Field(min_length=1)
    train: dict[str, Scalar] = Field(default_factory=dict)
    search: SearchSpec | None = None
    baseline: str = DEFAULT_BASELINE
    description: str = ""

    @model_validator(mode="after")
    def _protocol(self) -> "SuiteSpec":
        if self.search is None:  # an equal tuning budget is what a suite is for
            raise ValueError("a suite needs a search: block, e.g. search: {trials: 8, seed: 0, space: "
                             "{train.lr: 'loguniform(1e-3, 3e-1)'}}")
        if not float(self.train.get("val_fraction", 0.0)) > 0:  # type: ignore[arg-type]
            raise ValueError("a suite needs a validation split to select trials on: train: {val_fraction: 0.1}")
        return self

    def loss_names(self, registry_losses: list[str]) -> list[str]:
        return list(registry_losses) if self.losses == "all" else list(self.losses)

    def as_grid(self, registry_losses: list[str]) -> GridSpec:
        """The grid that trains the suite: its datasets x architectures x regimes, each loss's own search space added."""
        return GridSpec(datasets=self.datasets, architectures=self.architectures,
                        losses=self.loss_names(registry_losses), seeds=self.seeds, train=self.train,
                        regime=list(self.regimes.values()), search=self.search, baseline=self.baseline,
                        description=self.description)


class Registry(_Strict):
    datasets: dict[str, DatasetSpec]
    architectures: dict[str, ArchitectureSpec]
    losses: dict[str, LossSpec]
    grids: dict[str, GridSpec]
    suites: dict[str, SuiteSpec] = Field(default_factory=dict)
    source: str = "registry.yaml"

    def _where(self, gname: str) -> str:
        """Where a grid is declared, for error lines: ``grids.NAME`` or ``suites.NAME``."""
        return f"suites.{gname}" if gname in self.suites else f"grids.{gname}"

    @model_validator(mode="after")
    def _cross_references(self) -> "Registry":
        for sname, suite in self.suites.items():
            if sname in self.grids:
                raise _RefError(f"suites.{sname}", "", "", [], message=(
                    f"a grid is named {sname!r} too; a suite and a grid need different names"))
            for name in suite.loss_names(list(self.losses)):
                if name not in self.losses:
                    raise _RefError(f"suites.{sname}.losses", "loss", name, self.losses)
            for rname, block in suite.regimes.items():
                bad = [k for k in block if k not in REGIME_FIELDS]
                if bad:
                    raise _RefError(f"suites.{sname}.regimes.{rname}.{bad[0]}", "", "", [],
                                    message=f"unknown regime setting {bad[0]!r}{closest(bad[0], REGIME_FIELDS)}")
            try:
                grid = suite.as_grid(list(self.losses))
            except ValidationError as exc:
                err = exc.errors()[0]
                raise _RefError(f"suites.{sname}." + _format_loc(err["loc"]), "", "", [],
                                message=err["msg"].removeprefix("Value error, ")) from None
            self.grids[sname] = grid  # the frozen model's dict: a suite is one more grid to every command
        for gname, grid in self.grids.items():
            for i, d in enumerate(grid.datasets):
                if d not in self.datasets:
                    raise _RefError(f"{self._where(gname)}.datasets[{i}]", "dataset", d, self.datasets)
            if grid.fallback_dataset is not None and grid.fallback_dataset not in self.datasets:
                raise _RefError(f"{self._where(gname)}.fallback_dataset", "dataset", grid.fallback_dataset, self.datasets)
            for i, a in enumerate(grid.architectures):
                if a not in self.architectures:
                    raise _RefError(f"{self._where(gname)}.architectures[{i}]", "architecture", a, self.architectures)
            try:
                gl = grid.grid_losses(list(self.losses))
            except ValueError as exc:
                raise _RefError(f"{self._where(gname)}.losses", "", "", [], message=str(exc)) from None
            for i, entry in enumerate(gl):
                if entry.name not in self.losses:
                    raise _RefError(f"{self._where(gname)}.losses[{i}]", "loss", entry.name, self.losses)
            for key, value in grid.train.items():
                for item in value if isinstance(value, list) else [value]:
                    try:
                        TrainConfig(**{key: item})
                    except ValidationError as exc:
                        err = exc.errors()[0]
                        raise _RefError(f"{self._where(gname)}.train.{key}", "", "", [],
                                        message=f"{err['msg']} (got {item!r})") from None
                if isinstance(value, list) and not value:
                    raise _RefError(f"{self._where(gname)}.train.{key}", "", "", [], message="empty list")
            if grid.baseline is not None:
                plain = [g.name for g in gl if not g.overrides]
                if grid.baseline not in plain:
                    raise _RefError(f"{self._where(gname)}.baseline", "", "", [], message=(
                        f"{grid.baseline!r} is not a loss of the grid; name one it "
                        f"lists without parameter overrides: {', '.join(plain) or 'none does'}"))
            self._check_regime(gname, grid)
            if grid.search is not None:
                self._check_search(gname, grid.search, gl)
        return self

    def _check_regime(self, gname: str, grid: GridSpec) -> None:
        """Each regime value on its own, then each combination a block sweeps (the cross-field checks)."""
        import itertools

        blocks = grid.regime_blocks()
        tasks = list(self.suites[gname].regimes) if gname in self.suites else []
        for i, block in enumerate(blocks):
            where = (f"suites.{gname}.regimes.{tasks[i]}" if tasks else
                     f"grids.{gname}.regime" + (f"[{i}]" if isinstance(grid.regime, list) else ""))
            for key, value in block.items():
                if isinstance(value, list) and not value:
                    raise _RefError(f"{where}.{key}", "", "", [], message="empty list")
                for item in value if isinstance(value, list) else [value]:
                    try:
                        check_regime_value(key, item)
                    except ValueError as exc:
                        raise _RefError(f"{where}.{key}", "", "", [], message=f"{exc} (got {item!r})") from None
            keys = sorted(block)
            for combo in itertools.product(*[v if isinstance(v, list) else [v] for v in (block[k] for k in keys)]):
                try:
                    RegimeConfig(**dict(zip(keys, combo)))
                except ValidationError as exc:
                    raise _RefError(where, "", "", [], message=regime_error(exc)) from None

    def _check_search(self, gname: str, search: SearchSpec, gl: list[GridLoss]) -> None:
        """Every searched key is a training setting or a parameter of a loss of the grid."""
        names = [f"train.{f}" for f in TRAIN_FIELDS] + [
            f"{g.name}.{p}" for g in gl for p in {**self.losses[g.name].params, **g.overrides}]
        for key in search.space:
            if key not in names:
                raise _RefError(f"{self._where(gname)}.search.space.{key}", "", "", [],
                                message=f"not a training setting nor a parameter of a loss of the grid"
                                        f"{closest(key, names)}")

    def loss_names(self) -> list[str]:
        return list(self.losses)

    def search_space(self, grid: str, added: Sequence[str] = ()) -> dict[str, Any]:
        """The distributions a grid's search draws from: its ``search: space`` and each of its losses' own
        (``added``: losses joined to the grid for one run, ``bench run --losses``)."""
        spec = self.grids[grid]
        if spec.search is None:
            return {}
        gl = spec.grid_losses(self.loss_names()) + [GridLoss(name=n) for n in added]
        merged = spec.search.with_losses({g.name: self.losses[g.name] for g in gl},
                                         {g.name: g.overrides for g in gl})
        return merged.distributions()

    def import_paths(self) -> tuple[str, ...]:
        """Folders a loss ``target`` module is looked for in besides the installed packages: the
        registry file's folder, then the working folder."""
        folders = (str(Path(self.source).resolve().parent), os.getcwd())
        return tuple(dict.fromkeys(folders))


class _RefError(ValueError):
    def __init__(self, path: str, kind: str, name: str, valid: Any, message: str | None = None):
        self.path = path
        self.message = message or f"unknown {kind} {name!r}{closest(name, list(valid))}"
        super().__init__(self.message)


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: the C parser, when present
    """A safe YAML loader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise BenchError(
                f"{getattr(loader, 'name', '<unicode string>')}: line {key_node.start_mark.line + 1}: duplicate key {key!r}; "
                "each name may appear once per section"
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_MODEL_AT_DEPTH = {
    "datasets": DatasetSpec,
    "architectures": ArchitectureSpec,
    "losses": LossSpec,
    "grids": GridSpec,
}


def _explain(source: str, exc: ValidationError) -> BenchError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if p not in ("function-after[_cross_references()]",))
    # pydantic reports union branches in the location; keep only real keys and indexes
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool", "list", "dict"))))
    msg = err["msg"]
    if err["type"] == "extra_forbidden" and len(loc) >= 1:
        section = loc[0]
        model = _MODEL_AT_DEPTH.get(section) if len(loc) == 3 else None
        fields = list(model.model_fields) if model else (
            [f for f in Registry.model_fields if f != "source"] if len(loc) == 1 else [])
        msg = f"unknown key {loc[-1]!r}{closest(str(loc[-1]), fields)}"
    elif err["type"] == "value_error" and isinstance(err.get("ctx", {}).get("error"), _RefError):
        ref = err["ctx"]["error"]
        return BenchError(f"{source}: {ref.path}: {ref.message}")
    elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "target":
        msg = f"expected package.module:ClassName, got {err.get('input')!r}"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = msg.removeprefix("Value error, ") + (f" (got {err.get('input')!r})" if "input" in err and not isinstance(err.get("input"), dict | list) else "")
    return BenchError(f"{source}: {_format_loc(loc) or '<top level>'}: {msg}")


def _beside(folder: Path, value: Any) -> Any:
    """A relative path string made absolute against ``folder`` (anything else as it is)."""
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str((folder / value).resolve())
    return value


def _module_file(module: str, folders: Sequence[str]) -> str | None:
    """The file of ``module`` in the first of ``folders`` holding it, when no installed package has it."""
    import importlib.util

    try:
        if importlib.util.find_spec(module.partition(".")[0]) is not None:
            return None
    except (ImportError, ValueError):
        pass
    for folder in folders:
        candidate = Path(folder, *module.split(".")).with_suffix(".py")
        if candidate.is_file():
            return str(candidate.resolve())
    return None


def resolve_paths(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The registry with its relative data paths made absolute against the registry file's folder, so a
    cell finds them from any working folder and any worker: ``imagefolder``/``npz`` ``params.path``, a
    regime's ``noise_file``, and a ``target`` dataset's module found beside the registry (or in the
    working folder) rather than among the installed packages, which becomes its file's path."""
    folder = Path(source).resolve().parent
    out = dict(data)
    datasets = data.get("datasets")
    if isinstance(datasets, dict):
        out["datasets"] = {}
        for name, ds in datasets.items():
            if isinstance(ds, dict) and isinstance(ds.get("params"), dict):
                params = dict(ds["params"])
                if ds.get("kind") in ("imagefolder", "npz") and "path" in params:
                    params["path"] = _beside(folder, params["path"])
                target = params.get("target")
                if ds.get("kind") == "target" and isinstance(target, str) and ":" in target:
                    module, _, attr = target.rpartition(":")
                    file = None if module.endswith(".py") else _module_file(module, (str(folder), os.getcwd()))
                    if file is not None:
                        params["target"] = f"{file}:{attr}"
                    elif module.endswith(".py"):
                        params["target"] = f"{_beside(folder, module)}:{attr}"
                ds = {**ds, "params": params}
            out["datasets"][name] = ds
    grids = data.get("grids")
    if isinstance(grids, dict):
        out["grids"] = {}
        for name, grid in grids.items():
            if isinstance(grid, dict) and grid.get("regime") is not None:
                blocks = grid["regime"]

                def fix(block: Any) -> Any:
                    if not isinstance(block, dict) or "noise_file" not in block:
                        return block
                    nf = block["noise_file"]
                    return {**block, "noise_file": [_beside(folder, v) for v in nf] if isinstance(nf, list)
                            else _beside(folder, nf)}

                grid = {**grid, "regime": [fix(b) for b in blocks] if isinstance(blocks, list) else fix(blocks)}
            out["grids"][name] = grid
    return out


def parse_registry(data: Any, source: str = "registry.yaml") -> Registry:
    if not isinstance(data, dict):
        raise BenchError(f"{source}: expected a mapping with sections datasets, architectures, losses, grids")
    data = resolve_paths(data, source)
    try:
        return Registry(**data, source=source)
    except ValidationError as exc:
        raise _explain(source, exc) from None
    except TypeError as exc:
        raise BenchError(f"{source}: {exc}") from None


def load_registry(path: Path | str) -> Registry:
    """Read and validate ``registry.yaml``; every problem becomes one BenchError line."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"registry file {str(path)!r} not found; pass --registry PATH or run from the repository root")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot read registry {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except BenchError as exc:
        raise BenchError(str(exc).replace("<unicode string>", str(path))) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"{path}: {where}malformed YAML: {problem}") from None
    return parse_registry(data, source=str(path))


def import_target(target: str, import_paths: Sequence[str] = (), what: str = "loss") -> Any:
    """Import ``package.module:ClassName``; a bad target is one BenchError line.

    ``import_paths`` (the registry file's folder and the working folder, see
    :meth:`Registry.import_paths`) are searched after the installed packages, so a
    ``my_losses.py`` beside ``registry.yaml`` imports as a user expects without shadowing a
    package of the same name.
    """
    module_name, _, attr = target.partition(":")
    for folder in import_paths:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's target
        looked = f"; looked in the installed packages and {', '.join(import_paths)}" if import_paths else ""
        raise BenchError(f"{what} target {target!r}: cannot import module {module_name!r} "
                         f"({type(exc).__name__}: {exc}){looked}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        raise BenchError(f"{what} target {target!r}: module {module_name!r} has no {attr!r}{closest(attr, public)}")
    return obj
