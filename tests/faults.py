"""Fault injection for the tests, plugged into bench through its seams (bench itself knows no faults).

A fault is written ``<kind>:<cell id prefix>[:<n>]`` (an empty prefix matches every cell).
Training faults are a :class:`bench.train.loop.TrainCallback` (``n``: the epoch, 0-based):

* ``oom``   raise ``torch.OutOfMemoryError`` at the start of epoch ``n`` (bench's own
  out-of-memory handling runs, as for a real CUDA one)
* ``raise`` raise RuntimeError at the start of epoch ``n``
* ``kill``  SIGKILL the process once ``n`` epochs are done and the last one's checkpoint is on
  disk, only the first time (a ``<cell>.killed`` marker beside the checkpoint remembers)
* ``nan``   turn the model's weights NaN at the start of epoch ``n``, so its loss is non-finite

Write faults are a :class:`bench.fileio.Writer` (``n`` counts this writer's matching writes,
0-based, so ``:1`` hits the second one; the prefix matches the cell id):

* ``kill-in-checkpoint-write`` / ``kill-in-history-write`` / ``kill-in-result-write``: SIGKILL the
  process when half of the temporary file is written (a checkpoint, a cell's history part, or
  its cell row, the commit marker)
* ``enospc-in-checkpoint-write`` / ``enospc-in-history-write`` / ``enospc-in-result-write``: fail
  that write with ``OSError(ENOSPC)`` half-way, as a full disk does
* ``enospc``: every write of the results folder fails with ENOSPC, including the start-up probe

:func:`seams` turns a spec into the :class:`bench.seams.Seams` that carry it; :func:`invoke` runs
``bench`` in this process with them, :func:`faulty_subprocess` in a child process (through
``tests/faulty_bench.py``, which reads the spec from ``LOSSBENCH_FAULT``), for the faults that
kill. The callbacks and writers are picklable, so they reach pool workers, Ray tasks and SLURM
jobs inside ``ExecOptions``, as any seams do; there, write counts start from the driver's.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from click.testing import Result
from typer.testing import CliRunner

from bench.fileio import Writer
from bench.seams import Seams
from bench.train.loop import TrainCallback

REPO = Path(__file__).resolve().parents[1]
TRAINING_KINDS = ("oom", "raise", "kill", "nan")
WRITE_STAGES = ("checkpoint", "history", "result")


@dataclass(frozen=True)
class Fault:
    kind: str
    cell_prefix: str = ""
    n: int = 0

    @classmethod
    def parse(cls, spec: str) -> Fault | None:
        if not spec:
            return None
        parts = spec.split(":")
        kind, prefix = parts[0], parts[1] if len(parts) > 1 else ""
        n = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        write_kinds = {f"{a}-in-{s}-write" for a in ("kill", "enospc") for s in WRITE_STAGES} | {"enospc"}
        if kind not in TRAINING_KINDS and kind not in write_kinds:
            raise ValueError(f"unknown fault kind {kind!r} in {spec!r}")
        return cls(kind, prefix, n)

    def matches(self, cell_id: str) -> bool:
        return cell_id.startswith(self.cell_prefix)


@dataclass(frozen=True)
class FaultCallback(TrainCallback):
    """A training fault: raises, poisons the weights or SIGKILLs at its epoch."""

    fault: Fault

    def on_epoch_start(self, cell_id: str, epoch: int, model: torch.nn.Module) -> None:
        if not (self.fault.matches(cell_id) and epoch == self.fault.n):
            return
        if self.fault.kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by LOSSBENCH_FAULT)")
        if self.fault.kind == "raise":
            raise RuntimeError("fault injected by LOSSBENCH_FAULT")
        if self.fault.kind == "nan":
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))

    def on_epoch_end(self, cell_id: str, epoch: int, checkpoint_written: Callable[[], Path | None]) -> None:
        if self.fault.kind != "kill" or not (self.fault.matches(cell_id) and epoch + 1 == self.fault.n):
            return
        checkpoint = checkpoint_written()  # on disk before the process dies: the next try resumes from it
        if checkpoint is None:
            raise ValueError(f"fault {self.fault}: epoch {epoch + 1} writes no checkpoint to resume from")
        marker = checkpoint.with_suffix(".killed")
        if marker.exists():
            return  # killed once already: this is the retry
        marker.write_text("killed once by LOSSBENCH_FAULT\n")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class FaultyWriter(Writer):
    """A write fault: writes half of its matching write, then SIGKILLs or fails with ENOSPC."""

    fault: Fault
    seen: int = field(default=0)  # matching writes so far (no lock: a lock cannot be pickled to workers)

    def write(self, fh: BinaryIO, data: bytes, stage: str, cell_id: str) -> None:
        action = self._action(stage, cell_id)
        if action is None:
            fh.write(data)
            return
        fh.write(data[: len(data) // 2])
        if action == "kill":
            fh.flush()
            os.fsync(fh.fileno())  # the torn temp file is really on disk when the process dies
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _action(self, stage: str, cell_id: str) -> str | None:
        if self.fault.kind == "enospc":
            return "enospc"
        action, _, rest = self.fault.kind.partition("-in-")
        if rest != f"{stage}-write" or not self.fault.matches(cell_id):
            return None
        n, self.seen = self.seen, self.seen + 1
        return action if n == self.fault.n else None


def seams(spec: str) -> Seams:
    """The seams that inject the fault ``spec`` (none for an empty spec)."""
    fault = Fault.parse(spec)
    if fault is None:
        return Seams()
    if fault.kind in TRAINING_KINDS:
        return Seams(callbacks=(FaultCallback(fault),))
    return Seams(writer=FaultyWriter(fault))


def invoke(spec: str, *args: object) -> Result:
    """``bench ARGS`` in this process, with the fault ``spec`` plugged in (as the ``cli`` fixture runs it)."""
    from bench.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], obj=seams(spec), catch_exceptions=False)


def faulty_command() -> list[str]:
    """The command line of ``bench`` with the fault of ``LOSSBENCH_FAULT`` plugged in."""
    return [sys.executable, "-m", "tests.faulty_bench"]


def faulty_subprocess(*args: object, fault: str, env: dict | None = None, timeout: float = 300,
                      cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a child process with the fault ``fault`` (as ``conftest.bench_subprocess``)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), "LOSSBENCH_FAULT": fault}
    return subprocess.run([*faulty_command(), *map(str, args)], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd or REPO)
