"""Validation shared by the data sources: dataset parameters and one-line error text.

Every helper turns a bad value into a one-line :class:`BenchError` that names the
parameter and what it must be, so each source states only its own rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from bench.errors import BenchError, unknown


def as_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dataset's parameters as a fresh dict (None: none given)."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise BenchError(f"dataset parameters must be a mapping of name to value, got {type(params).__name__}")
    return dict(params)


def check_keys(kind: str, params: Mapping[str, Any], valid: Iterable[str]) -> None:
    valid = tuple(valid)
    for key in params:
        if key not in valid:
            raise unknown(f"{kind} parameter", str(key), valid)


def as_int(kind: str, key: str, value: Any) -> int:
    """An integer, also from an integral float or a numeric string (YAML and ``--set`` give both)."""
    if isinstance(value, bool):
        raise BenchError(f"{kind} parameter {key!r} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        if isinstance(value, str):
            value = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
            if isinstance(value, int):
                return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    except (ValueError, OverflowError):
        pass
    raise BenchError(f"{kind} parameter {key!r} must be an integer, got {value!r}")


def as_float(kind: str, key: str, value: Any) -> float:
    """A finite float (booleans rejected: YAML's ``yes`` is not a number)."""
    if isinstance(value, bool):
        raise BenchError(f"{kind} parameter {key!r} must be a number, got {value!r}")
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise BenchError(f"{kind} parameter {key!r} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise BenchError(f"{kind} parameter {key!r} must be finite, got {value!r}")
    return out
