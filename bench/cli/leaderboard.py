"""``bench leaderboard``: parse the flags, build the suite's leaderboard, print (and write) it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.main import (DataRootReadOpt, FromOpt, GridOpt, ReadLossesOpt, ReadSetOpt, RegistryOpt, ResultsOpt,
                            SuiteOpt, app, existing_results, fail, gc_paused, read_grid, say)
from bench.errors import BenchError

LEADERBOARD_FORMATS = ("markdown", "latex", "csv", "html")


@app.command()
@gc_paused
def leaderboard(
    ctx: typer.Context,
    suite: Optional[str] = SuiteOpt,
    grid: str = GridOpt,
    losses: list[str] = ReadLossesOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    from_: Optional[Path] = FromOpt,
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown, latex, csv or html."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the leaderboard, its figures (performance profiles, critical-difference diagram, a tuning-budget curve per task) and its CSV under OUT/<suite>/. Without --out nothing is written."),
    metric: str = typer.Option("acc", "--metric", help="What is compared: acc, balanced_acc, nll, ece, ece_ts or brier (test split, at each cell's best validation epoch)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="The loss every other is compared with (default: the suite's baseline:, else celLoss)."),
    rope: Optional[float] = typer.Option(None, "--rope", help="Region of practical equivalence, in the metric's displayed units (default 0.5 accuracy or ECE points; 0.01 for nll and brier)."),
    reps: int = typer.Option(10_000, "--reps", min=100, help="Stratified-bootstrap resamples of the intervals."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Compare on the first N trials of every loss only: an equal budget below the search's (a suite still training, or the question 'with N trials each?')."),
    set_: list[str] = ReadSetOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Each loss of a suite against the baseline across its tasks: tuned scores per task, IQM and probability of
    improvement with bootstrap intervals, ranks, practical equivalence, and the trials each needs to beat it."""
    try:
        if fmt not in LEADERBOARD_FORMATS:
            raise BenchError(f"--format {fmt!r}: expected one of {', '.join(LEADERBOARD_FORMATS)}")
        if rope is not None and not rope > 0:
            raise BenchError(f"--rope {rope:g}: the region of practical equivalence must be > 0, e.g. --rope 0.5")
        from bench.config.cells import parse_losses, parse_set
        from bench.config.registry import load_registry
        from bench.leaderboard.make import make_leaderboard, write_leaderboard
        from bench.metrics.table import metric as find_metric

        from bench.report.destination import export_source, store_source
        from bench.store.export import open_source

        reg = load_registry(registry)
        shown = find_metric(metric, "", [])
        if from_ is None:
            existing_results(results, suite or grid)
        store = open_source(results, from_)  # an export is read and checked here, before anything else
        name = read_grid(ctx, reg, grid, suite, store)
        made = make_leaderboard(reg, name, store, {**parse_set(set_), **parse_losses(losses)}, shown,
                                baseline, rope, reps, data_root, trials=trials)
        for note in made.notes:
            typer.echo(f"note: {note}", err=True)
        text = write_leaderboard(made, fmt, out, export_source(from_) if from_ is not None else store_source(results))
    except BenchError as err:
        fail(err)
    say(text)
