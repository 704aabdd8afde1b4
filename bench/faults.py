"""Fault injection for tests, read once from the environment at cell start (never in production paths).

``LOSSBENCH_FAULT=<kind>:<cell_id prefix>[:<epoch>]`` with kind one of ``oom`` (raise a simulated
CUDA out-of-memory error), ``raise`` (raise RuntimeError), ``kill`` (SIGKILL this process, only on the
first attempt: a marker file next to the checkpoint records it), ``nan`` (make the loss non-finite).
"""

from __future__ import annotations

import os
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
