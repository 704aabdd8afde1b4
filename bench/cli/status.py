"""``bench status`` and ``bench list``: what the store holds of a grid, and what the registry holds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.main import (DataRootReadOpt, FromOpt, GridOpt, ReadFilterOpt, ReadLossesOpt, ReadSetOpt, RegistryOpt,
                            ResultsOpt, SuiteOpt, app, cache_dir, existing_results, fail, gc_paused, read_grid)
from bench.errors import BenchError


@app.command()
@gc_paused
def status(
    ctx: typer.Context,
    grid: str = GridOpt,
    suite: Optional[str] = SuiteOpt,
    losses: list[str] = ReadLossesOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    from_: Optional[Path] = FromOpt,
    set_: list[str] = ReadSetOpt,
    filter_: list[str] = ReadFilterOpt,
    data_root: Optional[Path] = DataRootReadOpt,
    whole: bool = typer.Option(False, "--all", help="Every cell of the grid under the last run's settings, not only the cells that run chose with --filter."),
) -> None:
    """Counts of done / running / failed / diverged / pending (and interrupted, stale) cells of the grid's last run,
    the failed cells' messages and the interrupted cells' checkpoints. Exit code 1 when those cells hold failed or
    diverged ones, else 0."""
    try:
        from bench.config.cells import parse_filters, parse_losses, parse_set
        from bench.config.registry import load_registry
        from bench.plan.planner import plan_read
        from bench.store.export import open_source
        from bench.store.overview import grid_status

        reg = load_registry(registry)
        store = open_source(results, from_)  # an export is read and checked here, before anything else
        grid = read_grid(ctx, reg, grid, suite, store)
        if from_ is None:
            existing_results(results, grid)
        read = plan_read(reg, grid, store.runs(grid), {**parse_set(set_), **parse_losses(losses)}, parse_filters(filter_), data_root,
                         last_run_cells=not whole)
        from bench.plan.data_fingerprint import read_only_data

        scoped = not (set_ or filter_ or losses or whole) and read.plan.filters
        flags = " ".join(f"--filter {k}={','.join(v)}" for k, v in sorted(read.plan.filters.items()))
        scope = f" of its last run ({flags}; --all: the whole grid)" if scoped else ""
        shown = grid_status(read, store, reg.import_paths(), read_only_data(data_root, cache_dir(results)), scope)
    except BenchError as err:
        fail(err)
    for line in shown.lines():
        typer.echo(line)
    raise typer.Exit(shown.exit_code)


@app.command("list")
def list_(
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    data_root: Optional[Path] = DataRootReadOpt,
    params: bool = typer.Option(True, "--params/--no-params", help="Build each architecture to count its parameters."),
) -> None:
    """What the registry holds: datasets with sizes, architectures with parameter counts, losses, grids with cell counts."""
    try:
        from bench.config.registry import load_registry
        from bench.plan.catalog import LossProblems, catalog, render_catalog

        # everything is checked (every loss probed, every grid expanded) before anything is printed
        tables = catalog(load_registry(registry), data_root, None, count=params)  # read-only: no cache written
    except LossProblems as err:
        for problem in err.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(err.exit_code) from None
    except BenchError as err:
        fail(err)
    typer.echo(render_catalog(tables))
