"""Writing files so a reader never sees half of one, and moving damaged files aside.

**The atomic write** (:func:`atomic_write`): the bytes go to a temporary name beside the
destination (``.tmp-<pid>@<host>-<random>-<name>``), are flushed and fsynced, the temp file is
renamed over the destination and the folder is fsynced. A reader sees the old file or the new
one, never a torn one; a writer killed half-way leaves only its temp file, which
:func:`stale_temp_files` finds once its writer is gone. Any failure removes the temp file, and an
``OSError`` (full disk, read-only folder) becomes one :class:`StoreWriteError` naming the file.
Every file bench writes goes through it: the results store, checkpoints and reports.

**The writer seam**: how the bytes are put into the open temp file is a :class:`Writer`, which
by default writes them all. A caller may give its own (``Store(root, writer=...)``, and
``Seams.writer`` for a whole ``bench run``), e.g. to count or log writes, or, in the reliability
tests, to write half a file and then die or report a full disk.

**Damaged files** (:func:`move_aside`) are never deleted: they are moved into a ``corrupt/``
folder under a unique name, with one warning line naming the file, why it is damaged, where it
went and what happens next. The rule for which ``corrupt/`` folder: the one of the folder tree
that owns the file. A results folder's files (cell rows, history, checkpoints) go to
``<results>/corrupt/``; a data cache's entries go to ``<cache dir>/corrupt/``, because a cache
folder may be shared by several results folders (``LOSSBENCH_CACHE``) and belongs to none of them
(with the default cache, ``<results>/cache``, that is ``<results>/cache/corrupt/``).
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bench.errors import BenchError


class StoreWriteError(BenchError):
    """A file could not be written (full disk, read-only folder): ends the run, exit code 2."""

    def __init__(self, message: str, path: Path | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = reason or message


class Writer:
    """Puts the bytes of one atomic write into its open temporary file; the default writes them all.

    ``stage`` says what the file is (``checkpoint``, ``history``, ``result``: a cell row, the
    commit marker; ``run``: a run record; ``log``: a traceback; ``probe``: the writability check
    at start-up; ``report``; ``file``: anything else, e.g. a merged folder) and ``cell_id`` whose
    it is (empty when it is no one cell's). An ``OSError`` raised here is reported like the
    operating system's own: one :class:`StoreWriteError` naming the file, the temp file removed.

    A writer travels with the cells it serves to worker processes (pickled), so a subclass must
    be picklable and importable there; its state then starts afresh in each worker from the
    driver's state at submission.
    """

    def write(self, fh: BinaryIO, data: bytes, stage: str, cell_id: str) -> None:
        fh.write(data)


_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"
_TMP_RE = re.compile(r"^\.tmp-(\d+)@([A-Za-z0-9]*)-")


def temp_path(dest: Path) -> Path:
    """The temporary name ``dest`` is written under: never read as a result, and it names its
    writer (pid and host), so :func:`stale_temp_files` can tell a live writer's from a dead one's."""
    return dest.parent / f".tmp-{os.getpid()}@{_HOST}-{uuid.uuid4().hex[:12]}-{dest.name}"


def atomic_write(dest: Path, data: bytes, stage: str = "file", cell_id: str = "", writer: Writer | None = None,
                 keep: bool = True) -> None:
    """Write ``data`` to a temp file beside ``dest`` with ``writer``, fsync it, rename it to ``dest``
    and fsync the folder.

    Any failure removes the temp file; an OSError becomes :class:`StoreWriteError` naming ``dest``.
    ``keep=False`` (the writability probe) removes the file again instead of renaming it.
    """
    dest = Path(dest)
    writer = writer if writer is not None else Writer()
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(dest)
        with open(tmp, "wb") as fh:
            writer.write(fh, data, stage, cell_id)
            fh.flush()
            os.fsync(fh.fileno())
        if keep:
            os.replace(tmp, dest)
            tmp = None
            _fsync_dir(dest.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreWriteError(f"cannot write {dest} ({reason}); no partial file was left: "
                              "free space or fix the permissions of the folder, then rerun", dest, reason) from None
    finally:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; a filesystem that cannot fsync a folder is left as it is."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def stale_temp_files(root: Path, max_age_s: float) -> list[Path]:
    """Temp files under ``root`` whose writer is gone: a dead process of this host, or older than ``max_age_s``
    (a temp file of another host, or of unknown origin, cannot be asked whether its writer lives)."""
    out = []
    for p in Path(root).glob("**/.tmp-*"):
        m = _TMP_RE.match(p.name)
        if m and m.group(2) == _HOST:
            if not _pid_alive(int(m.group(1))):
                out.append(p)
            continue
        try:
            if time.time() - p.stat().st_mtime > max_age_s:
                out.append(p)
        except FileNotFoundError:
            pass
    return out


def safe_name(name: str) -> str:
    """A file-name-safe form of an identifier: no separators, no parent references."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))
    if not cleaned or cleaned.strip("_") == "":
        raise BenchError(f"invalid identifier {name!r} for a results file")
    return cleaned


def print_warning(line: str) -> None:
    """The command line's warning channel: one ``warning: ...`` line on stderr."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters (an exception's text can span many)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def move_aside(path: Path, corrupt_dir: Path, why: str, *, what: str = "file", then: str = "it will be rebuilt",
               warn: Callable[[str], None] = print_warning) -> Path | None:
    """Move the damaged file ``path`` into ``corrupt_dir`` (never delete it) and say so on one line.

    The line reads ``damaged <what> <path> (<why>) moved to <dest>; <then>`` and goes to ``warn``
    (default: stderr). Returns where the file went, or None when it was gone already (another
    process moved it first) or could not be moved (then the line says so, and the caller goes on
    without the file all the same).
    """
    why = one_line(why, 160)
    dest = Path(corrupt_dir) / f"{path.name}.{time.time_ns():020d}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError as exc:
        warn(f"damaged {what} {path} ({why}) could not be moved aside ({exc.strerror or exc}); {then}")
        return None
    warn(f"damaged {what} {path} ({why}) moved to {dest}; {then}")
    return dest


__all__ = ["StoreWriteError", "Writer", "atomic_write", "move_aside", "one_line", "print_warning", "stale_temp_files",
           "temp_path"]
