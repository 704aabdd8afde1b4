"""What a registry holds, for ``bench list``: datasets, architectures, losses and grids as tables.

Built completely before anything is printed, so a registry with a problem anywhere (an unknown
name, a broken loss, a bad architecture parameter) prints its ``error:`` lines and no half listing.
Every loss of the registry, in a grid or not, is checked as the planner checks it (import,
parameters, one forward and backward on a probe batch: :mod:`bench.plan.preflight`), and each
broken one is its own line (:class:`LossProblems`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.config.registry import Registry


class LossProblems(BenchError):
    """Every broken loss of a registry, one message each (as ``bench run`` words it)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def loss_classes(reg: Registry) -> dict[str, list[int]]:
    """The class counts each loss is probed at: those of the datasets of the grids that use it, as the
    planner probes it; a loss in no grid at those of every dataset of the registry."""
    from bench.data import dataset_shape

    def classes(names) -> list[int]:
        return sorted({dataset_shape(reg.datasets[d].kind, reg.datasets[d].params)[1] for d in names})

    used: dict[str, set[str]] = {}
    for g in reg.grids.values():
        for gl in g.grid_losses(reg.loss_names()):
            used.setdefault(gl.name, set()).update(g.datasets)
    everywhere = classes(reg.datasets)
    return {name: classes(used[name]) if name in used else everywhere for name in reg.losses}


def check_losses(reg: Registry) -> None:
    """Import, check and probe every loss of the registry; raise :class:`LossProblems` naming each broken one."""
    from bench.plan.preflight import check_loss

    problems: list[str] = []
    for name, classes in loss_classes(reg).items():
        spec = reg.losses[name]
        try:
            check_loss(name, spec.target, dict(spec.params), classes, reg.import_paths())
        except BenchError as exc:
            problems.append(str(exc))
    if problems:
        raise LossProblems(problems)


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[object]]
    notes: tuple[str, ...] = ()  # lines printed under the table


def _datasets(reg: Registry, data_root: Path | None, cache_dir: Path | None) -> Table:
    from bench.data import load_splits

    rows: list[list[object]] = []
    notes: list[str] = []
    for name, ds in reg.datasets.items():
        try:
            s = load_splits(ds.kind, dict(ds.params), data_root, False, cache_dir)
            rows.append([name, ds.kind, len(s.train_y), len(s.test_y), "x".join(map(str, s.in_shape)), s.num_classes,
                         ds.description])
            if ds.kind in ("imagefolder", "npz", "target"):  # a user's data: say what was found where
                from bench.data import describe_source

                notes.append(f"dataset {name!r} {describe_source(s).removeprefix('data: ')}")
        except BenchError as exc:  # a dataset that is not there is listed as such, with where it was looked for
            rows.append([name, ds.kind, "not found", "", "", "", ds.description])
            notes.append(f"dataset {name!r} not found: {exc}")
    return Table(["dataset", "kind", "train", "test", "shape", "classes", "description"], rows, tuple(notes))


def _architecture_rows(reg: Registry, count: bool) -> list[list[object]]:
    """Each architecture at the input shape of the first grid dataset that uses it (3x32x32 when
    no grid does), its parameters counted on the meta device (no memory, no init)."""
    import torch

    from bench.data import dataset_shape
    from bench.models.zoo import build_model, count_params

    shapes: dict[str, tuple[tuple[int, int, int], int]] = {}
    for g in reg.grids.values():
        for arch in g.architectures:
            ds = reg.datasets[g.datasets[0]]
            shapes.setdefault(arch, dataset_shape(ds.kind, ds.params))
    rows: list[list[object]] = []
    for name, arch in reg.architectures.items():
        shape, classes = shapes.get(name, ((3, 32, 32), 10))
        n = ""
        if count:
            try:
                with torch.device("meta"):
                    model = build_model(arch.source, arch.name, shape, classes, dict(arch.params), reg.import_paths())
                n = f"{count_params(model) / 1e6:.3f}M"
            except BenchError as exc:
                raise BenchError(f"{reg.source}: architectures.{name}: {exc}") from None
        rows.append([name, arch.source, arch.name, "x".join(map(str, shape)), classes, n, arch.description])
    return rows


def _grid_rows(reg: Registry) -> list[list[object]]:
    from bench.plan.planner import make_plan

    rows: list[list[object]] = []
    for name, g in reg.grids.items():
        if name in reg.suites:
            continue
        cells = make_plan(reg, name).cells  # validates: every loss probed, every model built on the meta device
        rows.append([name, len(cells), ", ".join(g.datasets), ", ".join(g.architectures), len(g.seeds),
                     cells[0].config["train"]["epochs"] if cells else "", g.description])
    return rows


def _suite_rows(reg: Registry) -> list[list[object]]:
    """Each suite: its tasks (datasets x architectures x regimes), losses, the search's trials and its cells."""
    from bench.plan.planner import make_plan

    rows: list[list[object]] = []
    for name, s in reg.suites.items():
        cells = make_plan(reg, name).cells
        tasks = len(s.datasets) * len(s.architectures) * len(s.regimes)
        rows.append([name, len(cells), f"{tasks}: {', '.join(s.datasets)} x {', '.join(s.architectures)} x "
                     f"{', '.join(s.regimes)}", len(s.loss_names(reg.loss_names())), s.search.trials if s.search else "",
                     len(s.seeds), cells[0].config["train"]["epochs"] if cells else "", s.description])
    return rows


def catalog(reg: Registry, data_root: Path | None, cache_dir: Path | None, count: bool = True) -> list[Table]:
    check_losses(reg)  # first, each broken loss named: the grids' checks would stop at the first
    grids = _grid_rows(reg)
    architectures = _architecture_rows(reg, count)
    losses = [[n, spec.target, ", ".join(f"{k}={v}" for k, v in spec.params.items()),
               ", ".join(f"{k} ~ {v}" for k, v in spec.search.items()), spec.description]
              for n, spec in reg.losses.items()]
    return [
        _datasets(reg, data_root, cache_dir),
        Table(["architecture", "source", "name", "input", "classes", "params", "description"], architectures),
        Table(["loss", "target", "defaults", "searched", "description"], losses),
        Table(["grid", "cells", "datasets", "architectures", "seeds", "epochs", "description"], grids),
        *([Table(["suite", "cells", "tasks", "losses", "trials", "seeds", "epochs", "description"], _suite_rows(reg))]
          if reg.suites else []),
    ]


def render_catalog(tables: list[Table]) -> str:
    from tabulate import tabulate

    return "\n\n".join("\n".join([tabulate(t.rows, headers=t.headers), *(f"note: {n}" for n in t.notes)])
                       for t in tables)
