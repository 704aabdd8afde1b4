"""The export file: a grid's stored results in one parquet file that travels with its report, and read back
as a read-only store.

Layout (format ``lossbench-export``, version :data:`FORMAT_VERSION`)::

    one row per cell   every column the store has for the cell's latest row (failed and diverged rows too)
    history            large_list<struct>: that attempt's history rows in the store's order, every history column
                       but ``cell_id`` and ``attempt_id`` (the row holds them); empty where it has none
    schema metadata    lossbench.format        "lossbench-export"
                       lossbench.version       "1" (an integer; raised when a reader of the older one would misread)
                       lossbench.grid          the grid (or suite) name
                       lossbench.code_version  the lossbench version (and commit) that wrote it
                       lossbench.created_at    UTC, ISO 8601
                       lossbench.runs          JSON: the grid's run records, oldest first
                       lossbench.meta          JSON: how the cells were chosen (the --set, --filter, --losses given)
                       lossbench.digest        SHA-256 of the other metadata and the column and history field names

Why this layout: a cell and its history sit in one row, so the file cannot hold a history without its row or
a row without its history; the flat columns keep the types of the store's own files, so a row reads back as
the store reads it, and a reader that wants the table alone never decodes a history. The run records and
the facts about the file are small, so they live in the schema's key-value metadata, which can be read (and
the file refused) before any row is. Parquet checksums each data page (verified on every read) but not its
footer, where the metadata lives, hence the digest. Checkpoints are left out (they are unfinished training, not
results), as are older attempts of a cell and the tracebacks of failed ones (a failed row keeps its message).

:class:`ExportStore` reads the file once, checksums verified, and answers the read interface ``bench
report``, ``bench status`` and :mod:`bench.report` use on :class:`~bench.store.results.Store`, with the same
shapes and types: a report renders from it as from the store. Nothing runs in an export, so it has no
running or interrupted cells and no tracebacks.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.errors import BenchError, exception_line
from bench.fileio import atomic_write
from bench.store.results import CELL_REQUIRED, STATUS_COLUMNS, Store, _latest, latest_statuses

FORMAT = "lossbench-export"
FORMAT_VERSION = 1
HISTORY = "history"  # the nested column; no cell row has a column of that name
_KEY = "lossbench."
DIGEST = b"lossbench.digest"
_ROW_COLUMNS = ("cell_id", "attempt_id")  # the history rows' columns that the cell row holds


def write_export(store: Store, cells: Iterable[str], path: Path, grid: str, meta: Mapping[str, Any] | None = None,
                 replace: bool = False) -> dict[str, int]:
    """Write the stored rows and histories of the cells ``cells`` (their ids) and ``grid``'s run records to
    ``path``, atomically; ``meta``: JSON-able facts kept with them (how the cells were chosen). Returns the
    exported cells' counts per status. Refuses an existing ``path`` unless ``replace``, and cells none of which
    has a stored row, before anything is written."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"--out {path} is a folder; pass a file name, e.g. --out {path / (grid + '.parquet')}")
    if path.exists() and not replace:
        raise BenchError(f"--out {path} exists; pass --force to replace it, or choose another file")
    wanted = set(cells)
    rows = store.cells()
    if not rows.empty:
        rows = rows[[c in wanted for c in rows["cell_id"].tolist()]].reset_index(drop=True)
    if rows.empty:
        raise BenchError(f"grid {grid!r}: none of its {len(wanted)} cells has a stored result in {store.root}; "
                         f"train them first: bench run --grid {grid}")
    if HISTORY in rows.columns:  # never written by lossbench: refuse rather than lose the column
        raise BenchError(f"{store.root}: the cell rows have a column named {HISTORY!r}, which an export reserves")
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.append_column(HISTORY, _nested_history(rows, store.history(rows["attempt_id"].tolist())))
    facts = {"format": FORMAT, "version": str(FORMAT_VERSION), "grid": grid, "code_version": _code_version(),
             "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "runs": json.dumps(store.runs(grid), sort_keys=True),
             "meta": json.dumps(dict(meta or {}), sort_keys=True, default=str)}
    metadata = {**(table.schema.metadata or {}), **{f"{_KEY}{k}".encode(): v.encode() for k, v in facts.items()}}
    table = table.replace_schema_metadata(metadata)
    table = table.replace_schema_metadata({**metadata, DIGEST: _digest(table.schema).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, write_page_checksum=True)
    atomic_write(path, buf.getvalue(), "export")
    return {str(k): int(v) for k, v in rows["status"].value_counts(sort=False).items()}


def _digest(schema: pa.Schema) -> str:
    """A digest of the file's key-value metadata (but itself) and column names, the history's fields too: parquet
    checksums its data pages but not its footer, so a damaged run record or column name would otherwise read as
    a valid one."""
    items = sorted((k.hex(), v.hex()) for k, v in (schema.metadata or {}).items() if k != DIGEST)
    names = []
    for f in schema:
        names.append(f.name)
        inner = f.type.value_type if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) else f.type
        if pa.types.is_struct(inner):
            names += [f"{f.name}.{inner.field(i).name}" for i in range(inner.num_fields)]
    return hashlib.sha256(json.dumps([items, names]).encode()).hexdigest()


def _code_version() -> str:
    from bench.plan.code_fingerprint import code_version

    return code_version()


def _nested_history(rows: pd.DataFrame, history: pd.DataFrame) -> pa.Array:
    """Per row of ``rows``, its attempt's history rows (store order) as a list of structs."""
    offsets = np.zeros(len(rows) + 1, np.int64)  # 64-bit: a large grid's history may pass 2**31 rows
    if history.empty:
        return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array([], pa.struct([("epoch", pa.int64())])))
    at = history.groupby("attempt_id", sort=False).indices  # attempt -> its row positions, in store order
    taken = [at.get(a, np.zeros(0, np.int64)) for a in rows["attempt_id"].tolist()]
    offsets[1:] = np.cumsum([len(t) for t in taken])
    fields = history.drop(columns=[c for c in _ROW_COLUMNS if c in history.columns])
    values = pa.Table.from_pandas(fields, preserve_index=False).take(pa.array(np.concatenate(taken), pa.int64()))
    return pa.LargeListArray.from_arrays(pa.array(offsets), values.to_struct_array().combine_chunks())


class ExportStore:
    """An export file read as a read-only store (see the module docstring); :meth:`open` reads and checks it."""

    def __init__(self, path: Path, table: pa.Table, facts: dict[str, str]):
        self.path = Path(path)
        self.grid = facts["grid"]
        self.code_version = facts.get("code_version", "")
        self.created_at = facts.get("created_at", "")
        self.version = int(facts["version"])
        self.meta: dict[str, Any] = json.loads(facts.get("meta") or "{}")
        self._runs: list[dict] = json.loads(facts.get("runs") or "[]")
        self._rows = table.drop_columns([HISTORY])
        lists = table.column(HISTORY).combine_chunks()
        parents = pc.list_parent_indices(lists)
        flat = pc.list_flatten(lists)
        history = pa.Table.from_struct_array(flat) if len(flat.type) else pa.table({"epoch": pa.array([], pa.int64())})
        for i, name in enumerate(_ROW_COLUMNS):  # plain strings, as the store's history readers give them
            history = history.add_column(i, name, table.column(name).combine_chunks().take(parents).cast(pa.string()))
        self._history = history

    @classmethod
    def open(cls, path: Path) -> ExportStore:
        """Read the export ``path``; one :class:`BenchError` line for a missing file, a file that is not an
        export, one of a newer format than this code reads, or a damaged one."""
        path = Path(path)
        if not path.exists():
            raise BenchError(f"{path}: no such file; pass a file that `bench export --out` wrote")
        if not path.is_file():
            raise BenchError(f"{path} is not a file; pass a file that `bench export --out` wrote")
        try:
            schema = pq.read_schema(path)
        except OSError as exc:
            if exc.errno is not None:  # the OS refused: not the file's fault
                raise BenchError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
            raise _damaged(path, exc) from None
        except Exception as exc:  # noqa: BLE001 - anything unreadable is not an export
            if _starts_as_parquet(path):  # a parquet file that lost its footer (a copy cut short)
                raise BenchError(f"{path} is a damaged parquet file ({exception_line(exc, 120)}); if it is a lossbench "
                                 "export, export it again with bench export") from None
            raise _not_an_export(path, f"not a parquet file: {exception_line(exc, 120)}") from None
        facts = {k.decode(errors="replace")[len(_KEY):]: v.decode(errors="replace")
                 for k, v in (schema.metadata or {}).items() if k.startswith(_KEY.encode())}
        if facts.get("format") != FORMAT:
            raise _not_an_export(path, "a parquet file without lossbench's export metadata")
        try:
            version = int(facts.get("version", ""))
        except ValueError:
            version = 0
        if version < 1:
            raise _not_an_export(path, f"its format version {facts.get('version')!r} is not a positive integer")
        if version > FORMAT_VERSION:
            raise BenchError(f"{path} is a lossbench export of format version {version}; this lossbench reads versions "
                             f"up to {FORMAT_VERSION}: upgrade lossbench")
        if facts.get("digest") != _digest(schema):
            raise _damaged(path, "its metadata does not match its digest")
        missing = [c for c in (*CELL_REQUIRED, HISTORY) if c not in schema.names]
        if missing or "grid" not in facts:
            raise _damaged(path, f"no {'column ' + repr(missing[0]) if missing else 'grid name'}")
        try:
            table = pq.read_table(path, page_checksum_verification=True)
            return cls(path, table, facts)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise BenchError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
            raise _damaged(path, exception_line(exc, 160)) from None

    # ------------------------------------------------------------------ the store's read interface
    @property
    def root(self) -> Path:
        """Where the results come from, for messages (the store's is its folder)."""
        return self.path

    @property
    def cell_ids(self) -> list[str]:
        return self._rows.column("cell_id").to_pylist()

    def shown_grid(self, asked: str | None) -> str:
        """The grid a reader shows: the export's own, which ``asked`` (when given) must name."""
        if asked is None or asked == self.grid:
            return self.grid
        raise BenchError(f"{self.path} holds grid {self.grid!r}, not {asked!r}: pass --grid {self.grid}, or leave "
                         "--grid out")

    def runs(self, grid: str) -> list[dict]:
        """The run records of ``grid`` (the export's grid's, oldest first; none of another grid)."""
        return [dict(r) for r in self._runs] if grid == self.grid else []

    def cells(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Latest row per cell (all columns unless ``columns`` is given), as :meth:`Store.cells`."""
        if self._rows.num_rows == 0:
            return pd.DataFrame()
        table = self._rows
        if columns is not None:
            names = set(table.column_names)
            table = table.select([c for c in sorted(set(columns) | {"cell_id", "written_at"}) if c in names])
        return _latest(table.to_pandas())

    def attempts(self) -> pd.DataFrame:
        """The exported attempts (one per cell: its latest), oldest first, as :meth:`Store.attempts`."""
        if self._rows.num_rows == 0:
            return pd.DataFrame(columns=list(CELL_REQUIRED))
        df = self._rows.select(list(CELL_REQUIRED)).to_pandas()
        return df.drop_duplicates("attempt_id").sort_values("written_at", kind="stable").reset_index(drop=True)

    def statuses(self, cell_ids: Iterable[str] | None = None) -> dict[str, str]:
        """cell_id -> status; a cell that trained but whose history was lost counts as not run, as in the store."""
        return latest_statuses(self.cells(STATUS_COLUMNS), cell_ids,
                               lambda: set(self._history.column("attempt_id").unique().to_pylist()))

    def history(self, attempt_ids: Iterable[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """History rows of the given attempts (default: every exported one), as :meth:`Store.history`."""
        wanted = self.attempts()["attempt_id"].tolist() if attempt_ids is None else list(attempt_ids)
        cols = None if columns is None else list(dict.fromkeys(["cell_id", "attempt_id", "epoch", *columns]))
        table = self._rows_of(wanted, cols)
        return pd.DataFrame() if table is None else table.to_pandas()

    def history_table(self, attempt_ids: Iterable[str], columns: list[str]) -> pa.Table | None:
        """``attempt_id`` (dictionary-encoded), ``epoch`` and ``columns`` of the history rows of ``attempt_ids``, as
        :meth:`Store.history_table` (None without any)."""
        table = self._rows_of(list(attempt_ids), list(dict.fromkeys(["attempt_id", "epoch", *columns])))
        if table is None:
            return None
        index = table.schema.get_field_index("attempt_id")
        return table.set_column(index, "attempt_id", pc.dictionary_encode(table.column("attempt_id")))

    def _rows_of(self, attempt_ids: list[str], columns: list[str] | None) -> pa.Table | None:
        if not attempt_ids or self._history.num_rows == 0:
            return None
        wanted = pa.array(sorted(set(attempt_ids)), self._history.schema.field("attempt_id").type)
        table = self._history.filter(pc.is_in(self._history.column("attempt_id"), value_set=wanted))
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        return table if table.num_rows else None

    # what an export cannot hold: nothing trains in it, and checkpoints and tracebacks stay with the store
    def running(self, cell_ids: Iterable[str]) -> set[str]:  # noqa: ARG002
        return set()

    def is_running(self, cell_id: str) -> bool:  # noqa: ARG002
        return False

    def checkpointed(self, cell_ids: Iterable[str]) -> dict[str, Path]:  # noqa: ARG002
        return {}

    def kept_traceback(self, cell_id: str) -> Path | None:  # noqa: ARG002 - the failed row's message is exported
        return None

    def stale_temp_files(self) -> list[Path]:
        return []


def open_source(results: Path, from_: Path | None) -> Store | ExportStore:
    """What a read-only command reads: the export ``from_`` when given (read and checked now), else the
    results folder ``results``."""
    return Store(results) if from_ is None else ExportStore.open(from_)


def left_out_note(export: ExportStore, shown: Iterable[str], registry: Path, given: Mapping[str, Any]) -> str | None:
    """What a reader is told when cells of ``export`` are not among the cells ``shown``, the cells ``registry``
    defines for its grid under the flags ``given`` (their parsed values: overrides, filters), or None.

    The report is always the registry's grid: an exported cell whose configuration the registry defines
    differently (another registry) has another identity and is left out, never shown under a wrong label. Said
    only where the flags are none or those of the export, so a reader's own choice of cells is not second-guessed.
    """
    made_with = {k: v for k, v in export.meta.items() if k in ("overrides", "filters") and v}
    asked = {k: v for k, v in given.items() if v}
    if asked and json.dumps(asked, sort_keys=True, default=str) != json.dumps(made_with, sort_keys=True, default=str):
        return None
    left = set(export.cell_ids) - set(shown)
    if not left:
        return None
    head = f"{len(left)} of the {len(export.cell_ids)} cells in {export.path}"
    flags = export.meta.get("flags") or ""
    if flags and not asked:  # the export chose its cells with flags the reader has not given
        return (f"{head} are not among the cells shown, so the report leaves them out: the export was made with "
                f"{flags}; pass them too")
    return (f"{head} are not cells of grid {export.grid!r} as {registry} defines it, so the report leaves them out: "
            "render it with the registry the export was made with")


def _starts_as_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _not_an_export(path: Path, why: str) -> BenchError:
    return BenchError(f"{path} is not a lossbench export ({why}); pass a file that `bench export --out` wrote")


def _damaged(path: Path, why: BaseException | str) -> BenchError:
    why = exception_line(why, 160) if isinstance(why, BaseException) else why
    return BenchError(f"{path} is a damaged lossbench export ({why}); export it again with bench export")


__all__ = ["FORMAT", "FORMAT_VERSION", "ExportStore", "left_out_note", "open_source", "write_export"]
