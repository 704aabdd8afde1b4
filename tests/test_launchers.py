"""The cluster launchers: a real local Ray cluster, and submitit's local/debug executors for SLURM.

One Ray cluster (2 CPUs, 1 logical GPU, no token auth, temp dir under the test's tmp path) serves
the whole module: the launcher joins a Ray that is already initialised and leaves it running.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import bench.launchers as launchers_pkg
from bench.cells import expand_grid
from bench.errors import BenchError
from bench.execute import ExecOptions, run_cell
from bench.launchers import LauncherOptions, make_launcher
from bench.registry import load_registry
from bench.store import Store

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


def bench(*args) -> object:
    from bench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


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


def spy_launchers(monkeypatch) -> list:
    """Record the launchers the CLI builds (to read their worker-side timings)."""
    made: list = []
    real = launchers_pkg.make_launcher

    def spy(options):
        launcher = real(options)
        made.append(launcher)
        return launcher

    monkeypatch.setattr(launchers_pkg, "make_launcher", spy)
    return made


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reg") / "registry.yaml"
    path.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cell_ids(registry) -> dict[tuple[str, int], str]:
    cells = expand_grid(load_registry(registry), "tiny", torch.device("cpu"))
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
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, _temp_dir=str(temp),
             logging_level="warning", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        mp.undo()
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


# ---------------------------------------------------------------- engine-free checks

def test_missing_extra_is_one_line(monkeypatch, registry, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "submitit", None)
    r = bench(*run_args(registry, tmp_path / "results", "--launcher", "ray"))
    assert r.exit_code == 2
    assert r.output.strip() == "error: the ray launcher needs Ray: pip install 'lossbench[ray]'"
    r = bench(*run_args(registry, tmp_path / "results", "--launcher", "slurm"))
    assert r.exit_code == 2
    assert r.output.strip() == "error: the slurm launcher needs submitit: pip install 'lossbench[slurm]'"


def test_option_checks():
    with pytest.raises(BenchError, match="whole GPUs"):
        make_launcher(LauncherOptions(kind="slurm", gpus_per_cell=0.5))
    with pytest.raises(BenchError, match="fraction up to 1"):
        make_launcher(LauncherOptions(kind="ray", gpus_per_cell=1.5))
    with pytest.raises(BenchError, match="--jobs 2 is for --launcher local"):
        make_launcher(LauncherOptions(kind="ray", jobs=2))
    ray_launcher = make_launcher(LauncherOptions(kind="ray", gpus_per_cell=0.25, cpus_per_cell=1))
    node = {"CPU": 8.0, "GPU": 2.0}
    assert ray_launcher.check_resources(node, [node]) == 8  # GPUs allow 8 cells, CPUs 8
    with pytest.raises(BenchError, match="has no GPUs"):
        ray_launcher.check_resources({"CPU": 8.0}, [{"CPU": 8.0}])
    big = make_launcher(LauncherOptions(kind="ray", gpus_per_cell=2, cpus_per_cell=1))
    with pytest.raises(BenchError, match="no node of the Ray cluster"):
        big.check_resources({"CPU": 16.0, "GPU": 2.0}, [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}])


def _fake_tool(bindir: Path, name: str, output: str = "") -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_parameters_and_gpu_check(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    from bench.launchers.slurm import SlurmLauncher

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("srun", "sbatch", "scancel"):
        _fake_tool(bindir, tool)
    _fake_tool(bindir, "sinfo", "gpu:a100:4\\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    opts = LauncherOptions(kind="slurm", gpus_per_cell=1, cpus_per_cell=4, slurm_partition="gpu", timeout_min=600,
                           slurm_array_parallelism=32)
    launcher = SlurmLauncher(opts, cluster="slurm")
    launcher.check_gpus()  # the partition has gpu gres
    params = launcher.make_executor(submitit, tmp_path / "logs")._executor.parameters
    assert params["partition"] == "gpu" and params["array_parallelism"] == 32 and params["time"] == 600
    assert params["gpus_per_node"] == 1 and params["cpus_per_task"] == 4
    _fake_tool(bindir, "sinfo", "(null)\\n")
    with pytest.raises(BenchError, match="partition 'gpu' has no GPUs"):
        launcher.check_gpus()


def test_ray_worker_death_after_retries_is_a_failed_row(registry, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from bench.launchers.ray import RayLauncher

    cell = expand_grid(load_registry(registry), "tiny", torch.device("cpu"))[0]

    class DeadRay:
        @staticmethod
        def get(ref):
            raise ray.exceptions.WorkerCrashedError()

    outcome = RayLauncher(LauncherOptions(kind="ray", max_retries=2))._collect(DeadRay, None, cell)
    assert outcome.status == "failed" and "died 3 time(s)" in outcome.row["message"]
    assert outcome.row["cell_id"] == cell.cell_id and math.isnan(outcome.row["final_test_acc"])
    # the same columns, of the same types, as the failed rows run_cell builds itself
    monkeypatch.setenv("LOSSBENCH_FAULT", f"raise:{cell.cell_id}:0")
    own = run_cell(cell, ExecOptions(cache_dir=str(tmp_path / "cache")))
    assert own.status == "failed"
    assert {k: type(v) for k, v in outcome.row.items()} == {k: type(v) for k, v in own.row.items()}


# ---------------------------------------------------------------- SLURM through submitit

def test_slurm_local_executor_resubmits_a_dead_job(registry, reference, cell_ids, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    cid = cell_ids[("celLoss", 0)]
    results = tmp_path / "results"
    monkeypatch.setenv("LOSSBENCH_SUBMITIT_CLUSTER", "local")  # jobs are subprocesses of this machine
    monkeypatch.setenv("LOSSBENCH_FAULT", f"kill:{cid}:1")  # its first job is SIGKILLed after epoch 1
    made = spy_launchers(monkeypatch)
    r = bench(*run_args(registry, results, "--launcher", "slurm", "--filter", "loss=celLoss",
                        "--slurm-array-parallelism", "2", "--timeout-min", "5", "--max-retries", "1"))
    assert r.exit_code == 0, r.output
    assert "trained 2 (2 done" in r.output
    got = metrics(results)
    assert len(got) == 2
    for cell_id, row in got.items():
        assert_same_metrics(row, reference[cell_id])
    assert got[cid]["resumed_from_epoch"] == 1 and made[0].attempts[cid] == 2
    assert list((results / "logs").iterdir()), "submitit keeps its job folders under <results>/logs"


def test_slurm_debug_executor_stores_an_exception_as_failed(registry, reference, cell_ids, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    cid = cell_ids[("milLoss", 1)]
    results = tmp_path / "results"
    monkeypatch.setenv("LOSSBENCH_SUBMITIT_CLUSTER", "debug")  # jobs run in this process
    monkeypatch.setenv("LOSSBENCH_FAULT", f"raise:{cid}:0")
    made = spy_launchers(monkeypatch)
    r = bench(*run_args(registry, results, "--launcher", "slurm", "--filter", "loss=milLoss"))
    assert r.exit_code == 1
    got = metrics(results)
    assert got[cid]["status"] == "failed" and "fault injected" in got[cid]["message"]
    other = cell_ids[("milLoss", 0)]
    assert_same_metrics(got[other], reference[other])
    assert made[0].attempts == {cid: 1, other: 1}  # the failing cell was not resubmitted


# ---------------------------------------------------------------- a real local Ray cluster

def test_ray_packs_cells_on_fractional_gpus_and_matches_local(ray_cluster, registry, reference, tmp_path, monkeypatch):
    made = spy_launchers(monkeypatch)
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
    spans = sorted(made[0].timings.values())
    assert len(spans) == 4
    assert any(spans[i + 1][0] < spans[i][1] for i in range(3)), spans

    r = bench(*args)
    assert r.exit_code == 0 and "trained 0" in r.output and "skipped 4 finished" in r.output
    assert made[1].submitted == 0


def test_ray_worker_killed_mid_cell_resumes_on_retry(ray_cluster, registry, reference, cell_ids, tmp_path,
                                                     monkeypatch):
    cid = cell_ids[("milLoss", 0)]
    results = tmp_path / "results"
    monkeypatch.setenv("LOSSBENCH_FAULT", f"kill:{cid}:1")  # SIGKILL its worker after epoch 1, once
    r = bench(*run_args(registry, results, *RAY, "--max-retries", "1", "--filter", f"cell_id={cid}"))
    assert r.exit_code == 0, r.output
    assert (results / "checkpoints" / f"{cid}.killed").exists()  # it really died once
    row = metrics(results)[cid]
    assert row["status"] == "done" and row["resumed_from_epoch"] == 1
    assert_same_metrics(row, reference[cid])


def test_ray_cell_exception_is_stored_failed_and_not_retried(ray_cluster, registry, cell_ids, tmp_path, monkeypatch):
    cid = cell_ids[("celLoss", 1)]
    results = tmp_path / "results"
    monkeypatch.setenv("LOSSBENCH_FAULT", f"raise:{cid}:1")
    args = run_args(registry, results, *RAY, "--filter", "seed=1")
    r = bench(*args)
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
    from bench.launchers.ray import RayLauncher
    from bench.progress import PlainDisplay
    from bench.runner import run_grid
    from bench.store import StoreWriteError

    cells = expand_grid(load_registry(registry), "tiny", torch.device("cpu"))[:1]
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
    from bench.launchers.ray import RayLauncher
    from bench.progress import PlainDisplay
    from bench.runner import RunSummary, run_grid, select_cells

    class InterruptedDisplay(PlainDisplay):
        def finish_cell(self, cell, status, summary):
            super().finish_cell(cell, status, summary)
            raise KeyboardInterrupt  # Ctrl-C right after the first result is stored

    cells = expand_grid(load_registry(registry), "tiny", torch.device("cpu"))
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


def test_cluster_cells_take_the_workers_device(registry, tmp_path):
    """With --gpus-per-cell the cells are CUDA cells (bf16 under 'auto'), whatever the driver has."""
    data = yaml.safe_load(registry.read_text())
    data["grids"]["tiny"]["train"].pop("precision")
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump(data))
    out = bench(*run_args(reg, tmp_path / "res", "--launcher", "ray", "--gpus-per-cell", "0.5", "--dry-run"))
    cuda_ids = {line.split()[0] for line in out.output.splitlines() if "pending" in line}
    cpu_cells = expand_grid(load_registry(reg), "tiny", torch.device("cpu"))
    cuda_cells = expand_grid(load_registry(reg), "tiny", torch.device("cuda"))
    assert cuda_ids == {c.cell_id for c in cuda_cells} and not cuda_ids & {c.cell_id for c in cpu_cells}
    assert {c.config["train"]["precision"] for c in cuda_cells} == {"bf16"}
