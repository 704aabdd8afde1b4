"""``bench run --log tensorboard|mlflow|wandb``: each tracker's own files read back with its own
reader, the logged values equal to the stored history, a rerun continuing the same tracker run, and
a tracker that cannot be reached costing a warning line only."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.run.trackers import CELL_TAG, flat_config, tensorboard_run
from bench.store.results import Store
from tests.conftest import REPO, bench_inprocess, tiny_registry

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

EPOCHS = 3


def _bench(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    full.update(PYTHONPATH=str(REPO), HOME=str(cwd), **(env or {}))  # HOME: no ~/.netrc W&B key of this machine
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=600)


def _run(cwd: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return _bench(cwd, "run", "--grid", "t", "--results", "res", "--plain", "--no-report", *extra, env=env)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One cell trained with all three trackers, then trained again (--force)."""
    d = tmp_path_factory.mktemp("trackers")
    data = tiny_registry(t={"datasets": ["g"], "architectures": ["mlp"], "losses": ["milLoss"], "seeds": [0],
                            "train": {"epochs": EPOCHS, "batch_size": 128}})
    (d / "registry.yaml").write_text(yaml.safe_dump(data))
    args = ("--log", "tensorboard", "--log", "mlflow", "--log", "wandb")
    first = _run(d, *args)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "warning" not in first.stderr, first.stderr
    attempts = [Store(d / "res").cells().iloc[0]["attempt_id"]]
    second = _run(d, *args, "--force")
    assert second.returncode == 0 and "warning" not in second.stderr, second.stderr
    store = Store(d / "res")
    cells, history = store.cells(), store.history()
    attempts.append(cells.iloc[0]["attempt_id"])
    # the store's history of each run of the cell, in order (the second is the one the store's row reports)
    hists = [history[history["attempt_id"] == a].sort_values("epoch") for a in attempts]
    return d, cells.iloc[0], hists


def _config(d: Path) -> dict:
    """The cell's configuration as the planner builds it (the store keeps its canonical JSON text)."""
    from bench.config.registry import load_registry
    from bench.plan.planner import make_plan

    (cell,) = make_plan(load_registry(d / "registry.yaml"), "t", validate=False).cells
    return cell.config


COLUMNS_OUT = ("cell_id", "attempt_id", "epoch")
TIMINGS = ("epoch_time", "eval_time")  # differ between the two runs; every other column is deterministic


def _columns(hist: pd.DataFrame) -> list[str]:
    return [c for c in hist.columns if c not in COLUMNS_OUT]


def test_tensorboard_events_hold_the_history(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    d, row, hists = logged
    hist, columns = hists[-1], _columns(hists[-1])  # TensorBoard shows the latest run of each step
    folder = d / "res" / "tb" / tensorboard_run("g/mlp/milLoss/seed 0", row["cell_id"])
    assert folder.is_dir() and len(list(folder.glob("events.out.tfevents.*"))) == 2  # one file per run of the cell
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    for column in columns:
        events = acc.Scalars(column)
        # the second run purged the first one's steps from the view: one value per epoch
        assert [e.step for e in events] == list(range(1, EPOCHS + 1)), column
        assert [e.value for e in events] == pytest.approx(hist[column].tolist(), rel=1e-6, abs=1e-7), column
    final = {e.step: e.value for e in acc.Scalars("final/final_test_acc")}
    assert final[EPOCHS] == pytest.approx(row["final_test_acc"], rel=1e-6)
    texts = {tag: acc.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in ("cell_id/text_summary",
                                                                                       "config/text_summary")}
    assert texts["cell_id/text_summary"] == row["cell_id"]
    config = _config(d)
    assert json.loads(texts["config/text_summary"]) == json.loads(json.dumps(flat_config(config), default=str))


def test_mlflow_run_holds_config_history_and_summary_once(logged):
    from mlflow.tracking import MlflowClient

    d, row, hists = logged
    columns = _columns(hists[-1])
    client = MlflowClient(tracking_uri=f"sqlite:///{d / 'res' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lossbench")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, "a rerun of the cell opened a second MLflow run"
    run = runs[0]
    assert run.info.run_name == "g/mlp/milLoss/seed 0" and run.data.tags[CELL_TAG] == row["cell_id"]
    assert run.info.status == "FINISHED"
    config = _config(d)
    assert run.data.params == {k: str(v) for k, v in flat_config(config).items()}
    for column in columns:
        points = client.get_metric_history(run.info.run_id, column)
        by_step: dict[int, list[float]] = {}
        for p in points:
            by_step.setdefault(p.step, []).append(p.value)
        assert sorted(by_step) == list(range(1, EPOCHS + 1)), column
        # each of the two runs of the cell logged every epoch, in order
        for step in range(1, EPOCHS + 1):
            want = [h[column].iloc[step - 1] for h in hists]
            assert by_step[step] == pytest.approx(want, rel=1e-12), (column, step)
    assert run.data.metrics["final_test_acc"] == pytest.approx(row["final_test_acc"], rel=1e-12)


_BLOCK = 32768  # W&B's transaction log: LevelDB's log format (7-byte record headers in 32 KiB blocks)


def _wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def test_wandb_offline_runs_hold_the_history_under_the_cell_id(logged):
    d, row, hists = logged
    columns = _columns(hists[-1])
    runs = sorted((d / "res" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(row["cell_id"]) for r in runs)  # one W&B run id: synced as one
    config = _config(d)
    for folder, hist in zip(runs, hists):
        steps: dict[int, dict[str, float]] = {}
        summary: dict[str, str] = {}
        for record in _wandb_records(next(folder.glob("run-*.wandb"))):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                assert record.run.run_id == row["cell_id"] and record.run.display_name == "g/mlp/milLoss/seed 0"
                got = {_key(i): json.loads(i.value_json) for i in record.run.config.update}
                assert {k: got[k] for k in flat_config(config)} == flat_config(config)
            elif kind == "history":
                steps[record.history.step.num] = {_key(i): json.loads(i.value_json) for i in record.history.item}
            elif kind == "summary":
                summary.update({_key(i): i.value_json for i in record.summary.update})
        assert sorted(steps) == list(range(1, EPOCHS + 1))
        for step, (_, want) in zip(range(1, EPOCHS + 1), hist.iterrows()):
            assert {c: steps[step][c] for c in columns} == pytest.approx({c: want[c] for c in columns}, rel=1e-12)
        assert json.loads(summary["final_test_acc"]) == pytest.approx(row["final_test_acc"], rel=1e-12)


def test_an_unreachable_tracker_is_a_warning_and_the_cell_trains(tmp_path, monkeypatch):
    """Through the app in this process (the trackers' console-script runs are the fixture's): only the
    tracking URI of the environment matters, and the client is made from it per run."""
    data = tiny_registry(t={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0, 1],
                            "train": {"epochs": 1, "batch_size": 128}})
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(data))
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "WANDB_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: closed
    t0 = time.perf_counter()
    r = bench_inprocess("run", "--grid", "t", "--results", "res", "--plain", "--no-report", "--log", "mlflow",
                        cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "mlflow tracker turned off" in warnings[0] and "127.0.0.1:9" in warnings[0], r.stderr
    assert set(Store(tmp_path / "res").cells()["status"]) == {"done"}
    assert time.perf_counter() - t0 < 120


def test_an_unknown_tracker_is_one_error_line(tmp_path):
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(tiny_registry()))
    r = bench_inprocess("run", "--grid", "two", "--results", "res", "--log", "tensorbord", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: unknown tracker 'tensorbord' for --log (closest: 'tensorboard'); choose from tensorboard, mlflow, wandb"]
    assert not (tmp_path / "res").exists()
