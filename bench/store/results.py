"""The results store: parquet files under ``results/``, written atomically, read defensively.

Layout::

    results/cells/*.parquet      one row per finished (or failed/diverged) cell attempt
    results/history/*.parquet    one row per (cell attempt, epoch)
    results/checkpoints/<id>.pt  mid-cell checkpoints (format: bench.train.checkpoint), removed when the cell finishes
    results/locks/<id>.lock      per-cell locks held while a cell trains
    results/corrupt/             unreadable files moved aside (never deleted)

Each write is a new file written by :func:`bench.fileio.atomic_write` (a temporary name
``.tmp-<pid>@<host>-...``, fsynced and renamed into place) through the store's
:class:`~bench.fileio.Writer`, under a store lock, history first and the cell row last, so a cell
row is the commit marker of its attempt: a reader never sees a half-written file, and history rows
whose attempt has no cell row are ignored. Parquet files carry page checksums, verified on every
read, so a file damaged after it was written is detected rather than read. An unreadable file, or
one without the columns every file of its folder has, is moved to ``corrupt/`` with a one-line
warning (:func:`bench.fileio.move_aside`) and the cells it held are retrained; a finished cell
whose history is gone is retrained too.
When a folder holds many small files they are merged into one (also atomically); readers keep
the latest row per cell, so a crash between writing the merged file and removing the parts only
leaves harmless duplicates, and a reader that finds a part gone (merged away by another process
while it listed the folder) lists the folder again.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from bench.errors import BenchError
from bench.fileio import StoreWriteError, Writer, atomic_write, move_aside, print_warning, stale_temp_files
from bench.fileio import safe_name
from bench.train.checkpoint import checkpoint_path

T = TypeVar("T")

COMPACT_AT = 64  # merge a folder once it holds this many part files
CELL_REQUIRED = ("cell_id", "attempt_id", "status", "written_at")
HISTORY_REQUIRED = ("cell_id", "attempt_id", "epoch")
STALE_TEMP_AGE_S = 24 * 3600  # a temp file of another host (or of unknown origin) is removed after this


class StoreReadError(BenchError):
    """The operating system refused to read a results file (not a corrupt file: nothing is moved)."""


@dataclass(frozen=True)
class Store:
    """The results folder ``root``; every file it writes goes through ``writer`` (see :class:`~bench.fileio.Writer`)."""

    root: Path
    writer: Writer = field(default_factory=Writer, compare=False, repr=False)

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
        return corrupt_folder(self.root)

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    # ---------------------------------------------------------------- run records
    def record_run(self, record: dict) -> Path:
        """Store what a ``bench run`` planned (grid, overrides, filters, substitutions, cell ids), so
        ``status`` and ``report`` rebuild the same cells without the run's flags."""
        import json

        record = {**record, "created_ns": time.time_ns()}
        path = self.runs_dir / safe_name(record["grid"]) / f"run-{_stamp()}.json"
        self._write(path, json.dumps(record, sort_keys=True).encode(), "run", "")
        return path

    def runs(self, grid: str) -> list[dict]:
        """The run records of ``grid``, oldest first; an unreadable record is skipped with a warning."""
        import json

        folder = self.runs_dir / safe_name(grid)
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.glob("run-*.json")):
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or record.get("grid") != grid:
                    raise ValueError("not a run record of this grid")
            except (OSError, ValueError) as exc:
                print_warning(f"skipping unreadable run record {path} ({type(exc).__name__}: {exc})")
                continue
            out.append(record)
        return sorted(out, key=lambda r: r.get("created_ns", 0))

    def traceback_path(self, cell_id: str) -> Path:
        """Where the full traceback of a cell that raised is kept (``bench status`` points to it)."""
        return self.logs_dir / f"{safe_name(cell_id)}.traceback.txt"

    def kept_traceback(self, cell_id: str) -> Path | None:
        """The traceback file of a cell that raised, when one is kept."""
        path = self.traceback_path(cell_id)
        return path if path.is_file() else None

    def write_traceback(self, cell_id: str, text: str) -> Path:
        path = self.traceback_path(cell_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, text.encode(), "log", cell_id)
        return path

    # ---------------------------------------------------------------- setup
    def check_location(self) -> None:
        """Cheap checks that write nothing: the folder (or the folder it would be created in) is a writable folder."""
        path = Path(os.path.abspath(self.root))
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            what = "is a file" if probe == path else f"would be created under {str(probe)!r}, which is a file"
            raise StoreWriteError(f"results folder {str(self.root)!r} {what}; pass --results DIR with a folder", path)
        if not os.access(probe, os.W_OK | os.X_OK):
            raise StoreWriteError(f"results folder {str(self.root)!r} is not writable ({str(probe)!r} is read-only); "
                                  "fix its permissions or pass --results DIR", path)

    def ensure_writable(self) -> None:
        """Create the folders and prove a file can be written, before any training starts."""
        self.check_location()
        try:
            for d in (self.cells_dir, self.history_dir, self.checkpoints_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
            atomic_write(self.root / "write-probe", b"x" * 4096, "probe", "", self.writer, keep=False)
        except StoreWriteError as exc:
            raise StoreWriteError(
                f"results folder {str(self.root)!r} is not writable ({exc.reason}); "
                "fix its permissions or free space, or pass --results DIR", self.root) from None
        except OSError as exc:
            raise StoreWriteError(
                f"results folder {str(self.root)!r} is not writable ({exc.strerror or exc}); "
                "fix its permissions or free space, or pass --results DIR", self.root) from None

    @contextmanager
    def lock(self):
        """The store-wide write lock (short: held only while files are written or merged)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreWriteError(f"cannot create results folder {str(self.root)!r} ({exc.strerror or exc})", self.root) from None
        lock = FileLock(str(self.root / ".store.lock"), timeout=300)
        try:
            lock.acquire()
        except Timeout:
            raise StoreWriteError(f"results folder {str(self.root)!r}: its store lock has been held by another process "
                                  "for 300 s; is a `bench` process hung? stop it and rerun", self.root) from None
        try:
            yield
        finally:
            lock.release()

    def _lock_path(self, cell_id: str) -> Path:
        return self.locks_dir / f"{safe_name(cell_id)}.lock"

    def cell_lock(self, cell_id: str) -> FileLock:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self._lock_path(cell_id)), timeout=0)

    def is_running(self, cell_id: str) -> bool:
        path = self._lock_path(cell_id)
        if not path.exists():
            return False
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def running(self, cell_ids: Iterable[str]) -> set[str]:
        """Those of ``cell_ids`` whose lock another process holds: the lock folder is listed once and
        only cells with a lock file are probed (``status`` asks this of every unfinished cell)."""
        if not self.locks_dir.is_dir():
            return set()
        present = {p.name for p in self.locks_dir.glob("*.lock")}
        return {c for c in cell_ids if self._lock_path(c).name in present and self.is_running(c)}

    def checkpoint_path(self, cell_id: str) -> Path:
        return checkpoint_path(self.checkpoints_dir, cell_id)

    def checkpointed(self, cell_ids: Iterable[str]) -> dict[str, Path]:
        """cell_id -> checkpoint file, for those of ``cell_ids`` that have one: the folder is listed once, not
        stat'ed per cell (``status`` asks this of every unfinished cell)."""
        if not self.checkpoints_dir.is_dir():
            return {}
        present = {p.name for p in self.checkpoints_dir.glob("*.pt")}
        paths = ((c, self.checkpoint_path(c)) for c in cell_ids)
        return {c: p for c, p in paths if p.name in present}

    # ---------------------------------------------------------------- writing
    def write_result(self, row: dict, history: list[dict]) -> None:
        """Write one cell attempt: history first, then the cell row (the commit marker).

        The row is written with the selection rules' epochs in ``history`` and the accuracies there
        (:data:`bench.report.selection.PICK_COLUMNS`), so a report of accuracy reads no history.
        If the cell row cannot be written, the history part just written is removed again, so a
        failed write leaves no file behind; :class:`StoreWriteError` names the file and the reason.
        """
        # here, not where the row is built: the row's summary of the selection rules' epochs is then always that
        # of the history committed with it (imported when writing only: reading never needs the rules' code)
        from bench.report.selection import history_picks

        attempt = safe_name(row["attempt_id"])
        cell_id = str(row["cell_id"])
        hist_table = None
        if history:
            hist = pd.DataFrame(history)
            hist.insert(0, "attempt_id", row["attempt_id"])
            hist.insert(0, "cell_id", cell_id)
            hist_table = pa.Table.from_pandas(hist, preserve_index=False)
        row = {**row, **history_picks(hist_table if hist_table is not None else pa.table({}))}
        with self.lock():
            hist_path = None
            if hist_table is not None:
                hist_path = self.history_dir / f"part-{_stamp()}-{attempt}.parquet"
                self._write(hist_path, _table_bytes(hist_table), "history", cell_id)
            try:
                self._write(self.cells_dir / f"part-{_stamp()}-{attempt}.parquet", _parquet_bytes(pd.DataFrame([row])),
                            "result", cell_id)
            except BaseException:
                if hist_path is not None:
                    hist_path.unlink(missing_ok=True)
                raise
            for folder in (self.cells_dir, self.history_dir):
                parts = sorted(folder.glob("part-*.parquet"))
                if len(parts) >= COMPACT_AT:
                    self._compact(folder, parts)

    def _compact(self, folder: Path, parts: list[Path]) -> None:
        required = CELL_REQUIRED if folder == self.cells_dir else HISTORY_REQUIRED
        frames = [f for f in (self._read_file(p, None, required) for p in parts) if f is not None]
        if frames:
            merged = pd.concat(frames, ignore_index=True)
            if folder == self.cells_dir:
                merged = merged.drop_duplicates("attempt_id", keep="last")  # every attempt stays on record
            self._write(folder / f"merged-{_stamp()}-{uuid.uuid4().hex[:8]}.parquet", _parquet_bytes(merged), "file", "")
        for p in parts:
            p.unlink(missing_ok=True)

    # ---------------------------------------------------------------- reading
    def _read_file(self, path: Path, columns: list[str] | None, required: Iterable[str]) -> pd.DataFrame | None:
        """Read one parquet file, or move it aside (returning None) when it is damaged or not one of ours.

        Raises FileNotFoundError when the file vanished (merged away by another process).
        """
        table = self._read_table(path, columns, required)
        return None if table is None else table.to_pandas()

    def _read_table(self, path: Path, columns: list[str] | None, required: Iterable[str],
                    read_dictionary: list[str] | None = None) -> pa.Table | None:
        """:meth:`_read_file` as an arrow table (``read_dictionary``: columns kept dictionary-encoded)."""
        try:
            names = set(pq.read_schema(path).names)
            missing = [c for c in required if c not in names]
            if missing:
                raise ValueError(f"not a results file of this folder: no column {missing[0]!r}")
            cols = None if columns is None else [c for c in columns if c in names]
            return pq.read_table(path, columns=cols, page_checksum_verification=True, read_dictionary=read_dictionary)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno is not None:  # the OS refused (permissions, I/O error): not the file's fault
                raise StoreReadError(f"cannot read {path} ({exc.strerror or exc}); check the results folder") from None
            self.quarantine(path, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is moved aside
            self.quarantine(path, f"{type(exc).__name__}: {exc}")
        return None

    def quarantine(self, path: Path, why: str) -> Path | None:
        """Move a damaged file to ``corrupt/`` (never delete it) and say so on one line."""
        then = {"cells": "its cells will be retrained", "history": "the cells whose history it held will be retrained"}
        return move_aside(path, self.corrupt_dir, why, what="results file",
                          then=then.get(path.parent.name, "it will be rebuilt"))

    def _write(self, dest: Path, data: bytes, stage: str, cell_id: str) -> None:
        atomic_write(dest, data, stage, cell_id, self.writer)

    def _each_file(self, folder: Path, read_one: Callable[[Path], T | None]) -> list[T]:
        """``read_one`` of every parquet file of ``folder`` (never temp files), skipping ``None``s.

        A file merged away while the folder is read makes the whole listing start again: the merged
        file is in place by then.
        """
        for _ in range(100):
            if not folder.is_dir():
                return []
            files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
            out = []
            try:
                for p in files:
                    value = read_one(p)
                    if value is not None:
                        out.append(value)
            except FileNotFoundError:
                continue
            return out
        raise StoreReadError(f"{folder}: files keep vanishing while read; is another process merging them?")

    def _read_folder(self, folder: Path, columns: list[str] | None, required: Iterable[str]) -> pd.DataFrame:
        frames = [f for f in self._each_file(folder, lambda p: self._read_file(p, columns, required)) if len(f)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def cells(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Latest row per cell (all columns unless ``columns`` is given)."""
        cols = None if columns is None else sorted(set(columns) | {"cell_id", "written_at"})
        return _latest(self._read_folder(self.cells_dir, cols, CELL_REQUIRED))

    def attempts(self) -> pd.DataFrame:
        """Every recorded attempt (cell_id, attempt_id, status, written_at), oldest first: the audit trail."""
        df = self._read_folder(self.cells_dir, list(CELL_REQUIRED), CELL_REQUIRED)
        if df.empty:
            return pd.DataFrame(columns=list(CELL_REQUIRED))
        return df.drop_duplicates("attempt_id").sort_values("written_at", kind="stable").reset_index(drop=True)

    def statuses(self, cell_ids: Iterable[str] | None = None) -> dict[str, str]:
        """cell_id -> status of its latest attempt; a cell whose history was lost counts as not run.

        Reads a few columns only, so it does not grow with the width of the history; with
        ``cell_ids``, only those cells, and the history is read only if one of them trained.
        """
        return latest_statuses(self.cells(STATUS_COLUMNS), cell_ids, self._history_attempts)

    def _history_attempts(self) -> set[str]:
        """Attempt ids that have history rows: each file's ``attempt_id`` column read as a dictionary.

        Parquet stores the column dictionary-encoded, so this reads the (few) distinct ids and the
        row indices, never builds a Python string per row: 10M history rows take 0.2 s, not 7 s.
        """
        def ids(p: Path) -> list[str] | None:
            table = self._read_table(p, ["attempt_id"], HISTORY_REQUIRED, read_dictionary=["attempt_id"])
            if table is None:
                return None
            out, last = [], None
            for chunk in table.column("attempt_id").chunks:
                if not pa.types.is_dictionary(chunk.type):
                    out += chunk.to_pylist()
                elif last is None or not chunk.dictionary.equals(last):  # a file's batches repeat its dictionary
                    last = chunk.dictionary
                    out += last.to_pylist()
            return out

        return {i for file_ids in self._each_file(self.history_dir, ids) for i in file_ids}

    def history(self, attempt_ids: Iterable[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """History rows of the given attempts (default: of every committed attempt, i.e. one with a cell row);
        ``columns``: only these (with ``cell_id``, ``attempt_id`` and ``epoch``). Each file's other rows are
        dropped as it is read, so memory holds the rows asked for, not the whole folder."""
        wanted = self.attempts()["attempt_id"].tolist() if attempt_ids is None else list(attempt_ids)
        cols = None if columns is None else list(dict.fromkeys([*HISTORY_REQUIRED, *columns]))
        tables = self._history_tables(wanted, cols, dictionary=False)
        if not tables:
            return pd.DataFrame()
        frames = [t.to_pandas() for t in tables]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def history_table(self, attempt_ids: Iterable[str], columns: list[str]) -> pa.Table | None:
        """``attempt_id`` (dictionary-encoded), ``epoch`` and ``columns`` of the history rows of ``attempt_ids``,
        in file order, as one arrow table (None without any): read file by file keeping only those rows and
        columns, never a Python object per row. A column a file lacks is null in its rows."""
        cols = list(dict.fromkeys(["attempt_id", "epoch", *columns]))
        tables = self._history_tables(list(attempt_ids), cols, dictionary=True)
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")

    def _history_tables(self, attempt_ids: list[str], columns: list[str] | None, dictionary: bool) -> list[pa.Table]:
        """Per history file, its rows of ``attempt_ids`` (files without any left out)."""
        if not attempt_ids:
            return []
        wanted = pd.Index(sorted(set(attempt_ids)), dtype=object)  # hashed once for every file's lookups

        def rows(p: Path) -> pa.Table | None:
            table = self._read_table(p, columns, HISTORY_REQUIRED, read_dictionary=["attempt_id"])
            if table is None or table.num_rows == 0:
                return None
            keep = _is_in(table.column("attempt_id"), wanted)
            if not keep.all():  # most files hold only wanted rows: no copy then
                table = table.filter(pa.array(keep))
            if not dictionary:
                index = table.schema.get_field_index("attempt_id")
                table = table.set_column(index, "attempt_id", table.column("attempt_id").cast(pa.string()))
            return table if table.num_rows else None

        return self._each_file(self.history_dir, rows)

    def remove_checkpoint(self, cell_id: str) -> None:
        self.checkpoint_path(cell_id).unlink(missing_ok=True)

    def stale_temp_files(self) -> list[Path]:
        """Temp files whose writer is gone: a dead process of this host, or older than a day."""
        return stale_temp_files(self.root, STALE_TEMP_AGE_S)


STATUS_COLUMNS = ["cell_id", "attempt_id", "status", "epochs_done"]


def latest_statuses(df: pd.DataFrame, cell_ids: Iterable[str] | None,
                    history_attempts: Callable[[], set[str]]) -> dict[str, str]:
    """cell_id -> status of the latest rows ``df`` (:data:`STATUS_COLUMNS`), leaving out the cells that trained
    but whose attempt has no history (``history_attempts``: asked only when one of them trained)."""
    if cell_ids is not None and not df.empty:
        wanted = set(cell_ids)
        df = df[[c in wanted for c in df["cell_id"].tolist()]]
    if df.empty:
        return {}
    if "epochs_done" in df.columns:
        trained = df[df["epochs_done"].fillna(0) > 0]
        if len(trained):
            have = history_attempts()
            # plain sets: pandas' isin on arrow strings loops in Python (slow on large stores)
            lost = {c for c, a in zip(trained["cell_id"].tolist(), trained["attempt_id"].tolist()) if a not in have}
            if lost:
                return {c: s for c, s in zip(df["cell_id"].tolist(), df["status"].tolist()) if c not in lost}
    return dict(zip(df["cell_id"].tolist(), df["status"].tolist()))


def _is_in(column: pa.ChunkedArray, wanted: pd.Index) -> np.ndarray:
    """Which rows of a (dictionary-encoded) column hold one of ``wanted``: tested once per distinct value, against
    an index hashed once (``pc.is_in`` hashes its value set on every call: 1 s for 100,000 ids over 90 chunks)."""
    parts = [np.zeros(0, bool)]
    last: pa.Array | None = None
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        if last is None or not chunk.dictionary.equals(last):  # a file's batches repeat its dictionary
            last = chunk.dictionary
            hit = np.append(wanted.get_indexer(last.to_numpy(zero_copy_only=False)) >= 0, False)
        idx = chunk.indices.fill_null(len(hit) - 1).to_numpy(zero_copy_only=False)  # a null id: not wanted
        parts.append(hit[idx])
    return np.concatenate(parts)


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    return df.sort_values("written_at", kind="stable").drop_duplicates("cell_id", keep="last").reset_index(drop=True)


def corrupt_folder(results_root: str | Path) -> Path:
    """Where the damaged files of the results folder ``results_root`` are moved (workers know only
    their checkpoint folder, ``<results>/checkpoints``, and take its parent)."""
    return Path(results_root) / "corrupt"


def _stamp() -> str:
    return f"{time.time_ns():020d}"


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    """A frame as one parquet file with page checksums (verified on every read), in memory."""
    return _table_bytes(pa.Table.from_pandas(df, preserve_index=False))


def _table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, write_page_checksum=True)
    return buf.getvalue()


def clean_temp_files(store: Store) -> None:
    """Remove temp files a killed writer left behind (they are never read as results)."""
    for p in store.stale_temp_files():
        try:
            p.unlink()
        except OSError:
            pass


__all__ = ["STATUS_COLUMNS", "Store", "StoreReadError", "StoreWriteError", "clean_temp_files", "corrupt_folder",
           "latest_statuses"]
