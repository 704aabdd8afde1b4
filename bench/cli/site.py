"""``bench site``: parse the flags, build a page per grid of the store, write the static site."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.main import DataRootReadOpt, FromOpt, RegistryOpt, ResultsOpt, app, fail, gc_paused, say
from bench.errors import BenchError


@app.command()
@gc_paused
def site(
    out: Path = typer.Option(..., "--out", help="The folder to write: a new or empty one, or one `bench site` wrote before (its pages are replaced)."),
    registry: Path = RegistryOpt,
    results: Path = ResultsOpt,
    from_: Optional[Path] = FromOpt,
    grids: list[str] = typer.Option([], "--grid", "-g", help="Only these grids (repeat the flag), in this order; default: every grid of the registry with cells in the store."),
    title: str = typer.Option("lossbench results", "--title", help="The site's title, on every page."),
    data_root: Optional[Path] = DataRootReadOpt,
    trials: Optional[int] = typer.Option(None, "--trials", help="Each suite's leaderboard on its losses' first N trials (as bench leaderboard --trials)."),
) -> None:
    """A static results page: index.html, a leaderboard page per suite with finished cells, and a page per grid
    (a suite's too) with cells in the store (its tables under every
    selection rule, paired differences, chosen trials, figures, provenance), under the settings of each grid's last
    run, as bench report shows them. Opens from file://, offline. A store with no cells of any grid is an error
    (exit 2): there is nothing to publish."""
    try:
        import tempfile

        from bench.config.registry import load_registry
        from bench.site.grids import grid_pages
        from bench.site.leaderboard import leaderboard_pages
        from bench.site.render import previous_files, write_site

        previous_files(out)  # a refused --out before anything is read or drawn
        reg = load_registry(registry)
        if from_ is None and not results.is_dir():
            raise BenchError(f"--results {results}: no such folder; pass the folder `bench run` wrote to")
        from bench.store.export import open_source

        source = open_source(results, from_)  # an export is read and checked here, before anything is drawn
        with tempfile.TemporaryDirectory(prefix="bench-site-") as drawn:  # figures, copied into --out with the pages
            store = source
            boards = leaderboard_pages(reg, store, Path(drawn), [g for g in grids if g in reg.suites], data_root,
                                       trials) \
                if not grids or any(g in reg.suites for g in grids) else []
            pages = boards + grid_pages(reg, store, Path(drawn), grids, data_root)
            write_site(out, pages, title)
    except BenchError as err:
        fail(err)
    say(f"wrote {out / 'index.html'}: {len(pages)} page{'s' * (len(pages) != 1)} ({', '.join(p.slug for p in pages)})")
