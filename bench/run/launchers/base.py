"""What every launcher shares: the driver's hooks, the launcher protocol, and how a launcher declares
its command-line options.

A launcher module declares its options (:class:`OptionGroup` of :class:`LauncherOption`) beside its
code and one :class:`LauncherSpec`; the registry (:data:`bench.run.launchers.LAUNCHERS`) holds the
specs, ``bench run`` turns every declared option into a flag shown in the group's help panel, and
:class:`LauncherOptions` carries the values to the launcher. Nothing here imports torch or an engine,
so the CLI can build its help from the specs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bench.config.cells import Cell
    from bench.train.cell import CellOutcome, ExecOptions
    from bench.train.loop import TrainProgress


@dataclass
class Hooks:
    claim: Callable[[Cell], bool]
    start: Callable[[Cell], None]
    progress: Callable[[Cell, TrainProgress], None]
    finish: Callable[[Cell, CellOutcome], None]
    release: Callable[[Cell], None]


# told in the driver of each cell a cluster launcher submits, with its try number (1 for the first)
SubmitObserver = Callable[["Cell", int], None]


class Launcher(Protocol):
    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None: ...


@dataclass(frozen=True)
class LauncherOption:
    """One option of a launcher: the attribute of :class:`LauncherOptions` and the ``bench run`` flag."""

    name: str  # the attribute, and the parameter of `bench run`
    flags: tuple[str, ...]  # "--jobs", "-j"
    type: type
    default: Any
    help: str
    min: float | None = None

    @property
    def flag(self) -> str:
        return self.flags[0]


@dataclass(frozen=True)
class OptionGroup:
    """Options shown together under one help panel of ``bench run --help``."""

    panel: str
    options: tuple[LauncherOption, ...]


@dataclass(frozen=True)
class LauncherSpec:
    """One launcher: its ``--launcher`` name, the option groups it reads, and how it is built
    (``build(options, on_submit)``: checks the options first, imports its engine only then).

    ``worker_device``: for launchers whose cells train on other machines, the device type they train
    on (the planner checks the settings against it), and the data lives there, so the driver reads
    none; None: cells train here, on ``--device``, and the planner reads the data first.
    """

    name: str
    groups: tuple[OptionGroup, ...]
    build: Callable[[LauncherOptions, SubmitObserver | None], Launcher]
    worker_device: Callable[[LauncherOptions], str] | None = None

    @property
    def options(self) -> tuple[LauncherOption, ...]:
        return tuple(o for g in self.groups for o in g.options)


class LauncherOptions:
    """Where cells run: the launcher's name, the value of every declared launcher option (defaults
    filled in), and the folder for engine logs. Values read as attributes: ``options.jobs``."""

    def __init__(self, kind: str = "local", log_dir: str = "results/logs", **values: Any):
        from bench.run.launchers import all_options  # the registry imports this module

        declared = all_options()
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise TypeError(f"LauncherOptions: unknown launcher option {unknown[0]!r}; declared: {', '.join(declared)}")
        self.kind = kind
        self.log_dir = log_dir
        self.values: dict[str, Any] = {name: values.get(name, o.default) for name, o in declared.items()}

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is None or name not in values:
            raise AttributeError(name)
        return values[name]

    def changed(self) -> Mapping[str, Any]:
        """The options set away from their defaults."""
        from bench.run.launchers import all_options

        return {n: v for n, v in self.values.items() if v != all_options()[n].default}

    def __repr__(self) -> str:
        return f"LauncherOptions(kind={self.kind!r}, {', '.join(f'{k}={v!r}' for k, v in self.changed().items())})"
