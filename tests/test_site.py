"""``bench site``: the static results page, read back in a real browser (headless Chromium) from ``file://``."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from bench.errors import BenchError
from bench.report.selection import RULES
from bench.site.model import Cell, Figure, Page, Section, Table
from bench.site.render import MARKER, write_site
from tests.conftest import bench_inprocess, bench_subprocess

# two datasets far apart in difficulty: every loss column has two clearly different values to sort
REGISTRY = {
    "datasets": {"easy": {"kind": "gauss", "params": {"d": 2, "mu": 2.0, "n_train": 256, "n_test": 256, "seed": 0}},
                 "hard": {"kind": "gauss", "params": {"d": 8, "mu": 0.3, "n_train": 256, "n_test": 256, "seed": 1}}},
    "architectures": {"mlp": {"source": "native", "name": "mlp"}},
    "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"},
               "milLoss": {"target": "losses.mutual_information:MilLoss", "params": {"lam": 5.0}}},
    "grids": {
        "tiny": {"datasets": ["easy", "hard"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"],
                 "seeds": [0, 1], "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "val_fraction": 0.25}},
        "searched": {"datasets": ["easy"], "architectures": ["mlp"], "losses": ["celLoss", "milLoss"], "seeds": [0],
                     "train": {"epochs": 2, "batch_size": 64, "val_fraction": 0.25},
                     "search": {"trials": 2, "seed": 0, "space": {"train.lr": "loguniform(1e-3, 1e-1)"}}},
        "untrained": {"datasets": ["hard"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [5]},
    },
}
BROWSER, DRIVER = "chromium", "chromedriver"
# what the page's table script reads: every table as captions, headers (with aria-sort) and cells with their keys
TABLES_JS = """
return Array.from(document.querySelectorAll("table")).map(t => ({
  caption: t.caption.textContent,
  heads: Array.from(t.tHead.rows[0].cells).map(c => ({text: c.textContent, sort: c.getAttribute("aria-sort")})),
  rows: Array.from(t.tBodies[0].rows).map(r => Array.from(r.cells).map(c => ({
    text: c.textContent, key: c.getAttribute("data-sort"), css: c.className, tag: c.tagName}))),
}));
"""


def browser():
    """Headless Chromium under selenium, logging the console and the network. A missing browser fails (CI
    installs it with scripts/setup.sh --test): a skipped browser test would hide a page that does not work."""
    found = {name: shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
             for name in (BROWSER, DRIVER)}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the site's browser test needs Chromium and its driver; "
                    f"install them with `bash scripts/setup.sh --test` (apt-get install chromium chromium-driver)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = found[BROWSER]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[DRIVER]))


def bench(*args, ok: bool = True):
    r = bench_subprocess(*args, env={"OMP_NUM_THREADS": "1"})
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def inproc(*args, ok: bool = True):
    """``bench ARGS`` in this process: the training and the reports the page is checked against (their
    console script is tested elsewhere); ``bench site`` itself runs as a user runs it."""
    r = bench_inprocess(*args)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained store of two grids (one a search), its site, and what `bench report --format csv` says of it."""
    root = tmp_path_factory.mktemp("site")
    reg, results, out = root / "registry.yaml", root / "results", root / "site"
    reg.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    for grid in ("tiny", "searched"):
        # one thread, as a child with OMP_NUM_THREADS=1 would have: the page's provenance names it
        inproc("run", "--grid", grid, "--registry", reg, "--results", results, "--threads", "1", "--plain",
               "--no-report")
    stored = sorted(results.rglob("*"))
    written = bench("site", "--out", out, "--registry", reg, "--results", results, "--title", "Tiny <results>")
    assert written.stdout.strip() == f"wrote {out / 'index.html'}: 2 pages (grid-tiny, grid-searched)"
    assert sorted(results.rglob("*")) == stored  # the store is only read
    reports = {}
    for grid, select in (("tiny", "last"), ("searched", "tuned")):
        text = inproc("report", "--grid", grid, "--registry", reg, "--results", results, "--format", "csv",
                     "--select", select).stdout
        reports[grid] = list(csv.DictReader(io.StringIO(text)))
    return {"registry": reg, "results": results, "out": out, "csv": reports}


@pytest.fixture(scope="module")
def driver():
    d = browser()
    yield d
    d.quit()


def tables(driver) -> list[dict]:
    return driver.execute_script(TABLES_JS)


def table(driver, caption: str) -> dict:
    found = [t for t in tables(driver) if t["caption"] == caption]
    assert len(found) == 1, [t["caption"] for t in tables(driver)]
    return found[0]


def column(t: dict, head: str) -> list[dict]:
    i = [h["text"] for h in t["heads"]].index(head)
    return [row[i] for row in t["rows"]]


def test_the_grid_page_holds_the_numbers_bench_report_prints(trained, driver):
    driver.get((trained["out"] / "grid-tiny.html").as_uri())
    rows = trained["csv"]["tiny"]
    assert {r["select"] for r in rows} == {"last", "val", "oracle"}  # the grid has a validation split, no search
    checked = 0
    for rule in ("last", "val", "oracle"):
        title = "Final test accuracy" if rule == "last" else "Test accuracy"
        shown = table(driver, f"{title} (selection: {RULES[rule].name})")
        assert [h["text"] for h in shown["heads"]] == ["dataset", "architecture", "celLoss", "milLoss"]
        by_dataset = {line[0]["text"]: line for line in shown["rows"]}
        assert set(by_dataset) == {"easy", "hard"}
        diffs = table(driver, f"Difference to celLoss (paired by seed, 95% t interval"
                              f"{'' if rule == 'last' else f'; selection: {RULES[rule].name}'})")
        for r in (r for r in rows if r["select"] == rule):
            line = by_dataset[r["dataset"]]
            assert line[0]["tag"] == "TH" and line[1]["text"] == "mlp"
            cell = line[2 + ["celLoss", "milLoss"].index(r["loss"])]
            mean, std = float(r["acc_mean"]), float(r["acc_std"])
            assert float(cell["key"]) == pytest.approx(mean, rel=1e-5)
            assert cell["text"].startswith(f"{mean:.3f} ± {std:.3f}")
            if r["loss"] == "milLoss":
                (diff,) = [d for d in diffs["rows"] if d[0]["text"] == r["dataset"]]
                assert diff[2]["text"] == "milLoss"
                assert float(diff[3]["key"]) == pytest.approx(float(r["diff_vs_baseline"]), rel=1e-5, abs=1e-9)
                assert float(diff[4]["key"]) == pytest.approx(float(r["diff_lo"]), rel=1e-5, abs=1e-9)
            checked += 1
    assert checked == 12
    # the best entry of a row is marked, and it is the row's largest mean
    for line in table(driver, f"Final test accuracy (selection: {RULES['last'].name})")["rows"]:
        best = [c for c in line[2:] if "best" in c["css"].split()]
        assert all(float(b["key"]) == max(float(c["key"]) for c in line[2:]) for b in best)
    provenance = dict(zip((e.text for e in driver.find_elements("css selector", "dl.provenance dt")),
                          (e.text for e in driver.find_elements("css selector", "dl.provenance dd"))))
    assert provenance["command"] == "bench run --grid tiny"
    assert provenance["machine"].startswith("cpu, 1 torch thread") and provenance["machine"].endswith("(8 cells)")
    assert "lossbench" in provenance["trained with"] and "page rendered with" in provenance
    assert not any(socket.gethostname() in v for v in provenance.values())  # a page may be published


def test_a_search_grid_shows_the_trial_and_values_tuned_chose(trained, driver):
    driver.get((trained["out"] / "grid-searched.html").as_uri())
    chosen = table(driver, "The trial each loss's tuned result comes from, and the values it drew")
    assert [h["text"] for h in chosen["heads"]] == ["dataset", "architecture", "loss", "trial",
                                                    "mean validation accuracy", "seeds", "train.lr"]
    tuned = {r["loss"]: r for r in trained["csv"]["searched"] if r["select"] == "tuned"}
    assert len(tuned) == 2
    for line in chosen["rows"]:
        want = tuned[line[2]["text"]]
        assert line[3]["text"] == want["trial"]
        assert float(line[6]["key"]) == pytest.approx(float(want["hp.train.lr"]), rel=1e-5)
    assert table(driver, f"Test accuracy (selection: {RULES['tuned'].name})")["rows"]


def test_clicking_a_header_sorts_its_column_and_again_reverses_it(trained, driver):
    driver.get((trained["out"] / "grid-tiny.html").as_uri())
    caption = f"Final test accuracy (selection: {RULES['last'].name})"
    button = driver.find_element("xpath", f"//table[caption='{caption}']/thead//th[.='celLoss']/button")
    before = [float(c["key"]) for c in column(table(driver, caption), "celLoss")]
    assert len(set(before)) == 2  # the easy and the hard dataset: an order to see
    button.click()
    shown = table(driver, caption)
    assert [float(c["key"]) for c in column(shown, "celLoss")] == sorted(before)
    assert [h["sort"] for h in shown["heads"]] == [None, None, "ascending", None]
    datasets = [line[0]["text"] for line in shown["rows"]]
    button.click()
    shown = table(driver, caption)
    assert [float(c["key"]) for c in column(shown, "celLoss")] == sorted(before, reverse=True)
    assert [h["sort"] for h in shown["heads"]] == [None, None, "descending", None]
    assert [line[0]["text"] for line in shown["rows"]] == datasets[::-1]  # whole rows move, not one column


def test_numbers_sort_as_numbers_and_missing_values_last(tmp_path, driver):
    rows = [[Cell.label(name), Cell(text, key)] for name, text, key in
            [("a", "9", 9), ("b", "—", None), ("c", "100", 100), ("d", "nan", float("nan")), ("e", "-3", -3)]]
    write_site(tmp_path / "s", [Page("p", "P", "one table", [Section("S", tables=[Table("T", ["name", "v"], rows, 1)])])],
               "t")
    driver.get((tmp_path / "s" / "p.html").as_uri())
    button = driver.find_element("xpath", "//th[.='v']/button")
    button.click()
    assert [line[0]["text"] for line in tables(driver)[0]["rows"]] == ["e", "a", "c", "b", "d"]  # 100 after 9
    button.click()
    assert [line[0]["text"] for line in tables(driver)[0]["rows"]] == ["c", "a", "e", "b", "d"]
    driver.find_element("xpath", "//th[.='name']/button").click()
    assert [line[0]["text"] for line in tables(driver)[0]["rows"]] == ["a", "b", "c", "d", "e"]


def test_the_pages_load_nothing_from_outside_and_log_no_errors(trained, driver):
    driver.get_log("browser"), driver.get_log("performance")  # only this test's pages from here on
    driver.get((trained["out"] / "index.html").as_uri())
    links = driver.find_elements("css selector", "main a")
    assert [a.get_attribute("textContent") for a in links] == ["Grid tiny", "Grid searched"]
    assert driver.title == "Tiny <results>"
    items = [li.text for li in driver.find_elements("css selector", "ul.pages li")]
    assert items[0].startswith("Grid tiny: 2 settings × 2 losses, 2 seeds; cells: 8 done; baseline celLoss")
    assert items[1].startswith("Grid searched: 1 setting × 2 losses, 1 seed, 2 trials; trial 0's cells: 2 done; "
                               "baseline celLoss"), items[1]
    links[0].click()
    assert driver.current_url.endswith("/grid-tiny.html")
    for page in ("grid-tiny.html", "grid-searched.html"):
        driver.get((trained["out"] / page).as_uri())
        for th in driver.find_elements("css selector", "thead th button")[:6]:
            th.click()
        refs = driver.execute_script(
            "return Array.from(document.querySelectorAll('[src], link[href], script')).map("
            "e => e.getAttribute('src') || e.getAttribute('href') || '')")
        assert refs and all("//" not in r and (":" not in r or r.startswith("data:")) for r in refs), refs
        images = driver.find_elements("css selector", "figure img")
        assert images and all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                              for i in images)
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe
    urls = [m["params"]["request"]["url"] for m in (json.loads(e["message"])["message"]
                                                  for e in driver.get_log("performance"))
            if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.split(":", 1)[0] in ("file", "data") for u in urls), urls


def test_the_templates_escape_every_text(tmp_path):
    evil = '<script>alert("x")</script>'
    cell = Cell(f"{evil} & more", f'a"b<{evil}', title=f'"{evil}', css="best")
    page = Page("p", f"Title {evil}", f"summary {evil}",
                [Section(f"Heading {evil}", [f"note `{evil}` and {evil}"], [Table(f"cap {evil}", [evil], [[cell]])])],
                {f"label {evil}": f"value {evil}"}, [f"page note {evil}"])
    write_site(tmp_path / "s", [page], f"site {evil}")
    for name in ("index.html", "p.html"):
        html = (tmp_path / "s" / name).read_text()
        assert "alert" in html and "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)" in html
        assert html.count("<script>") == 1  # the page's own sorting script, nothing else
    html = (tmp_path / "s" / "p.html").read_text()
    assert 'data-sort="a&#34;b&lt;&lt;script&gt;' in html and 'title="&#34;&lt;script&gt;' in html
    assert "<code>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</code>" in html  # a note's code span, escaped


def test_a_site_replaces_its_own_files_and_nothing_else(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "s"

    def page(slug: str) -> Page:
        return Page(slug, slug, "s", [Section("S", figures=[Figure(png, "a figure")])])

    write_site(out, [page("a"), page("b")], "t")
    assert sorted(json.loads((out / MARKER).read_text())["files"]) == ["a.html", "a/fig.png", "b.html", "b/fig.png",
                                                                       "index.html"]
    (out / "mine.txt").write_text("kept")
    write_site(out, [page("a")], "t")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        MARKER, "a", "a.html", "a/fig.png", "index.html", "mine.txt"]
    with pytest.raises(BenchError, match="two pages named 'a'"):
        write_site(tmp_path / "t", [page("a"), page("a")], "t")
    assert not (tmp_path / "t").exists()
    with pytest.raises(ValueError, match="slug 'index'"):
        page("index")


@pytest.mark.parametrize("case", ["file", "foreign", "empty-store", "no-store", "unknown-grid", "grid-without-cells"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case, request):
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    results = tmp_path / "results"
    out = tmp_path / "out"
    extra: list[str] = []
    if case == "file":
        out.write_text("x")
    elif case == "foreign":
        out.mkdir()
        (out / "notes.md").write_text("mine")
    if case in ("unknown-grid", "grid-without-cells"):
        results = request.getfixturevalue("trained")["results"]
        extra = ["--grid", "tiyn" if case == "unknown-grid" else "untrained"]
    elif case != "no-store":
        results.mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = inproc("site", "--out", out, "--registry", reg, "--results", results, *extra, ok=False)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    want = {"file": "is a file", "foreign": "did not write", "empty-store": "holds no cells of any grid",
            "no-store": "no such folder", "unknown-grid": "closest: 'tiny'", "grid-without-cells": "holds none of its cells"}[case]
    assert want in lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
