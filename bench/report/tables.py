"""Paper-style tables from the store: a metric's mean ± std, paired differences, learned Î and its bounds.

The report is driven by the grid as the registry defines it now: its cells are expanded and
looked up in the store by identity, so a missing or failed cell shows as missing and a cell the
grid no longer contains never leaks in.

Every footnote is generated from the data it annotates: the seed counts are the grid's, a mark
is explained only when some entry carries it, and a diverged or failed entry says so in every
table and format instead of looking like a cell that has not run.

The main table, the paired differences and the side-by-side rules table show one metric
(:mod:`bench.metrics.table`, test accuracy by default), read from each cell's history at the
epoch its selection rule picks; the Î table always reads accuracy, the error its bounds are about.
A finished cell whose history lacks the metric (trained before it was recorded) is marked, never
counted as zero. The default (accuracy) report's text and CSV columns are those it had before the
metric was a choice; another metric's CSV adds a ``metric`` column and names its value columns
after it (``ece_mean``, ``ece_std``), so a column never means two things across files.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.config.cells import Cell
from bench.metrics.table import DEFAULT, Metric
from bench.metrics.table import metric as find_metric
from bench.report.selection import RULES, Selected, Selection, TrialChoice, applicable, histories, rule, select
from bench.report.stats import holm, mean_std, paired_diff_ci, paired_p_value
from bench.paper.theory import fano_bound, theorem4_bound

FORMATS = ("markdown", "latex", "csv")
MISSING = "—"
LACKING = "‡"  # a finished cell's history has no column for the metric shown
DIGITS = 3
THEORY_DOC = "docs/theory.md"


@dataclass
class Entry:
    """One (row, loss) of the table: per-seed values of the finished cells, and which seeds went wrong.
    ``value``: the shown metric's, of the finished seeds that have it (for accuracy the same as ``acc``)."""

    acc: dict[int, float] = field(default_factory=dict)
    value: dict[int, float] = field(default_factory=dict)
    mi: dict[int, float] = field(default_factory=dict)
    h_y: dict[int, float] = field(default_factory=dict)
    num_classes: int = 0
    expected: int = 0
    diverged: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)

    @property
    def n(self) -> int:
        return len(self.acc)

    @property
    def lacking(self) -> int:
        """Finished seeds whose history has no value of the shown metric."""
        return self.n - len(self.value)

    @property
    def status(self) -> str:
        """done (every seed), partial, diverged / failed (no seed finished, some went wrong), pending."""
        if self.n:
            return "done" if self.n == self.expected else "partial"
        if self.diverged:
            return "diverged"
        return "failed" if self.failed else "pending"


@dataclass
class ReportData:
    grid: str
    rows: list[tuple[str, str, str]]  # (dataset, architecture, variant)
    losses: list[str]
    entries: dict[tuple[tuple[str, str, str], str], Entry]
    baseline: str | None
    counts: dict[str, int]
    truths: dict[str, dict[str, float]] = field(default_factory=dict)  # dataset -> exact MI, Bayes error
    # rows whose finished cells ran under different provenance: row -> {"precision_used": {"bf16": 3, ...}}
    mixed: dict[tuple[str, str, str], dict[str, dict[str, int]]] = field(default_factory=dict)
    select: Selection = RULES["last"]  # the rule the accuracies were selected by (bench.report.selection)
    trials: dict[tuple[str, str, str, str], TrialChoice] = field(default_factory=dict)  # tuned: the chosen trial
    others: list[ReportData] = field(default_factory=list)  # the other applicable rules, for the side-by-side table
    metric: Metric = DEFAULT  # what the main table, the differences and the rules table show
    # rows trained under a data regime: row -> (its regime, realised training noise rates, training sizes of done cells)
    regimes: dict[tuple[str, str, str], tuple[Any, list[float], list[int]]] = field(default_factory=dict)

    @property
    def seed_counts(self) -> list[int]:
        """The numbers of seeds the grid asks per entry (one value unless a filter cut some)."""
        return sorted({e.expected for e in self.entries.values() if e.expected})


REPORT_COLUMNS = ["cell_id", "attempt_id", "status", "final_test_acc", "final_test_mi", "test_label_entropy", "num_classes",
                  "precision_used", "device", "label_noise_rate", "train_size"]
# what a cell's declared settings resolved to where it ran: a row mixing them is footnoted
PROVENANCE_COLUMNS = ("precision_used", "device")
_VALUE_COLUMNS = ["final_test_acc", "final_test_mi", "test_label_entropy", "num_classes"]


def collect(grid: str, cells: list[Cell], results: pd.DataFrame, baseline: str | None,
            selected: Selected | None = None, metric: Metric = DEFAULT,
            values: Mapping[str, float] | None = None) -> ReportData:
    """The table's data; with ``selected`` its cells and each done cell's accuracy come from a selection rule
    (default: every cell at its last epoch). ``values``: cell_id -> the value of ``metric`` (other than accuracy)
    at the selected epoch (:func:`metric_values`); a done cell missing from it lacks the metric."""
    # a search grid's trials share their (row, loss): without a rule, its trial 0 (the defaults) is shown
    cells = selected.cells if selected is not None else [c for c in cells if c.trial in (None, 0)]
    # the columns once into plain dicts: a DataFrame.loc per cell costs ~100 us (10 s at 100k cells)
    status_of = dict(zip(results["cell_id"].tolist(), results["status"].tolist())) if not results.empty else {}
    done_rows: dict[str, tuple] = {}
    if not results.empty:
        done = results[results["status"] == "done"]
        done_rows = dict(zip(done["cell_id"].tolist(), zip(*(done[c].tolist() for c in _VALUE_COLUMNS))))
        kept = [c for c in PROVENANCE_COLUMNS if c in done.columns]
        provenance = {cid: dict(zip(kept, vals)) for cid, *vals in zip(done["cell_id"].tolist(),
                                                                          *(done[c].tolist() for c in kept))}
    else:
        provenance = {}
    seen: dict[tuple[str, str, str], dict[str, dict[str, int]]] = {}
    rows: list[tuple[str, str, str]] = []
    losses: list[str] = []
    entries: dict[tuple[tuple[str, str, str], str], Entry] = {}
    counts = {"done": 0, "failed": 0, "diverged": 0, "pending": 0}
    for cell in cells:
        row = (cell.dataset, cell.architecture, cell.variant)
        entry = entries.get((row, cell.loss))
        if entry is None:
            if row not in rows:
                rows.append(row)
            if cell.loss not in losses:
                losses.append(cell.loss)
            entry = entries[(row, cell.loss)] = Entry()
        entry.expected += 1
        status = status_of.get(cell.cell_id, "pending")
        counts[status] = counts.get(status, 0) + 1
        if status == "diverged":
            entry.diverged.add(cell.seed)
        elif status == "failed":
            entry.failed.add(cell.seed)
        rec = done_rows.get(cell.cell_id)
        for col, value in provenance.get(cell.cell_id, {}).items():
            if isinstance(value, str) and value:
                by_value = seen.setdefault(row, {}).setdefault(col, {})
                by_value[value] = by_value.get(value, 0) + 1
        if rec is not None:
            acc, mi, h_y, num_classes = rec
            if selected is not None:
                acc = selected.acc.get(cell.cell_id, acc)
            entry.acc[cell.seed] = float(acc)
            if metric.key == DEFAULT.key:
                entry.value[cell.seed] = float(acc)
            elif values is not None and cell.cell_id in values:
                entry.value[cell.seed] = values[cell.cell_id]
            entry.mi[cell.seed] = float(mi)
            entry.h_y[cell.seed] = float(h_y)
            entry.num_classes = int(num_classes)
    if baseline is not None and baseline not in losses:
        baseline = None
    mixed = {row: {col: values for col, values in cols.items() if len(values) > 1} for row, cols in seen.items()}
    return ReportData(grid, rows, losses, entries, baseline, counts, gauss_truths(cells),
                      {row: cols for row, cols in mixed.items() if cols},
                      selected.rule if selected is not None else RULES["last"],
                      dict(selected.trials) if selected is not None else {}, metric=metric,
                      regimes=regime_facts(cells, results))


def regime_facts(cells: list[Cell], results: pd.DataFrame) -> dict[tuple[str, str, str], tuple[Any, list[float], list[int]]]:
    """Per row under a data regime: the regime, and the realised training noise rates and training
    sizes its done cells stored (older stores have neither column: the lists stay empty)."""
    out: dict[tuple[str, str, str], tuple[Any, list[float], list[int]]] = {}
    facts: dict[str, tuple[float, int]] = {}
    if not results.empty and {"label_noise_rate", "train_size"} <= set(results.columns):
        done = results[results["status"] == "done"]
        facts = dict(zip(done["cell_id"].tolist(), zip(done["label_noise_rate"].tolist(), done["train_size"].tolist())))
    for cell in cells:
        regime = cell.regime
        if regime.is_default:
            continue
        row = (cell.dataset, cell.architecture, cell.variant)
        _, rates, sizes = out.setdefault(row, (regime, [], []))
        if cell.cell_id in facts:
            rate, size = facts[cell.cell_id]
            if isinstance(rate, float) and math.isfinite(rate):
                rates.append(rate)
            if size:
                sizes.append(int(size))
    return out


# how each regime is realised (bench/data/noise.py, bench/data/imbalance.py), for the captions
NOISE_CONVENTIONS = {
    "symmetric": "exactly ⌊ηN⌋ labels, spread evenly over the classes, each moved to a uniformly drawn other class",
    "asymmetric": "⌊η n_c⌋ labels of each class of the dataset's look-alike map moved to its partner (the other "
                  "classes untouched, so the overall rate is below η)",
    "pairflip": "⌊η n_c⌋ labels of each class c moved to c + 1 mod K",
}


def regime_note(data: ReportData) -> str:
    """The data regimes of the rows and how they were realised ("" when no row has one)."""
    parts = []
    for row, (regime, rates, sizes) in data.regimes.items():
        bits = []
        if regime.noise != "none":
            realised = (f"; realised training noise rate {min(rates):.3f}" + (f"–{max(rates):.3f}" if max(rates) > min(rates) else "")
                        if rates else "")
            if regime.noise == "human":  # real annotations (bench.data.human): no declared rate, no seed
                bits.append(f"human label noise, the {regime.noise_labels} annotation of {Path(regime.noise_file).name}"
                            f"{realised}")
            else:
                bits.append(f"{regime.noise} label noise η = {regime.noise_rate:g} ({NOISE_CONVENTIONS[regime.noise]}; "
                            f"noise seed {regime.noise_seed}{realised})")
        if regime.imbalance != "none":
            bits.append(f"long-tailed training split, profile {regime.imbalance}, ratio {regime.imbalance_ratio:g} "
                        f"(imbalance seed {regime.imbalance_seed})")
        if regime.subset:
            bits.append(f"a stratified training subset of {regime.subset} (subset seed {regime.subset_seed})")
        if sizes:
            bits.append(f"{min(sizes)} training examples" + (f" (to {max(sizes)})" if max(sizes) > min(sizes) else ""))
        parts.append(f"{'/'.join(p for p in row if p)}: " + "; ".join(bits))
    if not parts:
        return ""
    return ("Data regimes (the training and validation labels only: the test labels are clean and the test split "
            "balanced; the noise rate stored per cell is the fraction of training labels changed): "
            + "; ".join(parts) + ".")


def metric_values(metric: Metric, selected: Selected, hists: Mapping[str, list[dict[str, Any]]]) -> dict[str, float]:
    """cell_id -> ``metric``'s history value at the epoch the rule selected, for each done cell that has one
    (an older store's history has no such column, or NaN where other cells' have it)."""
    out: dict[str, float] = {}
    for cell_id, epoch in selected.epoch.items():
        try:
            value = float(hists[cell_id][epoch - 1].get(metric.column, math.nan))
        except (TypeError, ValueError):  # None, or text in a damaged store: lacking, as an absent column
            continue
        if math.isfinite(value):
            out[cell_id] = value
    return out


def collect_selected(grid: str, cells: list[Cell], results: pd.DataFrame, history: pd.DataFrame | None,
                     baseline: str | None, key: str = "last", metric: str = DEFAULT.key) -> ReportData:
    """The report of ``metric`` under rule ``key`` (one error line when the grid cannot honour either), with every
    other rule the grid supports in ``others`` for the side-by-side table and the CSV."""
    main = rule(key, grid, cells)
    shown = find_metric(metric, grid, cells)
    hists = histories(results, history) if history is not None and not results.empty else {}

    def under(r: Selection) -> ReportData:
        chosen = select(r, cells, hists)
        values = metric_values(shown, chosen, hists) if shown.key != DEFAULT.key else None
        return collect(grid, cells, results, baseline, chosen, shown, values)

    data = under(main)
    data.others = [under(RULES[k]) for k in applicable(cells) if k != key]
    return data


def rule_title(data: ReportData) -> str:
    """What the main table shows, naming its metric, its selection rule and, beside accuracy, which way is better."""
    m = data.metric
    if m.key == DEFAULT.key:
        if data.select.key == "last":
            return "final test accuracy (selection: last epoch)"
        return f"test accuracy (selection: {data.select.name})"
    final = "final " if data.select.key == "last" else ""
    return f"{final}test {m.name} (selection: {data.select.name}; {m.direction})"


def metric_note(data: ReportData) -> str:
    """What a metric other than accuracy is, and how ``tuned`` chose its trial ("" for accuracy)."""
    m = data.metric
    if m.key == DEFAULT.key:
        return ""
    unit = f" ({m.unit})" if m.unit else ""
    note = f"{m.short}{unit}: {m.about}."
    if data.select.across_trials:
        note += (f" The tuned trial is still the one with the best mean validation accuracy (the search's objective); "
                 f"the table shows that trial's test {m.name}.")
    return note


def lacking_note(data: ReportData, count: int, tex: bool = False) -> str:
    """The footnote of ``‡``: ``count`` finished cells whose history has no column for the metric ("" for none)."""
    if not count:
        return ""
    if tex:
        def code(t: str) -> str:
            return f"\\texttt{{{latex_escape(t)}}}"
        mark, dash = "$^\\ddagger$", "--"
    else:
        def code(t: str) -> str:
            return f"`{t}`"
        mark, dash = LACKING, MISSING
    cells = f"{count} finished cell{'s' * (count != 1)}"
    return (f"{mark}: {cells} without {code(data.metric.column)} in {'their' if count != 1 else 'its'} history "
            f"(trained before it was recorded): {dash} where no seed has it, else the mean of the seeds that do; "
            f"{code('bench run --force --filter cell_id=...')} on them records it.")


def format_hp(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_text(choice: TrialChoice | None) -> str:
    """``trial 3: lr=0.0031, lam=12`` for a tuned entry; "" otherwise."""
    if choice is None:
        return ""
    values = ", ".join(f"{k.split('.')[-1]}={format_hp(v)}" for k, v in sorted(choice.values.items()))
    return f"trial {choice.trial}" + (f": {values}" if values else "")


def provenance_note(data: ReportData) -> str:
    """One sentence per row whose finished cells ran under different provenance ("" when none)."""
    parts = []
    for row, cols in data.mixed.items():
        what = "; ".join(f"{col} " + ", ".join(f"{v} ×{n}" for v, n in sorted(values.items()))
                         for col, values in cols.items())
        parts.append(f"{'/'.join(p for p in row if p)}: {what}")
    return ("Provenance differs within a row (cells of one row ran under different resolved settings or devices): "
            + "; ".join(parts) + ".") if parts else ""


def gauss_truths(cells: list[Cell]) -> dict[str, dict[str, float]]:
    """Exact MI and Bayes error of each gauss dataset's generating distribution."""
    out: dict[str, dict[str, float]] = {}
    for cell in cells:
        ds = cell.config["dataset"]
        if ds["kind"] == "gauss" and cell.dataset not in out:
            from bench.data import gauss_params  # imports torch: only for gauss grids
            from bench.paper.theory import gauss_bayes_error, gauss_delta, gauss_mi

            params = gauss_params(ds["params"])
            delta = gauss_delta(params["mu"], params["sigma2"])
            out[cell.dataset] = {"delta": delta, "mi_exact": float(gauss_mi(delta, params["prior"])),
                                 "bayes_error": float(gauss_bayes_error(delta, params["prior"]))}
    return out


# ----------------------------------------------------------------------------- numbers and cell texts
def fmt_num(x: float, digits: int = DIGITS, signed: bool = False) -> str:
    """``x`` at ``digits`` decimals; a value that rounds to zero prints unsigned (never ``-0.000``)."""
    if not math.isfinite(x):
        return "nan"
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    if float(text) == 0.0:
        # -0.0004 rounds to "-0.000" (and +0.0004 to "+0.000"): a sign the printed digits do not carry
        return f"{0.0:.{digits}f}"
    return text


def _mean_text(values: dict[int, float], digits: int = DIGITS) -> tuple[str, str]:
    """(mean, mean ± std) over the seeds' values; no std from a single seed."""
    mean, std, n = mean_std(list(values.values()))
    m = fmt_num(mean, digits)
    return m, (f"{m} ± {fmt_num(std, digits)}" if n > 1 else m)


def _status_text(e: Entry) -> tuple[str, str]:
    """(head, note) for an entry with no value to show: its status word and which share of its seeds it covers."""
    if e.diverged:
        parts = [f"{len(e.diverged)} of {e.expected}"] if len(e.diverged) < e.expected else []
        if e.failed:
            parts.append(f"{len(e.failed)} failed")
        return "diverged", (f" ({', '.join(parts)})" if parts else "")
    if e.failed:
        return "failed", (f" ({len(e.failed)} of {e.expected})" if len(e.failed) < e.expected else "")
    return MISSING, ""


def seed_note(n: int, expected: int, diverged: int = 0, failed: int = 0) -> str:
    """`` (n=2, 1 diverged)``: fewer finished seeds than the grid asks and why, or ""."""
    parts = [f"n={n}"] if n < expected else []
    if diverged:
        parts.append(f"{diverged} diverged")
    if failed:
        parts.append(f"{failed} failed")
    return f" ({', '.join(parts)})" if parts else ""


def value_text(e: Entry, digits: int = DIGITS, gone_wrong: bool = True) -> str:
    """An entry's ``mean ± std (n=k, 1 diverged)`` of the shown metric (without the diverged and failed counts
    unless ``gone_wrong``), ``‡`` when some finished seeds lack it."""
    if not e.value:
        return MISSING + (LACKING if e.n else "")
    wrong = (len(e.diverged), len(e.failed)) if gone_wrong else (0, 0)
    return _mean_text(e.value, digits)[1] + seed_note(len(e.value), e.expected, *wrong) + (LACKING if e.lacking else "")


def accuracy_cells(data: ReportData) -> list[list[tuple[str, bool]]]:
    """For each row, each loss: (text, is_best). Every entry whose printed mean equals the best printed mean is best
    (the lowest for a metric where lower is better)."""
    digits = data.metric.digits
    out = []
    for row in data.rows:
        means: dict[str, str] = {}
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is not None and e.value:
                means[loss] = _mean_text(e.value, digits)[0]
        # ties are decided on the printed digits: 0.8634 and 0.8626 both read 0.863, so both are bold
        pick = min if data.metric.lower_is_better else max
        best = pick(means.values(), key=float) if means else None
        line = []
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None or e.expected == 0:
                line.append(("", False))
            elif not e.n:
                head, note = _status_text(e)
                line.append((head + note, False))
            else:
                text = value_text(e, digits)
                hp = trial_text(data.trials.get((*row, loss)))
                text += f" [{hp}]" if hp else ""
                line.append((text, best is not None and means.get(loss) == best))
        out.append(line)
    return out


def comparison_rows(data: ReportData) -> list[dict[str, Any]]:
    """Each loss minus the baseline in the same row, paired by seed, with a 95% t interval. The difference keeps
    its sign (loss minus baseline) for every metric; the verdict reads it in the metric's direction."""
    if data.baseline is None:
        return []
    lower = data.metric.lower_is_better
    out = []
    for row in data.rows:
        base = data.entries.get((row, data.baseline))
        first = len(out)
        for loss in data.losses:
            if loss == data.baseline:
                continue
            e = data.entries.get((row, loss))
            if e is None or base is None:
                continue
            d = paired_diff_ci(e.value, base.value)
            if not e.n and e.status in ("diverged", "failed"):
                status = e.status
            elif not base.n and base.status in ("diverged", "failed"):
                status = f"baseline {base.status}"
            else:
                status = "done" if d.n else "pending"
            out.append({"dataset": row[0], "architecture": row[1], "variant": row[2], "loss": loss,
                        "diff": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n, "significant": d.significant, "note": d.note,
                        "status": status, "expected": min(e.expected, base.expected),
                        "diverged": len(e.diverged | base.diverged), "failed": len(e.failed | base.failed),
                        "p": paired_p_value(e.value, base.value)})
        # Holm–Bonferroni across the losses compared in this row: the verdicts hold together at 5%
        for r, adj in zip(out[first:], holm([r["p"] for r in out[first:]])):
            r["p_holm"] = adj
            better = r["diff"] < 0 if lower else r["diff"] > 0
            r["verdict"] = ("" if not math.isfinite(adj) else "no difference" if adj >= 0.05
                            else "better" if better else "worse")
    return out


def mi_rows(data: ReportData) -> list[dict[str, Any]]:
    """Final test Î and the error lower bounds it implies (Theorem 4 and exact Fano).

    Entries no seed of which finished are listed only when they diverged or failed (with that status).
    """
    out = []
    for row in data.rows:
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None or e.status == "pending":
                continue
            base = {"dataset": row[0], "architecture": row[1], "variant": row[2], "loss": loss, "n": e.n,
                    "expected": e.expected, "diverged": len(e.diverged), "failed": len(e.failed), "status": e.status}
            if not e.n:
                out.append({**base, "mi_nats": math.nan, "mi_std": math.nan, "mi_bits": math.nan, "h_y_nats": math.nan,
                            "num_classes": 0, "test_error": math.nan, "bound_thm4": math.nan, "bound_fano": math.nan,
                            "bound_holds": None})
                continue
            mi, mi_std, n = mean_std(list(e.mi.values()))
            acc = mean_std(list(e.acc.values()))[0]
            h_y = sum(e.h_y.values()) / len(e.h_y)
            k = max(e.num_classes, 2)
            thm4 = theorem4_bound(h_y, max(mi, 0.0), k, unit="nats")
            fano = fano_bound(h_y, max(mi, 0.0), k, unit="nats")
            err = 1.0 - acc
            out.append({**base, "mi_nats": mi, "mi_std": mi_std, "mi_bits": mi / math.log(2), "h_y_nats": h_y,
                        "num_classes": k, "test_error": err, "bound_thm4": thm4, "bound_fano": fano,
                        "bound_holds": err >= fano - 1e-12})
    return out


def _diff_text(r: dict[str, Any], with_note: bool = True, digits: int = DIGITS) -> tuple[str, str]:
    """(Δ, interval) texts of a comparison row; the interval is "" where there is none."""
    if r["status"] not in ("done", "pending"):
        return r["status"], ""
    if r["n"] == 0:
        return MISSING, ""
    note = seed_note(r["n"], r["expected"], r["diverged"], r["failed"]) if with_note else ""
    diff = fmt_num(r["diff"], digits, signed=True)
    if r["n"] < 2:
        return diff + note, ""
    star = " *" if r["significant"] else ""
    return diff, f"[{fmt_num(r['lo'], digits, signed=True)}, {fmt_num(r['hi'], digits, signed=True)}]{star}{note}"


def _mi_texts(r: dict[str, Any], with_note: bool = True) -> list[str]:
    """Î, H(Y), error, Thm 4, Fano, holds, as printed."""
    if r["status"] in ("diverged", "failed"):
        return [r["status"], "", "", "", "", ""]
    mi = f"{fmt_num(r['mi_nats'])} ± {fmt_num(r['mi_std'])}" if r["n"] > 1 else fmt_num(r["mi_nats"])
    if with_note:
        mi += seed_note(r["n"], r["expected"], r["diverged"], r["failed"])
    return [mi, fmt_num(r["h_y_nats"]), fmt_num(r["test_error"]), fmt_num(r["bound_thm4"]), fmt_num(r["bound_fano"]),
            "yes" if r["bound_holds"] else "no"]


# ----------------------------------------------------------------------------- footnotes
@dataclass(frozen=True)
class _Marks:
    """Which marks the tables carry, so that each footnote explains only what is there."""

    partial: bool  # an entry with some but not all seeds finished
    missing: bool  # an entry with no finished seed and nothing gone wrong
    diverged: bool
    failed: bool
    bold: bool
    tie: bool
    lacking: int = 0  # finished cells without the shown metric


def _marks(data: ReportData, acc: list[list[tuple[str, bool]]]) -> _Marks:
    es = [e for e in data.entries.values() if e.expected]
    return _Marks(partial=any(0 < len(e.value) < e.expected for e in es),
                  missing=any(e.status == "pending" for e in es),
                  diverged=any(e.diverged for e in es), failed=any(e.failed for e in es),
                  bold=any(b for line in acc for _, b in line), tie=any(sum(b for _, b in line) > 1 for line in acc),
                  lacking=sum(e.lacking for e in es))


def _seeds_phrase(data: ReportData) -> str:
    counts = data.seed_counts
    if not counts:
        return "no seeds"
    if len(counts) > 1:
        return f"{counts[0]}–{counts[-1]} seeds"
    return "1 seed" if counts[0] == 1 else f"{counts[0]} seeds"


def count_line(counts: dict[str, int]) -> str:
    """``14 done, 4 pending``: the cell counts that are not zero."""
    parts = [f"{v} {k}" for k, v in counts.items() if v]
    return ", ".join(parts) if parts else "no cells"


def _accuracy_note(data: ReportData, marks: _Marks) -> str:
    one_seed = data.seed_counts == [1]
    notes = [f"Cells: {count_line(data.counts)}."]  # provenance and regimes follow as paragraphs of their own
    if one_seed:
        notes.append("One seed per cell, so no std.")
    else:
        notes.append(f"Mean ± sample std (ddof=1) over the grid's {_seeds_phrase(data)}.")
    if marks.partial:
        notes.append("`(n=k)` marks entries with only k of them finished.")
    if marks.missing:
        notes.append(f"{MISSING} marks entries with no finished seed yet.")
    if marks.diverged:
        notes.append("`diverged`: training stopped on a non-finite loss (on k seeds, where a count is given).")
    if marks.failed:
        notes.append("`failed`: the cell raised an error (`bench status` shows it).")
    if marks.lacking:
        notes.append(lacking_note(data, marks.lacking))
    if marks.bold:
        best = "Best (lowest) mean" if data.metric.lower_is_better else "Best mean"
        notes.append(f"{best} per row in bold" + (", every entry tied with it at the printed precision too."
                                                  if marks.tie else "."))
    about = metric_note(data)
    return " ".join([about, *notes] if about else notes)


def _diff_note(data: ReportData, comp: list[dict[str, Any]]) -> str:
    notes = []
    if data.seed_counts and data.seed_counts[-1] < 2:
        notes.append("With one seed per cell there is no interval: each difference is a single pair of runs, "
                     "not evidence of a gain.")
    elif any(r["n"] >= 2 for r in comp):
        notes.append(f"`*` marks an interval that excludes zero; with {_seeds_phrase(data)} an interval is wide, "
                     "so a difference without `*` is not evidence of a gain.")
        if _zero_end(comp, data.metric.digits):
            notes.append(f"An end printed as {fmt_num(0.0, data.metric.digits)} is non-zero beyond the printed digits.")
    if any(r["status"] in ("done", "pending") and 0 < r["n"] < r["expected"] for r in comp):
        notes.append("`(n=k)`: only k seeds are paired (an interval needs 2).")
    return " ".join(notes)


def _zero_end(comp: list[dict[str, Any]], digits: int = DIGITS) -> bool:
    """Whether an interval that excludes zero prints an end as 0.000 (it reads as if it touched zero)."""
    zero = fmt_num(0.0, digits)
    return any(r["significant"] and zero in (fmt_num(r["lo"], digits, signed=True), fmt_num(r["hi"], digits, signed=True))
               for r in comp if r["n"] >= 2)


MI_NOTE = (f"Î = H_θ(Y) − H_θ(Y|X) on the test split ({THEORY_DOC}); the bounds are Theorem 4's closed form and "
           "the exact Fano bound evaluated at the learned Î and the test label entropy. Both bounds fall as I grows "
           "and the achieved error obeys them at the true I(X;Y), so a bound above the achieved error "
           "(error ≥ bound: no) means Î understates the true I(X;Y).")


# ----------------------------------------------------------------------------- markdown
def _row_label(row: tuple[str, str, str]) -> list[str]:
    return [row[0], row[1]] + ([row[2]] if row[2] else [])


def _has_variants(data: ReportData) -> bool:
    return any(r[2] for r in data.rows)


def render_markdown(data: ReportData, figures: list[str] | None = None) -> str:
    variants = _has_variants(data)
    label_heads = ["dataset", "architecture"] + (["setting"] if variants else [])

    def label(r: dict[str, Any] | tuple[str, str, str]) -> list[str]:
        parts = (r["dataset"], r["architecture"], r["variant"]) if isinstance(r, dict) else r
        return [parts[0], parts[1]] + ([parts[2]] if variants else [])

    acc = accuracy_cells(data)
    body = [label(row) + [f"**{t}**" if best else t for t, best in line] for row, line in zip(data.rows, acc)]
    parts = [
        f"## Grid `{data.grid}`: {rule_title(data)} ("
        + ("one seed per cell" if data.seed_counts == [1] else f"mean ± std over {_seeds_phrase(data)}") + ")",
        "",
        tabulate(body, headers=label_heads + data.losses, tablefmt="pipe", disable_numparse=True),
        "",
        _accuracy_note(data, _marks(data, acc)),
    ]
    if data.mixed:
        parts += ["", provenance_note(data)]
    if data.regimes:
        parts += ["", regime_note(data)]
    comp = comparison_rows(data)
    if comp:
        m = data.metric
        holm_col = data.select.across_trials  # the tuned comparison carries the adjusted verdict
        rows = [label(r) + [r["loss"], " ".join(t for t in _diff_text(r, digits=m.digits) if t)]
                + ([f"{r['verdict']} (p={fmt_num(r['p_holm'])})" if r["verdict"] else MISSING] if holm_col else [])
                for r in comp]
        how = "one seed per cell, no interval" if data.seed_counts == [1] else "paired by seed, 95% t interval"
        if m.key == DEFAULT.key:
            which = "" if data.select.key == "last" else f"; selection: {data.select.name}"
            heading = f"### Difference to `{data.baseline}` ({how}{which})"
        else:
            heading = (f"### Difference in test {m.name} to `{data.baseline}` (loss minus baseline, {m.direction}; "
                       f"{how}; selection: {data.select.name})")
        heads = label_heads + ["loss", f"Δ {m.short}"] + (["Holm–Bonferroni verdict"] if holm_col else [])
        parts += ["", heading, "", tabulate(rows, headers=heads, tablefmt="pipe", disable_numparse=True)]
        if holm_col:
            parts += ["", "The verdict is the paired t test's p-value adjusted by Holm–Bonferroni across the losses "
                          "compared in the row, at 5%; each tuned loss is compared with the tuned baseline."
                      + ("" if m.key == DEFAULT.key else
                         f" `better`: a {'lower' if m.lower_is_better else 'higher'} {m.short} than the baseline's.")]
        note = _diff_note(data, comp)
        if note:
            parts += ["", note]
    if data.others:
        parts += ["", *rules_table(data, label, label_heads)]
    mis = mi_rows(data)
    if mis:
        rows = []
        for r in mis:
            texts = _mi_texts(r)
            texts[-1] = "**no**" if texts[-1] == "no" else texts[-1]
            rows.append(label(r) + [r["loss"]] + texts)
        parts += ["", "### Learned mutual information and the error lower bounds it implies", "",
                  tabulate(rows, headers=label_heads + ["loss", "test Î (nats)", "H(Y) test", "test error", "Thm 4 bound",
                                                        "Fano bound", "error ≥ bound"],
                           tablefmt="pipe", disable_numparse=True),
                  "", MI_NOTE]
    if data.truths:
        parts += ["", "### The generating distribution", "",
                  tabulate([[ds, fmt_num(t["delta"], 4), fmt_num(t["mi_exact"], 4), fmt_num(t["bayes_error"], 4)]
                            for ds, t in data.truths.items()],
                           headers=["dataset", "δ", "exact I(X;Y) (nats)", "Bayes error"], tablefmt="pipe", disable_numparse=True),
                  "", "Read the learned test Î against the exact I(X;Y), and the achieved test error against the Bayes error."]
    for fig in figures or []:
        parts += ["", f"![{fig}]({fig})"]
    return "\n".join(parts) + "\n"


def rules_table(data: ReportData, label: Any, label_heads: list[str]) -> list[str]:
    """One compact table, every selection rule side by side per (dataset, architecture, loss); the caption names each."""
    every = sorted([data, *data.others], key=lambda d: list(RULES).index(d.select.key))
    m = data.metric
    body = []
    lacking = max(sum(e.lacking for e in d.entries.values()) for d in every)
    for row in data.rows:
        for loss in data.losses:
            line = label(row) + [loss]
            for d in every:
                e = d.entries.get((row, loss))
                # the seeds averaged only: the main table says which diverged or failed
                text = value_text(e, m.digits, gone_wrong=False) if e is not None and e.n else MISSING
                choice = d.trials.get((*row, loss))
                line.append(text + (f" (trial {choice.trial})" if choice is not None else ""))
            body.append(line)
    names = "; ".join(f"`{d.select.key}`: {d.select.name}" for d in every)
    search = " The epoch rules show a search grid's trial 0 (every loss at its registry defaults)." if data.trials or any(
        d.trials for d in data.others) else ""
    if m.key == DEFAULT.key:
        heading = "### Test accuracy under every selection rule (mean ± std over seeds)"
        tail = ""
    else:
        heading = f"### Test {m.name} under every selection rule (mean ± std over seeds; {m.direction})"
        tail = (f" `tuned` chooses its trial by validation accuracy and shows that trial's test {m.name}."
                if any(d.select.across_trials for d in every) else "")
        tail += f" {lacking_note(data, lacking)}" if lacking else ""
    return [heading, "", tabulate(body, headers=label_heads + ["loss"] + [d.select.key for d in every],
                                  tablefmt="pipe", disable_numparse=True), "", f"Rules: {names}.{search}{tail}"]


# ----------------------------------------------------------------------------- LaTeX
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
# symbols the tables print, in math mode: pdflatex's default input encoding has no text glyph for them
_LATEX_SYMBOLS = {"±": r"$\pm$", "—": "--", "Î": r"$\hat{I}$", "Δ": r"$\Delta$", "≥": r"$\geq$", "λ": r"$\lambda$",
                  "δ": r"$\delta$", "θ": r"$\theta$", "−": "$-$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
                  "η": r"$\eta$", "⌊": r"$\lfloor$", "⌋": r"$\rfloor$", "–": "--"}

# The text width of a plain 10pt ``article`` (its \columnwidth in one column) and the default \tabcolsep.
COLUMN_WIDTH_PT = 345.0
TABCOLSEP_PT = 6.0
# Upper bounds of Computer Modern glyph widths at 10pt, by class (measured: cmr10's widest glyph of each
# class, rounded up; "-" as wide as the minus sign numbers print with), so the estimate of a table's width
# errs on the wide side and a table estimated to fit does fit; bold (cmbx10) is at most 1.2 times as wide.
_WIDTH_CLASSES = ((3.1, "!',.:;<[]`ilfj"), (4.0, "_I()trs"), (4.8, "cez>?"), (3.4, " "),
                  (5.6, "0123456789abdghknopquvxy$\"*/\\^{}~JS"), (7.9, "ABCDEFGHKLNOPQRTUVXYZw&+=@-"))
_WIDTH_OF = {ch: w for w, chars in _WIDTH_CLASSES for ch in chars}
_WIDTH_OTHER = 10.3  # m, M, W, %, #, | and any symbol
_BOLD = 1.2


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


_NUMBER_MINUS = re.compile(r"(?:(?<=^)|(?<=[\s\[(,]))-(?=\d)")


def latex_text(text: str) -> str:
    tex = "".join(_LATEX_SYMBOLS.get(ch) or _LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    return _NUMBER_MINUS.sub(lambda _: "$-$", tex)  # a minus sign, not a hyphen, before a number


def text_width_pt(text: str, bold: bool = False) -> float:
    """An upper estimate of ``text``'s width in points, typeset in 10pt Computer Modern."""
    return sum(_WIDTH_OF.get(ch, _WIDTH_OTHER) for ch in text) * (_BOLD if bold else 1.0)


@dataclass(frozen=True)
class Shown:
    """One table cell as printed: its text and whether it is bold."""

    text: str
    bold: bool = False


@dataclass
class _Tabular:
    """A booktabs tabular: heads, column alignments, body rows or group titles spanning every column."""

    heads: list[str]
    align: str
    body: list[list[Shown] | str] = field(default_factory=list)

    def width_pt(self) -> float:
        cols = [text_width_pt(h) for h in self.heads]
        titles = [0.0]
        for row in self.body:
            if isinstance(row, str):
                titles.append(text_width_pt(row, bold=True))  # italic titles: within the bold bound
                continue
            for i, cell in enumerate(row):
                cols[i] = max(cols[i], text_width_pt(cell.text, cell.bold))
        return max(sum(cols) + 2 * TABCOLSEP_PT * (len(cols) - 1), max(titles))

    def fits(self) -> bool:
        return self.width_pt() <= COLUMN_WIDTH_PT

    def lines(self) -> list[str]:
        # @{} at both ends: the outer \tabcolsep would only push the rules past the text
        out = [f"\\begin{{tabular}}{{@{{}}{self.align}@{{}}}}", "\\toprule",
               " & ".join(latex_text(h) for h in self.heads) + " \\\\", "\\midrule"]
        first = True
        for row in self.body:
            if isinstance(row, str):
                if not first:
                    out.append("\\addlinespace")
                out.append(f"\\multicolumn{{{len(self.heads)}}}{{@{{}}l}}{{\\emph{{{latex_text(row)}}}}} \\\\")
            else:
                cells = (f"\\textbf{{{latex_text(c.text)}}}" if c.bold else latex_text(c.text) for c in row)
                out.append(" & ".join(cells) + " \\\\")
            first = False
        return out + ["\\bottomrule", "\\end{tabular}"]


def _label(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


@dataclass(frozen=True)
class _Scope:
    """Which parts of the (dataset, architecture, setting) row label vary; the constant ones go in the caption."""

    vary: tuple[bool, bool, bool]
    common: str

    @staticmethod
    def of(rows: list[tuple[str, str, str]]) -> _Scope:
        ds, arch, variant = (len({r[i] for r in rows}) > 1 for i in range(3))
        vary = (ds, arch, variant)
        common = " / ".join(rows[0][i] for i in range(3) if rows and not vary[i] and rows[0][i])
        return _Scope(vary, common)

    def label(self, row: tuple[str, str, str]) -> str:
        return " / ".join(row[i] for i in range(3) if self.vary[i])

    @property
    def grouped(self) -> bool:
        return any(self.vary)


def _accuracy_layouts(data: ReportData, scope: _Scope, acc: list[list[tuple[str, bool]]]) -> list[_Tabular]:
    """The accuracy table three ways, the most compact reading first: losses as columns, losses as rows
    with one column per (dataset, model), one (dataset, model) group of loss rows after another."""
    heads = [h for h, v in zip(("Dataset", "Model", "Setting"), scope.vary) if v]
    wide = _Tabular(heads + data.losses, "l" * len(heads) + "c" * len(data.losses))
    for row, line in zip(data.rows, acc):
        wide.body.append([Shown(row[i]) for i in range(3) if scope.vary[i]] + [Shown(t, b) for t, b in line])
    labels = [scope.label(row) for row in data.rows] if scope.grouped else [data.metric.head]
    tall = _Tabular(["Loss"] + labels, "l" + "c" * len(labels))
    for j, loss in enumerate(data.losses):
        tall.body.append([Shown(loss)] + [Shown(*line[j]) for line in acc])
    long = _Tabular(["Loss", data.metric.head], "lc")
    for row, line in zip(data.rows, acc):
        if scope.grouped:
            long.body.append(scope.label(row))
        long.body += [[Shown(loss), Shown(t, b)] for loss, (t, b) in zip(data.losses, line) if t]
    return [wide, tall, long]


# Heights in a plain 10pt article (measured): its \textheight, a tabular row, the booktabs rules of a table, the
# \addlinespace before a group title and the skip above a caption; a float taller than the text is split.
TEXT_HEIGHT_PT = 550.0
ROW_PT = 12.0
RULES_PT = 11.2
GAP_PT = 5.0
CAPTION_SKIP_PT = 10.0
_CAPTION_PREFIX_PT = 45.0  # "Table 10: "


def _height_pt(body: list[list[Shown] | str], caption: str) -> float:
    # the caption is measured on its TeX source, whose macros are longer than what they print: an upper bound
    lines = math.ceil((text_width_pt(caption) + _CAPTION_PREFIX_PT) / COLUMN_WIDTH_PT)
    gaps = sum(isinstance(row, str) for row in body[1:])
    return CAPTION_SKIP_PT + ROW_PT * lines + RULES_PT + ROW_PT * (1 + len(body)) + GAP_PT * gaps


def _split(tab: _Tabular, caption: str, continued: str) -> list[_Tabular]:
    """``tab`` as one table or, when taller than a page, several, broken between groups where it can be."""
    budget = 0.95 * TEXT_HEIGHT_PT
    groups: list[list[list[Shown] | str]] = []
    for row in tab.body:
        if isinstance(row, str) or not groups:
            groups.append([row])
        else:
            groups[-1].append(row)
    parts: list[list[list[Shown] | str]] = []
    cur: list[list[Shown] | str] = []
    for group in groups:
        if cur and _height_pt(cur + group, continued if parts else caption) > budget:
            parts.append(cur)  # the next group starts the next table
            cur = []
        title = group[0] if isinstance(group[0], str) else None
        for row in group:
            if cur and _height_pt(cur + [row], continued if parts else caption) > budget:
                # one group taller than a page: break inside it, the next part repeats its title
                parts.append(cur)
                cur = [f"{title} (continued)"] if title else []
            cur.append(row)
    parts.append(cur)
    return [_Tabular(tab.heads, tab.align, body) for body in parts]


def _table(tab: _Tabular, caption: str, continued: str, label: str) -> list[str]:
    """The table environment(s) of ``tab``: the caption on the first, ``continued`` on any later part."""
    out = []
    parts = _split(tab, caption, continued)
    for i, part in enumerate(parts):
        body = part.lines()
        if not part.fits():
            # names too long for any layout (a user's own loss or model labels): scaled to the column rather than
            # running into the margin
            out.append("% \\resizebox needs \\usepackage{graphicx}")
            body = ["\\resizebox{\\columnwidth}{!}{%", *body, "}"]
        head = [f"\\caption{{{caption}}}", f"\\label{{{label}}}"] if i == 0 else [
            f"\\caption{{{continued}}}", f"\\label{{{label}-{i + 1}}}"]
        # [tbp]: a table taller than a [t] float may be (70% of the page) goes on a page of floats
        out += ["\\begin{table}[tbp]", "\\centering", *head, *body, "\\end{table}", ""]
    return out


def _caption_scope(data: ReportData, scope: _Scope) -> str:
    where = f" on {latex_text(scope.common)}" if scope.common else ""
    return f"grid \\texttt{{{latex_escape(data.grid)}}}{where}"


def render_latex(data: ReportData) -> str:
    """Three booktabs tables (the metric, paired differences, Î and bounds), each fitting a plain article's column."""
    m = data.metric
    scope = _Scope.of(data.rows)
    acc = accuracy_cells(data)
    marks = _marks(data, acc)
    tag = _label(data.grid)
    out = ["% requires \\usepackage{booktabs}", ""]

    layouts = _accuracy_layouts(data, scope, acc)
    tab = next((t for t in layouts if t.fits()), layouts[-1])
    seeds = "one seed per cell" if data.seed_counts == [1] else f"mean $\\pm$ sample std over {_seeds_phrase(data)}"
    notes = [latex_text(metric_note(data))] if m.key != DEFAULT.key else []
    notes.append(f"Cells: {count_line(data.counts)}.")
    if data.mixed:
        notes.append(latex_text(provenance_note(data)))
    if data.regimes:
        notes.append(latex_text(regime_note(data)))
    if marks.partial:
        notes.append("(n=$k$): only $k$ seeds finished.")
    if marks.missing:
        notes.append("--: no finished seed yet.")
    if marks.diverged:
        notes.append("diverged: stopped on a non-finite loss.")
    if marks.failed:
        notes.append("failed: the cell raised an error.")
    if marks.lacking:
        notes.append(lacking_note(data, marks.lacking, tex=True))
    if marks.bold:
        per = " and ".join(w for w, v in zip(("dataset", "model", "setting"), scope.vary) if v) or "table"
        best = "Best (lowest)" if m.lower_is_better else "Best"
        notes.append(f"{best} per {per} in bold" + (", ties at the printed precision all bold." if marks.tie else "."))
    title = f"{rule_title(data)[0].upper()}{rule_title(data)[1:]}, {_caption_scope(data, scope)}"
    out += _table(tab, f"{title} ({seeds}). {' '.join(notes)}", f"{title} (continued).", f"tab:{tag}-accuracy")

    comp = comparison_rows(data)
    if comp:
        dtab = _Tabular(["Loss", "Δ", "95% CI"], "lcc")
        last = None
        dagger = False
        for r in comp:
            row = (r["dataset"], r["architecture"], r["variant"])
            if scope.grouped and row != last:
                dtab.body.append(scope.label(row))
                last = row
            diff, ci = _diff_text(r, with_note=False, digits=m.digits)
            short = r["status"] in ("done", "pending") and 0 < r["n"] < r["expected"]
            dagger |= short
            dtab.body.append([Shown(r["loss"] + ("†" if short else "")), Shown(diff), Shown(ci)])
        one_seed = bool(data.seed_counts) and data.seed_counts[-1] < 2
        dnotes = []
        if one_seed:
            dnotes.append("With one seed per cell there is no interval.")
        elif any(r["n"] >= 2 for r in comp):
            dnotes.append(f"* marks an interval that excludes zero; with {_seeds_phrase(data)} an interval is wide, "
                          "so a difference without * is not evidence of a gain.")
        if _zero_end(comp, m.digits):
            dnotes.append(f"An end printed as {fmt_num(0.0, m.digits)} is non-zero beyond the printed digits.")
        if dagger:
            dnotes.append("$^\\dagger$: fewer paired seeds than the grid asks.")
        title = f"Test {latex_text(m.name)} minus that of \\texttt{{{latex_escape(data.baseline or '')}}}"
        if m.key != DEFAULT.key:
            title += f" ({m.direction}; selection: {latex_text(data.select.name)})"
        out += _table(dtab, f"{title}, paired by seed, with a 95\\% $t$ interval, {_caption_scope(data, scope)}. "
                            f"{' '.join(dnotes)}", f"{title} (continued).", f"tab:{tag}-differences")

    mis = mi_rows(data)
    if mis:
        mtab = _Tabular(["Loss", "Î (nats)", "Error", "Thm 4", "Fano", "Holds"], "lccccc")
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in mis:
            groups.setdefault((r["dataset"], r["architecture"], r["variant"]), []).append(r)
        dagger = False
        entropies: list[str] = []
        for row, members in groups.items():
            h = _entropy_text([r for r in members if r["n"]])
            if scope.grouped:
                mtab.body.append(scope.label(row) + (f": {h}" if h else ""))
            elif h:
                entropies.append(h)
            for r in members:
                short = r["status"] == "partial"
                dagger |= short
                texts = _mi_texts(r, with_note=False)
                del texts[1]  # H(Y) is the test split's, the same for every loss: in the group title
                mtab.body.append([Shown(r["loss"] + ("†" if short else ""))] + [Shown(t, t == "no") for t in texts])
        mnotes = ["$\\hat I = H_\\theta(Y) - H_\\theta(Y|X)$ on the test split; Thm 4: Theorem 4's closed-form and "
                  "Fano: the exact Fano lower bound on the error at $\\hat I$ and the test label entropy $H(Y)$. "
                  "Holds: error $\\geq$ Fano; both bounds fall as $I$ grows, so one above the achieved error means "
                  "$\\hat I$ understates the true $I(X;Y)$."]
        if entropies:
            mnotes.append(f"Test {entropies[0]}.")
        if dagger:
            mnotes.append("$^\\dagger$: fewer finished seeds than the grid asks.")
        for ds, t in data.truths.items():
            mnotes.append(f"{latex_text(ds)}: exact $I(X;Y) = {fmt_num(t['mi_exact'])}$ nats, Bayes error "
                          f"{fmt_num(t['bayes_error'])}.")
        title = "Learned test $\\hat I$ and the error lower bounds it implies"
        out += _table(mtab, f"{title}, {_caption_scope(data, scope)}. {' '.join(mnotes)}", f"{title} (continued).",
                      f"tab:{tag}-mi")
    return "\n".join(out)


def _entropy_text(members: list[dict[str, Any]]) -> str:
    """``H(Y) = 2.303 nats, K = 10`` of a group's finished entries (a range where they differ)."""
    if not members:
        return ""
    hs = sorted({fmt_num(r["h_y_nats"]) for r in members}, key=float)
    ks = sorted({r["num_classes"] for r in members})
    h = hs[0] if len(hs) == 1 else f"{hs[0]}–{hs[-1]}"
    return f"H(Y) = {h} nats, K = {'/'.join(map(str, ks))}"


# ----------------------------------------------------------------------------- CSV
def render_csv(data: ReportData) -> str:
    """Long form, one line per (rule, row, loss): machine-readable, no formatting; ``status`` says what an empty
    value means. The report's own rule comes first, then every other rule the grid supports.

    Accuracy's columns are ``acc_mean``, ``acc_std``. Another metric adds a ``metric`` column (its key, after
    ``select``), names its columns after it (``ece_mean``, ``ece_std``), counts in ``n`` the seeds that have it
    and in ``n_without_metric`` the finished seeds whose history lacks it; ``diff_vs_baseline`` and its interval
    are then that metric's (loss minus baseline, whichever direction is better)."""
    recs = [rec for d in [data, *data.others] for rec in _csv_records(d)]
    hp_cols = sorted({k for r in recs for k in r if k.startswith("hp.")})
    return pd.DataFrame(recs, columns=[*(k for k in recs[0] if not k.startswith("hp.")), *hp_cols] if recs else None
                        ).to_csv(index=False, float_format="%.6g")


def _csv_records(data: ReportData) -> list[dict[str, Any]]:
    recs = []
    m = data.metric
    default = m.key == DEFAULT.key
    comp = {(r["dataset"], r["architecture"], r["variant"], r["loss"]): r for r in comparison_rows(data)}
    mis = {(r["dataset"], r["architecture"], r["variant"], r["loss"]): r for r in mi_rows(data)}
    nan = float("nan")
    for row in data.rows:
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is None:
                continue
            mean, std, n = mean_std(list(e.value.values())) if e.value else (nan, nan, 0)
            key = (*row, loss)
            c = comp.get(key, {})
            mi = mis.get(key, {})
            choice = data.trials.get(key)
            recs.append({"grid": data.grid, "select": data.select.key, **({} if default else {"metric": m.key}),
                         "dataset": row[0], "architecture": row[1],
                         "setting": row[2], "loss": loss, "trial": choice.trial if choice is not None else "",
                         "status": e.status, "n": n, "n_expected": e.expected, "n_diverged": len(e.diverged),
                         "n_failed": len(e.failed), **({} if default else {"n_without_metric": e.lacking}),
                         f"{m.key}_mean": mean, f"{m.key}_std": std,
                         "diff_vs_baseline": c.get("diff", nan), "diff_lo": c.get("lo", nan),
                         "diff_hi": c.get("hi", nan), "p": c.get("p", nan), "p_holm": c.get("p_holm", nan),
                         "mi_nats": mi.get("mi_nats", nan),
                         "bound_thm4": mi.get("bound_thm4", nan), "bound_fano": mi.get("bound_fano", nan),
                         **{f"hp.{k}": v for k, v in (choice.values if choice is not None else {}).items()}})
    return recs


def render(data: ReportData, fmt: str, figures: list[str] | None = None) -> str:
    if fmt == "markdown":
        return render_markdown(data, figures)
    if fmt == "latex":
        return render_latex(data)
    return render_csv(data)


# ----------------------------------------------------------------------------- nothing to report
def run_command(grid: str, options: list[tuple[str, Any]], retry_failed: bool = False, force: bool = False) -> str:
    """The ``bench run`` command line that trains ``grid``'s cells; ``options``: (flag, value) pairs, None ones left out."""
    parts = ["bench", "run", "--grid", grid]
    for flag, value in options:
        if value is not None:
            parts += [flag, str(value)]
    if retry_failed:
        parts.append("--retry-failed")
    if force:
        parts.append("--force")
    return shlex.join(parts)


def nothing_finished(data: ReportData, results: Path | str, options: list[tuple[str, Any]]) -> str | None:
    """One line saying that no cell of the grid has finished, with the command that would train them; None otherwise."""
    if data.counts.get("done", 0):
        return None
    total = sum(data.counts.values())
    if not total:
        return f"grid {data.grid!r}: no cells to report"
    retry = not data.counts.get("pending", 0)  # every cell failed or diverged: a plain run would skip them all
    return (f"grid {data.grid!r}: no finished cell in {results} ({total} cell{'s' * (total != 1)}: {count_line(data.counts)}); "
            f"train them with: {run_command(data.grid, options, retry)}")


def metric_absent(data: ReportData, options: list[tuple[str, Any]]) -> str | None:
    """One line when finished cells exist but none of the main table's has the metric in its history (a store
    older than the metric), with the command that retrains them; None otherwise."""
    m = data.metric
    done = sum(e.n for e in data.entries.values())
    if m.key == DEFAULT.key or not done or any(e.value for e in data.entries.values()):
        return None
    cells = f"its {done} finished cell{'s' * (done != 1)}"
    # the stale check fingerprints only the loss and model code, so --rerun-stale would skip these cells
    return (f"--metric {m.key}: no finished cell of grid {data.grid!r} has the history column {m.column!r}: "
            f"{cells} (selection: {data.select.key}) predate{'s' * (done == 1)} it; --rerun-stale does not retrain "
            f"them (the code fingerprint covers only losses and models), so retrain them with: "
            f"{run_command(data.grid, options, force=True)}")
