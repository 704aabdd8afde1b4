"""A results folder written by an older lossbench stays readable: same cells, none stale, same numbers."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "store-0.1.0"
GRIDS = ("plain", "tuned", "noisy")


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> Path:
    # A copy: reading must not need to write, but a test of `bench run` could.
    d = tmp_path_factory.mktemp("old") / "store"
    shutil.copytree(FIXTURE, d)
    return d


@pytest.fixture(scope="module")
def old_store_with_picks(tmp_path_factory) -> Path:
    """A copy whose cell rows carry the selection rules' picks, as this version writes them from each attempt's
    history: its reports must read no history for accuracy, and show the same numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.report.selection import history_picks
    from bench.store.results import Store

    d = tmp_path_factory.mktemp("picks") / "store"
    shutil.copytree(FIXTURE, d)
    store = Store(d / "results")
    for path in sorted((d / "results" / "cells").glob("*.parquet")):
        frame = pd.read_parquet(path)
        picks = pd.DataFrame([history_picks(pa.Table.from_pandas(store.history([a]), preserve_index=False))
                              for a in frame["attempt_id"]])
        pq.write_table(pa.Table.from_pandas(pd.concat([frame, picks], axis=1), preserve_index=False), path)
    return d


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("grid", GRIDS)
def test_status_finds_every_cell_and_none_stale(old_store, grid):
    before = _tree(old_store / "results")
    out = _bench(old_store, "status", "--grid", grid, "--results", "results")
    assert out.returncode == 0, out.stderr
    expected = [line for line in (FIXTURE / "expected" / "status.txt").read_text().splitlines()
                if line.startswith(f"grid '{grid}'")]
    assert expected and out.stdout.splitlines()[0] == expected[0]
    assert "stale" not in out.stdout
    assert _tree(old_store / "results") == before, "a read-only command changed the store"


def _numbers(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str).fillna("")


@pytest.mark.parametrize("picks", [False, True], ids=["as-written", "rows-with-picks"])
def test_reports_show_the_same_numbers(old_store, old_store_with_picks, monkeypatch, picks):
    """Every report the older version rendered, rendered again from its store (in process: 18 reports); and from
    a copy whose rows store the rules' picks, where a report of accuracy reads no history."""
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.store.results import Store

    monkeypatch.chdir(old_store_with_picks if picks else old_store)
    for csv in sorted(p.name for p in (FIXTURE / "expected").glob("*.csv")):
        grid, select, metric = csv.removesuffix(".csv").split("-")
        with monkeypatch.context() as m:
            if picks and metric == "acc":
                m.setattr(Store, "history_table", lambda *a, **k: pytest.fail(f"{csv}: read the history"))
            out = CliRunner().invoke(app, ["report", "--grid", grid, "--results", "results", "--select", select,
                                           "--metric", metric, "--format", "csv"], catch_exceptions=False)
        assert out.exit_code == 0, (csv, out.output)
        want = _numbers((FIXTURE / "expected" / csv).read_text())
        got = _numbers(out.stdout)
        # New columns may be added; every old column keeps its values.
        missing = [c for c in want.columns if c not in got.columns]
        assert not missing, f"{csv}: columns lost: {missing}"
        pd.testing.assert_frame_equal(got[list(want.columns)].reset_index(drop=True), want.reset_index(drop=True),
                                      obj=csv)


def test_run_trains_nothing(old_store, monkeypatch):
    """`bench run` finds every cell finished (in process: one run per grid)."""
    from typer.testing import CliRunner

    from bench.cli import app

    monkeypatch.chdir(old_store)
    for grid in GRIDS:
        out = CliRunner().invoke(app, ["run", "--grid", grid, "--results", "results", "--no-report"],
                                 catch_exceptions=False)
        assert out.exit_code == 0, (grid, out.output)
        assert "trained 0" in out.output, (grid, out.output)
