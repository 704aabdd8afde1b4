"""The one description of a settings model's fields, for ``bench run --help`` and the README tables."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


def describe(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every field of ``model``: a Literal's type is its choices joined by /."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        kind = "/".join(ann.__args__) if getattr(ann, "__origin__", None) is Literal else ann.__name__
        out.append((name, kind, str(f.default), f.description or ""))
    return out
