"""Fingerprints of the code a cell ran, so that editing a loss or a model does not silently reuse old numbers.

A cell's identity is its declared configuration; the *code* behind a ``target`` can change while
the configuration stays the same. Each cell row stores ``code_fingerprint``: a hash of the source
of its loss class (with the bases defined beside it) and of the model builders it used (the
source files of ``bench.models.zoo`` for native models and CIFAR stems, plus the library version for
timm and torchvision). A finished cell whose stored fingerprint differs from the current one is
*stale*: ``bench status`` counts it, ``bench run`` says so and ``--rerun-stale`` retrains it.

The sources are found and parsed without importing them (``importlib.util.find_spec`` on the
top-level package, then the file system), so ``status`` needs no torch import. ``code_version``
(package version and git commit) is stored as provenance only: a commit that leaves a loss alone
does not make its cells stale.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FINGERPRINT_LENGTH = 12


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:FINGERPRINT_LENGTH]


def module_file(module: str, import_paths: Sequence[str] = ()) -> Path | None:
    """The source file of ``module`` (``a.b.c``), found without importing it (None if not found)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None and import_paths:
        spec = importlib.machinery.PathFinder.find_spec(top, list(import_paths))
    for part in rest:
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(part, list(spec.submodule_search_locations))
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _class_source(text: str, name: str) -> str | None:
    """Source of the top-level class or function ``name`` and of the bases it has in the same module."""
    tree = ast.parse(text)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    if name not in defs:
        return None
    parts, todo, seen = [], [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in defs:
            continue
        seen.add(current)
        node = defs[current]
        parts.append(ast.get_source_segment(text, node) or "")
        if isinstance(node, ast.ClassDef):
            todo.extend(b.id for b in node.bases if isinstance(b, ast.Name))
    return "\n".join(parts)


@functools.lru_cache(maxsize=256)
def _target_fingerprint(target: str, import_paths: tuple[str, ...]) -> str:
    module, _, attr = target.partition(":")
    path = module_file(module, import_paths)
    if path is None:
        return "unknown"
    try:
        text = path.read_text(encoding="utf-8")
        source = _class_source(text, attr)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return "unknown"
    return _digest(target, source if source is not None else text)


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# The files of the model zoo, in the order their texts are hashed.
_MODEL_FILES = ("zoo.py", "cifar.py")

# Model fingerprints that the same model code had in lossbench 0.1.0, when the zoo was two modules
# directly in bench/ and so hashed with other import lines: {today's fingerprint: 0.1.0's}. A store
# written by 0.1.0 stays fresh while the model code is unchanged; any edit to it leaves this table
# behind, and its cells become stale as they should.
LEGACY_MODEL_FINGERPRINTS: dict[str, str] = {
    "8ec6a55aa78d": "077e3eacd892",  # native
    "32733dbf9b07": "41cf77759c23",  # timm 1.0.31
    "d2a481bcac6f": "c2626383c9ca",  # torchvision 0.29.1
}


@functools.lru_cache(maxsize=16)
def _model_fingerprint(source: str) -> str:
    here = Path(__file__).resolve().parents[1] / "models"
    texts = [(here / name).read_text(encoding="utf-8") for name in _MODEL_FILES]
    library = _library_version(source) if source in ("timm", "torchvision") else ""
    return _digest(source, library, *texts)


def _fingerprints(config: dict[str, Any], import_paths: Sequence[str]) -> set[str]:
    """The fingerprint of a cell's code today, and the one the same code had in an older version."""
    loss = _target_fingerprint(config["loss"]["target"], tuple(import_paths))
    model = _model_fingerprint(config["architecture"]["source"])
    out = {_digest(loss, model)}
    if model in LEGACY_MODEL_FINGERPRINTS:
        out.add(_digest(loss, LEGACY_MODEL_FINGERPRINTS[model]))
    return out


def code_fingerprint(config: dict[str, Any], import_paths: Sequence[str] = ()) -> str:
    """The fingerprint of the loss and model code a cell with this ``config`` runs."""
    return _digest(_target_fingerprint(config["loss"]["target"], tuple(import_paths)),
                   _model_fingerprint(config["architecture"]["source"]))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``lossbench <version>`` and, in a git checkout, the commit (``+dirty`` with uncommitted changes)."""
    version = f"lossbench {_library_version('lossbench')}"
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return version
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} git {commit}{'+dirty' if dirty else ''}" if commit else version


def stale_cells(cells: Sequence[Any], stored: dict[str, str], import_paths: Sequence[str] = ()) -> list[str]:
    """Ids of ``cells`` whose stored fingerprint (``stored``: cell_id -> fingerprint) differs from the
    current code's. Cells stored without a fingerprint (older stores) are not judged."""
    out = []
    for cell in cells:
        old = stored.get(cell.cell_id)
        if old and old not in _fingerprints(cell.config, import_paths):
            out.append(cell.cell_id)
    return out


__all__ = ["code_fingerprint", "code_version", "module_file", "stale_cells"]

