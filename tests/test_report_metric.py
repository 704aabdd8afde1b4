"""``bench report --metric``: values, lowest-is-bold and paired differences computed by hand for ECE and NLL under
``last`` and ``val``; captions in every format; the CSV's metric column; cells that lack the metric; bad input."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
import yaml

from bench.config.cells import expand_grid
from bench.errors import BenchError
from bench.train.cell import failed_outcome
from bench.config.registry import parse_registry
from bench.report.collect import REPORT_COLUMNS, collect_selected
from bench.report.content import comparison_rows
from bench.report.render import render
from bench.metrics.table import METRICS
from bench.store.results import Store
from tests.conftest import gauss_registry
from tests.test_first_hour import bench
from tests.test_report import section, table_rows

T_975_DF1 = 12.706204736  # the 97.5% quantile of Student's t with 1 degree of freedom (two seeds: one)

# (loss, seed) -> per epoch (val_acc, test_acc, test_loss, test_ece); as tests/test_selection.py the val epochs are
# celLoss: 2, 1; milLoss: 2, 3 (1-based), the last is 3
HISTORIES = {
    ("celLoss", 0): [(0.50, 0.60, 0.90, 0.1200), (0.80, 0.70, 0.60, 0.0500), (0.80, 0.75, 0.70, 0.0800)],
    ("celLoss", 1): [(0.70, 0.66, 0.80, 0.0450), (0.60, 0.72, 0.75, 0.0900), (0.65, 0.68, 0.65, 0.0700)],
    ("milLoss", 0): [(0.40, 0.50, 1.00, 0.0300), (0.90, 0.80, 0.50, 0.0200), (0.85, 0.78, 0.55, 0.0250)],
    ("milLoss", 1): [(0.55, 0.81, 0.95, 0.0600), (0.75, 0.79, 0.85, 0.0350), (0.95, 0.77, 0.45, 0.0100)],
}
ROW = ("g", "mlp", "")


def registry(val_fraction: float = 0.1) -> dict:
    return gauss_registry(g1={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"],
                              "seeds": [0, 1], "train": {"epochs": 3, "val_fraction": val_fraction}})


def cells_of(val_fraction: float = 0.1):
    return expand_grid(parse_registry(registry(val_fraction)), "g1", validate=False)


def done_row(cell, epochs: list[dict]) -> tuple[dict, list[dict]]:
    """A done cell's row and history; ``epochs``: each epoch's own columns over a minimal common set."""
    row = failed_outcome(cell, "").row
    history = [{"epoch": i + 1, "train_loss": 0.1, "train_acc": 0.9, "test_h_cond": 0.5, "test_h_marg": 0.69,
                "test_mi": 0.19, **cols} for i, cols in enumerate(epochs)]
    row.update(status="done", message="", final_test_acc=epochs[-1]["test_acc"], final_test_mi=0.19,
               test_label_entropy=0.69, num_classes=2, epochs_done=len(epochs))
    return row, history


def epochs_of(loss: str, seed: int, with_ece: bool = True, val: bool = True) -> list[dict]:
    out = []
    for v, t, nll, ece in HISTORIES[(loss, seed)]:
        cols = {"test_acc": t, "test_loss": nll, **({"val_acc": v} if val else {})}
        out.append({**cols, "test_ece": ece} if with_ece else cols)
    return out


def write_store(root, cells, lacking=(), val: bool = True) -> Store:
    """``lacking``: the (loss, seed)s whose history predates ``test_ece``."""
    store = Store(root)
    for c in cells:
        store.write_result(*done_row(c, epochs_of(c.loss, c.seed, (c.loss, c.seed) not in lacking, val)))
    return store


def report(store: Store, cells, key: str, metric: str):
    results = store.cells(REPORT_COLUMNS)
    return collect_selected("g1", cells, results, store.history(results["attempt_id"]), "celLoss", key, metric)


def mean_sd(a: float, b: float) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of two values: |a - b| / sqrt(2)."""
    return (a + b) / 2, abs(a - b) / math.sqrt(2)


# per (rule, metric): celLoss's and milLoss's values of seeds 0 and 1, read off HISTORIES at the selected epochs
BY_HAND = {
    ("last", "nll"): ((0.70, 0.65), (0.55, 0.45)),
    ("last", "ece"): ((0.0800, 0.0700), (0.0250, 0.0100)),
    ("val", "nll"): ((0.60, 0.80), (0.50, 0.45)),
    ("val", "ece"): ((0.0500, 0.0450), (0.0200, 0.0100)),
}


@pytest.mark.parametrize("key, metric", list(BY_HAND))
def test_means_bold_and_differences_by_hand(tmp_path, key, metric):
    cells = cells_of()
    data = report(write_store(tmp_path, cells), cells, key, metric)
    (c0, c1), (m0, m1) = BY_HAND[(key, metric)]
    assert data.entries[(ROW, "celLoss")].value == pytest.approx({0: c0, 1: c1})
    assert data.entries[(ROW, "milLoss")].value == pytest.approx({0: m0, 1: m1})
    digits = METRICS[metric].digits
    md = render(data, "markdown")
    cel_text, mil_text = table_rows(md, "| g")[0][2:]
    cm, cs = mean_sd(c0, c1)
    mm, ms = mean_sd(m0, m1)
    assert cel_text == f"{cm:.{digits}f} ± {cs:.{digits}f}"  # the higher value: not bold
    assert mil_text == f"**{mm:.{digits}f} ± {ms:.{digits}f}**"  # the lowest mean is the best
    # paired milLoss - celLoss, its natural sign (negative: milLoss is lower), 95% t interval with 1 df
    d0, d1 = m0 - c0, m1 - c1
    dm, ds = mean_sd(d0, d1)
    half = T_975_DF1 * ds / math.sqrt(2)
    r = comparison_rows(data)[0]
    assert r["diff"] == pytest.approx(dm) and dm < 0
    assert (r["lo"], r["hi"]) == pytest.approx((dm - half, dm + half))
    star = " *" if dm + half < 0 else ""
    diff = table_rows(section(md, "### Difference"), "| g")[0]
    assert diff[3] == f"{dm:+.{digits}f} [{dm - half:+.{digits}f}, {dm + half:+.{digits}f}]{star}"


def test_the_hand_computed_intervals_are_the_expected_ones(tmp_path):
    """The by-hand values above, written out: ECE under last excludes zero, NLL under val does not."""
    cells = cells_of()
    store = write_store(tmp_path, cells)
    md = render(report(store, cells, "last", "ece"), "markdown")
    assert table_rows(md, "| g")[0][2:] == ["0.0750 ± 0.0071", "**0.0175 ± 0.0106**"]
    assert ["g", "mlp", "milLoss", "-0.0575 [-0.0893, -0.0257] *"] in table_rows(section(md, "### Difference"), "| g")
    md = render(report(store, cells, "val", "nll"), "markdown")
    assert table_rows(md, "| g")[0][2:] == ["0.700 ± 0.141", "**0.475 ± 0.035**"]
    assert ["g", "mlp", "milLoss", "-0.225 [-1.813, +1.363]"] in table_rows(section(md, "### Difference"), "| g")


def test_the_verdict_follows_the_direction(tmp_path):
    cells = cells_of()
    store = write_store(tmp_path, cells)
    ece = comparison_rows(report(store, cells, "last", "ece"))[0]
    # diffs -0.055, -0.060: t = -0.0575 / 0.0025 = -23 on 1 df, two-sided p = 1 - (2/π) atan 23 (the Cauchy CDF)
    assert ece["p_holm"] == pytest.approx(1 - 2 / math.pi * math.atan(23)) and ece["p_holm"] < 0.05
    assert ece["verdict"] == "better"  # a lower ECE than the baseline's
    acc = comparison_rows(report(store, cells, "last", "acc"))[0]
    # accuracy's diffs +0.03, +0.09: t = 0.06 / 0.03 = 2, p = 1 - (2/π) atan 2 = 0.295
    assert acc["diff"] == pytest.approx(0.06) and acc["p_holm"] == pytest.approx(1 - 2 / math.pi * math.atan(2))
    assert acc["verdict"] == "no difference"


@pytest.mark.parametrize("metric, name", [("ece", "ECE"), ("nll", "NLL")])
def test_every_format_names_the_metric_the_rule_and_the_direction(tmp_path, metric, name):
    cells = cells_of()
    data = report(write_store(tmp_path, cells), cells, "val", metric)
    md = render(data, "markdown")
    first = md.splitlines()[0]
    assert f"test {name}" in first and "selection: best validation epoch" in first and "lower is better" in first
    diff_head = next(line for line in md.splitlines() if line.startswith("### Difference"))
    assert name in diff_head and "lower is better" in diff_head and "best validation epoch" in diff_head
    assert f"| Δ {name}" in md and "Δ accuracy" not in md
    rules_head = next(line for line in md.splitlines() if "under every selection rule" in line)
    assert rules_head.startswith(f"### Test {name}") and "lower is better" in rules_head
    assert "Best (lowest) mean per row in bold" in md
    tex = render(data, "latex")
    captions = [line for line in tex.splitlines() if line.startswith("\\caption{")]
    assert len(captions) == 3  # the metric, the differences, Î
    for caption in captions[:2]:
        assert name in caption and "lower is better" in caption and "best validation epoch" in caption
    assert "Best (lowest) per" in captions[0]
    csv = pd.read_csv(io.StringIO(render(data, "csv")))
    assert set(csv["metric"]) == {metric} and list(csv.columns[:3]) == ["grid", "select", "metric"]
    assert f"{metric}_mean" in csv and f"{metric}_std" in csv and "acc_mean" not in csv
    val = csv[(csv["select"] == "val") & (csv["loss"] == "milLoss")].iloc[0]
    (c0, c1), (m0, m1) = BY_HAND[("val", metric)]
    assert val[f"{metric}_mean"] == pytest.approx((m0 + m1) / 2, abs=1e-6)
    assert val["diff_vs_baseline"] == pytest.approx((m0 - c0 + m1 - c1) / 2, abs=1e-6)
    assert val["n"] == 2 and val["n_without_metric"] == 0
    last = csv[(csv["select"] == "last") & (csv["loss"] == "celLoss")].iloc[0]  # the other rules follow the metric
    assert last[f"{metric}_mean"] == pytest.approx(sum(BY_HAND[("last", metric)][0]) / 2, abs=1e-6)


def test_the_default_csv_keeps_its_columns(tmp_path):
    cells = cells_of()
    csv = pd.read_csv(io.StringIO(render(report(write_store(tmp_path, cells), cells, "last", "acc"), "csv")))
    assert "metric" not in csv and "n_without_metric" not in csv and "acc_mean" in csv
    assert list(csv.columns[:4]) == ["grid", "select", "dataset", "architecture"]


def test_a_higher_is_better_metric_bolds_the_highest(tmp_path):
    cells = cells_of()
    store = Store(tmp_path)
    for c in cells:  # balanced accuracy 0.6 / 0.7 for celLoss, 0.5 / 0.55 for milLoss at every epoch
        bal = {("celLoss", 0): 0.6, ("celLoss", 1): 0.7, ("milLoss", 0): 0.5, ("milLoss", 1): 0.55}[(c.loss, c.seed)]
        store.write_result(*done_row(c, [{**e, "test_balanced_acc": bal} for e in epochs_of(c.loss, c.seed)]))
    md = render(report(store, cells, "last", "balanced_acc"), "markdown")
    assert table_rows(md, "| g")[0][2:] == ["**0.650 ± 0.071**", "0.525 ± 0.035"]
    assert "higher is better" in md.splitlines()[0] and "Best mean per row in bold" in md


def test_temperature_scaled_ece_is_read_at_the_selected_epoch(tmp_path):
    """As the trainer stores it: a value at the epochs a rule can pick (last, best val, best test), NaN elsewhere."""
    cells = cells_of()
    store = Store(tmp_path)
    for c in cells:
        epochs = epochs_of(c.loss, c.seed)
        val_i = max(range(3), key=lambda i: (epochs[i]["val_acc"], -i))
        test_i = max(range(3), key=lambda i: (epochs[i]["test_acc"], -i))
        for i, e in enumerate(epochs):
            e["test_ece_ts"] = 0.01 * (i + 1) + 0.001 * c.seed if i in (2, val_i, test_i) else math.nan
        store.write_result(*done_row(c, epochs))
    data = report(store, cells, "val", "ece_ts")
    # val epochs (1-based): celLoss 2, 1; milLoss 2, 3
    assert data.entries[(ROW, "celLoss")].value == pytest.approx({0: 0.02, 1: 0.011})
    assert data.entries[(ROW, "milLoss")].value == pytest.approx({0: 0.02, 1: 0.031})
    assert "ECE after temperature scaling" in render(data, "markdown").splitlines()[0]
    last = next(d for d in data.others if d.select.key == "last")
    assert last.entries[(ROW, "milLoss")].value == pytest.approx({0: 0.03, 1: 0.031})


def test_cells_lacking_the_metric_are_marked_never_zero(tmp_path):
    cells = cells_of()
    # milLoss seed 1 predates test_ece; celLoss has it on both seeds
    data = report(write_store(tmp_path, cells, lacking={("milLoss", 1)}), cells, "last", "ece")
    assert data.entries[(ROW, "milLoss")].value == pytest.approx({0: 0.025})
    md = render(data, "markdown")
    assert table_rows(md, "| g")[0][2:] == ["0.0750 ± 0.0071", "**0.0250 (n=1)‡**"]
    assert "‡: 1 finished cell without `test_ece` in its history" in md
    assert ["g", "mlp", "milLoss", "-0.0550 (n=1)"] in table_rows(section(md, "### Difference"), "| g")  # one pair
    csv = pd.read_csv(io.StringIO(render(data, "csv")))
    mil = csv[(csv["select"] == "last") & (csv["loss"] == "milLoss")].iloc[0]
    assert mil["n"] == 1 and mil["n_without_metric"] == 1 and mil["ece_mean"] == pytest.approx(0.025)
    tex = render(data, "latex")
    assert "0.0250 (n=1)$^\\ddagger$" in tex and "$^\\ddagger$: 1 finished cell without \\texttt{test\\_ece}" in tex
    # no seed of milLoss has it: a dash with the mark, and nothing to pair
    data = report(write_store(tmp_path / "b", cells, lacking={("milLoss", 0), ("milLoss", 1)}), cells, "last", "ece")
    md = render(data, "markdown")
    assert table_rows(md, "| g")[0][2:] == ["**0.0750 ± 0.0071**", "—‡"]
    assert ["g", "mlp", "milLoss", "—"] in table_rows(section(md, "### Difference"), "| g")
    assert "‡: 2 finished cells without `test_ece` in their history" in md
    mil = pd.read_csv(io.StringIO(render(data, "csv"))).set_index(["select", "loss"]).loc[("last", "milLoss")]
    assert math.isnan(mil["ece_mean"]) and mil["n"] == 0 and mil["n_without_metric"] == 2
    assert mil["status"] == "done"


def test_tuned_chooses_by_validation_accuracy_and_reports_the_metric(tmp_path):
    from tests.test_search import cells_of as search_cells
    from tests.test_search import registry as search_registry

    cells = search_cells(search_registry(2))
    # (loss, trial, seed) -> [(val, test)] per epoch, as tests/test_search.py: by validation accuracy the tuned
    # trials are celLoss 1 and milLoss 0, at the val epochs celLoss 1, 2 and milLoss 1, 2 (seeds 0, 1)
    hist = {
        ("celLoss", 0, 0): [(0.70, 0.71), (0.72, 0.73)], ("celLoss", 0, 1): [(0.74, 0.70), (0.60, 0.75)],
        ("celLoss", 1, 0): [(0.80, 0.79), (0.78, 0.81)], ("celLoss", 1, 1): [(0.70, 0.72), (0.76, 0.74)],
        ("milLoss", 0, 0): [(0.90, 0.85), (0.80, 0.88)], ("milLoss", 0, 1): [(0.82, 0.84), (0.86, 0.83)],
        ("milLoss", 1, 0): [(0.88, 0.87), (0.89, 0.86)], ("milLoss", 1, 1): [(0.84, 0.82), (0.85, 0.89)],
    }
    # a trial's ECE (+0.001 per seed, +0.0001 per epoch): by ECE celLoss's trial 0 would win; by accuracy trial 1
    ece = {("celLoss", 0): 0.0100, ("celLoss", 1): 0.2000, ("milLoss", 0): 0.0500, ("milLoss", 1): 0.0200}
    store = Store(tmp_path)
    for c in cells:
        epochs = [{"val_acc": v, "test_acc": t, "test_loss": 0.5,
                   "test_ece": ece[(c.loss, c.trial)] + 0.001 * c.seed + 0.0001 * i}
                  for i, (v, t) in enumerate(hist[(c.loss, c.trial, c.seed)])]
        store.write_result(*done_row(c, epochs))
    results = store.cells(REPORT_COLUMNS)
    data = collect_selected("s", cells, results, store.history(results["attempt_id"]), "celLoss", "tuned", "ece")
    assert data.trials[(*ROW, "celLoss")].trial == 1 and data.trials[(*ROW, "milLoss")].trial == 0
    assert data.entries[(ROW, "celLoss")].value == pytest.approx({0: 0.2000, 1: 0.2011})
    assert data.entries[(ROW, "milLoss")].value == pytest.approx({0: 0.0500, 1: 0.0511})
    md = render(data, "markdown")
    assert "best mean validation accuracy (the search's objective)" in md
    assert "the table shows that trial's test ECE" in md
    assert "`better`: a lower ECE than the baseline's" in md
    assert "tuned chooses its trial by validation accuracy" in md.replace("`", "")
    assert "validation accuracy (the search's objective)" in render(data, "latex")
    r = comparison_rows(data)[0]  # diffs -0.15, -0.15: zero variance, p = 0 (the mean differs from 0)
    assert r["diff"] == pytest.approx(-0.15) and r["verdict"] == "better"


# ----------------------------------------------------------------------------- bad input, through the CLI
def _write(tmp_path, val_fraction: float = 0.1, **kw):
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(registry(val_fraction)))
    write_store(tmp_path / "res", cells_of(val_fraction), **kw)
    return ["--grid", "g1", "--registry", reg, "--results", tmp_path / "res", "--out", tmp_path / "out"]


def test_an_unknown_metric_is_one_error_line_with_the_closest_names(tmp_path, cli):
    common = _write(tmp_path)
    r = cli("report", *common, "--metric", "eec")
    assert r.exit_code == 2 and r.output.count("error:") == 1 and r.output.count("\n") == 1
    assert "--metric 'eec'" in r.output and "'ece'" in r.output
    assert "acc, balanced_acc, nll, ece, ece_ts, brier" in r.output
    assert not (tmp_path / "out").exists()


def test_ece_ts_without_a_validation_split_suggests_ece(tmp_path, cli):
    common = _write(tmp_path, 0.0, val=False)
    r = cli("report", *common, "--metric", "ece_ts")
    assert r.exit_code == 2 and r.output.count("error:") == 1
    assert "no validation split" in r.output and "temperature scaling" in r.output and "--metric ece" in r.output
    assert not (tmp_path / "out").exists()
    r = cli("report", *common, "--metric", "ece")
    assert r.exit_code == 0 and "test ECE" in r.output and (tmp_path / "out" / "g1" / "report-ece.md").is_file()
    assert not (tmp_path / "out" / "g1" / "report.md").exists()  # the accuracy report keeps its own name


def test_a_metric_no_selected_cell_recorded_is_an_error_naming_the_column(tmp_path, cli):
    common = _write(tmp_path, lacking={(loss, s) for loss in ("celLoss", "milLoss") for s in (0, 1)})
    r = cli("report", *common, "--metric", "ece", "--select", "val")
    assert r.exit_code == 2 and r.output.count("error:") == 1 and r.output.count("\n") == 1
    assert "'test_ece'" in r.output and "4 finished cells" in r.output and "predate" in r.output
    assert "--rerun-stale does not retrain them" in r.output and "--force" in r.output
    assert "bench run --grid g1" in r.output
    assert not (tmp_path / "out").exists()
    r = cli("report", *common, "--metric", "nll")  # the column the old cells do have
    assert r.exit_code == 0 and "final test NLL" in r.output


def test_collect_selected_refuses_bad_metrics_itself(tmp_path):
    cells = cells_of()
    store = write_store(tmp_path, cells)
    with pytest.raises(BenchError, match=r"--metric 'accuracy': not a report metric \(closest: 'acc'"):
        report(store, cells, "last", "accuracy")


def test_the_console_script_refuses_an_unknown_metric(tmp_path):
    common = _write(tmp_path)
    r = bench("report", *common, "--metric", "brie", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: --metric 'brie'") and "'brier'" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
