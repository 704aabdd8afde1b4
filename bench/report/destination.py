"""Where a report is written, and what it was rendered from: a folder never receives a report of another source.

``bench report --out OUT`` writes into ``OUT/<grid>/`` and records there, in ``source.json``, which results it was
rendered from: the store, or an export file (by a digest of the folder's or the file's resolved path, so no path
of the machine is written into a folder that may be committed). A folder that already holds a report of another
source, or a report without a record (one made elsewhere, or by an older version), is refused before anything is
drawn or written: a committed two-hour table cannot be overwritten by a one-cell run.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import BenchError
from bench.fileio import StoreWriteError, atomic_write

SOURCE_FILE = "source.json"


def store_source(results: Path) -> str:
    """The source id of a results folder: ``store:`` and a digest of its resolved path."""
    return "store:" + hashlib.sha256(str(results.resolve()).encode()).hexdigest()[:16]


def export_source(path: Path) -> str:
    """The source id of an export file (``bench export``): ``export:`` and the digest the export records of its
    content, so the same export copied anywhere (into the report folder it rendered, say) is the same source;
    a file without one, by its resolved path."""
    import pyarrow.parquet as pq

    try:
        digest = (pq.read_schema(path).metadata or {}).get(b"lossbench.digest", b"").decode()
    except (OSError, ValueError):
        digest = ""
    return "export:" + (digest[:16] or hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16])


def recorded_source(target: Path) -> str | None:
    """The source recorded in ``target`` (None when there is no readable record)."""
    try:
        return json.loads((target / SOURCE_FILE).read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_destination(target: Path, source: str) -> None:
    """Refuse ``target`` when it holds a report that was not rendered from ``source``."""
    if not target.is_dir():
        return
    held = [p for p in target.iterdir() if p.name != SOURCE_FILE]
    if not held:
        return
    recorded = recorded_source(target)
    if recorded == source:
        return
    why = "from other results" if recorded is not None else "with no record of its source"
    raise BenchError(f"{target} holds a report rendered {why}; write this one elsewhere with --out DIR, or delete "
                     f"{target} to replace it")


def record_source(target: Path, source: str, grid: str, code_version: str) -> None:
    """Write ``target``'s source record (atomically)."""
    record = {"source": source, "grid": grid, "code_version": code_version,
              "rendered_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        atomic_write(target / SOURCE_FILE, (json.dumps(record, indent=1) + "\n").encode(), "report")
    except StoreWriteError as exc:
        raise BenchError(f"cannot write {target / SOURCE_FILE} ({exc.reason}); choose a writable --out folder") from None


def report_dir(out: Path | None, grid: str, source: str) -> Path | None:
    """``OUT/<grid>/``, created, once it is known to stay inside ``out`` and to hold no report of another source."""
    if out is None:
        return None
    from bench.store.results import safe_name

    target = (out / safe_name(grid)).resolve()
    if out.resolve() not in target.parents:
        raise BenchError(f"grid name {grid!r} would write outside {out}")
    check_destination(target, source)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"--out {out}: cannot create {target} ({exc.strerror}); choose a writable folder") from None
    return target
