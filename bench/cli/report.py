"""``bench report``: parse the flags, collect the grid's results, print (and write) the report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.main import (DataRootReadOpt, FromOpt, GridOpt, ReadFilterOpt, ReadLossesOpt, ReadSetOpt, RegistryOpt,
                            ResultsOpt, SuiteOpt, app, existing_results, fail, gc_paused, read_grid, say)
from bench.errors import BenchError


def print_report(reg, cells, store, grid: str) -> None:
    """The grid's markdown table, as ``bench run`` prints it at the end."""
    from bench.report import REPORT_COLUMNS, collect, render

    baseline = reg.grids[grid].baseline_loss(reg.loss_names())
    say(render(collect(grid, cells, store.cells(REPORT_COLUMNS), _present(baseline, cells)), "markdown", None))


def _present(baseline: str | None, cells) -> str | None:
    """The grid's baseline where its cells hold it (a filter may have left it out), else None."""
    return baseline if baseline is not None and baseline in {c.loss for c in cells} else None


@app.command()
@gc_paused
def report(
    ctx: typer.Context,
    grid: str = GridOpt,
    suite: Optional[str] = SuiteOpt,
    losses: list[str] = ReadLossesOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    from_: Optional[Path] = FromOpt,
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown, latex or csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the report (and figures) under OUT/<grid>/, with a record of the results it was rendered from; a folder holding a report of other results is refused. Without --out nothing is written."),
    figures: bool = typer.Option(False, "--figures", help="Draw learning curves, sweeps and Î-vs-error plots (PNG and PDF) under --out."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Reference loss for the paired differences (default: the grid's baseline:, else celLoss)."),
    select: str = typer.Option("last", "--select", help="Selection rule of the main table: last, val, oracle or tuned."),
    accept_incomplete: bool = typer.Option(False, "--accept-incomplete", help="With --select tuned: show the verdicts although some trials lack seeds (the report says so)."),
    metric: str = typer.Option("acc", "--metric", help="What the tables and paired differences show, at the epoch --select picks: acc, balanced_acc, nll, ece, ece_ts (needs a validation split) or brier."),
    set_: list[str] = ReadSetOpt,
    filter_: list[str] = ReadFilterOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Paper-style table of final test accuracy (or --metric; mean ± std over seeds), with MI, bounds and paired differences."""
    from bench.report import FORMATS

    try:
        if fmt not in FORMATS:
            raise BenchError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if figures and out is None:
            raise BenchError("--figures writes PNG and PDF files: pass --out DIR to say where (they go under DIR/<grid>/)")
        from bench.config.cells import ADDED_LOSSES, parse_filters, parse_losses, parse_set, set_flag
        from bench.config.registry import load_registry
        from bench.plan.planner import plan_read
        from bench.report import REPORT_COLUMNS, annotate, collect_from_store, metric_absent, nothing_finished, render
        from bench.report.destination import export_source, record_source, report_dir, store_source
        from bench.store.export import left_out_note, open_source
        from bench.store.overview import other_run_cells, other_settings_note

        reg = load_registry(registry)
        store = open_source(results, from_)  # an export is read and checked here, before anything else
        grid = read_grid(ctx, reg, grid, suite, store)
        if from_ is None:
            existing_results(results, grid)
        overrides, filters = {**parse_set(set_), **parse_losses(losses)}, parse_filters(filter_)
        read = plan_read(reg, grid, store.runs(grid), overrides, filters, data_root)
        cells = read.plan.cells
        left_out = (left_out_note(store, read.plan.cell_ids, registry, {"overrides": overrides, "filters": filters})
                    if from_ is not None else None)
        other = other_run_cells(read)  # the statuses of those only: most grids have none (100,000 cells: 0.35 s)
        for note in [*read.notes, other_settings_note(read, store.statuses(other)) if other else None, left_out]:
            if note:
                typer.echo(f"note: {note}", err=True)
        losses = {c.loss for c in cells}
        if baseline is not None and baseline not in losses:
            from bench.errors import closest
            raise BenchError(f"--baseline {baseline!r}: not a loss of grid {grid!r}{closest(baseline, losses)}")
        reference = baseline or _present(reg.grids[grid].baseline_loss(reg.loss_names()), cells)
        results_df = store.cells() if figures else store.cells(REPORT_COLUMNS)  # the figures read the sweep settings too
        data = collect_from_store(grid, cells, results_df, store, reference, select, metric)
        annotate(data, reg, grid, read.plan, store, results_df, accept_incomplete)
        run_options = [
            ("--registry", registry if registry != Path("registry.yaml") else None),
            ("--results", results if results != Path("results") else None), ("--data-root", data_root),
            *(tuple(set_flag(k, v).split(" ", 1)) for k, v in sorted(read.plan.overrides.items())),
            *(("--filter", f"{k}={','.join(map(str, v))}") for k, v in sorted(read.plan.filters.items()))]
        empty = nothing_finished(data, from_ or results, run_options)
        absent = metric_absent(data, run_options) if empty is None else None
        if absent is not None:
            raise BenchError(absent)
        # the output folder only once the input is known good: a refused report leaves nothing behind
        source = export_source(from_) if from_ is not None else store_source(results)
        target = report_dir(out, grid, source)
        if empty is not None:
            typer.echo(empty)  # one line, not tables of dashes
            return
        fig_names: list[str] = []
        if figures:
            from bench.report.figures import draw_all

            drawn = draw_all(grid, cells, store, target, results_df,
                             space=reg.search_space(grid, read.plan.overrides.get(ADDED_LOSSES, [])) or None)
            fig_names = drawn.files
            for note in drawn.notes():
                typer.echo(f"note: {note}", err=True)
        text = render(data, fmt, fig_names)
        if target is not None:
            ext = {"markdown": "md", "latex": "tex", "csv": "csv"}[fmt]
            # one file per metric, so the accuracy report and, say, the ECE report sit side by side
            _write_text(target / (f"report.{ext}" if metric == "acc" else f"report-{metric}.{ext}"), text)
            from bench.plan.code_fingerprint import code_version

            record_source(target, source, grid, code_version())
    except BenchError as err:
        fail(err)
    typer.echo(text)


def _write_text(path: Path, text: str) -> None:
    from bench.fileio import StoreWriteError, atomic_write

    try:
        atomic_write(path, text.encode(), "report")
    except StoreWriteError as exc:
        raise BenchError(f"cannot write {path} ({exc.reason}); choose a writable --out folder") from None
