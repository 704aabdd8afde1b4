"""``bench run``: parse the flags, call the planner and the runner, print what they say.

The launcher flags are not written here: each launcher declares its options beside its code
(:mod:`bench.run.launchers`), and :func:`_with_launcher_options` adds them to the command, one help
panel per option group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from bench.cli.main import GridOpt, LossesOpt, RegistryOpt, ResultsOpt, SuiteOpt, app, cache_dir, fail, grid_or_suite, say
from bench.data.roots import DATA_ROOT_ENV
from bench.errors import BenchError
from bench.run.launchers import LAUNCHERS, LauncherOptions, option_groups


def _train_settings_epilog() -> str:
    from bench.config.registry import train_settings
    from bench.data.regimes import regime_settings

    lines = [f"  train.{name} ({kind}, default {default}): {meaning}" for name, kind, default, meaning in train_settings()]
    regime = [f"  regime.{name} ({kind}, default {default}): {meaning}" for name, kind, default, meaning in regime_settings()]
    # \b keeps click from re-wrapping each list into one paragraph
    return ("\b\nTraining settings (a grid's train: block, or --set train.KEY=VALUE):\n" + "\n".join(lines)
            + "\n\n\b\nData regime settings (a grid's regime: block, or --set regime.KEY=VALUE):\n" + "\n".join(regime))


def _filter_help() -> str:
    from bench.config.cells import FILTER_KEYS

    return f"Keep cells with key=value[,value]; key: {', '.join(FILTER_KEYS)}."


def _with_launcher_options(command):
    """Give ``command`` one keyword parameter per declared launcher option (typer reads the signature),
    each shown in its group's help panel; the command receives them in ``**launcher_values``."""
    sig = inspect.signature(command)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    for group in option_groups():
        for o in group.options:
            kind = Optional[o.type] if o.default is None else o.type
            option = typer.Option(o.default, *o.flags, help=o.help, min=o.min, rich_help_panel=group.panel)
            params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
    command.__signature__ = sig.replace(parameters=params)
    return command


@app.command(epilog=_train_settings_epilog())
@_with_launcher_options
def run(
    ctx: typer.Context,
    grid: str = GridOpt,
    suite: Optional[str] = SuiteOpt,
    losses: list[str] = LossesOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar=DATA_ROOT_ENV,
                                             help="Folder holding the datasets (torchvision layout)."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download missing datasets (needs a network)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default: cuda when present), cpu, cuda, cuda:N."),
    filter_: list[str] = typer.Option([], "--filter", help=_filter_help()),
    set_: list[str] = typer.Option([], "--set", help="Override a training or data regime setting, e.g. --set train.epochs=2 or --set regime.noise_rate=0.4."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and their status; train nothing."),
    force: bool = typer.Option(False, "--force", help="Retrain finished cells too."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry failed and diverged cells."),
    rerun_stale: bool = typer.Option(False, "--rerun-stale", help="Retrain finished cells whose loss or model code changed since."),
    launcher: str = typer.Option("local", "--launcher", help=f"Where cells train: {', '.join(LAUNCHERS)} (default local); "
                                 "each launcher's options are in its own panel below."),
    plain: Optional[bool] = typer.Option(None, "--plain/--rich", help="Plain line output (default when not a terminal)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Print the grid's markdown table at the end."),
    log: list[str] = typer.Option([], "--log", help="Log each cell to a tracker too: tensorboard (RESULTS/tb/), mlflow (RESULTS/mlflow.db or $MLFLOW_TRACKING_URI) or wandb (offline unless configured); repeatable."),
    **launcher_values: Any,
) -> None:
    """Train every unfinished cell of a grid; finished cells are skipped, interrupted ones resume."""
    with _signals_interrupt():
        try:
            from bench.config.cells import parse_filters, parse_losses, parse_set
            from bench.config.registry import load_registry
            from bench.run.progress import make_display
            from bench.plan.code_fingerprint import stale_finished
            from bench.plan.data_fingerprint import data_stale_finished
            from bench.run.runner import dry_run_lines, plan_cells, prepare_launch, run_grid, stale_note
            from bench.seams import Seams
            from bench.store.results import Store

            # a program embedding the command plugs in callbacks and a file writer: app(obj=Seams(...))
            seams = ctx.obj if ctx.obj is not None else Seams()
            if not isinstance(seams, Seams):
                raise TypeError(f"bench run: app(obj=...) takes a bench.seams.Seams, not {type(seams).__name__}")
            if log:  # trackers are training callbacks: they reach every launcher's workers through the seams
                from bench.run.trackers import make_trackers

                seams = dataclasses.replace(seams, callbacks=(*seams.callbacks, *make_trackers(log, results)))
            store = Store(results, writer=seams.writer)
            if not dry_run:
                store.check_location()  # a results path under a file: say so before reading any data
            reg = load_registry(registry)
            grid = grid_or_suite(reg, grid, suite)
            where = LauncherOptions(launcher, log_dir=str(results / "logs"), **launcher_values)
            # --dry-run is read-only: no cache written
            planned = plan_cells(reg, grid, {**parse_set(set_), **parse_losses(losses)}, parse_filters(filter_), where, device, data_root,
                                 None if dry_run else cache_dir(results))
            for note in planned.planned.notes:
                say(f"note: {note}", err=True)
            if dry_run:
                for line in [*planned.planned.sources, *dry_run_lines(planned, store.statuses())]:
                    say(line)
                return
            chosen, opts = prepare_launch(planned, store, reg, where, data_root, download, cache_dir(results), seams)
            for line in planned.planned.sources:  # which files each dataset was read from, once every check has passed
                say(line)
            t0 = time.perf_counter()
            stale = stale_finished(planned.cells, store, reg.import_paths())
            if stale and not rerun_stale:
                say(f"note: {stale_note(stale)}", err=True)
            data_stale = data_stale_finished(planned.cells, store, planned.planned.fingerprints)
            if data_stale and not rerun_stale:
                from bench.plan.data_fingerprint import data_stale_note

                say(f"note: {data_stale_note([c for c in planned.cells if c.cell_id in data_stale], grid, False)}",
                           err=True)
            stale |= data_stale
            summary = run_grid(planned.cells, store, chosen, opts, make_display(plain), force=force,
                               retry_failed=retry_failed, rerun=stale if rerun_stale else set(), stale=stale)
        except BenchError as err:
            fail(err)
        except KeyboardInterrupt as exc:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut the goodbye short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            code = 143 if isinstance(exc, _Terminated) else 130
            say("interrupted: finished cells are stored and the running cell resumes from its last checkpoint "
                       "on the next `bench run`", err=True)
            raise typer.Exit(code) from None
        say(summary.line(grid, time.perf_counter() - t0))
        for msg in summary.failed_messages:
            say(f"  failed: {msg}", err=True)
        if report:
            from bench.cli.report import print_report

            print_report(reg, planned.cells, store, grid)
        raise typer.Exit(summary.exit_code)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise in the main thread while the run lasts, so the running cell stops at a
    clean point (its last epoch checkpoint is on disk, temp files are removed) and the exit code says
    which. The handlers that were there come back afterwards: a program (or a test) calling the command
    in its own process keeps its own."""
    signals = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.getsignal(s) for s in signals}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so the same cleanup runs; exit code 143."""


def _sigterm(signum, frame) -> None:  # noqa: ARG001
    raise _Terminated()
