"""Share this machine's cores between lossbench's training processes.

Two ``bench run`` processes (or a run and its ``--jobs`` workers, or two runs' workers) that each
start one torch thread per core oversubscribe the CPU, and OpenMP's barriers, which spin while a
sibling thread waits for a core, turn that into a many-fold slow-down. So every process that
trains on the CPU holds a *slot* while it trains (``bench run`` from its first cell to its last,
a ``--jobs`` worker for its life: a slot that came and went between cells would let the others
grow into a core for an epoch and fight over it): an empty file in a per-user folder whose name
says its pid, the process's start time (so a recycled pid is not taken for it) and how many
threads it wants. Its thread count is its share of the usable cores among the live slots
(:func:`share_out`), recomputed at each epoch start (:meth:`SlotHold.rebalance`, one directory
listing), so a run that starts shrinks the others within an epoch and a run that ends gives its
cores back. Files of processes that died (``kill -9``) are ignored and removed by whoever lists
them. No lock is needed: each process creates and removes only its own file, and a listing that
races a registration is corrected at the next epoch.

A process pinned with ``bench run --threads N`` uses N threads whatever runs beside it; it still
registers, so the sharing processes leave it its N cores.

The folder is ``$XDG_RUNTIME_DIR/lossbench/threads`` (a per-user tmpfs on systemd machines), else
``<tempdir>/lossbench-<uid>/threads``. Sharing needs POSIX process checks; elsewhere, or when the
folder cannot be written, a process warns once and runs with the threads it wants, as before.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

SUFFIX = ".slot"


def slot_dir() -> Path:
    """The per-user folder of slot files (see the module docstring)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "lossbench" / "threads"
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"lossbench-{uid}" / "threads"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def share_out(cores: int, wants: Sequence[int], pinned: int = 0) -> list[int]:
    """Threads per sharing slot: max-min fair shares of ``cores`` less the ``pinned`` slots' threads.

    Slots are served in order of want (the caller sorts), each getting at most what it wants and at
    least one thread; what a small want leaves goes to the others, and the integer remainder to the
    last ones, so every core is used: 1 slot gets all cores, 2 get half each, more slots than
    cores get 1 each.
    """
    left = cores - pinned
    out = []
    for i, want in enumerate(wants):
        give = max(1, min(want, left // (len(wants) - i)))
        out.append(give)
        left -= give
    return out


@dataclass(frozen=True)
class Slot:
    """One registration, as its file name says: ``<pid>-<start time>-<threads>-<s|p>-<token>.slot``."""

    pid: int
    start: str  # the process's start time in clock ticks since boot ("0" where unknown)
    want: int
    pinned: bool
    token: str

    @property
    def name(self) -> str:
        return f"{self.pid}-{self.start}-{self.want}-{'p' if self.pinned else 's'}-{self.token}{SUFFIX}"

    @classmethod
    def parse(cls, name: str) -> Slot | None:
        parts = name.removesuffix(SUFFIX).split("-")
        if not name.endswith(SUFFIX) or len(parts) != 5 or parts[3] not in ("s", "p"):
            return None
        try:
            return cls(int(parts[0]), parts[1], int(parts[2]), parts[3] == "p", parts[4])
        except ValueError:
            return None


def allocate(cores: int, slots: Sequence[Slot]) -> dict[str, int]:
    """Threads per live slot (by file name): pinned slots keep theirs, the others share the rest.

    Every process computes this from the same listing, in the same order, so the shares agree.
    """
    pinned = [s for s in slots if s.pinned]
    sharing = sorted((s for s in slots if not s.pinned), key=lambda s: (s.want, s.pid, s.token))
    threads = share_out(cores, [s.want for s in sharing], sum(s.want for s in pinned))
    return {**{s.name: s.want for s in pinned}, **{s.name: t for s, t in zip(sharing, threads)}}


def process_start(pid: int) -> str:
    """Start time of ``pid`` (Linux: field 22 of /proc/<pid>/stat), "0" where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    fields = stat[stat.rfind(")") + 2:].split()  # the command name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else "0"


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return start == "0" or process_start(pid) in ("0", start)


def live_slots(folder: Path) -> list[Slot]:
    """The slots of live processes in ``folder``; files of dead ones are removed."""
    try:
        names = [e.name for e in os.scandir(folder)]
    except FileNotFoundError:
        return []
    alive: dict[tuple[int, str], bool] = {}
    live = []
    for name in names:
        slot = Slot.parse(name)
        if slot is None:
            continue
        key = (slot.pid, slot.start)
        if key not in alive:
            alive[key] = _alive(slot.pid, slot.start)
        if alive[key]:
            live.append(slot)
        else:
            (folder / name).unlink(missing_ok=True)
    return live


@dataclass(frozen=True)
class ThreadShare:
    """How a training process takes its CPU threads; picklable, so a pool hands it to its workers.

    ``pinned`` > 0: always that many threads (``bench run --threads N``). Otherwise the process's
    share of ``cores`` (0: :func:`usable_cores`) among the live slots of ``folder`` (None:
    :func:`slot_dir`), never more than ``want`` (0: torch's thread count when the slot is taken,
    which ``OMP_NUM_THREADS`` sets, so a process limited to fewer threads stays limited).
    """

    pinned: int = 0
    want: int = 0
    folder: Path | None = None
    cores: int = 0

    @contextmanager
    def hold(self) -> Iterator[SlotHold]:
        """Register a slot and take this process's share; on exit remove it and restore the thread count."""
        held = SlotHold(self)
        try:
            yield held
        finally:
            held.release()


class SlotHold:
    """A held slot: the process's live thread count, rebalanced on request; ``release`` ends it."""

    def __init__(self, share: ThreadShare):
        self.saved = torch.get_num_threads()
        self.cores = share.cores or usable_cores()
        self.pinned = share.pinned
        want = share.pinned or share.want or min(self.saved, self.cores)
        self.folder = share.folder or slot_dir()
        self.slot = Slot(os.getpid(), process_start(os.getpid()), want, bool(share.pinned), uuid.uuid4().hex[:12])
        self.registered = self._register()
        self.used: set[int] = set()
        self.threads = self.rebalance()

    def _register(self) -> bool:
        if os.name != "posix":
            return False  # no signal-0 process check: run with the wanted threads
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.folder / self.slot.name).touch(exist_ok=False)
        except OSError as exc:
            warnings.warn(f"cannot register in {self.folder} ({exc}); this run does not share the cores "
                          f"with other lossbench runs (set --threads to choose its threads)", stacklevel=3)
            return False
        return True

    def target(self) -> int:
        """The thread count this slot should run with now."""
        if self.pinned or not self.registered:
            return self.slot.want
        shares = allocate(self.cores, live_slots(self.folder))
        # our own file missing (someone removed the folder): count ourselves as alone
        return shares.get(self.slot.name, min(self.slot.want, self.cores))

    def rebalance(self) -> int:
        """Set torch's thread count to this slot's share; returns it."""
        self.threads = self.target()
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self.used.add(self.threads)
        return self.threads

    def begin_cell(self) -> None:
        """Rebalance before a cell, and start recording the counts it trains with (:attr:`varied`)."""
        self.used = {self.rebalance()}

    def on_epoch_start(self, epoch: int) -> None:  # noqa: ARG002 - the trainer's per-epoch hook
        self.rebalance()

    @property
    def varied(self) -> bool:
        """Whether the thread count changed since :meth:`begin_cell` (the numbers then depend on when)."""
        return len(self.used) > 1

    def release(self) -> None:
        """Remove the slot and restore the thread count the process had; idempotent."""
        if self.registered:
            (self.folder / self.slot.name).unlink(missing_ok=True)
            self.registered = False
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)


def describe_live(folder: Path | None = None) -> str:
    """One line on the live slots, for diagnostics (``python -m bench.run.threads``)."""
    folder = folder or slot_dir()
    slots = live_slots(folder)
    shares = allocate(usable_cores(), slots)
    parts = [f"pid {s.pid}: {shares[s.name]} thread(s){' (pinned)' if s.pinned else ''}" for s in slots]
    return f"{folder}: {len(slots)} live slot(s) on {usable_cores()} cores" + (": " + ", ".join(parts) if parts else "")


if __name__ == "__main__":
    print(describe_live(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
