"""``bench leaderboard`` end to end, as a user runs it: a tiny suite trained by the console script, the
leaderboard's numbers against the store read independently, what it says of missing and incomplete
results, its files, and its bad input."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import bench_inprocess, bench_subprocess

SUITE = {
    "datasets": {"g": {"kind": "gauss", "params": {"d": 2, "n_train": 1000, "n_test": 500}}},
    "architectures": {"mlp": {"source": "native", "name": "mlp"}},
    "losses": {
        "celLoss": {"target": "losses.cross_entropy:CelLoss"},
        "lsr": {"target": "losses.cross_entropy:CelLossLSR", "params": {"epsilon": 0.1},
                "search": {"epsilon": "uniform(0.0, 0.3)"}},
        "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 5.0},
                    "search": {"lam": "loguniform(0.5, 50)"}},
    },
    "grids": {"plain": {"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                        "train": {"epochs": 1}}},
    "suites": {"s": {
        "datasets": ["g"], "architectures": ["mlp"],
        "regimes": {"clean": {}, "sym-30": {"noise": "symmetric", "noise_rate": 0.3}},
        "losses": ["celLoss", "lsr", "milLoss"], "seeds": [0, 1],
        "train": {"epochs": 2, "batch_size": 256, "lr": 0.05, "val_fraction": 0.1},
        "search": {"trials": 3, "seed": 0, "space": {"train.lr": "loguniform(1e-2, 3e-1)"}}}},
}


def bench(folder: Path, *args: str):
    return bench_subprocess(*args, "--threads", "1", cwd=folder) if args[0] == "run" else \
        bench_subprocess(*args, cwd=folder)


def inproc(folder: Path, *args: str):
    """The same command in this process: for the repeated checks of one path (bad input, read-only), so only
    the main paths pay a new interpreter."""
    return bench_inprocess(*args, cwd=folder)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The suite trained in two steps: first only some trials of two losses (the baseline absent), the
    leaderboard rendered then; then the rest."""
    folder = tmp_path_factory.mktemp("suite")
    (folder / "registry.yaml").write_text(yaml.safe_dump(SUITE, sort_keys=False))
    r = bench(folder, "run", "--suite", "s", "--filter", "loss=lsr,milLoss", "--filter", "trial=0,1", "--no-report")
    assert r.returncode == 0, r.stderr
    partial = bench(folder, "leaderboard", "--suite", "s", "--reps", "500")
    r = bench(folder, "run", "--suite", "s", "--no-report")
    assert r.returncode == 0, r.stderr
    return folder, partial


@pytest.fixture(scope="module")
def board_csv(suite) -> list[dict]:
    """The leaderboard's CSV, as the console script prints it."""
    return leaderboard_csv(suite[0])


def leaderboard_csv(folder: Path, *extra: str) -> list[dict]:
    r = bench(folder, "leaderboard", "--suite", "s", "--format", "csv", "--reps", "500", *extra)
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def independent_tuned(folder: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """Per (regime label, loss): the tuned trial and its mean test accuracy (points), from the parquet files."""
    cells = pd.concat([pd.read_parquet(p) for p in (folder / "results" / "cells").glob("*.parquet")])
    hist = pd.concat([pd.read_parquet(p) for p in (folder / "results" / "history").glob("*.parquet")])
    cells = cells[cells["status"] == "done"]
    out: dict[tuple[str, str], list] = {}
    for row in cells.to_dict("records"):
        h = hist[hist["attempt_id"] == row["attempt_id"]].sort_values("epoch")
        val = h["val_acc"].to_numpy()
        at = int(np.flatnonzero(val == val.max())[0])  # the earliest best validation epoch
        task = "clean" if row["regime.noise_rate"] == 0 else "sym-30"
        out.setdefault((task, row["loss"]), []).append((int(row["trial"]), val[at], h["test_acc"].to_numpy()[at]))
    tuned = {}
    for key, rows in out.items():
        by_trial: dict[int, list] = {}
        for trial, v, t in rows:
            by_trial.setdefault(trial, []).append((v, t))
        best = max(sorted(by_trial), key=lambda tr: (np.mean([v for v, _ in by_trial[tr]]), -tr))
        tuned[key] = (best, 100 * float(np.mean([t for _, t in by_trial[best]])))
    return tuned


def test_the_leaderboard_numbers_are_the_stores(suite, board_csv):
    folder, _ = suite
    rows = board_csv
    per_task = {(r["task"].split("/")[-1], r["loss"]): r for r in rows if r["task"] != "all"}
    truth = independent_tuned(folder)
    assert set(per_task) == set(truth) and len(truth) == 6
    for key, (trial, mean) in truth.items():
        assert int(per_task[key]["trial"]) == trial, key
        assert math.isclose(float(per_task[key]["mean"]), mean, abs_tol=1e-9), key
    overall = {r["loss"]: r for r in rows if r["task"] == "all"}
    assert overall["celLoss"]["verdict"] == "baseline"
    for loss in ("lsr", "milLoss"):
        r = overall[loss]
        assert r["verdict"] in ("better", "worse", "equivalent", "undecided")
        p = [float(r[k]) for k in ("p_worse", "p_equivalent", "p_better")]
        assert math.isclose(sum(p), 1.0, abs_tol=1e-9)
        lo, point, hi = float(r["iqm_low"]), float(r["iqm_delta"]), float(r["iqm_high"])
        assert lo <= point <= hi
        assert 0.0 <= float(r["p_improvement_low"]) <= float(r["p_improvement"]) <= float(r["p_improvement_high"]) <= 1
        # a loss's IQM difference is its own against the baseline's per-task mean: two tasks x two seeds
        deltas = [float(per_task[(t, loss)]["mean"]) - float(per_task[(t, "celLoss")]["mean"]) for t in ("clean", "sym-30")]
        assert min(deltas) - 50 <= point <= max(deltas) + 50


def test_the_markdown_names_metric_rule_and_rope_and_the_partial_run_said_what_was_missing(suite):
    folder, partial = suite
    r = bench(folder, "leaderboard", "--suite", "s", "--reps", "500", "--rope", "1")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "test accuracy" in text and "tuned: per task" in text and "ROPE ±1 accuracy points" in text
    assert "| celLoss (baseline) |" in text and "## g/clean" in text and "## g/sym-30" in text
    assert "read the diagram as ranks only" in text  # two tasks: no pair can differ
    # before the baseline had trained, and with a trial of the others missing
    assert partial.returncode == 0, partial.stderr
    assert "the baseline celLoss has no trial finished on every seed" in partial.stdout
    assert "2/3 (incomplete: 2)" in partial.stdout and "0/3 (incomplete: 0, 1, 2)" in partial.stdout
    assert "no data" in partial.stdout
    assert "finished" in partial.stderr  # the note: how many of the suite's cells are finished


def test_out_writes_the_tables_and_figures_and_nothing_else_writes(suite, tmp_path):
    folder, _ = suite
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    r = inproc(folder, "leaderboard", "--suite", "s", "--reps", "500", "--format", "latex")
    assert r.returncode == 0 and r.stdout.startswith("% lossbench leaderboard")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # read-only without --out
    out = tmp_path / "lb"
    r = inproc(folder, "leaderboard", "--suite", "s", "--reps", "500", "--out", str(out))
    assert r.returncode == 0, r.stderr
    files = {p.name for p in (out / "s").iterdir()}
    assert {"leaderboard.md", "leaderboard.csv", "source.json", "profiles.png", "profiles.pdf",
            "critical-difference.png", "budget-g-clean.png", "budget-g-sym-30.pdf"} <= files
    assert json.loads((out / "s" / "source.json").read_text())["grid"] == "s"
    assert all((out / "s" / f).stat().st_size > 1000 for f in files if f.endswith((".png", ".pdf")))


@pytest.mark.parametrize("args, message", [
    (["--suite", "nope"], "unknown suite 'nope'"),
    (["--suite", "s", "--rope", "0"], "--rope 0: the region of practical equivalence must be > 0"),
    (["--suite", "s", "--rope", "-1"], "must be > 0"),
    (["--suite", "s", "--metric", "bogus"], "--metric 'bogus': not a report metric"),
    (["--suite", "s", "--baseline", "nope"], "--baseline 'nope': not a loss of 's'"),
    (["--suite", "s", "--losses", "nope"], "--losses nope: unknown loss"),
    (["--suite", "s", "--format", "pdf"], "--format 'pdf': expected one of markdown, latex, csv, html"),
    (["--grid", "plain"], "has no search: block"),
    (["--suite", "s", "--trials", "4"], "--trials 4: 's' searches 3 trials per loss; give 1 to 3"),
])
def test_bad_input_is_one_line_and_writes_nothing(suite, tmp_path, args, message):
    folder, _ = suite
    out = tmp_path / "never"
    r = inproc(folder, "leaderboard", *args, "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert not out.exists()


def test_the_site_shows_the_leaderboard_first_and_its_numbers_in_a_browser(suite, board_csv, tmp_path):
    from tests.test_site import TABLES_JS, browser

    folder, _ = suite
    out = tmp_path / "site"
    r = bench(folder, "site", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "leaderboard-s" in r.stdout.split(":")[-1].split(",")[0]
    overall = {row["loss"]: row for row in board_csv if row["task"] == "all"}
    driver = browser()
    try:
        driver.get((out / "index.html").as_uri())
        links = [a.get_attribute("textContent") for a in driver.find_elements("css selector", "main a")]
        assert links[0] == "Leaderboard s" and "Grid s" in links
        driver.get((out / "leaderboard-s.html").as_uri())
        first = driver.execute_script(TABLES_JS)[0]
        heads = [h["text"] for h in first["heads"]]
        iqm = heads.index("IQM Δ vs celLoss [95% CI]")
        shown = {row[0]["key"]: row for row in first["rows"]}
        assert set(shown) == set(overall)
        for loss in ("lsr", "milLoss"):  # the page's sort key is the CSV's unrounded IQM
            assert math.isclose(float(shown[loss][iqm]["key"]), float(overall[loss]["iqm_delta"]), rel_tol=1e-9)
        driver.find_elements("css selector", "thead th button")[iqm].click()
        keys = [float(row[iqm]["key"]) for row in driver.execute_script(TABLES_JS)[0]["rows"]]
        assert keys == sorted(keys) or keys == sorted(keys, reverse=True)
        images = driver.find_elements("css selector", "figure img")
        assert len(images) >= 4 and all(driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images)
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


def test_trials_compares_every_loss_on_an_equal_smaller_budget(suite):
    folder, _ = suite
    r = inproc(folder, "leaderboard", "--suite", "s", "--reps", "500", "--trials", "2", "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = [row for row in csv.DictReader(io.StringIO(r.stdout)) if row["task"] != "all"]
    assert rows and all(int(row["trial"]) in (0, 1) and row["complete_trials"] == "2" for row in rows)
    md = inproc(folder, "leaderboard", "--suite", "s", "--reps", "500", "--trials", "2").stdout
    assert "an equal budget of the first 2 of the search's 3 trials per loss" in md


def test_a_copied_export_renders_into_the_folder_it_rendered_before(suite, tmp_path):
    """An export is one source wherever it lies: a leaderboard folder can carry the export it was rendered from."""
    import shutil

    folder, _ = suite
    first = tmp_path / "s.parquet"
    assert inproc(folder, "export", "--suite", "s", "--out", str(first)).returncode == 0
    out = tmp_path / "lb"
    r = inproc(folder, "leaderboard", "--from", str(first), "--reps", "500", "--out", str(out))
    assert r.returncode == 0, r.stderr
    inside = out / "s" / "s.parquet"
    shutil.copy(first, inside)
    again = inproc(folder, "leaderboard", "--from", str(inside), "--reps", "500", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout == r.stdout
    # another export of the same results is another source: the folder is not overwritten by it
    other = tmp_path / "other.parquet"
    assert inproc(folder, "export", "--suite", "s", "--out", str(other)).returncode == 0
    refused = inproc(folder, "leaderboard", "--from", str(other), "--reps", "500", "--out", str(out))
    assert refused.returncode == 2 and "holds a report rendered from other results" in refused.stderr
