"""The ``bench`` command line. Exit codes: 0 ok, 1 some cells failed, 2 bad input, 130/143 interrupted."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import typer
from typer.core import TyperGroup

from bench.errors import BenchError

# typer may vendor click: take the exception classes from wherever its BadParameter lives
_click_exceptions = sys.modules[typer.BadParameter.__module__]


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    return "warning: " + " ".join(str(message).split()) + "\n"


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
# status and report: which cells a finished run had
RanOnDeviceOpt = typer.Option(None, "--device", help="Device the cells ran on (their precision 'auto' and so their "
                              "identity depend on it); cuda works on a CPU-only head node.")
SameSetOpt = typer.Option([], "--set", help="The same --set overrides the run used.")
DataRootReadOpt = typer.Option(None, "--data-root", envvar="LOSSBENCH_DATA_ROOT")


def torch_device(name: str):
    import torch

    return torch.device(name)


class _DeviceType(NamedTuple):
    """What a cell's identity needs of a device: its type (precision ``auto`` resolves by it)."""

    type: str


def _identity_device(name: str | None):
    """The device a grid's cells ran on, for their identity only: a head node without CUDA can
    still report on cells its GPU workers trained (``--device cuda``). Imports no torch (1-2 s)
    when it can: ``--device`` given, or a Linux machine with no GPU driver at all (auto -> cpu)."""
    if name in (None, "", "auto"):
        gpu_driver = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")
        if sys.platform.startswith("linux") and not any(os.path.exists(p) for p in gpu_driver):
            return _DeviceType("cpu")  # what pick_device would answer: no driver, no CUDA
        return None
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise BenchError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return _DeviceType(kind)


def _fail_value(exc: Exception) -> None:
    """A theory function's ValueError is bad input like any BenchError: one line, exit 2."""
    _fail(exc if isinstance(exc, BenchError) else BenchError(str(exc)))


def _fail(err: BenchError) -> None:
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


def _resolve_cells(registry_path: Path, grid: str, device_name: str | None, sets: list[str], filters: list[str],
                   data_root: Path | None, results: Path, check_data: bool | str, quiet: bool = False,
                   cell_device=None):
    """Load the registry and expand a grid into cells for ``cell_device`` (default: this machine's)."""
    from bench.cells import expand_grid, parse_filters, parse_set
    from bench.registry import load_registry

    light = check_data == "fallback"  # status / report: no torch when it can be helped
    if cell_device is None:
        from bench.device import pick_device

    registry = load_registry(registry_path)
    device = cell_device if cell_device is not None else pick_device(device_name)
    overrides = parse_set(sets)
    flt = parse_filters(filters)
    substitute: dict[str, str] = {}
    if check_data == "fallback":
        # status / report: reading the data (and importing torchvision) costs seconds; only a grid
        # with a fallback dataset needs to know whether its data is there, to resolve the run's cells
        check_data = grid in registry.grids and registry.grids[grid].fallback_dataset is not None
    unfiltered = None
    if check_data:
        # every check that needs no data first (grid, losses, settings), so a typo reads no data
        # and writes nothing (not even the data cache); filter values are matched after fallbacks
        unfiltered = expand_grid(registry, grid, device, overrides, None, None)
    if grid in registry.grids and check_data:
        spec = registry.grids[grid]
        for ds_name in spec.datasets:
            ds = registry.datasets[ds_name]
            try:
                from bench.data import load_splits

                load_splits(ds.kind, dict(ds.params), data_root, False, _cache_dir(results))
            except BenchError as exc:
                if spec.fallback_dataset is None:
                    raise
                substitute[ds_name] = spec.fallback_dataset
                if not quiet:
                    typer.echo(f"note: dataset {ds_name!r} unavailable ({exc}); grid {grid!r} falls back to "
                               f"{spec.fallback_dataset!r}", err=True)
    if unfiltered is not None and not substitute and not flt:
        return registry, device, unfiltered  # the same expansion: do not repeat it (1 s at 100k cells)
    cells = expand_grid(registry, grid, device, overrides, flt, substitute, validate=not light)
    return registry, device, cells


@app.command()
def run(
    grid: str = GridOpt,
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="LOSSBENCH_DATA_ROOT",
                                             help="Folder holding the datasets (torchvision layout)."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download missing datasets (needs a network)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default: cuda when present), cpu, cuda, cuda:N."),
    filter_: list[str] = typer.Option([], "--filter", help="Keep cells with key=value[,value] (dataset, architecture, loss, loss_name, seed, variant, cell_id)."),
    set_: list[str] = typer.Option([], "--set", help="Override a training setting, e.g. --set train.epochs=2."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and their status; train nothing."),
    force: bool = typer.Option(False, "--force", help="Retrain finished cells too."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry failed and diverged cells."),
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
    plain: Optional[bool] = typer.Option(None, "--plain/--rich", help="Plain line output (default when not a terminal)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Print the grid's markdown table at the end."),
) -> None:
    """Train every unfinished cell of a grid; finished cells are skipped, interrupted ones resume."""
    # Ctrl-C and SIGTERM raise in the main thread, so the running cell stops at a clean point (its
    # last epoch checkpoint is on disk, temp files are removed) and the exit code says which
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        from bench.execute import ExecOptions
        from bench.faults import reset_write_faults
        from bench.progress import make_display
        from bench.runner import run_grid
        from bench.store import Store, clean_temp_files

        reset_write_faults()
        store = Store(results)
        if not dry_run:
            store.check_location()  # a results path under a file: say so before reading any data
        cluster = launcher in ("ray", "slurm")
        # on a cluster the cells run on the workers' device, not the driver's: their precision
        # ('auto': bf16 on CUDA, fp32 on CPU) and so their identity follow --gpus-per-cell; the data
        # lives on the workers too, so the driver does not read it
        cell_device = (torch_device("cuda" if gpus_per_cell > 0 else "cpu")) if cluster else None
        reg, dev, cells = _resolve_cells(registry, grid, device, set_, filter_, data_root, results,
                                         check_data=not cluster, cell_device=cell_device)
        if dry_run:
            statuses = store.statuses()
            from bench.progress import cell_title
            for c in cells:
                typer.echo(f"{c.cell_id}  {statuses.get(c.cell_id, 'pending'):9s} {cell_title(c)}")
            typer.echo(f"{len(cells)} cells on {dev}; "
                       f"{sum(statuses.get(c.cell_id) == 'done' for c in cells)} done")
            return
        store.ensure_writable()
        clean_temp_files(store)
        opts = ExecOptions(device=str(dev), data_root=str(data_root) if data_root else None, download=download,
                           cache_dir=str(_cache_dir(results)), checkpoint_dir=str(store.checkpoints_dir))
        from bench.launchers import LauncherOptions, make_launcher

        chosen = make_launcher(LauncherOptions(
            kind=launcher, jobs=jobs, threads=threads, gpus_per_cell=gpus_per_cell, cpus_per_cell=cpus_per_cell, max_retries=max_retries,
            ray_address=ray_address, slurm_partition=slurm_partition, timeout_min=timeout_min,
            slurm_array_parallelism=slurm_array_parallelism, log_dir=str(results / "logs")))
        t0 = time.perf_counter()
        summary = run_grid(cells, store, chosen, opts, make_display(plain), force=force, retry_failed=retry_failed)
    except BenchError as err:
        _fail(err)
        return
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut the goodbye short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = 143 if isinstance(exc, _Terminated) else 130
        typer.echo("interrupted: finished cells are stored and the running cell resumes from its last checkpoint "
                   "on the next `bench run`", err=True)
        raise typer.Exit(code) from None
    wall = time.perf_counter() - t0
    t = summary.trained
    typer.echo(f"grid {grid!r}: {summary.total} cells; trained {sum(t.values())} "
               f"({t['done']} done, {t['failed']} failed, {t['diverged']} diverged); "
               f"skipped {summary.skipped_done} finished, {summary.skipped_failed} failed/diverged "
               f"(use --retry-failed); {summary.done_elsewhere} finished by another run; wall {wall:.1f} s")
    for msg in summary.failed_messages:
        typer.echo(f"  failed: {msg}", err=True)
    if report:
        _print_report(reg, cells, store, grid, "markdown", None)
    raise typer.Exit(summary.exit_code)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so the same cleanup runs; exit code 143."""


def _sigterm(signum, frame) -> None:  # noqa: ARG001
    raise _Terminated()


def _print_report(reg, cells, store, grid: str, fmt: str, baseline: str | None, figures=None) -> str:
    from bench.report import REPORT_COLUMNS, collect, render

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
    device: Optional[str] = RanOnDeviceOpt,
    set_: list[str] = SameSetOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Counts of done / running / failed / diverged / pending cells, and the failed cells' messages."""
    try:
        from bench.store import Store

        _, _, cells = _resolve_cells(registry, grid, device, set_, [], data_root, results, check_data="fallback", quiet=True,
                                   cell_device=_identity_device(device))
        store = Store(results)
        current = store.statuses()  # a cell whose stored history was lost counts as not run
        messages: dict[str, str] = {}
        if any(s != "done" for s in current.values()):  # plain dicts: to_dict("index") takes 0.8 s at 100k rows
            df = store.cells(["cell_id", "status", "message"])
            bad = df[df["status"] != "done"]
            messages = dict(zip(bad["cell_id"].tolist(), bad["message"].tolist()))
        running = store.running(c.cell_id for c in cells if c.cell_id not in current)
        counts = {"done": 0, "running": 0, "failed": 0, "diverged": 0, "pending": 0}
        problems = []
        for c in cells:
            status = current.get(c.cell_id)
            if status is None:
                counts["running" if c.cell_id in running else "pending"] += 1
                continue
            counts[status] = counts.get(status, 0) + 1
            if status != "done":
                problems.append(f"  {status}: {c.cell_id} {c.dataset}/{c.architecture}/{c.loss}/seed {c.seed}: "
                                f"{messages.get(c.cell_id, '')}")
    except BenchError as err:
        _fail(err)
        return
    typer.echo(f"grid {grid!r}: {len(cells)} cells: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for line in problems:
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
    device: Optional[str] = RanOnDeviceOpt,
    set_: list[str] = SameSetOpt,
    data_root: Optional[Path] = DataRootReadOpt,
) -> None:
    """Paper-style table of final test accuracy (mean ± std over seeds), with MI, bounds and paired differences."""
    from bench.report import FORMATS

    try:
        if fmt not in FORMATS:
            raise BenchError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        from bench.store import Store

        reg, _, cells = _resolve_cells(registry, grid, device, set_, [], data_root, results, check_data="fallback", quiet=True,
                                   cell_device=_identity_device(device))
        if baseline is not None and baseline not in {c.loss for c in cells}:
            from bench.errors import closest
            raise BenchError(f"--baseline {baseline!r}: not a loss of grid {grid!r}{closest(baseline, {c.loss for c in cells})}")
        store = Store(results)
        target = _report_dir(out if out is not None else (Path("report") if figures else None), grid)
        from bench.report import REPORT_COLUMNS, collect, render

        fig_names: list[str] = []
        if figures:
            from bench.figures import draw_all

            results_df = store.cells()  # every column: the figures read the sweep settings too
            fig_names = draw_all(grid, cells, store, target, results_df)
        else:
            results_df = store.cells(REPORT_COLUMNS)
        data = collect(grid, cells, results_df, baseline or _default_baseline(cells))
        text = render(data, fmt, fig_names)
        if target is not None:
            ext = {"markdown": "md", "latex": "tex", "csv": "csv"}[fmt]
            _write_text(target / f"report.{ext}", text)
    except BenchError as err:
        _fail(err)
        return
    typer.echo(text)


def _report_dir(out: Path | None, grid: str) -> Path | None:
    if out is None:
        return None
    from bench.store import _safe

    target = (out / _safe(grid)).resolve()
    if out.resolve() not in target.parents:
        raise BenchError(f"grid name {grid!r} would write outside {out}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"--out {out}: cannot create {target} ({exc.strerror}); choose a writable folder") from None
    return target


def _write_text(path: Path, text: str) -> None:
    from bench.store import StoreWriteError, atomic_write_bytes

    try:
        atomic_write_bytes(path, text.encode())
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
        from tabulate import tabulate

        from bench.cells import expand_grid
        from bench.data import load_splits
        from bench.device import pick_device
        from bench.models import build_model, count_params
        from bench.registry import load_registry

        reg = load_registry(registry)
        rows = []
        for name, ds in reg.datasets.items():
            try:
                s = load_splits(ds.kind, dict(ds.params), data_root, False, _cache_dir(results))
                rows.append([name, ds.kind, len(s.train_y), len(s.test_y), "x".join(map(str, s.in_shape)), s.num_classes])
            except BenchError:
                rows.append([name, ds.kind, "not found", "", "", ""])
        typer.echo(tabulate(rows, headers=["dataset", "kind", "train", "test", "shape", "classes"]))
        typer.echo("")
        rows = []
        for name, arch in reg.architectures.items():
            shape = (1, 28, 28) if arch.source == "native" else (3, 32, 32)
            count = ""
            if params:
                count = f"{count_params(build_model(arch.source, arch.name, shape, 10, dict(arch.params))) / 1e6:.3f}M"
            rows.append([name, arch.source, arch.name, "x".join(map(str, shape)), count])
        typer.echo(tabulate(rows, headers=["architecture", "source", "name", "input", "params (10 classes)"]))
        typer.echo("")
        typer.echo(tabulate([[n, l.target, ", ".join(f"{k}={v}" for k, v in l.params.items())] for n, l in reg.losses.items()],
                            headers=["loss", "target", "defaults"]))
        typer.echo("")
        dev = pick_device(None)
        rows = []
        for name, g in reg.grids.items():
            cells = expand_grid(reg, name, dev)
            rows.append([name, len(cells), ", ".join(g.datasets), ", ".join(g.architectures), len(g.seeds),
                         cells[0].config["train"]["epochs"] if cells else ""])
        typer.echo(tabulate(rows, headers=["grid", "cells", "datasets", "architectures", "seeds", "epochs"]))
    except BenchError as err:
        _fail(err)


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

    from bench.theory import fano_bound, theorem4_bound

    try:
        if unit not in ("nats", "bits"):
            raise BenchError(f"--unit {unit!r}: expected nats or bits")
        if classes < 2:
            raise BenchError(f"--classes {classes}: expected an integer >= 2")
        if mi < 0 or (entropy is not None and entropy < 0):
            raise BenchError("--mi and --entropy must be >= 0")
        h = entropy if entropy is not None else (math.log(classes) if unit == "nats" else math.log2(classes))
        t4 = theorem4_bound(h, mi, classes, unit=unit)
        fano = fano_bound(h, mi, classes, unit=unit)
    except (ValueError, BenchError) as exc:
        _fail_value(exc)
        return
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

    from bench.theory import GAUSS_TABLE_COLUMNS, gauss_table

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
        return
    if fmt == "csv":
        import pandas as pd

        typer.echo(pd.DataFrame(rows, columns=list(GAUSS_TABLE_COLUMNS)).to_csv(index=False, float_format="%.6g"))
        return
    typer.echo(tabulate([[r[c] for c in GAUSS_TABLE_COLUMNS] for r in rows],
                        headers=["σ²", "δ", "I exact", "I lower", "I upper", "Bayes error", "P_e ≥ (Thm 4)", "P_e ≥ (Fano)"],
                        tablefmt="pipe", floatfmt=".4f"))
    typer.echo("\nMI in nats. The error lower bounds use the MI upper bound (Corollary 1); Bayes error is the best achievable.")


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
