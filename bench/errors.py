"""User-facing errors: one line naming the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """Bad input. The CLI prints ``str(err)`` on one line and exits with ``exit_code``."""

    exit_code = 2


def closest(name: str, valid: Iterable[str], n: int = 3) -> str:
    """Return a hint like " (closest: 'a', 'b')" or " (valid: ...)" for an unknown name."""
    valid = sorted(set(map(str, valid)))
    near = difflib.get_close_matches(str(name), valid, n=n, cutoff=0.5)
    if near:
        return " (closest: " + ", ".join(repr(v) for v in near) + ")"
    if valid:
        shown = ", ".join(repr(v) for v in valid[:8]) + (", ..." if len(valid) > 8 else "")
        return f" (valid: {shown})"
    return ""


def unknown(kind: str, name: str, valid: Iterable[str]) -> BenchError:
    return BenchError(f"unknown {kind} {name!r}{closest(name, valid)}")


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line: whitespace collapsed, cut to ``limit`` characters with "..."."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def exception_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line (its type name when it has no text), for one-line messages."""
    return one_line(exc, limit) or type(exc).__name__
