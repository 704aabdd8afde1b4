"""Figure files: safe, unique file stems and the atomic PNG (+ PDF) write."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

from matplotlib.figure import Figure

from bench.fileio import atomic_write

DPI = 150
FORMATS = ("png", "pdf")  # a report's figures: PNG for the markdown and HTML, PDF for LaTeX
FIG_DIR = "figures"
_NAME_MAX = 120

def figure_stem(*parts: str) -> str:
    """File stem from name parts, each made safe on its own and joined by '-'."""
    return "-".join(safe_name(p) for p in parts)


def safe_name(name: str) -> str:
    """A file stem of [A-Za-z0-9._-] only, not starting or ending with '.' or '_', at most ~120 characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    stem = re.sub(r"\.{2,}", ".", stem).strip("._") or "figure"
    if len(stem) > _NAME_MAX:
        stem = stem[:_NAME_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return stem


def unique_name(stem: str, used: set[str]) -> str:
    name, i = stem, 2
    while name.lower() in used:  # case-insensitive filesystems
        name, i = f"{stem}-{i}", i + 1
    used.add(name.lower())
    return name


def save_figure(fig: Figure, out_dir: Path, stem: str, formats: tuple[str, ...] = FORMATS) -> str:
    """Write ``stem.png`` (and ``stem.pdf`` when ``formats`` has it) atomically into ``out_dir``; returns the
    PNG's file name. A page that shows only the PNG (the site) asks for ``("png",)``: the PDF costs as much
    again as the PNG to draw.

    The layout is computed once, for the PNG, and then frozen (the figure's layout engine is
    removed), so both files have the same layout and the PDF costs no second layout pass.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", stem):
        raise ValueError(f"unsafe figure name {stem!r}")
    if "png" not in formats or not set(formats) <= set(FORMATS):
        raise ValueError(f"figure formats {formats!r}: expected png, optionally with pdf")
    out_dir.mkdir(parents=True, exist_ok=True)
    for ext, meta in (("png", None), ("pdf", {"CreationDate": None})):
        if ext not in formats:
            continue
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=DPI, metadata=meta)
        atomic_write(out_dir / f"{stem}.{ext}", buf.getvalue(), "figure")
        fig.set_layout_engine("none")
    return f"{stem}.png"


