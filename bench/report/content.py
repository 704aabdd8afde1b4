"""What a table says, in any format: numbers as text, the rows of each table, and the notes and footnotes.

Every footnote is generated from the data it annotates: the seed counts are the grid's, a mark
is explained only when some entry carries it, and a diverged or failed entry says so in every
table and format instead of looking like a cell that has not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.metrics.table import DEFAULT
from bench.paper.theory import fano_bound, theorem4_bound
from bench.report.collect import Entry, ReportData
from bench.report.selection import (
    TrialChoice,
)
from bench.report.stats import holm, mean_std, paired_diff_ci, paired_p_value

MISSING = "—"
LACKING = "‡"  # a finished cell's history has no column for the metric shown
STALE = "§"  # some finished seeds ran older loss/model code or other data
COLLAPSED = " (collapsed)"  # near-chance accuracy: never bold, whatever the metric shown
DIGITS = 3
THEORY_DOC = "docs/theory.md"

# how each regime is realised (bench/data/noise.py, bench/data/imbalance.py), for the captions
NOISE_CONVENTIONS = {
    "symmetric": "exactly ⌊ηN⌋ labels, each class's share in proportion to its size (an even split on balanced "
                 "data), each moved to a uniformly drawn other class",
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
            if regime.noise == "human":  # real annotations: no declared rate, no seed
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

def rule_title(data: ReportData) -> str:
    """What the main table shows, naming its metric, its selection rule and, beside accuracy, which way is better."""
    m = data.metric
    if m.key == DEFAULT.key:
        if data.select.key == "last":
            return "final test accuracy (selection: last epoch)"
        return f"test accuracy (selection: {data.select.name})"
    final = "final " if data.select.key == "last" else ""
    return f"{final}test {m.name} (selection: {data.select.name}; {m.direction})"


def settings_note(data: ReportData) -> str:
    """The settings the cells ran under that differ from the grid's definition ("" for none): a shortened or
    otherwise changed run says so in every title and caption."""
    return f" under {', '.join(data.overrides)}" if data.overrides else ""


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
        from bench.report.latex import (
            latex_escape,  # here: latex.py imports this module
        )

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


COLLAPSED_NOTE = ("`(collapsed)`: a model whose mean test accuracy is within a tenth of the way from chance (1/K) to "
                  "perfect, as a constant prediction gives; its other numbers (a low ECE, say) mean little, so it is "
                  "never bold.")


def stale_note(data: ReportData, count: int, tex: bool = False) -> str:
    """The footnote of ``§``: ``count`` finished cells shown that are stale."""
    command = f"bench run --grid {data.grid} --rerun-stale"
    if tex:
        from bench.report.latex import latex_escape  # here: latex.py imports this module

        mark, command = r"\S", f"\\texttt{{{latex_escape(command)}}}"
    else:
        mark, command = STALE, f"`{command}`"
    cells = f"{count} finished cell{'s' * (count != 1)}"
    return (f"{mark}: {cells} shown ran an older version of {'their' if count != 1 else 'its'} loss or model code, "
            f"or other data, than today's (stale); {command} retrains them.")


def search_note(data: ReportData) -> str:
    """Of how many trials each tuned entry was chosen ("" unless the search is incomplete)."""
    if not data.incomplete_search:
        return ""
    parts = [f"{'/'.join(p for p in key[:3] if p)} {key[3]}: {done} of {total} trials"
             for key, (done, total) in data.search.items() if done < total]
    then = ("shown anyway (--accept-incomplete)" if data.accept_incomplete else
            "withheld until every trial has all its seeds (--accept-incomplete shows them)")
    return ("Incomplete search: the trials with every seed finished are " + "; ".join(parts)
            + f". Each entry is the best of the trials run so far; the verdicts are {then}.")


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
    return (_mean_text(e.value, digits)[1] + seed_note(len(e.value), e.expected, *wrong) + (LACKING if e.lacking else "")
            + (STALE if e.stale else ""))


def accuracy_cells(data: ReportData) -> list[list[tuple[str, bool]]]:
    """For each row, each loss: (text, is_best). Every entry whose printed mean equals the best printed mean is best
    (the lowest for a metric where lower is better)."""
    digits = data.metric.digits
    out = []
    for row in data.rows:
        means: dict[str, str] = {}
        for loss in data.losses:
            e = data.entries.get((row, loss))
            if e is not None and e.value and not e.collapsed:  # a collapsed model is never the best
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
                text = value_text(e, digits) + (COLLAPSED if e.collapsed else "")
                hp = trial_text(data.trials.get((*row, loss)))
                text += f" [{hp}]" if hp else ""
                line.append((text, best is not None and means.get(loss) == best))
        out.append(line)
    return out


def comparison_rows(data: ReportData) -> list[dict[str, Any]]:
    """Each loss minus the baseline in the same row, paired by seed, with a 95% t interval. The difference keeps
    its sign (loss minus baseline) for every metric; the verdict reads it in the metric's direction."""
    # an incomplete search has not chosen yet: its verdicts wait for every trial's seeds (or --accept-incomplete)
    withheld = data.incomplete_search and not data.accept_incomplete
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
            r["verdict"] = ("" if not math.isfinite(adj) else "incomplete search" if withheld
                            else "no difference" if adj >= 0.05 else "better" if better else "worse")
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


def diff_text(r: dict[str, Any], with_note: bool = True, digits: int = DIGITS) -> tuple[str, str]:
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


def mi_texts(r: dict[str, Any], with_note: bool = True) -> list[str]:
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
class Marks:
    """Which marks the tables carry, so that each footnote explains only what is there."""

    partial: bool  # an entry with some but not all seeds finished
    missing: bool  # an entry with no finished seed and nothing gone wrong
    diverged: bool
    failed: bool
    bold: bool
    tie: bool
    lacking: int = 0  # finished cells without the shown metric
    stale: int = 0  # finished cells that ran older loss/model code or other data
    collapsed: bool = False  # an entry whose model collapsed to near chance


def table_marks(data: ReportData, acc: list[list[tuple[str, bool]]]) -> Marks:
    es = [e for e in data.entries.values() if e.expected]
    return Marks(partial=any(0 < len(e.value) < e.expected for e in es),
                  missing=any(e.status == "pending" for e in es),
                  diverged=any(e.diverged for e in es), failed=any(e.failed for e in es),
                  bold=any(b for line in acc for _, b in line), tie=any(sum(b for _, b in line) > 1 for line in acc),
                  lacking=sum(e.lacking for e in es), stale=sum(len(e.stale) for e in es),
                 collapsed=any(e.collapsed for e in es))


def seeds_phrase(data: ReportData) -> str:
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


def accuracy_note(data: ReportData, marks: Marks) -> str:
    one_seed = data.seed_counts == [1]
    notes = [f"Cells: {count_line(data.counts)}."]  # provenance and regimes follow as paragraphs of their own
    if one_seed:
        notes.append("One seed per cell, so no std.")
    else:
        notes.append(f"Mean ± sample std (ddof=1) over the grid's {seeds_phrase(data)}.")
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
    if marks.stale:
        notes.append(stale_note(data, marks.stale))
    if marks.collapsed:
        notes.append(COLLAPSED_NOTE)
    if marks.bold:
        best = "Best (lowest) mean" if data.metric.lower_is_better else "Best mean"
        notes.append(f"{best} per row in bold" + (", every entry tied with it at the printed precision too."
                                                  if marks.tie else "."))
    about = metric_note(data)
    return " ".join([about, *notes] if about else notes)


def diff_heading(data: ReportData) -> str:
    """The title of the paired differences against the baseline: the metric, the pairing and the rule."""
    m = data.metric
    how = "one seed per cell, no interval" if data.seed_counts == [1] else "paired by seed, 95% t interval"
    if m.key == DEFAULT.key:
        which = "" if data.select.key == "last" else f"; selection: {data.select.name}"
        return f"Difference to `{data.baseline}` ({how}{which})"
    return (f"Difference in test {m.name} to `{data.baseline}` (loss minus baseline, {m.direction}; "
            f"{how}; selection: {data.select.name})")


def holm_note(data: ReportData) -> str:
    """What a tuned comparison's verdict column means (the rules across trials carry one)."""
    m = data.metric
    return ("The verdict is the paired t test's p-value adjusted by Holm–Bonferroni across the losses "
            "compared in the row, at 5%; each tuned loss is compared with the tuned baseline."
            + ("" if m.key == DEFAULT.key else
               f" `better`: a {'lower' if m.lower_is_better else 'higher'} {m.short} than the baseline's."))


def diff_note(data: ReportData, comp: list[dict[str, Any]]) -> str:
    notes = []
    if data.seed_counts and data.seed_counts[-1] < 2:
        notes.append("With one seed per cell there is no interval: each difference is a single pair of runs, "
                     "not evidence of a gain.")
    elif any(r["n"] >= 2 for r in comp):
        notes.append(f"`*` marks an interval that excludes zero; with {seeds_phrase(data)} an interval is wide, "
                     "so a difference without `*` is not evidence of a gain.")
        if zero_end(comp, data.metric.digits):
            notes.append(f"An end printed as {fmt_num(0.0, data.metric.digits)} is non-zero beyond the printed digits.")
    if any(r["status"] in ("done", "pending") and 0 < r["n"] < r["expected"] for r in comp):
        notes.append("`(n=k)`: only k seeds are paired (an interval needs 2).")
    return " ".join(notes)


def zero_end(comp: list[dict[str, Any]], digits: int = DIGITS) -> bool:
    """Whether an interval that excludes zero prints an end as 0.000 (it reads as if it touched zero)."""
    zero = fmt_num(0.0, digits)
    return any(r["significant"] and zero in (fmt_num(r["lo"], digits, signed=True), fmt_num(r["hi"], digits, signed=True))
               for r in comp if r["n"] >= 2)


MI_NOTE = (f"Î = H_θ(Y) − H_θ(Y|X) on the test split ({THEORY_DOC}); the bounds are Theorem 4's closed form and "
           "the exact Fano bound evaluated at the learned Î and the test label entropy. Both bounds fall as I grows "
           "and the achieved error obeys them at the true I(X;Y), so a bound above the achieved error "
           "(error ≥ bound: no) means Î understates the true I(X;Y).")

MI_TITLE = "Learned mutual information and the error lower bounds it implies"
MI_HEADS = ["test Î (nats)", "H(Y) test", "test error", "Thm 4 bound", "Fano bound", "error ≥ bound"]  # mi_texts' order
TRUTH_TITLE = "The generating distribution"
TRUTH_HEADS = ["dataset", "δ", "exact I(X;Y) (nats)", "Bayes error"]
TRUTH_NOTE = "Read the learned test Î against the exact I(X;Y), and the achieved test error against the Bayes error."


def truth_texts(dataset: str, truth: dict[str, float]) -> list[str]:
    """A row of the generating distribution's table: the dataset, δ, the exact I(X;Y) and the Bayes error."""
    return [dataset, fmt_num(truth["delta"], 4), fmt_num(truth["mi_exact"], 4), fmt_num(truth["bayes_error"], 4)]
