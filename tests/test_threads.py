"""Sharing the cores between lossbench processes (bench/run/threads.py): the arithmetic, the slot files,
rebalancing, and two real ``bench run`` processes side by side.

Every test names its own slot folder (``ThreadShare(folder=...)``, or ``XDG_RUNTIME_DIR`` for a
child ``bench run``), so lossbench runs elsewhere on the machine do not change the counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bench.errors import BenchError
from bench.run.launchers import LauncherOptions, make_launcher
from bench.store.results import Store
from bench.run.threads import (Slot, ThreadShare, allocate, describe_live, live_slots, share_out, slot_dir,
                           usable_cores)
from tests.conftest import REPO, gauss_registry

posix_only = pytest.mark.skipif(os.name != "posix", reason="slots need POSIX process checks")


def test_share_out_splits_the_cores():
    assert share_out(2, [2]) == [2]  # alone: all cores
    assert share_out(8, [8]) == [8]
    assert share_out(2, [2, 2]) == [1, 1]  # two: half each
    assert share_out(8, [8, 8]) == [4, 4]
    assert share_out(2, [2, 2, 2]) == [1, 1, 1]  # more slots than cores: one thread each, never 0
    assert share_out(4, [4, 4, 4]) == [1, 1, 2]  # the remainder goes to the last, so every core is used
    assert share_out(8, [1, 8]) == [1, 7]  # a process limited to 1 thread leaves the rest to the other
    assert share_out(8, [4], pinned=6) == [2]  # pinned slots are served first
    assert share_out(2, [2], pinned=4) == [1]
    assert share_out(4, [2]) == [2]  # never more than wanted


def test_allocate_agrees_whatever_the_listing_order():
    a, b, p = Slot(10, "1", 4, False, "a"), Slot(20, "1", 4, False, "b"), Slot(30, "1", 2, True, "c")
    want = {a.name: 1, b.name: 1, p.name: 2}
    assert allocate(4, [a, b, p]) == want and allocate(4, [p, b, a]) == want
    assert allocate(4, [a]) == {a.name: 4}


def test_slot_names_round_trip_and_junk_is_ignored(tmp_path):
    slot = Slot(123, "456", 2, True, "abc")
    assert Slot.parse(slot.name) == slot
    for junk in ("x.slot", "1-2-3-q-t.slot", "1-2-x-s-t.slot", "notes.txt", "1-2-3-s-t"):
        assert Slot.parse(junk) is None
        (tmp_path / junk).write_text("")
    assert live_slots(tmp_path) == [] and (tmp_path / "notes.txt").exists()
    assert live_slots(tmp_path / "missing") == []


@posix_only
def test_a_slot_is_registered_while_held_and_removed_on_exit_and_on_error(tmp_path):
    saved = torch.get_num_threads()
    with ThreadShare(folder=tmp_path, cores=4, want=4).hold() as held:
        files = [p.name for p in tmp_path.iterdir()]
        assert files == [held.slot.name] and files[0].startswith(f"{os.getpid()}-")
        assert held.rebalance() == 4 == torch.get_num_threads()
        assert f"1 live slot(s) on {usable_cores()} cores: pid {os.getpid()}" in describe_live(tmp_path)
    assert list(tmp_path.iterdir()) == [] and torch.get_num_threads() == saved
    with pytest.raises(RuntimeError, match="boom"):
        with ThreadShare(folder=tmp_path, cores=4, want=4).hold():
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [] and torch.get_num_threads() == saved


@posix_only
def test_dead_and_recycled_pids_are_ignored_and_cleaned(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / Slot(child.pid, "0", 2, False, "dead").name
    # a live pid whose start time differs: the pid was recycled after its lossbench process died
    recycled = tmp_path / Slot(os.getpid(), "1", 2, False, "old").name
    for path in (dead, recycled):
        path.write_text("")
    with ThreadShare(folder=tmp_path, cores=2, want=2).hold() as held:
        assert held.rebalance() == 2  # alone: the dead slots do not count
        assert [p.name for p in tmp_path.iterdir()] == [held.slot.name]


@posix_only
def test_shares_rebalance_when_a_slot_comes_and_goes(tmp_path):
    saved = torch.get_num_threads()
    share = ThreadShare(folder=tmp_path, cores=4, want=4)
    with share.hold() as first:
        assert first.rebalance() == 4
        with share.hold() as second:
            assert second.rebalance() == 2
            assert first.rebalance() == 2
            with ThreadShare(pinned=1, folder=tmp_path, cores=4).hold() as pinned:
                assert pinned.rebalance() == 1  # pinned: whatever else is live
                assert first.rebalance() + second.rebalance() == 3  # the sharers split what is left
            assert first.rebalance() == 2
        assert first.rebalance() == 4  # the other slot went away: its cores come back
        assert first.varied
    assert torch.get_num_threads() == saved


@posix_only
def test_the_trainers_epoch_hook_rebalances_and_each_cell_records_its_own_counts(tmp_path):
    with ThreadShare(folder=tmp_path, cores=2, want=2).hold() as held:
        held.begin_cell()
        assert torch.get_num_threads() == 2 and not held.varied
        with ThreadShare(folder=tmp_path, cores=2, want=2).hold():
            held.on_epoch_start(3)
            assert torch.get_num_threads() == 1 and held.varied  # this cell ran with 2, then 1
            held.begin_cell()
            assert not held.varied  # the next cell starts its own record


@posix_only
def test_an_unwritable_folder_warns_and_runs_unshared(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="does not share the cores"):
        with ThreadShare(folder=blocker / "threads", cores=2, want=2).hold() as held:
            assert held.rebalance() == 2 and not held.registered


def test_slot_dir_follows_xdg_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert slot_dir() == tmp_path / "lossbench" / "threads"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert slot_dir().name == "threads" and "lossbench-" in slot_dir().parent.name


def test_threads_option_is_for_the_local_launcher():
    with pytest.raises(BenchError, match="--threads 2 is for --launcher local"):
        make_launcher(LauncherOptions(kind="slurm", threads=2))
    assert make_launcher(LauncherOptions(threads=2)).threads == 2
    assert make_launcher(LauncherOptions(jobs=2, threads=1)).threads == 1


# --- real runs -------------------------------------------------------------------------------------

def _write_registry(tmp_path: Path, cells_seeds: list[int], epochs: int) -> Path:
    grid = {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": cells_seeds,
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01}}
    data = gauss_registry(t=grid)
    # eight batches an epoch: these tests order their events with signals and slot files, not with timing
    data["datasets"]["g"]["params"].update({"n_train": 512, "n_test": 256})
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    return reg


def _two_cpus() -> set[int]:
    return set(sorted(os.sched_getaffinity(0))[:2])


def _start(reg: Path, results: Path, runtime: Path, *extra: str) -> subprocess.Popen:
    """``bench run`` in a child on two CPUs, wanting 2 threads, with its slots under ``runtime``."""
    cpus = _two_cpus()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(runtime), "OMP_NUM_THREADS": "2",
           "LOSSBENCH_FAULT": ""}
    return subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--grid", "t", "--registry", str(reg),
                             "--results", str(results), "--plain", "--no-report", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))


def _slots_of(folder: Path, pid: int) -> list[Path]:
    return [p for p in folder.glob(f"{pid}-*.slot")] if folder.is_dir() else []


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] in "Tt"


def _freeze_while_training(p: subprocess.Popen, folder: Path, timeout: float = 240) -> None:
    """SIGSTOP ``p`` once it holds its slot (it has started training), so its slot stays live."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        if _slots_of(folder, p.pid):
            p.send_signal(signal.SIGSTOP)
            while not _stopped(p.pid):
                time.sleep(0.005)
            if _slots_of(folder, p.pid):
                return
            p.send_signal(signal.SIGCONT)  # it had just ended its run: the assertion above says so
        time.sleep(0.01)
    raise AssertionError("the run never held a slot")


def _finish(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, (out, err)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not Path("/proc/self/stat").exists()
                    or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 CPUs")
def test_two_runs_at_once_split_the_cores_and_give_them_back(tmp_path):
    """A starts alone (2 threads); B starts; each runs with 1 thread while both are live; A ends, B gets 2.

    The order of events is forced with SIGSTOP/SIGCONT (a stopped run keeps its slot), not with timing:
    A is stopped once training, B starts and is stopped once training, A finishes, then B.
    """
    # 4 cells of 3 epochs: each run is stopped in or before its first cell, so later cells exist to check
    reg = _write_registry(tmp_path, [0, 1], epochs=3)
    (tmp_path / "runtime").mkdir()
    folder = tmp_path / "runtime" / "lossbench" / "threads"
    a = _start(reg, tmp_path / "a", tmp_path / "runtime")
    _freeze_while_training(a, folder)  # A trained alone so far
    b = _start(reg, tmp_path / "b", tmp_path / "runtime")
    _freeze_while_training(b, folder)  # B started beside A's slot
    resumed_a = time.time_ns()
    a.send_signal(signal.SIGCONT)
    _finish(a)  # A's next epochs and cells see B's slot
    assert _slots_of(folder, a.pid) == []
    resumed_b = time.time_ns()
    b.send_signal(signal.SIGCONT)
    _finish(b)  # A is gone: B's next epochs and cells have the cores to themselves
    assert list(folder.iterdir()) == []

    for results, resumed, frozen_threads, later_threads in ((tmp_path / "a", resumed_a, 2, 1),
                                                             (tmp_path / "b", resumed_b, 1, 2)):
        rows = Store(results).cells()
        assert len(rows) == 4 and (rows["status"] == "done").all()
        later = rows[rows["started_at_ns"] > resumed]
        frozen = rows[rows["started_at_ns"] <= resumed]
        assert len(later) >= 1 and (later["torch_num_threads"] == later_threads).all(), rows
        assert later["deterministic"].all()
        # cells started before the stop (none, when it was stopped between taking its slot and
        # starting its first cell) kept their first count; one the run was stopped in rebalanced
        # at its next epoch (its count varied, so its row is not marked deterministic), unless it
        # was stopped in its last epoch or between cells
        for threads, deterministic in zip(frozen["torch_num_threads"], frozen["deterministic"]):
            assert (int(threads), bool(deterministic)) in ((later_threads, False), (frozen_threads, True)), rows


@pytest.mark.skipif(os.name != "posix" or usable_cores() < 2, reason="needs POSIX and 2 cores")
def test_jobs_workers_and_pinned_runs_take_their_threads_from_the_slots(tmp_path, monkeypatch, cli):
    reg = _write_registry(tmp_path, [0], epochs=2)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # the spawned workers inherit it
    folder = tmp_path / "lossbench" / "threads"
    cores = usable_cores()
    # a pinned process holding all cores but one: every sharing worker is left exactly 1 thread
    with ThreadShare(pinned=cores - 1, folder=folder).hold():
        r = cli("run", "--grid", "t", "--registry", reg, "--results", tmp_path / "jobs", "--plain", "--no-report",
                "--jobs", "2")
        assert r.exit_code == 0, r.output
        assert len(list(folder.iterdir())) == 1  # the workers' slots are gone
    rows = Store(tmp_path / "jobs").cells()
    assert len(rows) == 2 and (rows["torch_num_threads"] == 1).all() and rows["deterministic"].all()

    saved = torch.get_num_threads()
    r = cli("run", "--grid", "t", "--registry", reg, "--results", tmp_path / "pinned", "--plain", "--no-report",
            "--threads", "1")
    assert r.exit_code == 0, r.output
    assert (Store(tmp_path / "pinned").cells()["torch_num_threads"] == 1).all()
    assert torch.get_num_threads() == saved and list(folder.iterdir()) == []


def test_concurrent_runs_benchmark_runs_every_variant(tmp_path):
    """The benchmark script end to end at a tiny size (its timings mean nothing here)."""
    import json

    reg = _write_registry(tmp_path, [0], epochs=1)
    out = tmp_path / "fig.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "concurrent_runs.py"), "--registry", str(reg),
                           "--grid", "t", "--epochs", "1", "--filter", "loss=celLoss", "--rounds", "1", "--warmup", "0",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fig = json.loads(out.read_text())
    cores = fig["cores"]
    assert set(fig["rounds"]) == {"alone", f"alone --threads {cores}", "alone --threads 1", "pair"}
    assert [r["cell_epochs"] for r in fig["rounds"]["pair"]] == [2]  # two runs, one cell-epoch each
    assert fig["rounds"]["alone --threads 1"][0]["threads"] == {"1": 1}
    assert fig["pair_over_alone_throughput"] > 0 and "pair / alone throughput" in proc.stdout
