"""The ``bench`` command line. Exit codes: 0 ok, 1 some cells failed, 2 bad input, 130/143 interrupted."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer
from typer.core import TyperGroup

from bench.errors import BenchError, one_line

if TYPE_CHECKING:
    from bench.plan.planner import Plan

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
GridOpt = typer.Option("quick", "--grid", "-g", help="Grid name from the registry.")
# status and report: the cells of the grid's last run, or of these flags
ReadSetOpt = typer.Option([], "--set", help="Show the cells of these training or regime settings instead of the last run's.")
ReadFilterOpt = typer.Option([], "--filter", help="Keep cells with key=value[,value] (as bench run --filter).")
DataRootReadOpt = typer.Option(None, "--data-root", envvar="LOSSBENCH_DATA_ROOT",
                               help="Where the data is, to decide a grid's fallback when no run of it is recorded.")


def _fail_value(exc: Exception) -> NoReturn:
    """A theory function's ValueError is bad input like any BenchError: one line, exit 2."""
    _fail(exc if isinstance(exc, BenchError) else BenchError(str(exc)))


def _fail(err: BenchError) -> NoReturn:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(err.exit_code)


def _cache_dir(results: Path) -> Path:
    return Path(os.environ.get("LOSSBENCH_CACHE", results / "cache"))


def _gc_paused(command):
    """Run a short read-only command with Python's cyclic garbage collector paused.

    ``status`` and ``report`` build a few objects per cell of the grid and exit; at 100,000 cells
    the collector's passes over that growing heap are a third of the grid expansion (0.42 s
    against 0.28 s), and nothing they build forms cycles. Re-enabled on return, so in-process
    callers (the tests) keep their collector.
    """
    import functools
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


class _DataProbe:
    """Why a dataset cannot be read (None when it can), for the planner's fallbacks and checks;
    remembers which files each readable dataset came from, for the run to say."""

    def __init__(self, data_root: Path | None, cache_dir: Path | None):
        self.data_root, self.cache_dir = data_root, cache_dir
        self.sources: dict[str, str] = {}
        self.train_labels: dict[str, tuple] = {}  # name -> (training labels, classes), for the validation and regime checks

    def __call__(self, name: str, ds) -> str | None:
        from bench.data import describe_source, load_splits

        try:
            splits = load_splits(ds.kind, dict(ds.params), self.data_root, False, self.cache_dir)
        except BenchError as exc:
            return str(exc)
        self.sources[name] = describe_source(splits)
        self.train_labels[name] = (splits.train_y.numpy(), splits.num_classes)
        return None


def _plan_run(reg, grid: str, sets: list[str], filters: list[str], problem, device_type: str) -> "Plan":
    """Plan a run: every check that needs no data first (grid, settings, losses, models), so a typo
    reads no data and writes nothing; then the fallbacks (``problem`` reads data; None: skip them);
    filter values are matched after the fallbacks."""
    from bench.config.cells import parse_filters, parse_set
    from bench.plan.planner import check_device, check_regime_data, check_validation, fallbacks, make_plan

    overrides, flt = parse_set(sets), parse_filters(filters)
    declared = make_plan(reg, grid, overrides, None, {}, validate=True)
    check_device(declared, device_type)
    subs = fallbacks(reg, grid, problem) if problem is not None else {}
    for name, fallback in subs.items():
        typer.echo(f"note: dataset {name!r} unavailable ({problem(name, reg.datasets[name])}); grid {grid!r} "
                   f"falls back to {fallback!r}", err=True)
    plan = declared if not subs and not flt else make_plan(reg, grid, overrides, flt, subs, validate=bool(subs))
    if problem is not None:  # a dataset that cannot be read is one error line now, not a failed row per cell
        for name in dict.fromkeys(c.dataset for c in plan.cells):
            why = problem(name, reg.datasets[name])
            if why is not None:
                raise BenchError(why)
        check_validation(plan, problem.train_labels)
        check_regime_data(plan, problem.train_labels, reg.import_paths())
    return plan


def _plan_read(reg, grid: str, store, sets: list[str], filters: list[str], data_root: Path | None):
    """The cells ``status`` / ``report`` show: the grid's last run's, or those of the flags given."""
    from bench.config.cells import parse_filters, parse_set
    from bench.plan.planner import plan_from_runs

    if grid not in reg.grids:
        from bench.config.cells import expand_grid

        expand_grid(reg, grid, validate=False)  # the unknown-grid error, with the closest names
    overrides, flt = parse_set(sets), parse_filters(filters)
    runs = store.runs(grid)
    needs_probe = not runs and reg.grids[grid].fallback_dataset is not None
    return plan_from_runs(reg, grid, runs, overrides, flt, _DataProbe(data_root, None) if needs_probe else None)


def _train_settings_epilog() -> str:
    from bench.data.regimes import regime_settings
    from bench.config.registry import train_settings

    lines = [f"  train.{name} ({kind}, default {default}): {meaning}" for name, kind, default, meaning in train_settings()]
    regime = [f"  regime.{name} ({kind}, default {default}): {meaning}" for name, kind, default, meaning in regime_settings()]
    # \b keeps click from re-wrapping each list into one paragraph
    return ("\b\nTraining settings (a grid's train: block, or --set train.KEY=VALUE):\n" + "\n".join(lines)
            + "\n\n\b\nData regime settings (a grid's regime: block, or --set regime.KEY=VALUE):\n" + "\n".join(regime))


@app.command(epilog=_train_settings_epilog())
def run(
    ctx: typer.Context,
    grid: str = GridOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="LOSSBENCH_DATA_ROOT",
                                             help="Folder holding the datasets (torchvision layout)."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download missing datasets (needs a network)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default: cuda when present), cpu, cuda, cuda:N."),
    filter_: list[str] = typer.Option([], "--filter", help="Keep cells with key=value[,value] (dataset, architecture, loss, loss_name, seed, variant, cell_id)."),
    set_: list[str] = typer.Option([], "--set", help="Override a training or data regime setting, e.g. --set train.epochs=2 or --set regime.noise_rate=0.4."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and their status; train nothing."),
    force: bool = typer.Option(False, "--force", help="Retrain finished cells too."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry failed and diverged cells."),
    rerun_stale: bool = typer.Option(False, "--rerun-stale", help="Retrain finished cells whose loss or model code changed since."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Cells trained at once by local worker processes."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads per training process (local launcher); 0 (default): share the cores with the other lossbench runs on this machine."),
    launcher: str = typer.Option("local", "--launcher", help="local (default, no engine), ray or slurm."),
    gpus_per_cell: float = typer.Option(0.0, "--gpus-per-cell", min=0.0, help="GPUs per cell on ray/slurm (fractions on Ray: 0.25 packs four cells per GPU)."),
    cpus_per_cell: float = typer.Option(1.0, "--cpus-per-cell", min=0.0, help="CPUs per cell on ray/slurm."),
    max_retries: int = typer.Option(2, "--max-retries", min=0, help="Retries of a cell whose worker died (ray/slurm)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join ('auto' or host:port); default starts a local one."),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="SLURM partition."),
    timeout_min: int = typer.Option(60 * 24, "--timeout-min", min=1, help="SLURM time limit per cell, minutes."),
    slurm_array_parallelism: int = typer.Option(16, "--slurm-array-parallelism", min=1, help="SLURM array jobs running at once."),
    slurm_executor: str = typer.Option("slurm", "--slurm-executor", help="How --launcher slurm runs its jobs: slurm (sbatch, default), local (processes of this machine) or debug (one by one in this process)."),
    plain: Optional[bool] = typer.Option(None, "--plain/--rich", help="Plain line output (default when not a terminal)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Print the grid's markdown table at the end."),
) -> None:
    """Train every unfinished cell of a grid; finished cells are skipped, interrupted ones resume."""
    # Ctrl-C and SIGTERM raise in the main thread, so the running cell stops at a clean point (its
    # last epoch checkpoint is on disk, temp files are removed) and the exit code says which
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        from bench.train.cell import ExecOptions
        from bench.run.progress import make_display
        from bench.run.runner import run_grid
        from bench.seams import Seams
        from bench.store.results import Store, clean_temp_files

        # a program embedding the command plugs in callbacks and a file writer: app(obj=Seams(...))
        seams = ctx.obj if ctx.obj is not None else Seams()
        if not isinstance(seams, Seams):
            raise TypeError(f"bench run: app(obj=...) takes a bench.seams.Seams, not {type(seams).__name__}")
        store = Store(results, writer=seams.writer)
        if not dry_run:
            store.check_location()  # a results path under a file: say so before reading any data
        from bench.train.device import pick_device
        from bench.config.registry import load_registry
        from bench.store.status import Status

        reg = load_registry(registry)
        cluster = launcher in ("ray", "slurm")
        # on a cluster the data lives on the workers, so the driver does not read it (no fallbacks)
        cache = None if dry_run else _cache_dir(results)  # --dry-run is read-only: no cache written
        dev = pick_device(device) if not cluster else None
        probe = None if cluster else _DataProbe(data_root, cache)
        plan = _plan_run(reg, grid, set_, filter_, probe,
                         ("cuda" if gpus_per_cell > 0 else "cpu") if cluster else dev.type)
        cells = plan.cells

        def say_sources() -> None:  # which files each dataset was read from, once every check has passed
            for name in dict.fromkeys(c.dataset for c in cells):
                if probe is not None and name in probe.sources:
                    typer.echo(probe.sources[name])

        if dry_run:
            say_sources()
            statuses = store.statuses()
            for c in cells:
                typer.echo(f"{c.cell_id}  {statuses.get(c.cell_id, Status.PENDING):9s} {c.title}")
            typer.echo(f"{len(cells)} cells{f' on {dev}' if dev is not None else ''}; "
                       f"{sum(statuses.get(c.cell_id) == Status.DONE for c in cells)} done")
            return
        store.ensure_writable()
        clean_temp_files(store)
        opts = ExecOptions(device=str(dev) if dev is not None else "cpu", data_root=str(data_root) if data_root else None,
                           download=download, cache_dir=str(_cache_dir(results)), checkpoint_dir=str(store.checkpoints_dir),
                           import_paths=reg.import_paths(), seams=seams)
        from bench.run.launchers import LauncherOptions, make_launcher

        chosen = make_launcher(LauncherOptions(
            kind=launcher, jobs=jobs, threads=threads, gpus_per_cell=gpus_per_cell, cpus_per_cell=cpus_per_cell, max_retries=max_retries,
            ray_address=ray_address, slurm_partition=slurm_partition, timeout_min=timeout_min,
            slurm_array_parallelism=slurm_array_parallelism, slurm_executor=slurm_executor,
            log_dir=str(results / "logs")))
        store.record_run(plan.record())  # every check passed: this run's cells are what status/report show
        say_sources()
        t0 = time.perf_counter()
        stale = _stale(cells, store, reg.import_paths())
        if stale and not rerun_stale:
            typer.echo(f"note: {len(stale)} finished cells ran an older version of their loss or model code (stale); "
                       "they are kept as they are: retrain them with --rerun-stale", err=True)
        summary = run_grid(cells, store, chosen, opts, make_display(plain), force=force, retry_failed=retry_failed,
                           rerun=stale if rerun_stale else set())
    except BenchError as err:
        _fail(err)
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut the goodbye short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = 143 if isinstance(exc, _Terminated) else 130
        typer.echo("interrupted: finished cells are stored and the running cell resumes from its last checkpoint "
                   "on the next `bench run`", err=True)
        raise typer.Exit(code) from None
    typer.echo(summary.line(grid, time.perf_counter() - t0))
    for msg in summary.failed_messages:
        typer.echo(f"  failed: {msg}", err=True)
    if report:
        _print_report(reg, cells, store, grid, "markdown", None)
    raise typer.Exit(summary.exit_code)


def _stale(cells, store, import_paths: tuple[str, ...]) -> set[str]:
    """Finished cells of ``cells`` whose loss or model code changed since they ran."""
    from bench.plan.provenance import stale_cells
    from bench.store.status import Status

    df = store.cells(["cell_id", "status", "code_fingerprint"])
    if df.empty or "code_fingerprint" not in df:
        return set()
    done = df[df["status"] == Status.DONE]
    prints = {c: f for c, f in zip(done["cell_id"].tolist(), done["code_fingerprint"].tolist()) if isinstance(f, str)}
    return set(stale_cells([c for c in cells if c.cell_id in prints], prints, import_paths))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so the same cleanup runs; exit code 143."""


def _sigterm(signum, frame) -> None:  # noqa: ARG001
    raise _Terminated()


def _print_report(reg, cells, store, grid: str, fmt: str, baseline: str | None, figures=None) -> str:
    from bench.report.collect import REPORT_COLUMNS, collect
    from bench.report.render import render

    data = collect(grid, cells, store.cells(REPORT_COLUMNS), baseline or _default_baseline(cells))
    text = render(data, fmt, figures)
    typer.echo(text)
    return text


def _default_baseline(cells) -> str | None:
    names = [c.loss for c in cells]
    return "celLoss" if "celLoss" in names else None


@app.command()
@_gc_paused
def status(
    grid: str = GridOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    set_: list[str] = ReadSetOpt,
    filter_: list[str] = ReadFilterOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Counts of done / running / failed / diverged / pending cells of the grid's last run, and the failed cells' messages."""
    try:
        from bench.store.overview import grid_status
        from bench.config.registry import load_registry
        from bench.store.results import Store

        reg = load_registry(registry)
        _existing_results(results, grid)
        store = Store(results)
        read = _plan_read(reg, grid, store, set_, filter_, data_root)
        lines = grid_status(read, store, reg.import_paths()).lines()
    except BenchError as err:
        _fail(err)
    for line in lines:
        typer.echo(line)


@app.command()
@_gc_paused
def report(
    grid: str = GridOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown, latex or csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the report (and figures) under OUT/<grid>/."),
    figures: bool = typer.Option(False, "--figures", help="Draw learning curves, sweeps and Î-vs-error plots (PNG and PDF)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Reference loss for the paired differences (default celLoss)."),
    select: str = typer.Option("last", "--select", help="Selection rule of the main table: last, val, oracle or tuned."),
    metric: str = typer.Option("acc", "--metric", help="What the tables and paired differences show, at the epoch --select picks: acc, balanced_acc, nll, ece, ece_ts (needs a validation split) or brier."),
    set_: list[str] = ReadSetOpt,
    filter_: list[str] = ReadFilterOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Paper-style table of final test accuracy (or --metric; mean ± std over seeds), with MI, bounds and paired differences."""
    from bench.report.render import FORMATS

    try:
        if fmt not in FORMATS:
            raise BenchError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        from bench.store.overview import other_settings_note
        from bench.config.registry import load_registry
        from bench.store.results import Store

        reg = load_registry(registry)
        _existing_results(results, grid)
        store = Store(results)
        read = _plan_read(reg, grid, store, set_, filter_, data_root)
        cells = read.plan.cells
        for note in [*read.notes, other_settings_note(read, store.statuses())]:
            if note:
                typer.echo(f"note: {note}", err=True)
        if baseline is not None and baseline not in {c.loss for c in cells}:
            from bench.errors import closest
            raise BenchError(f"--baseline {baseline!r}: not a loss of grid {grid!r}{closest(baseline, {c.loss for c in cells})}")
        from bench.config.cells import set_flag
        from bench.report.collect import REPORT_COLUMNS, collect_from_store
        from bench.report.render import metric_absent, nothing_finished, render

        results_df = store.cells() if figures else store.cells(REPORT_COLUMNS)  # the figures read the sweep settings too
        data = collect_from_store(grid, cells, results_df, store, baseline or _default_baseline(cells), select, metric)
        run_options = [
            ("--registry", registry if registry != Path("registry.yaml") else None),
            ("--results", results if results != Path("results") else None), ("--data-root", data_root),
            *(tuple(set_flag(k, v).split(" ", 1)) for k, v in sorted(read.plan.overrides.items())),
            *(("--filter", f"{k}={','.join(map(str, v))}") for k, v in sorted(read.plan.filters.items()))]
        empty = nothing_finished(data, results, run_options)
        absent = metric_absent(data, run_options) if empty is None else None
        if absent is not None:
            raise BenchError(absent)
        # the output folder only once the input is known good: a refused report leaves nothing behind
        target = _report_dir(out if out is not None else (Path("report") if figures else None), grid)
        if empty is not None:
            typer.echo(empty)  # one line, not tables of dashes
            return
        fig_names: list[str] = []
        if figures:
            from bench.report.figures import draw_all

            search = reg.grids[grid].search
            drawn = draw_all(grid, cells, store, target, results_df,
                             space=search.distributions() if search is not None else None)
            fig_names = drawn.files
            for note in drawn.notes():
                typer.echo(f"note: {note}", err=True)
        text = render(data, fmt, fig_names)
        if target is not None:
            ext = {"markdown": "md", "latex": "tex", "csv": "csv"}[fmt]
            # one file per metric, so the accuracy report and, say, the ECE report sit side by side
            _write_text(target / (f"report.{ext}" if metric == "acc" else f"report-{metric}.{ext}"), text)
    except BenchError as err:
        _fail(err)
    typer.echo(text)


def _existing_results(results: Path, grid: str) -> None:
    """Read-only commands read a results folder; a missing one is a typo, not an empty store."""
    if not results.is_dir():
        raise BenchError(f"--results {results}: no such folder; pass the folder `bench run` wrote to, or train the "
                         f"grid first: bench run --grid {grid} --results {results}")


def _report_dir(out: Path | None, grid: str) -> Path | None:
    if out is None:
        return None
    from bench.store.results import _safe

    target = (out / _safe(grid)).resolve()
    if out.resolve() not in target.parents:
        raise BenchError(f"grid name {grid!r} would write outside {out}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"--out {out}: cannot create {target} ({exc.strerror}); choose a writable folder") from None
    return target


def _write_text(path: Path, text: str) -> None:
    from bench.fileio import StoreWriteError, atomic_write

    try:
        atomic_write(path, text.encode(), "report")
    except StoreWriteError as exc:
        raise BenchError(f"cannot write {path} ({exc.reason}); choose a writable --out folder") from None


@app.command("list")
def list_(
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="LOSSBENCH_DATA_ROOT"),
    params: bool = typer.Option(True, "--params/--no-params", help="Build each architecture to count its parameters."),
) -> None:
    """What the registry holds: datasets with sizes, architectures with parameter counts, losses, grids with cell counts."""
    try:
        from bench.plan.catalog import catalog, render_catalog
        from bench.config.registry import load_registry

        # everything is checked (every grid expanded, every loss probed) before anything is printed
        tables = catalog(load_registry(registry), data_root, None, count=params)  # read-only: no cache written
    except BenchError as err:
        _fail(err)
    typer.echo(render_catalog(tables))


def _float_list(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise BenchError(f"{what} {text!r}: expected comma-separated numbers, e.g. 1,2,5") from None
    if not values:
        raise BenchError(f"{what}: expected at least one number")
    return values


@app.command()
def bound(
    mi: float = typer.Option(..., "--mi", help="Mutual information I(X;Y)."),
    classes: int = typer.Option(..., "--classes", "-k", help="Number of classes K (>= 2)."),
    entropy: Optional[float] = typer.Option(None, "--entropy", help="Label entropy H(Y); default log K (uniform labels)."),
    unit: str = typer.Option("nats", "--unit", help="Unit of --mi and --entropy: nats or bits."),
) -> None:
    """Error-probability lower bounds from mutual information: Theorem 4's closed form and exact Fano."""
    import math

    from bench.paper.theory import fano_bound, theorem4_bound

    try:
        if unit not in ("nats", "bits"):
            raise BenchError(f"--unit {unit!r}: expected nats or bits")
        if classes < 2:
            raise BenchError(f"--classes {classes}: expected an integer >= 2")
        if mi < 0 or (entropy is not None and entropy < 0):
            raise BenchError("--mi and --entropy must be >= 0")
        max_h = math.log(classes) if unit == "nats" else math.log2(classes)
        if entropy is not None and entropy > max_h * (1 + 1e-12):
            raise BenchError(f"--entropy {entropy:g}: a label entropy over {classes} classes is at most "
                             f"{'ln' if unit == 'nats' else 'log2'} K = {max_h:.6g} {unit}")
        h = entropy if entropy is not None else max_h
        t4 = theorem4_bound(h, mi, classes, unit=unit)
        fano = fano_bound(h, mi, classes, unit=unit)
    except (ValueError, BenchError) as exc:
        _fail_value(exc)
    typer.echo(f"K={classes}  H(Y)={h:.6g} {unit}  I(X;Y)={mi:.6g} {unit}")
    typer.echo(f"Theorem 4 (closed form) error lower bound: {t4:.4f}")
    typer.echo(f"Fano (exact)            error lower bound: {fano:.4f}")
    typer.echo(f"random guessing error (uniform labels):    {1 - 1 / classes:.4f}")


@app.command()
def gauss(
    delta: Optional[str] = typer.Option(None, "--delta", help="Separations δ = sqrt(μᵀΣ⁻¹μ), comma-separated."),
    sigma2: Optional[str] = typer.Option(None, "--sigma2", help="Variances σ² for d=1, μ=1 (default 1,2,5,10,20,50,100: the paper's Figures 12-13)."),
    prior: float = typer.Option(0.5, "--prior", help="P(y = +1)."),
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown or csv."),
) -> None:
    """The binary Gaussian model: exact MI, its closed-form bounds, Bayes error and the error lower bounds."""
    from tabulate import tabulate

    from bench.paper.theory import GAUSS_TABLE_COLUMNS, gauss_table

    try:
        if delta is not None and sigma2 is not None:
            raise BenchError("give --delta or --sigma2, not both")
        if fmt not in ("markdown", "csv"):
            raise BenchError(f"--format {fmt!r}: expected markdown or csv")
        if not 0 < prior < 1:
            raise BenchError(f"--prior {prior}: expected a probability in (0, 1)")
        if delta is not None:
            rows = gauss_table(deltas=_float_list(delta, "--delta"), prior=prior)
        else:
            rows = gauss_table(sigma2=_float_list(sigma2 or "1,2,5,10,20,50,100", "--sigma2"), prior=prior)
    except (ValueError, BenchError) as exc:
        _fail_value(exc)
    if fmt == "csv":
        import pandas as pd

        typer.echo(pd.DataFrame(rows, columns=list(GAUSS_TABLE_COLUMNS)).to_csv(index=False, float_format="%.6g"))
        return
    typer.echo(tabulate([[r[c] for c in GAUSS_TABLE_COLUMNS] for r in rows],
                        headers=["σ²", "δ", "I exact", "I lower", "I upper", "Bayes error", "P_e ≥ (Thm 4)", "P_e ≥ (Fano)"],
                        tablefmt="pipe", floatfmt=".4f"))
    typer.echo("\nMI in nats. The error lower bounds use the MI upper bound (Corollary 1); Bayes error is the best achievable.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
