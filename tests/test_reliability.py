"""Reliability, with the damage done for real: kill -9 at random moments, SIGTERM/SIGINT, two runs
at once, garbage in results files and checkpoints, a full or unwritable results folder, diverged
and out-of-memory cells, crafted names, and the determinism flags stored with each cell.

Subprocesses run with one torch thread (the machine may be busy; bitwise comparisons are between
runs with the same thread count).
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from bench.config.cells import expand_grid
from bench.train.checkpoint import verify_checkpoint
from bench.config.registry import load_registry
from bench.store.results import CELL_REQUIRED, HISTORY_REQUIRED, Store
from tests import faults
from tests.conftest import REPO, tiny_registry

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FINAL_COLUMNS = ["status", "epochs_done", "final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
                 "final_test_mi", "final_test_h_cond", "final_test_h_marg", "best_test_acc"]
HISTORY_VALUES = ["cell_id", "epoch", "train_loss", "train_acc", "test_acc", "test_loss", "test_h_cond", "test_h_marg",
                  "test_mi"]


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs use one torch thread too: faster on a busy machine, and bitwise comparable with the children."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def grid_k(seeds=(0, 1, 2), epochs=4, **train):
    return {"k": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": list(seeds),
                  "train": {"epochs": epochs, "batch_size": 32, "lr": 0.01, **train}}}


def write_registry(tmp_path: Path, grids: dict, n_train: int = 1024) -> Path:
    data = tiny_registry(**grids)
    data["datasets"]["g"]["params"]["n_train"] = n_train
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(data, sort_keys=False))
    return reg


def cell_ids(reg: Path, grid: str) -> list[str]:
    return [c.cell_id for c in expand_grid(load_registry(reg), grid)]


class Run:
    """``python -m bench.cli.main ...`` in a child process, its output read line by line as it comes;
    with ``fault``, the same command line with that fault plugged in (:mod:`tests.faults`)."""

    def __init__(self, *args, fault: str = ""):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **THREADS, "LOSSBENCH_FAULT": fault}
        command = faults.faulty_command() if fault else [sys.executable, "-m", "bench.cli"]
        self.p = subprocess.Popen([*command, *map(str, args)], cwd=REPO, env=full_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.lines: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out, self.lines), daemon=True),
                        threading.Thread(target=self._pump, args=(self.p.stderr, self.err, None), daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(stream, sink: list[str], q: queue.Queue | None) -> None:
        for line in stream:
            sink.append(line)
            if q is not None:
                q.put(line)
        if q is not None:
            q.put(None)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 180) -> bool:
        """Block until ``count`` stdout lines matched ``pattern``; False when the process ended first."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                return False
            if re.search(pattern, line):
                seen += 1
                if seen >= count:
                    return True

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def finish(self, timeout: float = 240) -> int:
        rc = self.p.wait(timeout=timeout)
        for t in self.threads:
            t.join(timeout=30)
        return rc

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def run_args(reg: Path, results: Path, grid: str = "k", *extra) -> list:
    return ["run", "--grid", grid, "--registry", reg, "--results", results, "--plain", "--no-report", *extra]


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


def final_files(folder: Path, pattern: str) -> list[Path]:
    """Files under their final names (temp files are hidden, named .tmp-*)."""
    return [p for p in folder.glob(pattern) if not p.name.startswith(".")]


def assert_same_results(results: Path, reference: Path) -> None:
    """Every cell's final metrics and per-epoch history equal the reference run's, bitwise."""
    got = Store(results).cells().set_index("cell_id").sort_index()
    ref = Store(reference).cells().set_index("cell_id").sort_index()
    assert list(got.index) == list(ref.index)
    pd.testing.assert_frame_equal(got[FINAL_COLUMNS], ref[FINAL_COLUMNS], check_exact=True)
    h_got = Store(results).history(got["attempt_id"])[HISTORY_VALUES].sort_values(["cell_id", "epoch"]).reset_index(drop=True)
    h_ref = Store(reference).history(ref["attempt_id"])[HISTORY_VALUES].sort_values(["cell_id", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(h_got, h_ref, check_exact=True)


def check_store(results: Path, committed: dict[str, str]) -> None:
    """After any kill: every file under its final name is complete, and no finished cell was trained again."""
    for folder, required in (("cells", CELL_REQUIRED), ("history", HISTORY_REQUIRED)):
        for p in final_files(results / folder, "*.parquet"):
            table = pq.read_table(p, page_checksum_verification=True)  # raises on a half-written file
            assert set(required) <= set(table.column_names), p
    for p in final_files(results / "checkpoints", "*.pt"):
        verify_checkpoint(p)
        state = torch.load(p, map_location="cpu", weights_only=True)
        assert state["epoch"] >= 1 and state["cell_id"] == p.stem
    attempts = Store(results).attempts()
    assert attempts["cell_id"].is_unique, attempts  # one finished attempt per cell: none trained twice
    now = dict(zip(attempts["cell_id"], attempts["attempt_id"]))
    for cell_id, attempt in committed.items():
        assert now.get(cell_id) == attempt, f"finished cell {cell_id} lost or retrained"
    committed.update(now)
    corrupt = results / "corrupt"
    assert not corrupt.exists() or not any(corrupt.iterdir()), "a file was found damaged"


# ------------------------------------------------------------------------------------------ kill -9


def test_kill9_at_random_moments_loses_nothing_and_repeats_nothing(tmp_path, cli):
    reg = write_registry(tmp_path, grid_k())
    ids = cell_ids(reg, "k")
    reference, results = tmp_path / "reference", tmp_path / "results"
    assert cli(*run_args(reg, reference)).exit_code == 0  # uninterrupted, in this process (one thread, as the children)

    rng = random.Random(20240611)
    # random moments during training, and the writes a kill must never tear: a checkpoint, a history part, a cell row
    plan = ["random", "kill-in-checkpoint-write", "random", "kill-in-result-write", "kill-in-history-write", "random"]
    committed: dict[str, str] = {}
    outputs = []
    for i, moment in enumerate(plan):
        if moment == "random":
            r = Run(*run_args(reg, results))
            if r.wait_for(r"^  epoch ", count=rng.randint(1, 2)):
                time.sleep(rng.uniform(0.0, 0.1))
                r.signal(signal.SIGKILL)
        else:
            r = Run(*run_args(reg, results), fault=f"{moment}::0")
        rc = r.finish()
        outputs.append(r.stdout)
        assert rc == -signal.SIGKILL, (i, moment, rc, r.stdout[-2000:], r.stderr[-2000:])
        if moment != "random":  # the torn file exists, but only under its temp name
            stage = moment.split("-")[2]
            folder = {"checkpoint": "checkpoints", "result": "cells", "history": "history"}[stage]
            assert [p for p in temp_files(results) if p.parent.name == folder], moment
        assert "Traceback" not in r.stderr and "damaged" not in r.stderr, r.stderr
        check_store(results, committed)
        assert len(committed) < len(ids), "the grid finished before the last kill"

    final = cli(*run_args(reg, results))  # what the kills left, finished in this process (one thread, as the children)
    assert final.exit_code == 0, final.output
    assert "resumed from epoch" in "".join(outputs[1:]) + final.stdout
    assert "damaged" not in final.stderr and "Traceback" not in final.output
    check_store(results, committed)
    assert sorted(committed) == sorted(ids)  # every cell finished, each with exactly one attempt
    assert not temp_files(results) and not final_files(results / "checkpoints", "*.pt")
    assert_same_results(results, reference)

    again = cli(*run_args(reg, results))  # and a rerun trains nothing
    assert again.exit_code == 0 and "trained 0" in again.stdout and f"skipped {len(ids)} finished" in again.stdout


# ------------------------------------------------------------------------------------------ signals


def test_sigterm_and_sigint_stop_cleanly_and_the_next_run_resumes(tmp_path, cli):
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=5))
    reference, results = tmp_path / "reference", tmp_path / "results"
    one = ("--filter", "loss=milLoss")
    assert cli(*run_args(reg, reference, "k", *one)).exit_code == 0
    (cell_id,) = Store(reference).cells()["cell_id"]

    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        r = Run(*run_args(reg, results, "k", *one))
        assert r.wait_for(r"^  epoch ")  # an epoch finished and checkpointed; stop in the next one
        r.signal(sig)
        assert r.finish() == code, (sig, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert lines[-1].startswith("interrupted:") and "Traceback" not in r.stderr, r.stderr
        ckpt = results / "checkpoints" / f"{cell_id}.pt"
        verify_checkpoint(ckpt)
        assert torch.load(ckpt, weights_only=True)["epoch"] >= 1
        assert Store(results).statuses() == {}  # nothing half-finished is reported
        assert not temp_files(results)  # the interrupted writer removed its temp file
        assert not Store(results).is_running(cell_id)

    r = cli(*run_args(reg, results, "k", *one))  # the resume, in this process (one thread, as the children)
    assert r.exit_code == 0, r.output
    assert re.search(r"resumed from epoch [2-4]", r.stdout), r.stdout
    assert len(Store(results).attempts()) == 1
    assert_same_results(results, reference)


def test_sigterm_with_worker_processes_stops_them(tmp_path):
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=40), n_train=2048)
    results = tmp_path / "results"
    r = Run(*run_args(reg, results, "k", "--jobs", "2"))
    assert r.wait_for(r"started", count=2)
    deadline = time.monotonic() + 120
    while not final_files(results / "checkpoints", "*.pt") and time.monotonic() < deadline:
        time.sleep(0.1)
    r.signal(signal.SIGTERM)
    assert r.finish(timeout=60) == 143, r.stderr
    assert "Traceback" not in r.stderr
    before = {p: p.stat().st_mtime_ns for p in final_files(results / "checkpoints", "*.pt")}
    assert before
    time.sleep(1.5)  # a surviving worker would write its next epoch checkpoint
    assert {p: p.stat().st_mtime_ns for p in final_files(results / "checkpoints", "*.pt")} == before
    assert Store(results).statuses() == {}


# ------------------------------------------------------------------------------------------ two runs at once


def test_two_runs_at_once_train_each_cell_exactly_once(tmp_path, cli):
    reg = write_registry(tmp_path, grid_k(epochs=3))
    ids = cell_ids(reg, "k")
    results = tmp_path / "results"
    a, b = Run(*run_args(reg, results)), Run(*run_args(reg, results))
    assert a.finish() == 0, a.stderr
    assert b.finish() == 0, b.stderr
    started = Counter(re.findall(r"\(([0-9a-f]{16})\) started", a.stdout + b.stdout))
    assert sorted(started) == sorted(ids) and set(started.values()) == {1}, started
    trained = [int(re.search(r"trained (\d+)", x.stdout).group(1)) for x in (a, b)]
    assert sum(trained) == len(ids)
    attempts = Store(results).attempts()
    assert len(attempts) == len(ids) and attempts["cell_id"].is_unique
    assert "Traceback" not in a.stderr + b.stderr and not temp_files(results)
    r = cli("status", "--grid", "k", "--registry", reg, "--results", results)
    assert f"{len(ids)} cells: {len(ids)} done, 0 running, 0 failed, 0 diverged, 0 pending" in r.output


# ------------------------------------------------------------------------------------------ damaged files


def test_damaged_files_are_named_moved_aside_and_their_cells_retrained(tmp_path, cli):
    grids = {"c": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss", "celLossLSR"],
                   "seeds": [0, 1], "train": {"epochs": 2, "batch_size": 64, "lr": 0.01}}}
    reg = write_registry(tmp_path, grids, n_train=512)
    ids = cell_ids(reg, "c")
    results = tmp_path / "results"
    args = ["run", "--grid", "c", "--registry", reg, "--results", results, "--plain", "--no-report"]
    a, b, c, d, e, f = ids
    r = faults.invoke(f"raise:{e}:1", *args)  # e fails in epoch 2, keeping its epoch-1 checkpoint
    assert r.exit_code == 1, r.output
    store = Store(results)
    before = store.cells().set_index("cell_id")
    attempt = before["attempt_id"].to_dict()
    cell_part = {k: next((results / "cells").glob(f"part-*-{v}.parquet")) for k, v in attempt.items()}
    hist_part = {k: next((results / "history").glob(f"part-*-{v}.parquet")) for k, v in attempt.items() if k != e}
    ckpt = results / "checkpoints" / f"{e}.pt"
    assert ckpt.exists() and before.loc[e, "status"] == "failed"

    damage = {}
    damage[cell_part[a]] = b"this is not a parquet file" * 20  # garbage
    damage[hist_part[b]] = hist_part[b].read_bytes()[: hist_part[b].stat().st_size // 2]  # truncated
    pd.DataFrame({"foo": [1, 2]}).to_parquet(cell_part[c])  # readable parquet, wrong schema
    damage[cell_part[c]] = cell_part[c].read_bytes()
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped bit pattern inside the weights: torch.load alone would not notice
    damage[ckpt] = bytes(raw)
    for path, data in damage.items():
        path.write_bytes(data)
    untouched = {k: files_under(results / "cells").get(cell_part[k].name) for k in (d, f)}
    untouched_hist = {k: hist_part[k].stat().st_mtime_ns for k in (d, f)}

    r = cli(*args, "--retry-failed")
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(warnings) == 4, r.stderr
    for path in damage:
        (line,) = [w for w in warnings if str(path) in w]
        assert line.startswith("warning: damaged") and "moved to" in line
    moved = sorted((results / "corrupt").iterdir())
    assert len(moved) == 4
    assert sorted(p.read_bytes() for p in moved) == sorted(damage.values())  # moved aside, byte for byte
    assert not any(p.exists() for p in damage)

    started = set(re.findall(r"\(([0-9a-f]{16})\) started", r.output))
    assert started == {a, b, c, e}  # the damaged cells retrained; the others untouched
    after = Store(results).cells().set_index("cell_id")
    assert set(after["status"]) == {"done"} and len(after) == 6
    for k in (d, f):
        assert after.loc[k, "attempt_id"] == attempt[k]
        assert files_under(results / "cells").get(cell_part[k].name) == untouched[k]
        assert hist_part[k].stat().st_mtime_ns == untouched_hist[k]
    for k in (a, b, c):  # retrained from scratch: the same numbers
        assert after.loc[k, "attempt_id"] != attempt[k]
        assert (after.loc[k, FINAL_COLUMNS] == before.loc[k, FINAL_COLUMNS]).all()
    assert after.loc[e, "resumed_from_epoch"] == 0 and after.loc[e, "epochs_done"] == 2
    r = cli("status", "--grid", "c", "--registry", reg, "--results", results)
    assert "6 done" in r.output and not r.stderr.strip()


def test_checkpoints_load_weights_only(tmp_path, cli):
    """A checkpoint that would run code when unpickled is refused, moved aside, and the cell starts over."""
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=2), n_train=256)
    cell_id = cell_ids(reg, "k")[0]
    results = tmp_path / "results"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (results / "checkpoints").mkdir(parents=True)
    torch.save({"version": 1, "cell_id": cell_id, "epoch": 1, "payload": Evil()}, results / "checkpoints" / f"{cell_id}.pt",
               pickle_protocol=2)
    r = cli(*run_args(reg, results, "k", "--filter", f"cell_id={cell_id}"))
    assert r.exit_code == 0, r.output
    assert not marker.exists()
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"warning: damaged checkpoint {results / 'checkpoints' / cell_id}.pt") and "epoch 0" in line
    assert len(list((results / "corrupt").iterdir())) == 1
    assert Store(results).cells()["resumed_from_epoch"].tolist() == [0]


# ------------------------------------------------------------------------------------------ unwritable or full


def only_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_results_folder_under_a_file_is_refused_before_training(tmp_path, cli):
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=2), n_train=256)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    r = cli(*run_args(reg, blocker / "results"))
    assert r.exit_code == 2
    line = only_line(r.stderr)
    assert line.startswith("error: results folder") and "not-a-folder" in line and "--results" in line
    assert "started" not in r.stdout
    assert blocker.read_text() == "a file\n"


def test_full_disk_at_start_is_one_line_before_training(tmp_path):
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=2), n_train=256)
    results = tmp_path / "results"
    r = faults.invoke("enospc", *run_args(reg, results))
    assert r.exit_code == 2
    line = only_line(r.stderr)
    assert line.startswith("error: results folder") and "No space left on device" in line
    assert "started" not in r.stdout
    assert not [p for p in results.rglob("*") if p.is_file()]  # no partial file left behind


@pytest.mark.parametrize("stage", ["result", "history", "checkpoint"])
def test_full_disk_mid_run_stops_at_the_first_failed_write(tmp_path, cli, stage):
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=3), n_train=256)
    first = cell_ids(reg, "k")[0]
    results = tmp_path / "results"
    r = faults.invoke(f"enospc-in-{stage}-write::0", *run_args(reg, results))
    assert r.exit_code == 2
    line = only_line(r.stderr)
    where = {"result": "cells", "history": "history", "checkpoint": "checkpoints"}[stage]
    assert line.startswith(f"error: cannot write {results / where}") and "No space left on device" in line, line
    assert first in r.stdout and r.stdout.count("started") == 1  # stopped at the first failed write
    assert not temp_files(results)
    assert not list((results / "cells").glob("*")) and not list((results / "history").glob("*"))
    if stage == "checkpoint":
        assert not list((results / "checkpoints").glob("*"))
    else:
        assert (results / "checkpoints" / f"{first}.pt").exists()  # the next run resumes from it
    r = cli(*run_args(reg, results))
    assert r.exit_code == 0, r.output
    assert set(Store(results).cells()["status"]) == {"done"} and len(Store(results).attempts()) == 2
    assert ("resumed from epoch 2" in r.stdout) == (stage != "checkpoint")


# ------------------------------------------------------------------------------------------ diverged, OOM


def test_diverged_and_out_of_memory_cells_are_recorded_and_the_grid_goes_on(tmp_path, cli):
    reg = write_registry(tmp_path, grid_k(seeds=(0, 1), epochs=2), n_train=256)
    ids = cell_ids(reg, "k")
    first = ids[0]
    r = faults.invoke(f"nan:{first}:1", *run_args(reg, tmp_path / "a"))
    assert r.exit_code == 1, r.output
    cells = Store(tmp_path / "a").cells().set_index("cell_id")
    assert cells.loc[first, "status"] == "diverged" and "non-finite training loss in epoch 2" in cells.loc[first, "message"]
    assert cells.loc[first, "epochs_done"] == 1
    assert (cells.drop(first)["status"] == "done").all() and len(cells) == len(ids)
    assert f"failed: {first}" in r.stderr

    r = faults.invoke(f"oom:{first}:0", *run_args(reg, tmp_path / "b"))
    assert r.exit_code == 1, r.output
    cells = Store(tmp_path / "b").cells().set_index("cell_id")
    msg = cells.loc[first, "message"]
    assert cells.loc[first, "status"] == "failed"
    assert f"out of memory in cell {first}" in msg and "smaller batch" in msg and "--set train.batch_size=16" in msg
    assert (cells.drop(first)["status"] == "done").all() and len(cells) == len(ids)
    r = cli("status", "--grid", "k", "--registry", reg, "--results", tmp_path / "b")
    assert "1 failed" in r.output and first in r.output and "out of memory" in r.output


# ------------------------------------------------------------------------------------------ names, determinism


def test_crafted_names_cannot_escape_the_results_and_report_folders(tmp_path, cli):
    data = tiny_registry(**{"../../escape": {"datasets": ["../../d"], "architectures": ["../a"],
                                            "losses": ["../../evil"], "seeds": [0],
                                            "train": {"epochs": 1, "batch_size": 64}}})
    data["datasets"]["../../d"] = data["datasets"].pop("g")
    data["architectures"]["../a"] = data["architectures"].pop("mlp")
    data["losses"]["../../evil"] = data["losses"].pop("celLoss")
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    reg = work / "registry.yaml"
    reg.write_text(yaml.safe_dump(data))
    before = files_under(tmp_path)
    r = cli("run", "--grid", "../../escape", "--registry", reg, "--results", work / "results", "--plain")
    assert r.exit_code == 0, r.output
    r = cli("report", "--grid", "../../escape", "--registry", reg, "--results", work / "results", "--out", work / "report")
    assert r.exit_code == 0, r.output
    new = set(files_under(tmp_path)) - set(before)
    assert new and all(n.startswith(("deep/work/results/", "deep/work/report/")) for n in new), sorted(new)
    assert (work / "report" / "______escape" / "report.md").exists()


def test_same_cell_same_seed_is_bitwise_identical_and_flags_are_stored(tmp_path, cli):
    reg = write_registry(tmp_path, grid_k(seeds=(0,), epochs=2), n_train=256)
    for sub in ("a", "b"):
        r = cli(*run_args(reg, tmp_path / sub, "k", "--filter", "loss=milLoss"))
        assert r.exit_code == 0, r.output
    assert_same_results(tmp_path / "a", tmp_path / "b")
    row = Store(tmp_path / "a").cells().iloc[0]
    assert bool(row["deterministic"]) and row["torch_num_threads"] == torch.get_num_threads()
    for col in ("deterministic_algorithms", "cudnn_deterministic", "cudnn_benchmark", "cuda_matmul_tf32", "cudnn_tf32",
                "float32_matmul_precision", "cublas_workspace_config", "train.precision"):
        assert col in row.index, col
