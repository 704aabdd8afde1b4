"""The cluster launchers: their shared loop, a real local Ray cluster, and submitit's local/debug executors.

One Ray cluster (2 CPUs, 1 logical GPU, no token auth, temp dir under the test's tmp path) serves
the whole module: the launcher joins a Ray that is already initialised and leaves it running.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import bench.run.launchers as launchers_pkg
from bench.config.cells import Cell, expand_grid
from bench.errors import BenchError
from bench.train.cell import CellOutcome, ExecOptions, run_cell
from bench.train.loop import TrainCallback
from bench.run.launchers import Hooks, LauncherOptions, make_launcher
from bench.run.launchers.loop import Died, Done, Failed, Queued, Running, State, run_cells
from bench.config.registry import load_registry
from bench.store.results import Store
from tests import faults
from tests.conftest import REPO

REGISTRY = {
    "datasets": {"g": {"kind": "gauss", "params": {"d": 4, "n_train": 512, "n_test": 256, "seed": 0}}},
    "architectures": {"mlp": {"source": "native", "name": "mlp"}},
    "losses": {
        "celLoss": {"target": "losses.cross_entropy:CelLoss"},
        "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 5.0}},
    },
    "grids": {"tiny": {"datasets": ["g"], "architectures": ["mlp"], "losses": "all", "seeds": [0, 1],
                       # fp32 pinned: cells asking for (logical) GPUs are expanded as CUDA cells, whose
                       # 'auto' precision would be bf16; pinned, their identity equals the CPU reference's
                       "train": {"epochs": 3, "batch_size": 64, "precision": "fp32"}}},
}
# every Ray test asks for the same resources, so Ray hands them the same warm workers (a worker that
# imported torch once) instead of starting new ones: 4 cells fit at once on 1 logical GPU and 2 CPUs
RAY = ["--launcher", "ray", "--gpus-per-cell", "0.25", "--cpus-per-cell", "0.5"]
METRICS = ["status", "epochs_done", "final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
           "final_test_mi", "best_test_acc"]


def bench(*args, fault: str = "") -> object:
    """``bench ARGS`` in this process; ``fault``: plugged in through the seams (:mod:`tests.faults`)."""
    from bench.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], obj=faults.seams(fault), catch_exceptions=False)


def run_args(reg: Path, results: Path, *extra) -> list:
    return ["run", "--grid", "tiny", "--registry", reg, "--results", results, "--plain", "--no-report", *extra]


def metrics(results: Path) -> dict[str, dict]:
    df = Store(results).cells()
    return df.set_index("cell_id")[METRICS + ["resumed_from_epoch", "device", "message"]].to_dict("index")


def assert_same_metrics(got: dict, want: dict) -> None:
    for key in METRICS:
        if isinstance(want[key], float):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
        else:
            assert got[key] == want[key], key


def spy_submissions(monkeypatch) -> list[dict[str, int]]:
    """For each launcher the CLI builds: cell_id -> how many times it submitted that cell (its on_submit seam)."""
    made: list[dict[str, int]] = []
    real = launchers_pkg.make_launcher

    def spy(options, on_submit=None):
        tries: dict[str, int] = {}
        made.append(tries)
        return real(options, on_submit=lambda cell, n: tries.__setitem__(cell.cell_id, n))

    monkeypatch.setattr(launchers_pkg, "make_launcher", spy)
    return made


def worker_spans(results: Path) -> list[tuple[int, int]]:
    """Each stored cell's (start, finish) in ns, as its worker measured them."""
    df = Store(results).cells(["started_at_ns", "finished_at_ns"])
    return sorted(zip(df["started_at_ns"].tolist(), df["finished_at_ns"].tolist()))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reg") / "registry.yaml"
    path.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cell_ids(registry) -> dict[tuple[str, int], str]:
    cells = expand_grid(load_registry(registry), "tiny")
    return {(c.loss, c.seed): c.cell_id for c in cells}


@pytest.fixture(scope="module")
def reference(registry, tmp_path_factory) -> dict[str, dict]:
    """The tiny grid trained by the default local launcher: what every other launcher must reproduce."""
    results = tmp_path_factory.mktemp("local") / "results"
    r = bench(*run_args(registry, results))
    assert r.exit_code == 0, r.output
    return metrics(results)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")  # Ray >= 2.5x turns token auth on for new local clusters
    temp = tmp_path_factory.mktemp("ray")
    own = None
    if len(str(temp)) > 40:  # Unix socket paths under it must stay below ~107 characters
        temp = own = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    # a small object store: the cells return a few kB, and Ray's default (30% of the memory, in /dev/shm)
    # is room a CI container with a memory limit may not have
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, _temp_dir=str(temp),
             object_store_memory=128 * 2**20, logging_level="warning", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        mp.undo()
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


# ---------------------------------------------------------------- engine-free checks

class _CtrlC(TrainCallback):
    """Ctrl-C at the end of a cell's first epoch."""

    def on_epoch_end(self, cell_id, epoch, checkpoint_written):
        raise KeyboardInterrupt


def test_run_in_process_gives_back_the_callers_signal_handlers(registry, tmp_path):
    """`bench run` turns SIGINT and SIGTERM into interrupts while it runs, and afterwards the embedding
    process (a notebook, a test session, Ray's driver) has its own handlers again, after an interrupt too."""
    from bench.cli.main import app
    from bench.seams import Seams

    def mine(signum, frame):  # noqa: ARG001
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in before:
            signal.signal(s, mine)
        for seams, code in ((Seams(callbacks=(_CtrlC(),)), 130), (Seams(), 0)):
            r = CliRunner().invoke(app, [str(a) for a in run_args(registry, tmp_path / "results", "--filter", "seed=0")],
                                   obj=seams, catch_exceptions=False)
            assert r.exit_code == code, r.output
            assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
        assert "trained 2 (2 done)" in r.output  # the interrupted cell resumed, the other one trained
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_missing_extra_is_one_line(monkeypatch, registry, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "submitit", None)
    r = bench(*run_args(registry, tmp_path / "results", "--launcher", "ray"))
    assert r.exit_code == 2
    assert r.output.strip() == "error: the ray launcher needs Ray: pip install 'lossbench[ray]'"
    r = bench(*run_args(registry, tmp_path / "results", "--launcher", "slurm"))
    assert r.exit_code == 2
    assert r.output.strip() == "error: the slurm launcher needs submitit: pip install 'lossbench[slurm]'"


def test_option_checks(monkeypatch):
    from bench.run.launchers.ray import RayLauncher

    monkeypatch.setitem(sys.modules, "ray", None)  # the checks must pass with neither engine installed
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(BenchError, match="whole GPUs"):
        make_launcher(LauncherOptions(kind="slurm", gpus_per_cell=0.5))
    with pytest.raises(BenchError, match="fraction up to 1"):
        make_launcher(LauncherOptions(kind="ray", gpus_per_cell=1.5))
    with pytest.raises(BenchError, match="--jobs 2 is for --launcher local"):
        make_launcher(LauncherOptions(kind="ray", jobs=2))
    with pytest.raises(BenchError, match="--slurm-executor 'pbs': expected one of slurm, local, debug"):
        make_launcher(LauncherOptions(kind="slurm", slurm_executor="pbs"))
    with pytest.raises(BenchError, match="--max-retries must be >= 0"):
        make_launcher(LauncherOptions(kind="ray", max_retries=-1))
    # valid options: the launcher is built, and only then is the missing engine reported
    with pytest.raises(BenchError, match=r"needs Ray: pip install 'lossbench\[ray\]'"):
        make_launcher(LauncherOptions(kind="ray", gpus_per_cell=0.25))
    ray_launcher = RayLauncher(LauncherOptions(kind="ray", gpus_per_cell=0.25, cpus_per_cell=1))
    node = {"CPU": 8.0, "GPU": 2.0}
    assert ray_launcher.check_resources(node, [node]) == 8  # GPUs allow 8 cells, CPUs 8
    with pytest.raises(BenchError, match="has no GPUs"):
        ray_launcher.check_resources({"CPU": 8.0}, [{"CPU": 8.0}])
    big = RayLauncher(LauncherOptions(kind="ray", gpus_per_cell=2, cpus_per_cell=1))
    with pytest.raises(BenchError, match="no node of the Ray cluster"):
        big.check_resources({"CPU": 16.0, "GPU": 2.0}, [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}])


def test_option_checks_import_no_engine():
    """In a fresh interpreter: checking (and building) the launchers leaves Ray and submitit unimported."""
    code = textwrap.dedent("""
        import sys
        from bench.errors import BenchError
        from bench.run.launchers import LauncherOptions, make_launcher
        from bench.run.launchers.ray import RayLauncher
        from bench.run.launchers.slurm import SlurmLauncher

        bad = [LauncherOptions(kind="slurm", gpus_per_cell=0.5), LauncherOptions(kind="ray", gpus_per_cell=1.5),
               LauncherOptions(kind="slurm", slurm_executor="pbs"), LauncherOptions(kind="ray", max_retries=-1),
               LauncherOptions(kind="slurm", jobs=2)]
        for options in bad:
            try:
                make_launcher(options)
            except BenchError:
                pass
            else:
                raise SystemExit(f"accepted {options}")
        RayLauncher(LauncherOptions(kind="ray", gpus_per_cell=0.25))
        SlurmLauncher(LauncherOptions(kind="slurm", slurm_executor="local"))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "submitit")))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---------------------------------------------------------------- the shared loop, with a scripted backend

@dataclass
class ScriptedBackend:
    """A backend whose submitted cells are, at each poll, in the state ``script(cell, try)`` says."""

    script: Callable[[Cell, int], State]
    window: int = 2
    tries: dict[str, int] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)

    def submit(self, cells: list[Cell]) -> list[tuple[Cell, int]]:
        for cell in cells:
            self.tries[cell.cell_id] = self.tries.get(cell.cell_id, 0) + 1
        return [(cell, self.tries[cell.cell_id]) for cell in cells]

    def poll(self, handles: list[tuple[Cell, int]]) -> list[State]:
        return [self.script(cell, n) for cell, n in handles]

    def cancel(self, handles: list[tuple[Cell, int]]) -> None:
        self.cancelled.extend(cell.cell_id for cell, _ in handles)


@dataclass
class RecordingHooks:
    """The driver's hooks, recording the order of events; ``interrupt`` raises in the first finish."""

    interrupt: bool = False
    events: list[tuple[str, str]] = field(default_factory=list)
    outcomes: dict[str, CellOutcome] = field(default_factory=dict)

    def hooks(self) -> Hooks:
        def claim(cell: Cell) -> bool:
            self.events.append(("claim", cell.cell_id))
            return True

        def finish(cell: Cell, outcome: CellOutcome) -> None:
            self.events.append(("finish", cell.cell_id))
            self.outcomes[cell.cell_id] = outcome
            if self.interrupt:
                raise KeyboardInterrupt

        return Hooks(claim=claim, start=lambda c: self.events.append(("start", c.cell_id)),
                     progress=lambda c, p: None, finish=finish,
                     release=lambda c: self.events.append(("release", c.cell_id)))

    def of(self, kind: str) -> list[str]:
        return [cell_id for k, cell_id in self.events if k == kind]


def done(cell: Cell) -> Done:
    return Done(CellOutcome({"cell_id": cell.cell_id, "status": "done"}))


def test_shared_loop_claims_lazily_retries_deaths_and_stores_failures(registry):
    cells = expand_grid(load_registry(registry), "tiny")
    dies_once, raises = cells[0].cell_id, cells[1].cell_id

    def script(cell: Cell, n: int) -> State:
        if cell.cell_id == dies_once and n == 1:
            return Died("the worker died", "SIGKILL")
        return Failed("boom") if cell.cell_id == raises else done(cell)

    backend, rec, submitted = ScriptedBackend(script), RecordingHooks(), []
    run_cells(cells, backend, rec.hooks(), max_retries=1, on_submit=lambda c, n: submitted.append((c.cell_id, n)))
    # claimed lazily: no more than the window's two cells are held before the first one finishes
    first_finish = rec.events.index(("finish", rec.of("finish")[0]))
    assert len([e for e in rec.events[:first_finish] if e[0] == "claim"]) == 2
    assert sorted(rec.of("claim")) == sorted(rec.of("release")) == sorted(c.cell_id for c in cells)
    assert sorted(rec.of("start")) == sorted(rec.of("finish"))  # each shown once, the retried one too
    assert backend.tries == {c.cell_id: 2 if c.cell_id == dies_once else 1 for c in cells}
    assert (dies_once, 2) in submitted and len(submitted) == len(cells) + 1
    assert rec.outcomes[dies_once].status == "done"  # the second try's result
    assert rec.outcomes[raises].status == "failed" and rec.outcomes[raises].row["message"] == "boom"
    assert not backend.cancelled


def test_shared_loop_cancels_and_releases_on_interrupt(registry):
    cells = expand_grid(load_registry(registry), "tiny")
    first = cells[0].cell_id

    def script(cell: Cell, n: int) -> State:
        return done(cell) if cell.cell_id == first else Running()

    backend, rec = ScriptedBackend(script, window=3), RecordingHooks(interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        run_cells(cells, backend, rec.hooks(), max_retries=2)
    assert rec.of("finish") == [first]
    assert sorted(backend.cancelled) == sorted(c.cell_id for c in cells[1:3])  # what was still out
    assert sorted(rec.of("release")) == sorted(rec.of("claim")) == sorted(c.cell_id for c in cells[:3])
    assert cells[3].cell_id not in rec.of("claim")  # never claimed, so nothing to release


def test_shared_loop_shows_a_cell_once_it_leaves_the_queue(registry):
    cell = expand_grid(load_registry(registry), "tiny")[0]
    polls = iter([Queued(), Queued(), done(cell)])
    rec = RecordingHooks()
    run_cells([cell], ScriptedBackend(lambda c, n: next(polls)), rec.hooks(), max_retries=0)
    assert [kind for kind, _ in rec.events] == ["claim", "start", "finish", "release"]


def _fake_tool(bindir: Path, name: str, output: str = "") -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_parameters_and_gpu_check(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    from bench.run.launchers.slurm import SlurmLauncher

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("srun", "sbatch", "scancel"):
        _fake_tool(bindir, tool)
    _fake_tool(bindir, "sinfo", "gpu:a100:4\\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    opts = LauncherOptions(kind="slurm", gpus_per_cell=1, cpus_per_cell=4, slurm_partition="gpu", timeout_min=600,
                           slurm_array_parallelism=32)
    launcher = SlurmLauncher(opts)  # --slurm-executor slurm, the default
    launcher.check_gpus()  # the partition has gpu gres
    params = launcher.make_executor(submitit, tmp_path / "logs")._executor.parameters
    assert params["partition"] == "gpu" and params["array_parallelism"] == 32 and params["time"] == 600
    assert params["gpus_per_node"] == 1 and params["cpus_per_task"] == 4
    _fake_tool(bindir, "sinfo", "(null)\\n")
    with pytest.raises(BenchError, match="partition 'gpu' has no GPUs"):
        launcher.check_gpus()


def test_ray_worker_death_after_retries_is_a_failed_row(registry, tmp_path):
    ray = pytest.importorskip("ray")
    from bench.run.launchers.ray import collect

    cell = expand_grid(load_registry(registry), "tiny")[0]

    class DeadRay:
        exceptions = ray.exceptions

        @staticmethod
        def get(ref):
            raise ray.exceptions.WorkerCrashedError()

    death = collect(DeadRay, None)
    assert isinstance(death, Died)
    backend, rec = ScriptedBackend(lambda c, n: death), RecordingHooks()
    run_cells([cell], backend, rec.hooks(), max_retries=2)  # the loop's retries, as --max-retries 2
    assert backend.tries == {cell.cell_id: 3}
    outcome = rec.outcomes[cell.cell_id]
    assert outcome.status == "failed" and "died 3 time(s)" in outcome.row["message"]
    assert outcome.row["cell_id"] == cell.cell_id and math.isnan(outcome.row["final_test_acc"])
    # the same columns, of the same types, as the failed rows run_cell builds itself
    own = run_cell(cell, ExecOptions(cache_dir=str(tmp_path / "cache"), seams=faults.seams(f"raise:{cell.cell_id}:0")))
    assert own.status == "failed"
    assert {k: type(v) for k, v in outcome.row.items()} == {k: type(v) for k, v in own.row.items()}


# ---------------------------------------------------------------- SLURM through submitit

def test_slurm_local_executor_resubmits_a_dead_job(registry, reference, cell_ids, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    cid = cell_ids[("celLoss", 0)]
    results = tmp_path / "results"
    made = spy_submissions(monkeypatch)
    r = bench(*run_args(registry, results, "--launcher", "slurm", "--filter", "loss=celLoss",
                        "--slurm-executor", "local",  # jobs are subprocesses of this machine
                        "--slurm-array-parallelism", "2", "--timeout-min", "5", "--max-retries", "1"),
              fault=f"kill:{cid}:1")  # its first job is SIGKILLed after epoch 1
    assert r.exit_code == 0, r.output
    assert "trained 2 (2 done" in r.output
    got = metrics(results)
    assert len(got) == 2
    for cell_id, row in got.items():
        assert_same_metrics(row, reference[cell_id])
    assert got[cid]["resumed_from_epoch"] == 1 and made[0][cid] == 2
    assert list((results / "logs").iterdir()), "submitit keeps its job folders under <results>/logs"


def test_slurm_debug_executor_stores_an_exception_as_failed(registry, reference, cell_ids, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    cid = cell_ids[("milLoss", 1)]
    results = tmp_path / "results"
    made = spy_submissions(monkeypatch)
    r = bench(*run_args(registry, results, "--launcher", "slurm", "--filter", "loss=milLoss",
                        "--slurm-executor", "debug"), fault=f"raise:{cid}:0")  # jobs run in this process
    assert r.exit_code == 1
    got = metrics(results)
    assert got[cid]["status"] == "failed" and "fault injected" in got[cid]["message"]
    other = cell_ids[("milLoss", 0)]
    assert_same_metrics(got[other], reference[other])
    assert made[0] == {cid: 1, other: 1}  # the failing cell was not resubmitted


# ---------------------------------------------------------------- a real local Ray cluster

def test_ray_packs_cells_on_fractional_gpus_and_matches_local(ray_cluster, registry, reference, tmp_path, monkeypatch):
    made = spy_submissions(monkeypatch)
    results = tmp_path / "results"
    args = run_args(registry, results, *RAY)
    r = bench(*args)
    assert r.exit_code == 0, r.output
    assert "trained 4 (4 done)" in r.output
    got = metrics(results)
    assert set(got) == set(reference)
    for cell_id, row in got.items():
        assert row["device"] == "cpu"  # logical GPUs: the cell still chose the CPU explicitly
        assert_same_metrics(row, reference[cell_id])
    # four cells fit at once (1 GPU / 0.25, 2 CPUs / 0.5): their worker-side intervals overlap
    spans = worker_spans(results)
    assert len(spans) == 4 and len(made[0]) == 4
    assert any(spans[i + 1][0] < spans[i][1] for i in range(3)), spans

    r = bench(*args)
    assert r.exit_code == 0 and "trained 0" in r.output and "skipped 4 finished" in r.output
    assert made[1] == {}  # nothing submitted


def test_ray_worker_killed_mid_cell_resumes_on_retry(ray_cluster, registry, reference, cell_ids, tmp_path,
                                                     monkeypatch):
    cid = cell_ids[("milLoss", 0)]
    results = tmp_path / "results"
    made = spy_submissions(monkeypatch)
    r = bench(*run_args(registry, results, *RAY, "--max-retries", "1", "--filter", f"cell_id={cid}"),
              fault=f"kill:{cid}:1")  # SIGKILL its worker after epoch 1, once
    assert r.exit_code == 0, r.output
    assert (results / "checkpoints" / f"{cid}.killed").exists()  # it really died once
    assert made[0] == {cid: 2}  # and the shared loop submitted it again
    row = metrics(results)[cid]
    assert row["status"] == "done" and row["resumed_from_epoch"] == 1
    assert_same_metrics(row, reference[cid])


def test_ray_cell_exception_is_stored_failed_and_not_retried(ray_cluster, registry, cell_ids, tmp_path):
    cid = cell_ids[("celLoss", 1)]
    results = tmp_path / "results"
    args = run_args(registry, results, *RAY, "--filter", "seed=1")
    r = bench(*args, fault=f"raise:{cid}:1")
    assert r.exit_code == 1
    rows = metrics(results)
    assert rows[cid]["status"] == "failed" and "fault injected by LOSSBENCH_FAULT" in rows[cid]["message"]
    assert rows[cell_ids[("milLoss", 1)]]["status"] == "done"
    r = bench(*args)
    assert "trained 0" in r.output and "1 failed/diverged" in r.output


def test_ray_gpu_request_without_gpus_fails_at_once(ray_cluster, registry, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_cluster, "cluster_resources", lambda: {"CPU": 2.0, "memory": 1e9})
    t0 = time.monotonic()
    r = bench(*run_args(registry, tmp_path / "results", "--launcher", "ray", "--gpus-per-cell", "1"))
    assert time.monotonic() - t0 < 20
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert lines == ["error: --gpus-per-cell 1: the Ray cluster started on this machine has no GPUs (2 CPUs); "
                     "use --gpus-per-cell 0 to train on CPU"], r.output
    assert Store(tmp_path / "results").cells().empty


def test_ray_unwritable_checkpoint_ends_the_run(ray_cluster, registry, tmp_path):
    from bench.run.launchers.ray import RayLauncher
    from bench.run.progress import PlainDisplay
    from bench.run.runner import run_grid
    from bench.store.results import StoreWriteError

    cells = expand_grid(load_registry(registry), "tiny")[:1]
    store = Store(tmp_path / "results")
    store.ensure_writable()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    opts = ExecOptions(checkpoint_dir=str(blocker / "checkpoints"), cache_dir=str(tmp_path / "cache"))
    launcher = RayLauncher(LauncherOptions(kind="ray", gpus_per_cell=0.25, cpus_per_cell=0.5))
    with pytest.raises(StoreWriteError):
        run_grid(cells, store, launcher, opts, PlainDisplay(open(os.devnull, "w")))
    assert store.cells().empty and not store.is_running(cells[0].cell_id)


def test_ray_interrupt_cancels_and_leaves_store_consistent(ray_cluster, registry, tmp_path):
    # last of the Ray tests: cancelling kills the workers the others reuse
    from bench.run.launchers.ray import RayLauncher
    from bench.run.progress import PlainDisplay
    from bench.run.runner import RunSummary, run_grid, select_cells

    class InterruptedDisplay(PlainDisplay):
        def finish_cell(self, cell, status, summary):
            super().finish_cell(cell, status, summary)
            raise KeyboardInterrupt  # Ctrl-C right after the first result is stored

    cells = expand_grid(load_registry(registry), "tiny")
    store = Store(tmp_path / "results")
    store.ensure_writable()
    opts = ExecOptions(checkpoint_dir=str(store.checkpoints_dir), cache_dir=str(tmp_path / "cache"))
    launcher = RayLauncher(LauncherOptions(kind="ray", gpus_per_cell=0.25, cpus_per_cell=0.5))
    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, store, launcher, opts, InterruptedDisplay(open(os.devnull, "w")))
    df = store.cells()
    assert len(df) == 1 and set(df["status"]) == {"done"}
    assert not any(store.is_running(c.cell_id) for c in cells)  # every claim was released
    # the next run picks up exactly the three cells that did not finish
    assert len(select_cells(cells, store.statuses(), False, False, RunSummary())) == 3


def test_cluster_cells_have_the_declared_identity_whatever_the_workers_device(registry, tmp_path):
    """A cell's identity is its declared config: 'auto' precision stays 'auto' on GPU workers too,
    so cells trained on GPU workers are the cells a CPU-only head node reports on."""
    data = yaml.safe_load(registry.read_text())
    data["grids"]["tiny"]["train"].pop("precision")
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump(data))
    out = bench(*run_args(reg, tmp_path / "res", "--launcher", "ray", "--gpus-per-cell", "0.5", "--dry-run"))
    cuda_ids = {line.split()[0] for line in out.output.splitlines() if "pending" in line}
    cpu_cells = expand_grid(load_registry(reg), "tiny")
    assert cuda_ids == {c.cell_id for c in cpu_cells}
    assert {c.config["train"]["precision"] for c in cpu_cells} == {"auto"}


# ---------------------------------------------------------------- the launcher registry

def test_run_help_shows_each_launchers_options_in_its_own_panel():
    r = CliRunner().invoke(__import__("bench.cli.main", fromlist=["app"]).app, ["run", "--help"],
                           env={"COLUMNS": "200"}, catch_exceptions=False)
    assert r.exit_code == 0
    text = r.output
    panels = {"Local launcher (--launcher local)": ["--jobs", "--threads"],
              "Ray and SLURM launchers (--launcher ray | slurm)": ["--gpus-per-cell", "--cpus-per-cell", "--max-retries"],
              "Ray launcher (--launcher ray)": ["--ray-address"],
              "SLURM launcher (--launcher slurm)": ["--slurm-partition", "--timeout-min", "--slurm-array-parallelism",
                                                    "--slurm-executor"]}
    for panel, flags in panels.items():
        body = text.split(panel, 1)[1].split("╰", 1)[0]  # the panel's box
        assert [f for f in flags if f in body] == flags, panel
    main = text.split("Local launcher", 1)[0]
    assert "--jobs" not in main and "--launcher" in main
    # --filter names the keys it takes, trial among them
    assert "key: dataset, architecture, loss, loss_name, seed, variant, trial, cell_id" in " ".join(
        line.strip("│ ") for line in main.splitlines())


def test_an_option_of_another_launcher_is_one_line_naming_whose_it_is(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BenchError, match=r"^--gpus-per-cell 1.0 is for --launcher ray or slurm; --launcher local "
                                         r"takes --jobs, --threads$"):
        make_launcher(LauncherOptions(gpus_per_cell=1.0))
    with pytest.raises(BenchError, match=r"^--slurm-partition gpu is for --launcher slurm; --launcher ray takes "):
        make_launcher(LauncherOptions(kind="ray", slurm_partition="gpu"))
    with pytest.raises(BenchError, match=r"^--launcher 'pbs': expected local, ray or slurm$"):
        make_launcher(LauncherOptions(kind="pbs"))
    with pytest.raises(TypeError, match="unknown launcher option 'gpus'"):
        LauncherOptions(gpus=1)


def test_a_new_launcher_is_one_spec_in_the_registry(registry, tmp_path):
    """A launcher added to the registry (here from a program embedding bench) gets its flags, in its own
    help panel, and runs cells: no change to the CLI or to make_launcher."""
    code = textwrap.dedent(f"""
        from dataclasses import dataclass
        from typer.testing import CliRunner
        from bench.run import launchers
        from bench.run.launchers.base import LauncherOption, LauncherSpec, OptionGroup
        from bench.run.launchers.local import LocalLauncher

        seen = []

        def build(options, on_submit=None):
            seen.append(options.inline_tag)
            return LocalLauncher()

        group = OptionGroup("Inline launcher (--launcher inline)",
                            (LauncherOption("inline_tag", ("--inline-tag",), str, "none", "A tag."),))
        launchers.LAUNCHERS["inline"] = LauncherSpec("inline", (group,), build)
        from bench.cli.main import app  # built after the registry is complete

        run = CliRunner()
        r = run.invoke(app, ["run", "--help"], env={{"COLUMNS": "200"}})
        assert "Inline launcher (--launcher inline)" in r.output and "--inline-tag" in r.output, r.output
        args = ["run", "--grid", "tiny", "--registry", {str(registry)!r}, "--results", {str(tmp_path / "res")!r},
                "--plain", "--no-report", "--filter", "loss=celLoss", "--filter", "seed=0", "--launcher", "inline"]
        r = run.invoke(app, args + ["--inline-tag", "x"])
        assert r.exit_code == 0 and "trained 1 (1 done" in r.output and seen == ["x"], r.output
        r = run.invoke(app, args + ["--jobs", "2"])
        assert r.exit_code == 2 and "--jobs 2 is for --launcher local; --launcher inline takes --inline-tag" in r.output
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
