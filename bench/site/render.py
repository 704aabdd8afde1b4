"""The site on disk: pages rendered from the Jinja2 templates beside this module, their figures copied beside
them, and a marker that makes a later run free to replace what this one wrote (and nothing else).

``out/index.html`` lists every page; ``out/<slug>.html`` is a page, ``out/<slug>/`` its figures. Everything
is relative and inline (style sheet, the few lines of table sorting): the folder opens from ``file://``,
offline, and can be published as it is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError
from bench.fileio import StoreWriteError, atomic_write
from bench.site.model import KINDS, Figure, Page

MARKER = ".lossbench-site"  # JSON: the files the last run wrote, which the next one may replace


def previous_files(out_dir: Path) -> list[str]:
    """The files a previous site in ``out_dir`` wrote (relative paths); refuse a file, or a non-empty folder that
    holds no site: nothing of a user's is ever overwritten or removed."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BenchError(f"--out {out_dir} is a file; give a folder (a new one, or one `bench site` wrote before)")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return []
    marker = out_dir / MARKER
    if not marker.is_file():
        raise BenchError(f"--out {out_dir} is a non-empty folder that `bench site` did not write (it has no {MARKER}); "
                         f"give a new or empty folder")
    try:
        files = json.loads(marker.read_text())["files"]
        return [f for f in files if isinstance(f, str)]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # a damaged marker: the site is rewritten over, nothing removed


def write_site(out_dir: Path, pages: Sequence[Page], title: str) -> list[Path]:
    """Write ``pages`` and their index into ``out_dir``, replacing the site a previous run wrote there; returns the
    files written. The index lists the leaderboards first, then the grids, each in the order given. Refused (one
    error line, nothing written): a file, a non-empty folder that holds no site, two pages with one slug, a
    figure whose file is missing."""
    out_dir = Path(out_dir)
    old = previous_files(out_dir)
    files = _render(pages, title)
    root = out_dir.resolve()
    try:
        # the marker first, naming old and new: an interrupted write leaves a folder the next run can clean
        _write(out_dir / MARKER, _marker(sorted(set(old) | set(files))))
        for rel in sorted(set(old) - set(files)):
            _remove(root, rel)
        for rel, data in files.items():
            _write(out_dir / rel, data() if callable(data) else data)
        _write(out_dir / MARKER, _marker(sorted(files)))
    except OSError as exc:
        raise BenchError(f"--out {out_dir}: cannot write ({exc.strerror or exc}); choose a writable folder") from None
    return [out_dir / rel for rel in files]


def _render(pages: Sequence[Page], title: str) -> dict[str, object]:
    """Every file of the site: relative path -> its bytes (or a function reading a figure's)."""
    slugs = [p.slug for p in pages]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        raise BenchError(f"two pages named {twice[0]!r}; give each page its own slug")
    env = environment()
    groups = [(heading, [p for p in pages if p.kind == kind]) for kind, heading in KINDS.items()]
    files: dict[str, object] = {"index.html": env.get_template("index.html.j2").render(
        site_title=title, groups=[(heading, group) for heading, group in groups if group]).encode()}
    ordered = [p for _, group in groups for p in group]
    for page in ordered:
        hrefs = _figure_files(page)
        for fig, href in hrefs.items():
            files[href] = lambda src=fig.source: Path(src).read_bytes()
        files[f"{page.slug}.html"] = env.get_template("page.html.j2").render(
            site_title=title, page=page, hrefs=hrefs).encode()
    return files


def _figure_files(page: Page) -> dict[Figure, str]:
    """Each figure of ``page`` -> where its copy goes, ``<slug>/<name>``, names made unique within the page."""
    from bench.report.figures.files import safe_name, unique_name

    used: set[str] = set()
    out: dict[Figure, str] = {}
    for section in page.sections:
        for fig in section.figures:
            if fig in out:
                continue
            src = Path(fig.source)
            if not src.is_file():
                raise BenchError(f"page {page.slug!r}: figure {src} does not exist; draw it before writing the site")
            out[fig] = f"{page.slug}/{unique_name(safe_name(src.stem), used)}{src.suffix.lower()}"
    return out


def environment():
    """The templates' environment: HTML-escaped, strict about undefined names."""
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("bench.site", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def _marker(files: list[str]) -> bytes:
    return (json.dumps({"written_by": "bench site", "files": files}, indent=1) + "\n").encode()


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data, "site")
    except StoreWriteError as exc:
        raise BenchError(f"cannot write {path} ({exc.reason}); choose a writable --out folder") from None


def _remove(root: Path, rel: str) -> None:
    """Remove a file a previous site wrote (only inside ``root``), and its folder once empty."""
    path = (root / rel).resolve()
    if root not in path.parents or not path.is_file():
        return
    path.unlink()
    parent = path.parent
    if parent != root and not any(parent.iterdir()):
        shutil.rmtree(parent, ignore_errors=True)
