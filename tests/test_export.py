"""Raw results travel with a report: `bench export` writes a grid's rows and histories into one parquet file,
and `bench report --from FILE` (and `bench status --from FILE`) render from it as from the store, anywhere."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, bench_inprocess, bench_subprocess
from tests.faults import invoke as faulty_invoke

RULES = ("last", "val", "oracle", "tuned")
FORMATS = ("markdown", "latex", "csv")
# every rule in every format, a metric other than accuracy, and the tuned verdicts of the incomplete search
RENDERS = [(fmt, rule) for fmt in FORMATS for rule in RULES] + [("markdown", "val --metric ece"),
                                                                ("csv", "tuned --metric nll"),
                                                                ("markdown", "tuned --accept-incomplete")]
REGISTRY = {
    "datasets": {"g": {"kind": "gauss", "params": {"d": 2, "n_train": 400, "n_test": 200, "seed": 0}}},
    "architectures": {"mlp": {"source": "native", "name": "mlp"}},
    "losses": {
        "celLoss": {"target": "losses.cross_entropy:CelLoss"},
        "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 50.0}},
    },
    "grids": {
        "s": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0, 1],
              "train": {"epochs": 2, "batch_size": 128, "val_fraction": 0.2},
              "search": {"trials": 2, "seed": 0, "space": {"train.lr": "loguniform(1e-3, 1e-1)"}}},
        "plain": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                  "train": {"epochs": 1}},
    },
}
# the console script run from a temp folder imports this checkout (and its losses), one thread each
ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
       "OMP_NUM_THREADS": "1"}


def bench(cwd: Path, *args: object):
    return bench_subprocess(*map(str, args), env=ENV, cwd=cwd)


def inproc(cwd: Path, *args: object):
    """``bench ARGS`` in this process, for the cases beside the paths the console script is run on here."""
    return bench_inprocess(*args, cwd=cwd)


def render(*args: object):
    """``bench ARGS`` in this process (the matrix of reports would take minutes as processes)."""
    from bench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def report_args(project: Path, fmt: str, rule: str) -> list[str]:
    return ["report", "--registry", project / "registry.yaml", "--format", fmt, "--select", *rule.split()]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(r) -> str:
    """The one ``error:`` line of a refused command (exit code 2, nothing else said)."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A trained search grid (one cell failed after an epoch, its checkpoint kept), what the store
    renders, and its export; the results folder is then moved away, so only the export can be read.

    The store is written and rendered in this process; `bench export`, whose file every test reads,
    runs as a user runs it."""
    import contextlib

    from bench.config.cells import expand_grid
    from bench.config.registry import load_registry

    root = tmp_path_factory.mktemp("export")
    reg = root / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    cells = expand_grid(load_registry(reg), "s", validate=False)
    failed = next(c.cell_id for c in cells if (c.loss, c.trial, c.seed) == ("milLoss", 1, 1))
    with contextlib.chdir(root):
        r = faulty_invoke(f"raise:{failed}:1", "run", "--grid", "s", "--plain", "--no-report", "--threads", "1")
    assert r.exit_code == 1 and "trained 8 (7 done, 1 failed)" in r.stdout, r.output
    # the failed cell keeps its first epoch's checkpoint, for a retry to resume from: the export must leave it
    checkpoints = list((root / "results" / "checkpoints").glob("*.pt"))
    assert [p.stem for p in checkpoints] == [failed]

    from_store = {}
    for fmt, rule in RENDERS:
        out = render(*report_args(root, fmt, rule), "--grid", "s", "--results", root / "results")
        assert out.exit_code == 0, out.output
        from_store[fmt, rule] = (out.stdout, out.stderr)
    out = render(*report_args(root, "markdown", "last"), "--grid", "s", "--results", root / "results", "--figures",
                 "--out", root / "figures-store")
    assert out.exit_code == 0, out.output
    status = inproc(root, "status", "--grid", "s")
    shown = inproc(root, "report", "--grid", "s")
    assert shown.returncode == 0, shown.stderr

    r = bench(root, "export", "--grid", "s", "--out", "s.parquet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["exported 8 cells of grid 's' (7 done, 1 failed) to s.parquet",
                                     "render them anywhere with: bench report --from s.parquet"]
    (root / "results").rename(root / "store")
    return {"root": root, "export": root / "s.parquet", "store": root / "store", "failed": failed,
            "from_store": from_store, "status": status, "report": shown}


def test_the_export_renders_the_stores_report_in_a_folder_without_results(project, tmp_path):
    elsewhere = tmp_path / "reader"
    elsewhere.mkdir()
    shutil.copy(project["root"] / "registry.yaml", elsewhere)
    shutil.copy(project["export"], elsewhere / "results-s.parquet")
    before = tree(elsewhere)
    r = bench(elsewhere, "report", "--from", "results-s.parquet")  # the export's grid: no --grid needed
    assert r.returncode == 0, r.stderr
    assert r.stdout == project["report"].stdout and "| g " in r.stdout
    assert r.stderr == project["report"].stderr
    assert tree(elsewhere) == before, "a read-only command wrote a file"

    r = inproc(elsewhere, "status", "--from", "results-s.parquet")  # the same file read again: in process
    store_lines = project["status"].stdout.splitlines()
    assert r.returncode == project["status"].returncode == 1  # the failed cell
    assert r.stdout.splitlines()[0] == store_lines[0] == (
        "grid 's': 8 cells: 7 done, 0 running, 1 failed, 0 diverged, 0 pending")
    # the failed cell's message travels; its traceback file, a log of the author's machine, does not
    failed_line = next(line for line in store_lines if line.startswith("  failed:"))
    assert " (traceback: " in failed_line
    assert failed_line.split(" (traceback: ")[0] in r.stdout.splitlines()
    assert tree(elsewhere) == before


@pytest.mark.parametrize(("fmt", "rule"), RENDERS)
def test_every_format_rule_and_metric_is_byte_identical(project, fmt, rule):
    out = render(*report_args(project["root"], fmt, rule), "--from", project["export"])
    assert out.exit_code == 0, out.output
    assert (out.stdout, out.stderr) == project["from_store"][fmt, rule]
    assert out.stdout.strip()


def test_the_figures_are_byte_identical(project, tmp_path):
    out = render(*report_args(project["root"], "markdown", "last"), "--from", project["export"], "--figures",
                 "--out", tmp_path / "figs")
    assert out.exit_code == 0, out.output
    store, export = tree(project["root"] / "figures-store" / "s"), tree(tmp_path / "figs" / "s")
    assert sum(name.endswith(".png") for name in store) >= 3
    assert {k: v for k, v in export.items() if k != "source.json"} == {k: v for k, v in store.items()
                                                                       if k != "source.json"}
    assert json.loads(export["source.json"])["source"].startswith("export:")


def test_the_export_holds_every_row_and_history_and_no_checkpoint(project):
    from bench.store.export import FORMAT, FORMAT_VERSION, ExportStore
    from bench.store.results import Store

    store, export = Store(project["store"]), ExportStore.open(project["export"])
    schema = pq.read_schema(project["export"])
    rows = pq.read_table(project["export"]).to_pandas()
    # one row per cell with the store's columns and the history; nothing else (no checkpoint)
    assert list(schema.names) == [*store.cells().columns, "history"]
    assert len(rows) == 8 and rows["cell_id"].is_unique
    failed = rows.set_index("cell_id").loc[project["failed"]]
    assert failed["status"] == "failed" and "fault injected" in failed["message"]
    per_attempt = store.history().groupby("attempt_id").size().to_dict()
    assert {a: len(h) for a, h in zip(rows["attempt_id"], rows["history"]) if len(h)} == per_attempt
    assert {len(h) for h in rows.loc[rows["status"] == "done", "history"]} == {2}
    fields = {f.name for f in schema.field("history").type.value_type}
    assert fields == set(store.history().columns) - {"cell_id", "attempt_id"}
    assert (project["store"] / "checkpoints" / f"{project['failed']}.pt").exists()
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items() if k.startswith(b"lossbench.")}
    assert meta["lossbench.format"] == FORMAT and int(meta["lossbench.version"]) == FORMAT_VERSION == 1
    assert meta["lossbench.grid"] == "s" and meta["lossbench.code_version"].startswith("lossbench ")
    assert json.loads(meta["lossbench.runs"]) == store.runs("s") and len(store.runs("s")) == 1

    # the read interface answers as the store's, shapes and types included
    pd.testing.assert_frame_equal(export.cells(), store.cells())
    for columns in (["cell_id", "status", "final_test_acc", "not_a_column"], ["status", "code_fingerprint"]):
        pd.testing.assert_frame_equal(export.cells(columns), store.cells(columns))
    pd.testing.assert_frame_equal(export.attempts(), store.attempts())
    assert export.statuses() == store.statuses()
    assert export.statuses([project["failed"]]) == {project["failed"]: "failed"}
    attempts = store.cells()["attempt_id"].tolist()
    pd.testing.assert_frame_equal(export.history(attempts), store.history(attempts))
    some = attempts[2:5]
    pd.testing.assert_frame_equal(export.history(some, ["test_acc"]), store.history(some, ["test_acc"]))
    a, b = export.history_table(some, ["val_acc", "nope"]), store.history_table(some, ["val_acc", "nope"])
    assert a.schema.remove_metadata() == b.schema.remove_metadata() and a.to_pydict() == b.to_pydict()
    assert export.history_table([], ["val_acc"]) is None and export.history(["no-such-attempt"]).empty
    assert export.runs("s") == store.runs("s") and export.runs("plain") == []
    assert export.running(export.cell_ids) == set() and export.checkpointed(export.cell_ids) == {}


def _newer(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"lossbench.version": b"2"}), path)


def _run_record_changed(path: Path) -> None:
    table = pq.read_table(path)  # a damaged footer: the metadata no longer matches its digest
    runs = table.schema.metadata[b"lossbench.runs"].replace(b'"grid": "s"', b'"grid": "t"')
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"lossbench.runs": runs}), path)


def _page_damaged(path: Path) -> None:
    data = bytearray(path.read_bytes())  # bytes inside the first column's data pages: the page checksum fails
    for i in range(200, 232):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


BAD = {
    "missing": (None, "x.parquet: no such file; pass a file that `bench export --out` wrote"),
    "folder": (lambda p: p.mkdir(), "x.parquet is not a file"),
    "text": (lambda p: p.write_text("cell_id,status\n"), "x.parquet is not a lossbench export (not a parquet file"),
    "store file": (lambda p: shutil.copy(next((p.parent / "store" / "cells").glob("*.parquet")), p),
                   "x.parquet is not a lossbench export (a parquet file without lossbench's export metadata)"),
    "newer": (_newer, "x.parquet is a lossbench export of format version 2; this lossbench reads versions up to 1: "
                      "upgrade lossbench"),
    "cut short": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                  "x.parquet is a damaged parquet file"),
    "damaged page": (_page_damaged, "x.parquet is a damaged lossbench export"),
    "damaged footer": (_run_record_changed, "x.parquet is a damaged lossbench export (its metadata does not match"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["report", "status"])
def test_a_bad_export_is_one_error_line_and_writes_nothing(project, tmp_path, case, command):
    damage, message = BAD[case]
    folder = tmp_path / "reader"
    folder.mkdir()
    shutil.copy(project["root"] / "registry.yaml", folder)
    shutil.copytree(project["store"] / "cells", folder / "store" / "cells")
    bad = folder / "x.parquet"
    if damage is not None:
        if case in ("newer", "cut short", "damaged page", "damaged footer"):
            shutil.copy(project["export"], bad)
        damage(bad)
    before = tree(folder)
    extra = ["--out", "rep", "--figures"] if command == "report" else []
    line = one_error(inproc(folder, command, "--from", "x.parquet", *extra))
    assert line.startswith(f"error: {message}"), line
    assert tree(folder) == before and not (folder / "rep").exists()


def test_the_export_names_its_grid(project, tmp_path):
    line = one_error(inproc(project["root"], "report", "--from", project["export"], "--grid", "plain"))
    assert line == (f"error: {project['export']} holds grid 's', not 'plain': pass --grid s, or leave --grid out")
    r = inproc(project["root"], "report", "--from", project["export"], "--grid", "s", "--format", "csv")
    assert r.returncode == 0 and r.stdout == project["from_store"]["csv", "last"][0]


def test_export_never_overwrites_without_force(project, tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    shutil.copy(project["root"] / "registry.yaml", root)
    shutil.copytree(project["store"], root / "results")
    (root / "s.parquet").write_bytes(b"an earlier export")
    before = tree(root)
    line = one_error(inproc(root, "export", "--grid", "s", "--out", "s.parquet"))
    assert line == "error: --out s.parquet exists; pass --force to replace it, or choose another file"
    assert tree(root) == before
    line = one_error(inproc(root, "export", "--grid", "plain", "--out", "plain.parquet"))
    assert "none of its 1 cells has a stored result" in line and tree(root) == before
    r = inproc(root, "export", "--grid", "s", "--out", "s.parquet", "--force")
    assert r.returncode == 0, r.stderr
    assert pq.read_schema(root / "s.parquet").metadata[b"lossbench.grid"] == b"s"
    assert set(tree(root)) == set(before), "only the export was replaced (no temp file left)"


def test_a_registry_that_defines_other_cells_shows_what_it_can_and_says_what_it_left_out(project, tmp_path):
    """A reader whose registry defines milLoss otherwise: its cells have other identities, so the report shows the
    exported celLoss cells, the milLoss ones as pending, and says how many exported cells it left out."""
    folder = tmp_path / "reader"
    folder.mkdir()
    other = json.loads(json.dumps(REGISTRY))
    other["losses"]["milLoss"]["params"]["lam"] = 5.0
    (folder / "registry.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    shutil.copy(project["export"], folder / "s.parquet")
    r = inproc(folder, "report", "--from", "s.parquet", "--format", "csv")
    assert r.returncode == 0, r.stderr
    got = pd.read_csv(io.StringIO(r.stdout))
    want = pd.read_csv(io.StringIO(project["from_store"]["csv", "last"][0]))
    cel = lambda df: df[(df["loss"] == "celLoss") & (df["select"] == "last")]["acc_mean"].tolist()  # noqa: E731
    assert cel(got) == cel(want) and len(cel(got)) == 1
    assert ("note: 4 of the 8 cells in s.parquet are not cells of grid 's' as registry.yaml defines it, so the "
            "report leaves them out: render it with the registry the export was made with") in r.stderr


def test_the_left_out_note_names_the_flags_an_export_was_made_with(project):
    """An export chosen with --set holds cells a reader without that flag does not show: it is told the flags."""
    from bench.store.export import ExportStore, left_out_note

    export = ExportStore.open(project["export"])
    registry = Path("registry.yaml")
    assert left_out_note(export, export.cell_ids, registry, {}) is None
    assert left_out_note(export, export.cell_ids[1:], registry, {}) == (
        f"1 of the 8 cells in {project['export']} are not cells of grid 's' as registry.yaml defines it, so the report "
        "leaves them out: render it with the registry the export was made with")
    # a reader's own choice of cells is not second-guessed
    assert left_out_note(export, export.cell_ids[1:], registry, {"filters": {"loss": ["celLoss"]}}) is None
    export.meta = {"overrides": {"epochs": 3}, "filters": {}, "flags": "--set train.epochs=3"}
    assert left_out_note(export, [], registry, {}) == (
        f"8 of the 8 cells in {project['export']} are not among the cells shown, so the report leaves them out: the "
        "export was made with --set train.epochs=3; pass them too")
    assert "registry the export was made with" in left_out_note(export, [], registry, {"overrides": {"epochs": 3}})
