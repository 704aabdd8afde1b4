"""The results store: parquet files under ``results/``, written atomically, read defensively.

Layout::

    results/cells/*.parquet      one row per finished (or failed/diverged) cell attempt
    results/history/*.parquet    one row per (cell attempt, epoch)
    results/checkpoints/<id>.pt  mid-cell checkpoints, removed when the cell finishes
    results/locks/<id>.lock      per-cell locks held while a cell trains
    results/corrupt/             unreadable files moved aside (never deleted)

Each write is a new file written to a temporary name and renamed into place, under a store lock,
history first and the cell row last, so a cell row is the commit marker of its attempt: a reader
never sees a half-written file, and history rows whose attempt has no cell row are ignored.
When a folder holds many small files they are merged into one (also atomically); readers keep
the latest row per cell, so a crash between writing the merged file and removing the parts only
leaves harmless duplicates.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from bench.errors import BenchError

STATUSES = ("done", "failed", "diverged")
COMPACT_AT = 64  # merge a folder once it holds this many part files


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


@dataclass(frozen=True)
class Store:
    root: Path

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    @property
    def history_dir(self) -> Path:
        return self.root / "history"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def corrupt_dir(self) -> Path:
        return self.root / "corrupt"

    # ---------------------------------------------------------------- setup
    def ensure_writable(self) -> None:
        """Create the folders and prove a file can be written, before any training starts."""
        try:
            for d in (self.cells_dir, self.history_dir, self.checkpoints_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            with open(probe, "wb") as fh:
                fh.write(b"x" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            raise BenchError(
                f"results folder {str(self.root)!r} is not writable ({exc.strerror or exc}); "
                "fix its permissions or free space, or pass --results DIR"
            ) from None

    @contextmanager
    def lock(self):
        """The store-wide write lock (short: held only while files are written or merged)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".store.lock"), timeout=300):
            yield

    def cell_lock(self, cell_id: str) -> FileLock:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks_dir / f"{_safe(cell_id)}.lock"), timeout=0)

    def is_running(self, cell_id: str) -> bool:
        path = self.locks_dir / f"{_safe(cell_id)}.lock"
        if not path.exists():
            return False
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.checkpoints_dir / f"{_safe(cell_id)}.pt"

    # ---------------------------------------------------------------- writing
    def write_result(self, row: dict, history: list[dict]) -> None:
        """Write one cell attempt: history first, then the cell row (the commit marker)."""
        attempt = row["attempt_id"]
        with self.lock():
            if history:
                hist = pd.DataFrame(history)
                hist.insert(0, "attempt_id", attempt)
                hist.insert(0, "cell_id", row["cell_id"])
                _atomic_parquet(hist, self.history_dir / f"part-{_stamp()}-{attempt}.parquet")
            _atomic_parquet(pd.DataFrame([row]), self.cells_dir / f"part-{_stamp()}-{attempt}.parquet")
            for folder in (self.cells_dir, self.history_dir):
                parts = sorted(folder.glob("part-*.parquet"))
                if len(parts) >= COMPACT_AT:
                    self._compact(folder, parts)

    def _compact(self, folder: Path, parts: list[Path]) -> None:
        frames = [f for f in (self._read_file(p) for p in parts) if f is not None]
        if frames:
            merged = pd.concat(frames, ignore_index=True)
            if folder == self.cells_dir:
                merged = _latest(merged)
            _atomic_parquet(merged, folder / f"merged-{_stamp()}-{uuid.uuid4().hex[:8]}.parquet")
        for p in parts:
            if p.exists():
                p.unlink()

    # ---------------------------------------------------------------- reading
    def _read_file(self, path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
        try:
            return pq.read_table(path, columns=columns).to_pandas()
        except FileNotFoundError:
            return None  # merged away by another process between listing and reading
        except Exception as exc:  # noqa: BLE001 - any unreadable file is moved aside
            self.quarantine(path, f"{type(exc).__name__}: {exc}")
            return None

    def quarantine(self, path: Path, why: str) -> None:
        self.corrupt_dir.mkdir(parents=True, exist_ok=True)
        dest = self.corrupt_dir / f"{path.name}.{_stamp()}"
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return
        _warn(f"unreadable file {path} ({why.splitlines()[0][:160]}) moved to {dest}; its cells will be retrained")

    def _read_folder(self, folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
        if not folder.is_dir():
            return pd.DataFrame()
        files = sorted(p for p in folder.glob("*.parquet"))
        frames = [f for f in (self._read_file(p, columns) for p in files) if f is not None and len(f)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def cells(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Latest row per cell (all columns unless ``columns`` is given)."""
        cols = None if columns is None else sorted(set(columns) | {"cell_id", "written_at"})
        return _latest(self._read_folder(self.cells_dir, cols))

    def statuses(self) -> dict[str, str]:
        """cell_id -> status; reads two columns only, so it does not grow with history."""
        df = self.cells(["cell_id", "status"])
        if df.empty:
            return {}
        return dict(zip(df["cell_id"], df["status"]))

    def history(self, attempt_ids: Iterable[str] | None = None) -> pd.DataFrame:
        df = self._read_folder(self.history_dir)
        if df.empty or attempt_ids is None:
            return df
        return df[df["attempt_id"].isin(set(attempt_ids))]

    def remove_checkpoint(self, cell_id: str) -> None:
        path = self.checkpoint_path(cell_id)
        if path.exists():
            path.unlink()

    def stale_temp_files(self) -> list[Path]:
        return list(self.root.glob("**/.tmp-*"))


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    return df.sort_values("written_at", kind="stable").drop_duplicates("cell_id", keep="last").reset_index(drop=True)


def _stamp() -> str:
    return f"{time.time_ns():020d}"


def _safe(name: str) -> str:
    """A file-name-safe form of an identifier: no separators, no parent references."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))
    if not cleaned or cleaned.strip("_") == "":
        raise BenchError(f"invalid identifier {name!r} for a results file")
    return cleaned


def _atomic_parquet(df: pd.DataFrame, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex}-{dest.name}"
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise BenchError(f"cannot write {dest} ({exc.strerror or exc}); check free space and permissions of the results folder") from None
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex}-{dest.name}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def clean_temp_files(store: Store) -> None:
    """Remove temp files a killed writer left behind (they are never read as results)."""
    for p in store.stale_temp_files():
        try:
            p.unlink()
        except OSError:
            pass


__all__ = ["Store", "STATUSES", "atomic_write_bytes", "clean_temp_files", "shutil"]
