"""Cross-task statistics: does a loss beat the baseline across a suite of tasks, and by how much?

Input everywhere is a tidy table ``scores`` with columns ``task``, ``loss``, ``seed`` and ``score``, one
row per (task, loss, seed), where a higher score is better (negate NLL, ECE and other lower-is-better
metrics before calling), and the name of the ``baseline`` loss.

The answers follow Agarwal et al. (2021), "Deep reinforcement learning at the edge of the statistical
precipice", for aggregates with honest uncertainty (IQM, probability of improvement, performance profiles,
stratified-bootstrap intervals), Demšar (2006) and Benavoli, Corani & Mangili (2016) for ranks and pairwise
tests over tasks, and Benavoli et al. (2017), "Time for a change", for practical equivalence.

The statistics themselves come from rliable (``rliable.metrics``), scipy, scikit-posthocs and baycomp. The
stratified bootstrap around them is written here, and draws exactly the resamples that
``rliable.library.get_interval_estimates`` draws after ``np.random.seed(seed)`` (the tests check the
intervals against rliable's), for two reasons:

* ``rliable.library`` cannot be imported beside pandas 3: it imports ``arch``, rliable 1.2.0 requires
  ``arch < 8``, and ``arch`` 7's package import fails under pandas 3 (a changed pandas decorator), while
  ``arch`` 8 no longer accepts the ``random_state`` keyword rliable passes to it;
* rliable draws its resamples from numpy's global random state whatever ``random_state`` it is given, so
  reproducing it would mean seeding (and restoring) process-wide state. Here each call draws from its own
  ``np.random.RandomState(seed)``, the same stream without touching anything global.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from bench.errors import BenchError, unknown

COLUMNS = ("task", "loss", "seed", "score")

# Resampled values held in memory at once by the bootstrap (about 8 bytes each); larger tables are
# resampled in chunks, which draws the same random stream as one big draw.
_CHUNK_VALUES = 2_000_000


class Estimate(NamedTuple):
    """A point estimate with the bounds of its confidence interval."""

    point: float
    low: float
    high: float


class ProfileEstimate(NamedTuple):
    """A performance profile (one value per threshold tau) with pointwise confidence bounds."""

    profile: np.ndarray
    low: np.ndarray
    high: np.ndarray


# ---------------------------------------------------------------------------------------------------------
# The table: validation, normalisation, matrices


def _rliable_metrics():
    """``rliable.metrics``, imported when used, as scikit_posthocs."""
    from rliable import metrics

    return metrics


def validate_scores(scores: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """``scores`` checked and typed (task and loss as str, seed as int, score as float), as a new table.

    Raises BenchError when a column is missing, a score is not a finite number, a (task, loss, seed) is
    repeated, the baseline is absent, or a loss lacks a (task, seed) the baseline has or has a task the
    baseline lacks.
    """
    if not isinstance(scores, pd.DataFrame):
        raise BenchError(f"scores must be a pandas DataFrame, got {type(scores).__name__}: "
                         "pass a table with columns task, loss, seed, score")
    missing = [c for c in COLUMNS if c not in scores.columns]
    if missing:
        raise BenchError(f"scores lacks column(s) {', '.join(missing)}: "
                         "pass a table with columns task, loss, seed, score")
    if scores.empty:
        raise BenchError("scores has no rows: finish some runs before comparing losses")
    out = scores.loc[:, list(COLUMNS)].copy()
    out["task"] = out["task"].astype(str)
    out["loss"] = out["loss"].astype(str)
    seeds = pd.to_numeric(out["seed"], errors="coerce")
    if seeds.isna().any() or (seeds != seeds.round()).any():
        bad = out.loc[seeds.isna() | (seeds != seeds.round())].iloc[0]
        raise BenchError(f"seed {bad['seed']!r} (task {bad['task']!r}, loss {bad['loss']!r}) is not an "
                         "integer: pass integer seeds")
    out["seed"] = seeds.astype(np.int64)
    values = pd.to_numeric(out["score"], errors="coerce").astype(float)
    finite = np.isfinite(values.to_numpy())
    if not finite.all():
        bad = out.loc[~finite].iloc[0]
        raise BenchError(f"{int((~finite).sum())} score(s) are not finite numbers (first: task {bad['task']!r}, "
                         f"loss {bad['loss']!r}, seed {bad['seed']}, score {bad['score']!r}): "
                         "drop or re-run those runs before comparing")
    out["score"] = values
    dup = out.duplicated(["task", "loss", "seed"])
    if dup.any():
        bad = out.loc[dup].iloc[0]
        raise BenchError(f"(task {bad['task']!r}, loss {bad['loss']!r}, seed {bad['seed']}) appears more than "
                         "once: keep one score per run")
    baseline = str(baseline)
    losses = out["loss"].unique().tolist()
    if baseline not in losses:
        raise unknown("baseline loss", baseline, losses)
    base_runs = set(zip(out.loc[out["loss"] == baseline, "task"], out.loc[out["loss"] == baseline, "seed"]))
    base_tasks = {task for task, _ in base_runs}
    for loss in losses:
        if loss == baseline:
            continue
        rows = out[out["loss"] == loss]
        extra = sorted(set(rows["task"]) - base_tasks)
        if extra:
            raise BenchError(f"loss {loss!r} has task(s) the baseline {baseline!r} lacks ({', '.join(map(repr, extra))}): "
                             f"run the baseline there or drop those rows")
        lacking = sorted(base_runs - set(zip(rows["task"], rows["seed"])))
        if lacking:
            task, seed = lacking[0]
            raise BenchError(f"loss {loss!r} lacks {len(lacking)} of the baseline's (task, seed) runs "
                             f"(first: task {task!r}, seed {seed}): finish those runs or leave {loss!r} out")
    return out


def normalise(scores: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """``scores`` with each score replaced by its difference from the baseline's mean score on its task.

    0 is the baseline, and the units stay the metric's own (accuracy points when the caller scaled accuracy
    by 100), so a number reads as "this much better than the baseline". Unlike min-max or rank
    normalisation, it does not depend on which other losses are in the table: adding a loss changes no
    other loss's numbers. Normalising per task before aggregating across tasks follows Agarwal et al. (2021),
    who normalise each task's scores (there by random and human scores) so that tasks on different scales
    can be pooled.
    """
    table = validate_scores(scores, baseline)
    base_mean = table[table["loss"] == str(baseline)].groupby("task")["score"].mean()
    table["score"] = table["score"] - table["task"].map(base_mean)
    return table


def task_order(scores: pd.DataFrame) -> list[str]:
    """The tasks of ``scores`` in the fixed (sorted) order of every matrix's columns."""
    return sorted(scores["task"].astype(str).unique().tolist())


def score_matrix(normalised: pd.DataFrame, loss: str, tasks: Sequence[str] | None = None) -> np.ndarray:
    """One loss's scores as a (runs x tasks) matrix, the layout rliable expects.

    Columns follow ``tasks`` (default: :func:`task_order`); within a column the runs are ordered by seed.
    Every task needs the same number of seeds, as the stratified bootstrap resamples a rectangle.
    """
    tasks = task_order(normalised) if tasks is None else [str(t) for t in tasks]
    rows = normalised[normalised["loss"].astype(str) == str(loss)]
    if rows.empty:
        raise unknown("loss", loss, normalised["loss"].astype(str).unique())
    by_task = {str(task): group.sort_values("seed")["score"].to_numpy(dtype=float)
               for task, group in rows.groupby("task")}
    absent = [t for t in tasks if t not in by_task]
    if absent:
        raise BenchError(f"loss {loss!r} has no score on task(s) {', '.join(map(repr, absent))}: "
                         "finish those runs or leave the loss out")
    counts = {t: len(by_task[t]) for t in tasks}
    if len(set(counts.values())) > 1:
        most, least = max(counts, key=counts.get), min(counts, key=counts.get)
        raise BenchError(f"loss {loss!r} has {counts[most]} seeds on task {most!r} but {counts[least]} on "
                         f"task {least!r}: run the same number of seeds on every task")
    return np.column_stack([by_task[t] for t in tasks])


def score_matrices(normalised: pd.DataFrame, losses: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """:func:`score_matrix` for each loss (default: all, in order of appearance), with one task order."""
    tasks = task_order(normalised)
    names = normalised["loss"].astype(str).unique().tolist() if losses is None else [str(x) for x in losses]
    return {loss: score_matrix(normalised, loss, tasks) for loss in names}


def task_means(scores: pd.DataFrame) -> pd.DataFrame:
    """The mean score over seeds: a (tasks x losses) table, rows sorted by task, losses in order of appearance.

    Raw or :func:`normalise`-d scores give the same ranks and the same loss-minus-baseline differences, as
    normalising shifts every loss on a task by the same amount.
    """
    losses = scores["loss"].astype(str).unique().tolist()
    means = scores.assign(loss=scores["loss"].astype(str), task=scores["task"].astype(str)) \
        .pivot_table(index="task", columns="loss", values="score", aggfunc="mean", sort=True)
    return means.reindex(columns=losses)


# ---------------------------------------------------------------------------------------------------------
# Stratified bootstrap (Efron & Tibshirani 1993; stratified by task as in Agarwal et al. 2021)


def _check_matrix(matrix: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise BenchError(f"the score matrix of {name} has shape {m.shape}: pass a (runs x tasks) matrix "
                         "with at least one run and one task")
    if not np.isfinite(m).all():
        raise BenchError(f"the score matrix of {name} holds non-finite scores: drop or re-run those runs")
    return m


def _check_bootstrap(reps: int, confidence: float) -> None:
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise BenchError(f"reps must be a positive integer, got {reps!r}: pass e.g. reps=10000")
    if not 0.0 < confidence < 1.0:
        raise BenchError(f"confidence must be between 0 and 1, got {confidence!r}: pass e.g. confidence=0.95")


def _same_tasks(matrices: Mapping[str, np.ndarray]) -> None:
    widths = {name: m.shape[1] for name, m in matrices.items()}
    if len(set(widths.values())) > 1:
        raise BenchError(f"score matrices have different numbers of tasks ({widths}): "
                         "build them with one task order (score_matrices)")


def _percentile_interval(
    matrices: Sequence[np.ndarray],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    reps: int,
    seed: int,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap bounds of ``statistic`` under stratified resampling of runs within each task.

    Each replicate resamples, for every matrix in turn, every task's runs with replacement (the tasks
    themselves are kept: the question is how the numbers would move with other seeds on these tasks).
    ``statistic`` gets one (replicates x runs x tasks) array per matrix and returns (replicates x k).
    The random stream and the percentiles are those of ``rliable.library.get_interval_estimates``
    (percentile method) with ``np.random.seed(seed)``: per replicate, ``choice(runs, (runs, tasks))`` for
    each matrix, and ``np.percentile`` at 100 * (1 - confidence) / 2 and its complement.
    """
    rng = np.random.RandomState(seed)
    # One draw per replicate over all matrices' cells, each cell bounded by its matrix's run count: the
    # same stream as rliable's per-matrix np.random.choice calls, drawn a chunk of replicates at a time.
    highs = np.concatenate([np.full(m.size, m.shape[0]) for m in matrices])
    chunk = max(1, _CHUNK_VALUES // max(1, highs.size))
    stats = []
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        draws = rng.randint(0, highs, size=(n, highs.size))
        resampled, offset = [], 0
        for m in matrices:
            idx = draws[:, offset:offset + m.size].reshape(n, *m.shape)
            offset += m.size
            resampled.append(m[idx, np.arange(m.shape[1])])
        stats.append(np.asarray(statistic(resampled), dtype=float).reshape(n, -1))
    values = np.concatenate(stats)
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return low, high


def _iqm_rows(stack: np.ndarray) -> np.ndarray:
    """rliable's ``aggregate_iqm`` (scipy's 25% trimmed mean of all runs and tasks) of each replicate."""
    import scipy.stats  # imported when used: seconds that a command printing no statistic skips

    return scipy.stats.trim_mean(stack.reshape(len(stack), -1), proportiontocut=0.25, axis=1)


def iqm(
    matrices: Mapping[str, np.ndarray],
    reps: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Estimate]:
    """The interquartile mean (IQM) of each loss's (runs x tasks) matrix, with a stratified-bootstrap interval.

    IQM is the mean of the middle 50% of all runs on all tasks pooled (Agarwal et al. 2021,
    ``rliable.metrics.aggregate_iqm``, i.e. ``scipy.stats.trim_mean(..., 0.25)``): robust to a task or run
    far from the others, yet using half the data, unlike the median. The interval is rliable's default, the
    percentile bootstrap over ``reps`` stratified resamples, at ``confidence`` (two-sided); the same
    ``seed`` gives the same interval.
    """
    _check_bootstrap(reps, confidence)
    checked = {name: _check_matrix(m, repr(name)) for name, m in matrices.items()}
    _same_tasks(checked)
    out = {}
    for name, m in checked.items():
        point = float(_rliable_metrics().aggregate_iqm(m))
        low, high = _percentile_interval([m], lambda r: _iqm_rows(r[0]), reps, seed, confidence)
        out[name] = Estimate(point, float(low[0]), float(high[0]))
    return out


def _improvement_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over tasks of P(X > Y) + P(X = Y) / 2, counting all pairs of runs.

    The Mann-Whitney U statistic over nx * ny that ``rliable.metrics.probability_of_improvement`` computes
    with one scipy call per task; counted here for all replicates at once, as those calls take
    milliseconds each.
    """
    xs, ys = x[:, :, None, :], y[:, None, :, :]
    per_task = (xs > ys).mean(axis=(1, 2)) + 0.5 * (xs == ys).mean(axis=(1, 2))
    return per_task.mean(axis=1)


def probability_of_improvement(
    loss_matrix: np.ndarray,
    baseline_matrix: np.ndarray,
    reps: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """The probability that a run of the loss beats a run of the baseline on a task, averaged over tasks.

    P(X > Y) + P(X = Y) / 2 per task, X a run of the loss and Y a run of the baseline on that task, then
    the mean over tasks (Agarwal et al. 2021, ``rliable.metrics.probability_of_improvement``). 0.5 means
    no edge; it says how often, not by how much. The interval resamples the two matrices' runs
    independently within each task (rliable's ``StratifiedIndependentBootstrap``), percentile method.
    """
    _check_bootstrap(reps, confidence)
    x = _check_matrix(loss_matrix, "the loss")
    y = _check_matrix(baseline_matrix, "the baseline")
    _same_tasks({"the loss": x, "the baseline": y})
    point = float(_rliable_metrics().probability_of_improvement(x, y))
    low, high = _percentile_interval([x, y], lambda r: _improvement_rows(r[0], r[1]), reps, seed, confidence)
    return Estimate(point, float(low[0]), float(high[0]))


def _profile_rows(stack: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Per replicate and threshold, the fraction of all runs on all tasks scoring above tau."""
    flat = stack.reshape(len(stack), -1)
    return np.stack([(flat > tau).mean(axis=1) for tau in taus], axis=1)


def performance_profile(
    matrices: Mapping[str, np.ndarray],
    taus: Sequence[float] | np.ndarray,
    reps: int = 2_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, ProfileEstimate]:
    """Each loss's score distribution: the fraction of runs (all tasks pooled) scoring above each tau.

    The run-score performance profile of Agarwal et al. (2021) (``rliable.library.create_performance_profile``
    with ``use_score_distribution=True``): one curve shows the whole distribution, so a loss that is better
    only on average, or only in the tails, is visible. Pointwise intervals come from the same stratified
    percentile bootstrap (``reps`` defaults to rliable's 2000 for profiles).
    """
    _check_bootstrap(reps, confidence)
    grid = np.asarray(taus, dtype=float).ravel()
    if grid.size == 0 or not np.isfinite(grid).all():
        raise BenchError("taus must be a non-empty sequence of finite thresholds: pass e.g. np.linspace(-5, 5, 101)")
    checked = {name: _check_matrix(m, repr(name)) for name, m in matrices.items()}
    _same_tasks(checked)
    out = {}
    for name, m in checked.items():
        profile = _profile_rows(m[None], grid)[0]
        low, high = _percentile_interval([m], lambda r: _profile_rows(r[0], grid), reps, seed, confidence)
        out[name] = ProfileEstimate(profile, low, high)
    return out


# ---------------------------------------------------------------------------------------------------------
# Ranks and the critical-difference diagram


def _check_task_means(task_means: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(task_means, pd.DataFrame):
        raise BenchError(f"task_means must be a (tasks x losses) DataFrame, got {type(task_means).__name__}: "
                         "build it with task_means(scores)")
    if task_means.shape[0] < 1 or task_means.shape[1] < 2:
        raise BenchError(f"task_means has {task_means.shape[0]} task(s) and {task_means.shape[1]} loss(es): "
                         "rank at least two losses on at least one task")
    values = task_means.apply(pd.to_numeric, errors="coerce").astype(float)
    holes = ~np.isfinite(values.to_numpy())
    if holes.any():
        row, col = map(int, np.argwhere(holes)[0])
        raise BenchError(f"task_means has no finite score for loss {str(values.columns[col])!r} on task "
                         f"{str(values.index[row])!r}: compare only losses that ran every task")
    return values


def mean_ranks(task_means: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Each loss's rank on each task (1 = best, ties share the average rank) and its mean rank over tasks.

    Ranks by ``scipy.stats.rankdata`` (average method) of the negated scores, as higher is better. Returns
    (ranks: tasks x losses, mean rank per loss sorted best first). Mean ranks are the axis of the
    critical-difference diagram (Demšar 2006).
    """
    values = _check_task_means(task_means)
    import scipy.stats

    ranks = scipy.stats.rankdata(-values.to_numpy(), method="average", axis=1)
    per_task = pd.DataFrame(ranks, index=values.index, columns=values.columns)
    return per_task, per_task.mean(axis=0).sort_values(kind="stable")


def smallest_wilcoxon_p(n_tasks: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test can reach with ``n_tasks`` pairs.

    Reached when all differences have the same sign: the one most extreme of the 2^n equally likely sign
    patterns at each end, so 2 / 2^n. Ties and zero differences only raise it.
    """
    return 2.0 / 2.0 ** n_tasks


@dataclass(frozen=True)
class CriticalDifference:
    """Ranks and pairwise tests behind a critical-difference diagram.

    ``p_values``: Holm-adjusted two-sided Wilcoxon signed-rank p-values of each pair of losses (1 on the
    diagonal). ``friedman_p``: the Friedman test's p-value that all losses rank alike (None with fewer
    than three losses; NaN when every task ties all losses). ``caveat``: a plain-English warning when
    there are too few tasks for any pair to differ at ``alpha``, else None.
    """

    mean_ranks: pd.Series
    ranks: pd.DataFrame
    p_values: pd.DataFrame
    friedman_p: float | None
    alpha: float
    n_tasks: int
    smallest_p: float
    caveat: str | None


def critical_difference(task_means: pd.DataFrame, alpha: float = 0.05) -> CriticalDifference:
    """Mean ranks, the Friedman test and Holm-corrected pairwise Wilcoxon tests over tasks (one score per task).

    Demšar (2006) introduced the critical-difference diagram with the Nemenyi test; Benavoli, Corani &
    Mangili (2016) show that the Nemenyi test's verdict on a pair depends on which other losses are
    compared, and recommend pairwise Wilcoxon signed-rank tests with Holm's correction instead
    (``scikit_posthocs.posthoc_wilcoxon(..., p_adjust='holm')``). The Friedman test
    (``scipy.stats.friedmanchisquare``) asks whether the losses rank alike at all.

    With few tasks no pair can reach ``alpha``: Holm's first step multiplies the smallest p by the number
    of pairs, and an exact Wilcoxon test cannot go below :func:`smallest_wilcoxon_p`. ``caveat`` then says
    so, and the diagram shows ranks only.
    """
    if not 0.0 < alpha < 1.0:
        raise BenchError(f"alpha must be between 0 and 1, got {alpha!r}: pass e.g. alpha=0.05")
    values = _check_task_means(task_means)
    ranks, means = mean_ranks(values)
    n_tasks, n_losses = values.shape
    # Long form: within each loss the tasks keep the table's row order, which pairs the observations.
    long = values.rename_axis(index="task", columns="loss").melt(var_name="loss", value_name="score",
                                                                 ignore_index=True)
    import scikit_posthocs  # imported when used: it loads statsmodels and seaborn, seconds a command not drawing it skips

    p_values = scikit_posthocs.posthoc_wilcoxon(long, val_col="score", group_col="loss", p_adjust="holm")
    p_values = p_values.reindex(index=values.columns, columns=values.columns)
    friedman_p = None
    if n_losses >= 3:
        import scipy.stats

        friedman_p = float(scipy.stats.friedmanchisquare(*(values[c].to_numpy() for c in values.columns)).pvalue)
    pairs = n_losses * (n_losses - 1) // 2
    smallest = smallest_wilcoxon_p(n_tasks)
    after_holm = min(1.0, pairs * smallest)
    caveat = None
    if after_holm > alpha:
        holm = f", {after_holm:.3g} after Holm's correction over {pairs} pairs" if pairs > 1 else ""
        caveat = (f"with {n_tasks} task{'s' if n_tasks != 1 else ''} no pair can differ at alpha {alpha:g} "
                  f"(the smallest attainable p is {smallest:.3g}{holm}): read the diagram as ranks only")
    return CriticalDifference(mean_ranks=means, ranks=ranks, p_values=p_values, friedman_p=friedman_p,
                              alpha=float(alpha), n_tasks=int(n_tasks), smallest_p=smallest, caveat=caveat)


# ---------------------------------------------------------------------------------------------------------
# Practical equivalence (region of practical equivalence, ROPE)


@dataclass(frozen=True)
class RopeResult:
    """How probable it is that a loss is worse than, practically equivalent to, or better than the baseline.

    ``p_worse + p_equivalent + p_better == 1``. ``rope`` is the half-width of practical equivalence in
    score units; ``method`` names the test and its settings.
    """

    p_worse: float
    p_equivalent: float
    p_better: float
    rope: float
    method: str


def rope_verdict(
    diffs_per_task: Sequence[float] | np.ndarray | pd.Series,
    rope: float,
    *,
    nsamples: int = 50_000,
    seed: int = 0,
    prior: float = 0.5,
) -> RopeResult:
    """The Bayesian signed-rank test of the per-task mean differences (loss minus baseline) against a ROPE.

    Benavoli et al. (2017), "Time for a change", replace the null-hypothesis test by a posterior over three
    regions: the loss is worse (difference below -rope), practically equivalent (within +-rope, in score
    units, e.g. 0.5 accuracy points) or better (above +rope). Their Bayesian signed-rank test (Benavoli et
    al. 2014; ``baycomp.SignedRankTest``) puts a Dirichlet process on the per-task differences, with a
    pseudo-observation of weight ``prior`` at 0. Each probability is the share of ``nsamples`` posterior
    draws in which that region is the most probable one, as baycomp reports it; ``seed`` fixes the draws
    (baycomp uses its own ``RandomState(seed)``, nothing global).

    baycomp's hierarchical test (``two_on_multiple`` with per-seed matrices) is not used: it needs pystan
    (not a dependency here; it compiles its model with a C++ compiler at first use), and its correlation
    correction assumes the runs are cross-validation folds, whereas these are seeds on a fixed split.
    """
    if not isinstance(rope, (int, float, np.floating, np.integer)) or not math.isfinite(rope) or rope <= 0:
        raise BenchError(f"--rope must be > 0 (the half-width of practical equivalence in the metric's units, "
                         f"e.g. 0.5 accuracy points), got {rope!r}")
    diffs = np.asarray(diffs_per_task, dtype=float).ravel()
    if diffs.size == 0 or not np.isfinite(diffs).all():
        raise BenchError("diffs_per_task must hold one finite difference (loss minus baseline) per task: "
                         "compute them from task_means over the tasks both losses ran")
    if not isinstance(nsamples, (int, np.integer)) or nsamples < 1:
        raise BenchError(f"nsamples must be a positive integer, got {nsamples!r}: pass e.g. nsamples=50000")
    p_worse, p_equivalent, p_better = signed_rank_probs(diffs, float(rope), int(nsamples), int(seed), prior)
    method = (f"Bayesian signed-rank test (Benavoli et al. 2014, 2017; baycomp) over {diffs.size} task(s), "
              f"prior {prior:g}, {nsamples} samples, seed {seed}")
    return RopeResult(float(p_worse), float(p_equivalent), float(p_better), float(rope), method)


def signed_rank_probs(diffs: np.ndarray, rope: float, nsamples: int, seed: int, prior: float) -> tuple[float, ...]:
    """baycomp's ``SignedRankTest.probs(0, diffs, rope, ...)``, the same numbers computed in one pass.

    baycomp draws the Dirichlet weights of all samples at once from ``RandomState(seed)`` and then loops over
    the samples in Python (1.4 s per loss at 50,000 samples on this project's 2-core machine, most of a
    leaderboard's time); here the same draws go through one ``einsum``. baycomp's left region is "x better"
    (y - x < -rope): with x = 0 and y = the differences it is "worse". The tests check the result against
    baycomp's own on the same numbers and seed.
    """
    diff = np.hstack(([0.0], diffs))
    sums = diff[:, None] + diff[None, :]
    # baycomp's heaviside: 1 above the threshold, 0.5 on it
    below = (-sums > 2 * rope).astype(float) + 0.5 * (-sums == 2 * rope)
    above = (sums > 2 * rope).astype(float) + 0.5 * (sums == 2 * rope)
    weights = np.ones(len(diff))
    weights[0] = prior
    w = np.random.RandomState(seed).dirichlet(weights, nsamples)
    samples = np.empty((nsamples, 3))
    samples[:, 0] = np.einsum("ni,ij,nj->n", w, below, w)
    samples[:, 2] = np.einsum("ni,ij,nj->n", w, above, w)
    samples[:, 1] = -samples[:, 0] - samples[:, 2] + 1
    winners = np.argmax(samples, axis=1)
    return tuple(float(p) for p in np.bincount(winners, minlength=3) / nsamples)


def verdict(result: RopeResult, threshold: float = 0.95) -> str:
    """One word: 'better', 'equivalent' or 'worse' when that probability reaches ``threshold``, else 'undecided'.

    0.95 follows Benavoli et al. (2017); above 0.5 at most one region can reach the threshold.
    """
    if not 0.5 < threshold <= 1.0:
        raise BenchError(f"threshold must be above 0.5 and at most 1, got {threshold!r}: pass e.g. 0.95")
    for word, p in (("better", result.p_better), ("equivalent", result.p_equivalent), ("worse", result.p_worse)):
        if p >= threshold:
            return word
    return "undecided"
