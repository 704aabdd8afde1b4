"""Fault injection for tests, read from the environment (never set in production).

``LOSSBENCH_FAULT=<kind>:<cell_id prefix>[:<n>]``. Training faults (read once at cell start by
``bench.train``; ``n`` is the epoch, 0-based):

* ``oom``   raise a simulated CUDA out-of-memory error at the start of epoch ``n``
* ``raise`` raise RuntimeError at the start of epoch ``n``
* ``kill``  SIGKILL this process after epoch ``n`` checkpointed, only on the first attempt
  (a marker file next to the checkpoint records it)
* ``nan``   make the loss non-finite in epoch ``n``

Write faults (checked by ``bench.store`` on every atomic write; ``n`` counts the matching writes
of this process, 0-based, so ``:1`` hits the second one; the prefix matches the cell id):

* ``kill-in-checkpoint-write`` / ``kill-in-history-write`` / ``kill-in-result-write``: SIGKILL this
  process when half of the temporary file is written (a checkpoint, a cell's history part, or
  its cell row, the commit marker)
* ``enospc-in-checkpoint-write`` / ``enospc-in-history-write`` / ``enospc-in-result-write``: fail
  that write with ``OSError(ENOSPC)`` half-way, as a full disk does
* ``enospc``: every write of the results folder fails with ENOSPC, including the start-up probe
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    kind: str
    cell_prefix: str
    epoch: int = 0

    def applies(self, cell_id: str, epoch: int) -> bool:
        return cell_id.startswith(self.cell_prefix) and epoch == self.epoch


def fault_from_env() -> Fault | None:
    spec = os.environ.get("LOSSBENCH_FAULT", "")
    if not spec:
        return None
    parts = spec.split(":")
    kind, prefix = parts[0], parts[1] if len(parts) > 1 else ""
    epoch = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    return Fault(kind, prefix, epoch)


class SimulatedOutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError on machines without a GPU."""


_write_counts: dict[tuple[str, str], int] = {}


def reset_write_faults() -> None:
    """Start counting matching writes afresh (``bench run`` calls this, so in-process runs count alike)."""
    _write_counts.clear()


def write_fault(stage: str, cell_id: str) -> str | None:
    """The action (``kill`` or ``enospc``) a write fault asks of this write of ``stage``, else None.

    Called by the store once per atomic write, after half of the temporary file is written.
    """
    fault = fault_from_env()
    if fault is None:
        return None
    if fault.kind == "enospc":
        return "enospc"
    action, sep, rest = fault.kind.partition("-in-")
    if not sep or action not in ("kill", "enospc") or rest != f"{stage}-write":
        return None
    if not cell_id.startswith(fault.cell_prefix):
        return None
    key = (fault.kind, fault.cell_prefix)
    n = _write_counts.get(key, 0)
    _write_counts[key] = n + 1
    return action if n == fault.epoch else None


def apply_write_fault(action: str | None, fh) -> None:
    """Carry out a write fault on the open temporary file ``fh`` (half written)."""
    if action == "kill":
        fh.flush()
        os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
