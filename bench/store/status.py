"""The status words of a cell, defined once: what a stored row says and what ``bench status`` counts."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A cell's state. Members are ``str``: they compare equal to the words stored in parquet."""

    DONE = "done"
    FAILED = "failed"
    DIVERGED = "diverged"
    RUNNING = "running"  # not stored: another process holds the cell's lock
    PENDING = "pending"  # not stored: never trained (or its stored history was lost)
    STALE = "stale"  # not stored: done, but by an older version of its loss or model code, or on other data
    INTERRUPTED = "interrupted"  # not stored: not finished, not running, its last epoch's checkpoint on disk


STORED = (Status.DONE, Status.FAILED, Status.DIVERGED)  # what a cell row's ``status`` column holds
PROBLEMS = (Status.FAILED, Status.DIVERGED)  # stored outcomes that make ``bench run`` exit 1
COUNTED = (Status.DONE, Status.RUNNING, Status.FAILED, Status.DIVERGED, Status.PENDING)  # always in bench status
