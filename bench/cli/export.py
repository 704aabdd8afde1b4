"""``bench export``: parse the flags, write the grid's stored results into one export file, say what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.main import (DataRootReadOpt, GridOpt, ReadFilterOpt, ReadLossesOpt, ReadSetOpt, RegistryOpt, ResultsOpt,
                            SuiteOpt, app, existing_results, fail, gc_paused, grid_or_suite)
from bench.errors import BenchError


@app.command("export")
@gc_paused
def export(
    out: Path = typer.Option(..., "--out", help="The export file to write (one parquet file, e.g. results-G.parquet)."),
    grid: str = GridOpt,
    suite: Optional[str] = SuiteOpt,
    losses: list[str] = ReadLossesOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    force: bool = typer.Option(False, "--force", help="Replace --out when it exists."),
    set_: list[str] = ReadSetOpt,
    filter_: list[str] = ReadFilterOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Write the stored rows and per-epoch histories of the grid's cells (those bench report shows; failed and
    diverged ones too) and its run records into one parquet file, for `bench report --from FILE` anywhere."""
    try:
        from bench.config.cells import parse_filters, parse_losses, parse_set, set_flag
        from bench.config.registry import load_registry
        from bench.plan.planner import plan_read
        from bench.report.content import count_line
        from bench.store.export import write_export
        from bench.store.results import Store

        reg = load_registry(registry)
        grid = grid_or_suite(reg, grid, suite)
        existing_results(results, grid)
        store = Store(results)
        overrides, filters = {**parse_set(set_), **parse_losses(losses)}, parse_filters(filter_)
        read = plan_read(reg, grid, store.runs(grid), overrides, filters, data_root)
        # the flags that choose these cells again, for the reader (the export keeps them)
        flags = " ".join([*(set_flag(k, v) for k, v in sorted(overrides.items())),
                          *(f"--filter {k}={','.join(v)}" for k, v in sorted(filters.items()))])
        counts = write_export(store, read.plan.cell_ids, out, grid,
                              {"overrides": overrides, "filters": filters, "flags": flags}, replace=force)
    except BenchError as err:
        fail(err)
    exported = sum(counts.values())
    total = len(read.plan.cell_ids)
    rest = f"; {total - exported} of its {total} cells have no stored result yet" if exported < total else ""
    typer.echo(f"exported {exported} cells of grid {grid!r} ({count_line(counts)}) to {out}{rest}")
    typer.echo(f"render them anywhere with: bench report --from {out}{' ' + flags if flags else ''}")
