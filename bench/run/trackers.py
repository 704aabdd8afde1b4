"""Experiment trackers (``bench run --log tensorboard|mlflow|wandb``) as training callbacks.

Each tracker is a :class:`bench.train.TrainCallback`, so it travels inside the run's
:class:`bench.seams.Seams` to wherever cells train (``--jobs`` workers, Ray tasks, SLURM jobs) like
any callback. Per cell it keeps one tracker run, named by the cell's title, with the cell's whole
configuration as parameters (flattened: ``train.lr``, ``loss.params.lam``...), every history column
of each epoch as a metric at step = the epoch (1-based, the history's ``epoch``), the figures of the
cell's result row as a summary, and the cell id as a tag (``lossbench.cell_id``): a cell that
resumes from its checkpoint, or is trained again, continues the same tracker run instead of opening
another.

Defaults that need nothing configured: TensorBoard event files under ``<results>/tb/``; MLflow's
local SQLite store ``<results>/mlflow.db`` (unless ``MLFLOW_TRACKING_URI`` names another, e.g. a
server), experiment ``lossbench`` (or ``MLFLOW_EXPERIMENT_NAME``); W&B project ``lossbench`` (or
``WANDB_PROJECT``) under ``<results>/wandb/``, offline unless W&B is configured (``WANDB_MODE``, or
an API key in ``WANDB_API_KEY`` or ``~/.netrc``).

A tracker never fails a cell: any error it meets (a library missing, a server unreachable, a store
it cannot write) is one ``warning:`` line, and the tracker stays off for the rest of that process
so that it costs the next cells nothing. A remote MLflow server is probed once, with a short
timeout, before the first cell uses it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import netrc
import os
import re
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, closest
from bench.fileio import one_line, print_warning
from bench.train.loop import TrainCallback

CELL_TAG = "lossbench.cell_id"
PROJECT = "lossbench"  # MLflow experiment and W&B project, unless the user's environment names one
PROBE_TIMEOUT_S = 3.0


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A cell's nested configuration as flat ``a.b.c`` keys (lists as their JSON text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The real-number fields of a history or result row (bools and text left out)."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class Tracker(TrainCallback):
    """One tracker run per cell; subclasses open, log to and close it. Every hook is guarded: an
    error is a warning line and turns the tracker off in this process (see the module docstring).

    Picklable: only the settings travel (``results``); the open runs stay in the process that opened them.
    """

    kind = ""

    def __init__(self, results: str | Path) -> None:
        self.results = str(Path(results).resolve())  # absolute: workers may start in another folder
        self._runs: dict[str, Any] = {}
        self._off = False
        self._lock = threading.Lock()  # cells of one process may train in threads

    def __getstate__(self) -> dict[str, Any]:
        return {"results": self.results}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["results"])  # type: ignore[misc]

    # -- the guarded hooks

    def _guard(self, what: str, fn, *args) -> None:
        if self._off:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a tracker's failure must never fail the cell
            self._off = True
            print_warning(f"{self.kind} tracker turned off: {what} failed ({type(exc).__name__}: "
                          f"{one_line(str(exc), 200)}); the cells go on without it")

    def on_cell_start(self, cell_id: str, title: str, config: dict[str, Any]) -> None:
        self._guard("opening the run", self._start, cell_id, title, config)

    def on_history_row(self, cell_id: str, epoch: int, row: dict[str, float]) -> None:
        if cell_id in self._runs:
            self._guard("logging an epoch", self._log, self._runs[cell_id], row)

    def on_cell_end(self, cell_id: str, row: dict[str, Any]) -> None:
        run = self._runs.pop(cell_id, None)
        if run is not None:
            self._guard("closing the run", self._end, run, row)

    def _start(self, cell_id: str, title: str, config: dict[str, Any]) -> None:
        run = self._open(cell_id, title, config)
        with self._lock:
            self._runs[cell_id] = run

    # -- what each tracker does

    def _open(self, cell_id: str, title: str, config: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _log(self, run: Any, row: dict[str, float]) -> None:
        raise NotImplementedError

    def _end(self, run: Any, row: dict[str, Any]) -> None:
        raise NotImplementedError


def _epoch(row: dict[str, Any]) -> int:
    return int(row.get("epoch", row.get("epochs_done", 0)))


class TensorBoardTracker(Tracker):
    """Event files in ``<results>/tb/<title> <cell_id>/``: scalars per history column, the
    configuration and the cell id as text, the result row's figures as ``final/...`` scalars."""

    kind = "tensorboard"

    def _open(self, cell_id: str, title: str, config: dict[str, Any]) -> Any:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        return {"folder": Path(self.results) / "tb" / tensorboard_run(title, cell_id), "writer": None,
                "cell_id": cell_id, "config": config, "SummaryWriter": SummaryWriter}

    def _writer(self, run: dict[str, Any], step: int) -> Any:
        if run["writer"] is None:
            # purge_step: a cell trained again from an earlier epoch hides what the old files logged from there on
            run["writer"] = run["SummaryWriter"](str(run["folder"]), purge_step=step, flush_secs=30)
            run["writer"].add_text("cell_id", run["cell_id"], step)
            run["writer"].add_text("config", json.dumps(flat_config(run["config"]), sort_keys=True, default=str), step)
        return run["writer"]

    def _log(self, run: dict[str, Any], row: dict[str, float]) -> None:
        step = _epoch(row)
        writer = self._writer(run, step)
        for key, value in numeric(row).items():
            if key != "epoch":
                writer.add_scalar(key, value, step)

    def _end(self, run: dict[str, Any], row: dict[str, Any]) -> None:
        step = _epoch(row)
        writer = self._writer(run, step)
        for key, value in numeric(row).items():
            writer.add_scalar(f"final/{key}", value, step)
        writer.add_text("status", str(row.get("status", "")), step)
        writer.close()


def tensorboard_run(title: str, cell_id: str) -> str:
    """The run's folder under ``tb/``: the title's parts as subfolders (TensorBoard shows them as the
    run's name), then the cell id so two cells of one title (other --set values) stay apart."""
    parts = [re.sub(r"[^\w.,=()\[\] +-]", "_", p).strip() or "_" for p in title.split("/")]
    parts[-1] = f"{parts[-1]} {cell_id}"
    return "/".join(parts)


class MLflowTracker(Tracker):
    """A run per cell in MLflow's tracking store (see the module docstring), found again by its cell-id tag."""

    kind = "mlflow"

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(self.results) / 'mlflow.db'}"
        if uri.startswith(("http://", "https://")):
            probe_server(uri)
        return MlflowClient(tracking_uri=uri)

    def _open(self, cell_id: str, title: str, config: dict[str, Any]) -> Any:
        from mlflow.entities import Param

        client = self._client()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT
        experiment = client.get_experiment_by_name(name)
        exp_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        found = client.search_runs([exp_id], filter_string=f"tags.`{CELL_TAG}` = '{cell_id}'", max_results=1)
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return client, run_id
        run_id = client.create_run(exp_id, run_name=title, tags={CELL_TAG: cell_id}).info.run_id
        params = [Param(k, str(v)) for k, v in flat_config(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            client.log_batch(run_id, params=params[i:i + 100])
        return client, run_id

    def _log(self, run: Any, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        client, run_id = run
        step, now = _epoch(row), _now_ms()
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in numeric(row).items() if k != "epoch"],
                         synchronous=True)

    def _end(self, run: Any, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        client, run_id = run
        step, now = _epoch(row), _now_ms()
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in numeric(row).items()])
        client.set_tag(run_id, "lossbench.status", str(row.get("status", "")))
        client.set_terminated(run_id, "FINISHED" if row.get("status") == "done" else "FAILED")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def probe_server(uri: str) -> None:
    """Raise when the tracking server at ``uri`` does not answer within a few seconds (MLflow's own
    client would retry for minutes, holding the cell)."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()  # noqa: S310 - the user's URI
    except OSError as exc:
        raise ConnectionError(f"tracking server {uri} did not answer in {PROBE_TIMEOUT_S:g} s ({exc})") from None


class WandbTracker(Tracker):
    """A W&B run per cell, id = the cell id (so a rerun resumes it), under ``<results>/wandb/``."""

    kind = "wandb"

    def _open(self, cell_id: str, title: str, config: dict[str, Any]) -> Any:
        import wandb

        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, init_timeout=30)
        return wandb.init(project=os.environ.get("WANDB_PROJECT") or PROJECT, name=title, id=cell_id, resume="allow",
                          config=flat_config(config), tags=[cell_id], dir=self.results, mode=wandb_mode(),
                          reinit="create_new", settings=settings)

    def _log(self, run: Any, row: dict[str, float]) -> None:
        values = numeric(row)
        run.log({k: v for k, v in values.items() if k != "epoch"}, step=_epoch(row))

    def _end(self, run: Any, row: dict[str, Any]) -> None:
        run.summary.update({**numeric(row), "status": str(row.get("status", ""))})
        run.finish(exit_code=0 if row.get("status") == "done" else 1)


def wandb_mode() -> str | None:
    """None (W&B's own choice) when the user configured W&B, else ``offline``: nothing leaves the machine."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return None
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # the import each tracker needs


def make_trackers(names: Sequence[str], results: str | Path) -> tuple[Tracker, ...]:
    """The trackers ``--log`` names (each once, in the order given); an unknown name, or one whose
    package is not installed, is one error line before anything trains."""
    out: list[Tracker] = []
    for name in dict.fromkeys(n.strip().lower() for n in names):
        if name not in TRACKERS:
            raise BenchError(f"unknown tracker {name!r} for --log{closest(name, list(TRACKERS))}; "
                             f"choose from {', '.join(TRACKERS)}")
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise BenchError(f"--log {name} needs the {PACKAGES[name]} package: pip install -e '.[trackers]' "
                             f"(or pip install {PACKAGES[name]})")
        out.append(TRACKERS[name](results))
    return tuple(out)


__all__ = ["TRACKERS", "MLflowTracker", "TensorBoardTracker", "Tracker", "WandbTracker", "flat_config", "make_trackers"]
