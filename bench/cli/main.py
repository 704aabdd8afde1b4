"""The ``bench`` app: its error handling, the options several commands share, and the commands'
registration (one module per command group: :mod:`~bench.cli.run`, :mod:`~bench.cli.report`,
:mod:`~bench.cli.leaderboard`, :mod:`~bench.cli.site`, :mod:`~bench.cli.status` with ``list``, :mod:`~bench.cli.export`,
:mod:`~bench.cli.theory` with ``bound`` and ``gauss``).

Exit codes: 0 ok, 1 some cells failed, 2 bad input, 130/143 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import NoReturn

import typer
from typer.core import TyperGroup

from bench.data.roots import DATA_ROOT_ENV
from bench.errors import BenchError, one_line

# typer may vendor click: take the exception classes from wherever its BadParameter lives
_click_exceptions = sys.modules[typer.BadParameter.__module__]


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    return "warning: " + one_line(message, 10_000) + "\n"


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown option or command, bad option value) as one ``error: ...`` line, exit code 2.

    Also prints Python warnings on one line each while a command runs.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import warnings

        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        saved = warnings.formatwarning
        warnings.formatwarning = _one_line_warning
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except _click_exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except _click_exceptions.ClickException as exc:
            hint = ""
            if isinstance(exc, _click_exceptions.UsageError) and getattr(exc, "ctx", None) is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            typer.echo(f"error: {' '.join(exc.format_message().split())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            if type(exc).__name__ != "Abort":  # click's Abort (Ctrl-C at a prompt, a closed pipe)
                raise
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        finally:
            warnings.formatwarning = saved
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="lossbench: compare loss functions for training deep classifiers (registry -> cells -> train -> store -> report).")

RegistryOpt = typer.Option(Path("registry.yaml"), "--registry", help="Registry file.", envvar="LOSSBENCH_REGISTRY")
ResultsOpt = typer.Option(Path("results"), "--results", help="Results folder (parquet store, checkpoints, locks).",
                          envvar="LOSSBENCH_RESULTS")
GridOpt = typer.Option("quick", "--grid", "-g", help="Grid name from the registry (a suite's name works too).")
SuiteOpt = typer.Option(None, "--suite", help="Suite name from the registry: its tasks, losses, seeds and search as one grid.")
LossesOpt = typer.Option([], "--losses", help="Add these registered losses (comma-separated) to the grid or suite, with its search budget: a new loss joins with one command.")
ReadLossesOpt = typer.Option([], "--losses", help="Show the cells with these losses added (as bench run --losses) instead of the last run's.")
# status and report: the cells of the grid's last run, or of these flags
ReadSetOpt = typer.Option([], "--set", help="Show the cells of these training or regime settings instead of the last run's.")
ReadFilterOpt = typer.Option([], "--filter", help="Keep cells with key=value[,value] (as bench run --filter).")
FromOpt = typer.Option(None, "--from", help="Read the results of this export file (written by bench export) instead "
                                             "of --results; the grid is the export's unless --grid/--suite names it.")
# the data root's environment variable is read here, at the edge, and nowhere else: the value travels
# as an argument from here to the planner, the launchers and every worker
DataRootReadOpt = typer.Option(None, "--data-root", envvar=DATA_ROOT_ENV,
                               help="Where the data is: to decide a grid's fallback when no run of it is recorded, "
                                    "and to tell finished cells that ran on other data (stale).")


def say(text: str, err: bool = False) -> None:
    """A line for the user: a closed pipe (``bench run | head``) silences the rest of that stream, never the run."""
    from bench.run.progress import write_line

    write_line(text, sys.stderr if err else sys.stdout)


def fail(err: Exception) -> NoReturn:
    """Bad input: one ``error:`` line and its exit code (2). A theory function's ValueError is bad
    input like any BenchError."""
    err = err if isinstance(err, BenchError) else BenchError(str(err))
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(err.exit_code)


def cache_dir(results: Path) -> Path:
    """The decoded-dataset cache: ``$LOSSBENCH_CACHE`` (read here, at the edge), else ``<results>/cache``."""
    return Path(os.environ.get("LOSSBENCH_CACHE", results / "cache"))


def grid_or_suite(reg, grid: str, suite: str | None) -> str:
    """The grid a command works on: ``--suite NAME`` (checked against the registry's suites), else ``--grid``."""
    if suite is None:
        return grid
    if grid != "quick":
        raise BenchError(f"--grid {grid} and --suite {suite}: give one of them")
    if suite not in reg.suites:
        from bench.errors import closest

        known = ", ".join(reg.suites) or "none"
        raise BenchError(f"unknown suite {suite!r}{closest(suite, reg.suites)}; the registry's suites: {known}")
    return suite


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (or its environment variable), not defaulted."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def read_grid(ctx: typer.Context, reg, grid: str, suite: str | None, store) -> str:
    """The grid a read-only command shows: ``--grid``/``--suite``, or with ``--from`` the export's own grid
    (which ``--grid``/``--suite``, when given, must name)."""
    from bench.store.export import ExportStore

    if not isinstance(store, ExportStore):
        return grid_or_suite(reg, grid, suite)
    return store.shown_grid(grid_or_suite(reg, grid, suite) if suite is not None or given(ctx, "grid") else None)


def existing_results(results: Path, grid: str) -> None:
    """Read-only commands read a results folder; a missing one is a typo, not an empty store."""
    if not results.is_dir():
        raise BenchError(f"--results {results}: no such folder; pass the folder `bench run` wrote to, or train the "
                         f"grid first: bench run --grid {grid} --results {results}")


def gc_paused(command):
    """Run a short read-only command with Python's cyclic garbage collector paused.

    ``status`` and ``report`` build a few objects per cell of the grid and exit; at 100,000 cells
    the collector's passes over that growing heap are a third of the grid expansion (0.42 s
    against 0.28 s), and nothing they build forms cycles. Re-enabled on return, so in-process
    callers (the tests) keep their collector.
    """
    import gc

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return command(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper


# the commands register themselves on ``app`` as they are imported (after everything above exists)
from bench.cli import run, status, report, leaderboard, site, export, theory  # noqa: E402,F401,I001 - the order of `bench --help`

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
