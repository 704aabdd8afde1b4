"""Launchers run claimed cells somewhere and hand each outcome back to the driver.

A launcher implements ``run(cells, opts, hooks)``: for each cell it calls ``hooks.claim(cell)``
(False means skip it: another process has it or it is already done), runs it (in process, in a
pool, on Ray, on SLURM), and calls ``hooks.finish(cell, outcome)`` in the driver process, which
alone writes the store.

Each launcher is one module that declares its options beside its code and one
:class:`~bench.run.launchers.base.LauncherSpec`, plus one entry in :data:`LAUNCHERS` below; ``bench
run`` builds its launcher flags (one help panel per option group) from these specs. The cluster
launchers (``ray``, ``slurm``) share one driver-side loop (:mod:`bench.run.launchers.loop`) and
their worker side and common options (:mod:`bench.run.launchers.cluster`); each provides only how
its engine submits, polls and cancels cells.
"""

from __future__ import annotations

from bench.errors import BenchError
from bench.run.launchers import local, ray, slurm
from bench.run.launchers.base import (Hooks, Launcher, LauncherOption, LauncherOptions, LauncherSpec, OptionGroup,
                                      SubmitObserver)

# --launcher NAME -> its spec; a new launcher is one module and one entry here
LAUNCHERS: dict[str, LauncherSpec] = {spec.name: spec for spec in (local.SPEC, ray.SPEC, slurm.SPEC)}


def option_groups() -> list[OptionGroup]:
    """Every launcher's option groups, each once (Ray and SLURM share one), in registry order."""
    seen: dict[str, OptionGroup] = {}
    for spec in LAUNCHERS.values():
        for group in spec.groups:
            seen.setdefault(group.panel, group)
    return list(seen.values())


def all_options() -> dict[str, LauncherOption]:
    """Every declared launcher option by name."""
    return {o.name: o for g in option_groups() for o in g.options}


def _names() -> str:
    names = list(LAUNCHERS)
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def launcher_spec(kind: str) -> LauncherSpec:
    spec = LAUNCHERS.get(kind)
    if spec is None:
        raise BenchError(f"--launcher {kind!r}: expected {_names()}")
    return spec


def check_foreign_options(options: LauncherOptions, spec: LauncherSpec) -> None:
    """An option of another launcher, set away from its default, is a mistake: one line naming whose it is."""
    mine = {o.name for o in spec.options}
    declared = all_options()
    for name, value in options.changed().items():
        if name in mine:
            continue
        owners = [s.name for s in LAUNCHERS.values() if name in {o.name for o in s.options}]
        takes = ", ".join(o.flag for o in spec.options) or "no options"
        raise BenchError(f"{declared[name].flag} {value} is for --launcher {' or '.join(owners)}; "
                         f"--launcher {spec.name} takes {takes}")


def make_launcher(options: LauncherOptions, on_submit: SubmitObserver | None = None) -> Launcher:
    """The launcher ``options`` ask for, its options checked first and its engine imported only then.

    ``on_submit`` is told of each cell a cluster launcher submits, with its try number; the local
    launchers submit nothing and ignore it.
    """
    spec = launcher_spec(options.kind)
    check_foreign_options(options, spec)
    return spec.build(options, on_submit)


__all__ = ["LAUNCHERS", "Hooks", "Launcher", "LauncherOption", "LauncherOptions", "LauncherSpec", "OptionGroup",
           "SubmitObserver", "all_options", "check_foreign_options", "launcher_spec", "make_launcher", "option_groups"]
