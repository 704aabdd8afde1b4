"""Fingerprints of the code a cell ran, so that editing a loss or a model does not silently reuse old numbers.

A cell's identity is its declared configuration; the *code* behind a ``target`` can change while
the configuration stays the same. Each cell row stores ``code_fingerprint``: a hash of the source
of its loss class (with the bases defined beside it) and of the code that builds its model. That
code is found from the model's builder, not from a list of file names: the module that holds the
builder (:data:`BUILDER_MODULE` for the ``native``, ``timm`` and ``torchvision`` sources, the
target's own module for ``source: target``) and, recursively, every module of the same package it
imports (so the native zoo brings in the CIFAR nets it builds), plus the library version for timm
and torchvision. A finished cell whose stored fingerprint differs from the current one is *stale*:
``bench status`` counts it, ``bench run`` says so and ``--rerun-stale`` retrains it.

The sources are found and parsed without importing them (``importlib.util.find_spec`` on the
top-level package, then the file system), so ``status`` needs no torch import. A file's text is
reused only while its path, modification time and size are unchanged, so a long-lived process
(a notebook, a worker) sees an edit at once. ``code_version`` (package version and git commit) is
stored as provenance only: a commit that leaves a loss alone does not make its cells stale.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import importlib.machinery
import importlib.metadata
import importlib.util
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.store.status import Status

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


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    """(path, mtime_ns, size): what a cached text of ``path`` is valid for (None if unreadable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=256)
def _read_at(key: tuple[str, int, int]) -> str:
    # keyed on (path, mtime_ns, size): an edited file has a new key, so its new text is read
    return Path(key[0]).read_text(encoding="utf-8")


def _source_text(path: Path) -> str | None:
    """The text of ``path`` as it is now (None if it cannot be read)."""
    key = _stat_key(path)
    if key is None:
        return None
    try:
        return _read_at(key)
    except (OSError, UnicodeDecodeError):
        return None


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


def _target_fingerprint(target: str, import_paths: tuple[str, ...]) -> str:
    """A loss target's class (with its bases beside it), or its whole module when the name is not a top-level def."""
    module, _, attr = target.partition(":")
    path = module_file(module, import_paths)
    text = _source_text(path) if path is not None else None
    if text is None:
        return "unknown"
    try:
        source = _class_source(text, attr)
    except SyntaxError:
        return "unknown"
    return _digest(target, source if source is not None else text)


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# The module that holds the builders of the native, timm and torchvision sources (bench.models.zoo.SOURCES).
BUILDER_MODULE = "bench.models.zoo"

# Model fingerprints that the same model code had in earlier versions: {today's fingerprint: the
# earlier ones}. A store written by an earlier version stays fresh while the models it built are
# unchanged; any edit to the model code leaves this table behind, and its cells become stale as they
# should. Each row lists, newest first:
# * the fingerprint before ``source: target`` was added to bench/models/zoo.py (the zoo's text changed,
#   the native, timm and torchvision models it builds did not);
# * lossbench 0.1.0's, when the zoo was two modules directly in bench/ and so hashed with other import
#   lines.
# (The builder's module and the package modules it imports are bench/models/zoo.py then
# bench/models/cifar.py, hashed in that order: the texts and order the file-name list used to give, so
# finding them from the builder changed no value here.)
LEGACY_MODEL_FINGERPRINTS: dict[str, tuple[str, ...]] = {
    "e54a3c8d9c80": ("8ec6a55aa78d", "077e3eacd892"),  # native
    "ce3f7afecd80": ("32733dbf9b07", "41cf77759c23"),  # timm 1.0.31
    "3c350970c599": ("d2a481bcac6f", "c2626383c9ca"),  # torchvision 0.29.1
}


@functools.lru_cache(maxsize=256)
def _imports_at(key: tuple[str, int, int], module: str) -> tuple[str, ...]:
    """The names ``module`` (its file's stat key: see ``_read_at``) imports; () if it cannot be parsed."""
    try:
        return tuple(_imported_modules(ast.parse(_read_at(key)), module))
    except (OSError, UnicodeDecodeError, SyntaxError):
        return ()


def _imported_modules(tree: ast.Module, module: str) -> list[str]:
    """Names ``module`` imports anywhere in its text (a builder may import inside a function), in
    source order; ``from p import x`` gives both ``p`` and ``p.x`` (x may be a submodule)."""
    nodes = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))),
                   key=lambda n: (n.lineno, n.col_offset))
    out: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
            continue
        name = node.module or ""
        if node.level:  # relative: against this module's package
            parts = module.split(".")[: -node.level]
            name = ".".join(parts + ([name] if name else []))
        out += [name] + [f"{name}.{a.name}" for a in node.names]
    return [n for n in dict.fromkeys(out) if n]


def _code_files(module: str, import_paths: Sequence[str]) -> list[Path] | None:
    """The source file of ``module`` and, depth first in import order, of every module it imports
    from its own folder or below (the rest of its package; never an installed library). None when
    ``module`` itself is not found."""
    root = module_file(module, import_paths)
    if root is None:
        return None
    home = root.parent
    files: list[Path] = []
    todo = [(module, root)]
    while todo:
        name, path = todo.pop()
        if path in files:
            continue
        files.append(path)
        key = _stat_key(path)
        found = []
        for imported in _imports_at(key, name) if key is not None else ():
            sub = module_file(imported, import_paths)
            if sub is not None and sub not in files and sub.is_relative_to(home) and not _installed(sub, home):
                found.append((imported, sub))
        todo += reversed(found)  # popped in import order
    return files


def _installed(path: Path, home: Path) -> bool:
    """A file of an installed library that happens to sit below ``home`` (a virtual environment in the project)."""
    return any(part in ("site-packages", "dist-packages") for part in path.relative_to(home).parts)


def _model_fingerprint(architecture: dict[str, Any], import_paths: Sequence[str] = ()) -> str:
    """The code that builds a cell's model: its builder's module and the modules of its package that it
    imports (see the module docstring), plus the library's version for timm and torchvision."""
    source = architecture["source"]
    if source == "target":
        module = architecture["name"].partition(":")[0]
        files = _code_files(module, import_paths)
        texts = [_source_text(f) for f in files] if files is not None else [None]
        if any(t is None for t in texts):
            return "unknown"
        return _digest(source, architecture["name"], *texts)  # type: ignore[arg-type]
    files = _code_files(BUILDER_MODULE, ()) or []
    texts = [_source_text(f) or "" for f in files]
    library = _library_version(source) if source in ("timm", "torchvision") else ""
    return _digest(source, library, *texts)


def _fingerprints(config: dict[str, Any], import_paths: Sequence[str], memo: dict[str, str]) -> set[str]:
    """The fingerprint of a cell's code today, and the one the same code had in an older version.
    ``memo`` keeps each part for one pass over many cells (the files are read once per pass)."""
    target, arch = config["loss"]["target"], config["architecture"]
    arch_key = f"model {arch['source']} {arch['name']}"
    if target not in memo:
        memo[target] = _target_fingerprint(target, tuple(import_paths))
    if arch_key not in memo:
        memo[arch_key] = _model_fingerprint(arch, import_paths)
    loss, model = memo[target], memo[arch_key]
    return {_digest(loss, m) for m in (model, *LEGACY_MODEL_FINGERPRINTS.get(model, ()))}


def code_fingerprint(config: dict[str, Any], import_paths: Sequence[str] = ()) -> str:
    """The fingerprint of the loss and model code a cell with this ``config`` runs."""
    return _digest(_target_fingerprint(config["loss"]["target"], tuple(import_paths)),
                   _model_fingerprint(config["architecture"], import_paths))


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
    out, memo = [], {}
    for cell in cells:
        old = stored.get(cell.cell_id)
        if old and old not in _fingerprints(cell.config, import_paths, memo):
            out.append(cell.cell_id)
    return out


def stale_finished(cells: Sequence[Any], store: Any, import_paths: tuple[str, ...], rows: Any = None) -> set[str]:
    """Finished cells of ``cells`` whose loss or model code changed since they ran (``rows``: the store's latest
    cell rows with ``cell_id``, ``status`` and ``code_fingerprint``, when the caller has read them)."""
    df = store.cells(["cell_id", "status", "code_fingerprint"]) if rows is None else rows
    if df.empty or "code_fingerprint" not in df:
        return set()
    done = df[df["status"] == Status.DONE]
    prints = {c: f for c, f in zip(done["cell_id"].tolist(), done["code_fingerprint"].tolist()) if isinstance(f, str)}
    return set(stale_cells([c for c in cells if c.cell_id in prints], prints, import_paths))


__all__ = ["stale_finished", "code_fingerprint", "code_version", "module_file", "stale_cells"]

