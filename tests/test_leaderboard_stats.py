"""Cross-task statistics of the leaderboard, checked on fixed numbers against the libraries they come from
(rliable, scipy, statsmodels, scikit-posthocs, baycomp) and, where possible, against a direct count."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import types

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from bench.errors import BenchError
from bench.leaderboard import aggregate as ag
from bench.leaderboard.aggregate_figures import draw_cd_diagram, draw_performance_profiles

# A (runs x tasks) matrix with ties and an outlier run, and a second one with fewer runs.
LOSS = np.array([
    [1.0, 2.0, 3.0],
    [2.0, 2.0, 5.0],
    [3.0, 1.0, 4.0],
    [9.0, 0.5, 4.0],
])
BASE = np.array([
    [1.0, 2.0, 3.5],
    [0.0, 1.5, 4.0],
    [2.0, 2.5, 4.0],
])


@pytest.fixture(scope="module")
def rliable_library():
    """``rliable.library``, the reference for the bootstrap intervals.

    Imported the ordinary way where that works. Beside pandas 3 the ``arch`` package's own ``__init__``
    (its time-series models, which rliable does not use) fails to import, so there only ``arch.bootstrap``
    is loaded, under a bare ``arch`` package; the modules this added are removed afterwards.
    """
    before = set(sys.modules)
    import rliable

    try:
        from rliable import library
    except (TypeError, ImportError):
        spec = importlib.util.find_spec("arch")
        package = types.ModuleType("arch")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["arch"] = package
        from rliable import library
    yield library
    for name in set(sys.modules) - before:
        if name == "arch" or name.startswith("arch.") or name == "rliable.library":
            del sys.modules[name]
    if "rliable.library" not in before and hasattr(rliable, "library"):
        delattr(rliable, "library")


def with_global_seed(seed: int, call):
    """``call()`` after ``np.random.seed(seed)``, as rliable draws from the global state; restored after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return call()
    finally:
        np.random.set_state(state)


def table(rows: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """A scores table from {(task, loss): [score of seed 0, seed 1, ...]}."""
    return pd.DataFrame([(task, loss, seed, score) for (task, loss), scores in rows.items()
                         for seed, score in enumerate(scores)], columns=list(ag.COLUMNS))


SCORES = table({
    ("b-task", "ce"): [70.0, 72.0],
    ("b-task", "mil"): [73.0, 74.0],
    ("a-task", "ce"): [50.0, 54.0],
    ("a-task", "mil"): [51.0, 50.0],
})


# ---------------------------------------------------------------------------------------------------------
# the table


def test_normalise_subtracts_the_baselines_task_mean():
    norm = ag.normalise(SCORES, "ce")
    got = {(r.task, r.loss, r.seed): r.score for r in norm.itertuples()}
    # baseline means: b-task 71, a-task 52
    assert got[("b-task", "ce", 0)] == -1.0 and got[("b-task", "ce", 1)] == 1.0
    assert got[("b-task", "mil", 0)] == 2.0 and got[("b-task", "mil", 1)] == 3.0
    assert got[("a-task", "mil", 0)] == -1.0 and got[("a-task", "mil", 1)] == -2.0
    assert norm[norm["loss"] == "ce"].groupby("task")["score"].mean().abs().max() == 0.0
    # independent of the other losses in the table
    alone = ag.normalise(SCORES[SCORES["loss"] == "ce"], "ce")
    assert alone["score"].tolist() == norm[norm["loss"] == "ce"]["score"].tolist()


def test_score_matrix_has_sorted_tasks_and_seed_ordered_runs():
    norm = ag.normalise(SCORES.iloc[::-1], "ce")  # row order must not matter
    assert ag.task_order(norm) == ["a-task", "b-task"]
    np.testing.assert_array_equal(ag.score_matrix(norm, "mil"), [[-1.0, 2.0], [-2.0, 3.0]])
    assert set(ag.score_matrices(norm)) == {"ce", "mil"}


def test_score_matrix_refuses_uneven_seeds():
    uneven = pd.concat([SCORES, pd.DataFrame([("a-task", "ce", 2, 52.0), ("a-task", "mil", 2, 52.0)],
                                             columns=list(ag.COLUMNS))])
    with pytest.raises(BenchError, match="same number of seeds"):
        ag.score_matrix(ag.normalise(uneven, "ce"), "ce")


@pytest.mark.parametrize("edit, baseline, message", [
    (lambda df: df.drop(columns="seed"), "ce", "lacks column"),
    (lambda df: df.iloc[:0], "ce", "no rows"),
    (lambda df: df.iloc[:-1], "ce", "lacks 1 of the baseline's"),
    (lambda df: pd.concat([df, df.iloc[:1]]), "ce", "more than once"),
    (lambda df: df.assign(score=df["score"].where(df.index != 1, np.nan)), "ce", "not finite"),
    (lambda df: pd.concat([df, pd.DataFrame([("c-task", "mil", 0, 1.0)], columns=list(ag.COLUMNS))]),
     "ce", "has task"),
    (lambda df: df, "cel", "unknown baseline loss 'cel'"),
])
def test_bad_scores_raise_one_line(edit, baseline, message):
    with pytest.raises(BenchError, match=message) as err:
        ag.normalise(edit(SCORES), baseline)
    assert "\n" not in str(err.value) and ":" in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# IQM, probability of improvement, performance profiles


def test_iqm_point_is_the_25_percent_trimmed_mean():
    est = ag.iqm({"loss": LOSS}, reps=200)["loss"]
    assert est.point == pytest.approx(scipy.stats.trim_mean(LOSS.ravel(), 0.25), abs=1e-12)
    assert est.point == pytest.approx(np.sort(LOSS.ravel())[3:9].mean(), abs=1e-12)  # 12 values: drop 3 + 3
    assert est.low <= est.point <= est.high


def test_iqm_interval_equals_rliable(rliable_library):
    from rliable import metrics

    ours = ag.iqm({"loss": LOSS, "base": BASE}, reps=1500, seed=7, confidence=0.9)
    for name, matrix in (("loss", LOSS), ("base", BASE)):
        point, ci = with_global_seed(7, lambda: rliable_library.get_interval_estimates(
            {name: matrix}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=1500,
            confidence_interval_size=0.9))
        assert ours[name].point == pytest.approx(point[name][0], abs=1e-12)
        assert (ours[name].low, ours[name].high) == pytest.approx((ci[name][0, 0], ci[name][1, 0]), abs=1e-12)
        assert ours[name].low <= ours[name].point <= ours[name].high
        assert ours[name].low < ours[name].high


def test_iqm_is_deterministic_and_leaves_the_global_random_state_alone():
    matrix = np.random.default_rng(0).normal(size=(5, 6))  # continuous: another seed moves the bounds
    state = np.random.get_state()
    first = ag.iqm({"loss": matrix}, reps=10_000, seed=3)
    assert first == ag.iqm({"loss": matrix}, reps=10_000, seed=3)
    assert first != ag.iqm({"loss": matrix}, reps=10_000, seed=4)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def poi_by_counting(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over tasks of P(X > Y) + P(X = Y) / 2, counting every pair of runs."""
    per_task = []
    for t in range(x.shape[1]):
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x[:, t] for b in y[:, t])
        per_task.append(wins / (len(x) * len(y)))
    return sum(per_task) / len(per_task)


def test_probability_of_improvement_point_counts_pairs():
    est = ag.probability_of_improvement(LOSS, BASE, reps=200)
    assert est.point == pytest.approx(poi_by_counting(LOSS, BASE), abs=1e-12)
    # by hand, wins + ties / 2 over the 12 pairs of each task: 10, 3 and 7
    assert est.point == pytest.approx((10.0 + 3.0 + 7.0) / 12 / 3, abs=1e-12)
    assert ag.probability_of_improvement(BASE, BASE, reps=50).point == 0.5
    assert est.low <= est.point <= est.high


def test_probability_of_improvement_interval_equals_rliable(rliable_library):
    from rliable import metrics

    ours = ag.probability_of_improvement(LOSS, BASE, reps=300, seed=11)
    point, ci = with_global_seed(11, lambda: rliable_library.get_interval_estimates(
        {"pair": [LOSS, BASE]}, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=300))
    assert ours.point == pytest.approx(point["pair"][0], abs=1e-12)
    assert (ours.low, ours.high) == pytest.approx((ci["pair"][0, 0], ci["pair"][1, 0]), abs=1e-12)


def test_performance_profile_equals_rliable(rliable_library):
    taus = np.linspace(0.0, 6.0, 13)
    ours = ag.performance_profile({"loss": LOSS}, taus, reps=400, seed=5)["loss"]
    profiles, cis = with_global_seed(5, lambda: rliable_library.create_performance_profile(
        {"loss": LOSS}, taus, reps=400))
    np.testing.assert_allclose(ours.profile, profiles["loss"], atol=1e-12)
    np.testing.assert_allclose(ours.low, cis["loss"][0], atol=1e-12)
    np.testing.assert_allclose(ours.high, cis["loss"][1], atol=1e-12)
    assert ours.profile[0] == np.mean(LOSS > 0.0) and ours.profile[-1] == np.mean(LOSS > 6.0)


def test_bootstrap_arguments_are_checked():
    with pytest.raises(BenchError, match="reps"):
        ag.iqm({"loss": LOSS}, reps=0)
    with pytest.raises(BenchError, match="confidence"):
        ag.iqm({"loss": LOSS}, confidence=95)
    with pytest.raises(BenchError, match="different numbers of tasks"):
        ag.probability_of_improvement(LOSS, BASE[:, :2])
    with pytest.raises(BenchError, match="non-finite"):
        ag.iqm({"loss": np.array([[1.0, np.nan]])})


# ---------------------------------------------------------------------------------------------------------
# ranks and the critical-difference diagram

TASK_MEANS = pd.DataFrame(
    {"ce": [70.0, 80.0, 60.0, 90.0], "mil": [71.0, 80.0, 59.0, 90.0], "focal": [69.0, 80.0, 59.0, 91.0]},
    index=pd.Index(["t1", "t2", "t3", "t4"], name="task"))


def test_mean_ranks_average_ties_and_put_the_best_first():
    ranks, means = ag.mean_ranks(TASK_MEANS)
    expected = pd.DataFrame({"ce": [2.0, 2.0, 1.0, 2.5], "mil": [1.0, 2.0, 2.5, 2.5],
                             "focal": [3.0, 2.0, 2.5, 1.0]}, index=TASK_MEANS.index)
    pd.testing.assert_frame_equal(ranks, expected)
    for task in TASK_MEANS.index:
        np.testing.assert_array_equal(ranks.loc[task], scipy.stats.rankdata(-TASK_MEANS.loc[task]))
    assert means.to_dict() == {"ce": 1.875, "mil": 2.0, "focal": 2.125}
    assert list(means.index) == ["ce", "mil", "focal"]


def twelve_task_means() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.uniform(60, 90, size=12)
    return pd.DataFrame({"ce": base, "mil": base + 1.0 + rng.uniform(0, 0.5, 12),
                         "focal": base + rng.normal(0.4, 0.5, 12), "lsr": base - 0.3 + rng.normal(0, 0.5, 12)},
                        index=[f"t{i:02d}" for i in range(12)])


def test_pairwise_wilcoxon_holm_equals_scipy_and_statsmodels():
    means = twelve_task_means()
    cd = ag.critical_difference(means)
    pairs = list(itertools.combinations(means.columns, 2))
    raw = [scipy.stats.wilcoxon(means[a], means[b]).pvalue for a, b in pairs]
    holm = multipletests(raw, method="holm")[1]
    assert not np.allclose(holm, multipletests(raw, method="bonferroni")[1])  # the table tells them apart
    for (a, b), p in zip(pairs, holm):
        assert cd.p_values.loc[a, b] == pytest.approx(p, abs=1e-12)
        assert cd.p_values.loc[b, a] == pytest.approx(p, abs=1e-12)
    assert (np.diag(cd.p_values) == 1.0).all()
    assert cd.p_values.loc["ce", "mil"] < 0.05  # mil beats ce on all 12 tasks
    assert cd.friedman_p == pytest.approx(scipy.stats.friedmanchisquare(*(means[c] for c in means)).pvalue)
    assert cd.caveat is None


def test_caveat_with_four_tasks_but_not_twelve():
    few = ag.critical_difference(TASK_MEANS)
    assert few.smallest_p == 0.125
    assert few.caveat is not None and "with 4 tasks no pair can differ at alpha 0.05" in few.caveat
    assert "0.125" in few.caveat and "0.375 after Holm's correction over 3 pairs" in few.caveat
    # the floor is scipy's exact p when all four differences share a sign
    assert scipy.stats.wilcoxon([1.0, 2.0, 3.0, 4.0], method="exact").pvalue == pytest.approx(few.smallest_p)
    assert ag.critical_difference(twelve_task_means()).caveat is None
    # 6 tasks: one pair alone could reach 0.031, but not after Holm's correction over 6 pairs
    six = ag.critical_difference(twelve_task_means().iloc[:6])
    assert six.smallest_p == pytest.approx(0.03125) and "0.188 after Holm's correction over 6 pairs" in six.caveat
    assert ag.critical_difference(twelve_task_means().iloc[:6, :2]).caveat is None
    assert ag.critical_difference(TASK_MEANS[["ce", "mil"]]).friedman_p is None


def test_task_means_with_a_hole_raise():
    with pytest.raises(BenchError, match="no finite score for loss 'mil' on task 't2'"):
        ag.mean_ranks(TASK_MEANS.assign(mil=[71.0, np.nan, 59.0, 90.0]))


def test_task_means_pivot_the_seed_means():
    means = ag.task_means(SCORES)
    assert list(means.index) == ["a-task", "b-task"] and list(means.columns) == ["ce", "mil"]
    assert means.loc["a-task", "mil"] == 50.5 and means.loc["b-task", "ce"] == 71.0


# ---------------------------------------------------------------------------------------------------------
# practical equivalence


def test_rope_probabilities_sum_to_one_and_point_the_right_way():
    rng = np.random.default_rng(1)
    better = ag.rope_verdict(2.0 + rng.uniform(-0.2, 0.2, 10), rope=0.5, nsamples=2000)
    assert better.p_worse + better.p_equivalent + better.p_better == pytest.approx(1.0)
    assert better.p_better > 0.9 and ag.verdict(better) == "better"
    same = ag.rope_verdict(rng.uniform(-0.1, 0.1, 10), rope=0.5, nsamples=2000)
    assert same.p_equivalent > 0.9 and ag.verdict(same) == "equivalent"
    worse = ag.rope_verdict(-2.0 + rng.uniform(-0.2, 0.2, 10), rope=0.5, nsamples=2000)
    assert worse.p_worse > 0.9 and ag.verdict(worse) == "worse"
    mixed = ag.rope_verdict([2.0, -2.0, 0.0, 1.5, -1.5], rope=0.5, nsamples=2000)
    assert ag.verdict(mixed) == "undecided"
    assert better.rope == 0.5 and "signed-rank" in better.method


def test_rope_verdict_is_baycomps_signed_rank_test_and_reproducible():
    import baycomp

    diffs = np.array([0.6, 0.2, -0.1, 0.9, 0.4, 0.3])
    ours = ag.rope_verdict(diffs, rope=0.25, nsamples=3000, seed=9)
    theirs = baycomp.two_on_multiple(np.zeros(6), diffs, 0.25, nsamples=3000, random_state=9)
    assert (ours.p_worse, ours.p_equivalent, ours.p_better) == pytest.approx(theirs, abs=0)
    assert ours == ag.rope_verdict(diffs, rope=0.25, nsamples=3000, seed=9)


@pytest.mark.parametrize("rope", [0.0, -0.5, float("nan")])
def test_rope_must_be_positive(rope):
    with pytest.raises(BenchError, match=r"--rope must be > 0"):
        ag.rope_verdict([1.0, 2.0], rope=rope)


def test_verdict_threshold_is_checked():
    result = ag.RopeResult(0.1, 0.2, 0.7, 0.5, "test")
    assert ag.verdict(result) == "undecided" and ag.verdict(result, threshold=0.7) == "better"
    with pytest.raises(BenchError, match="threshold"):
        ag.verdict(result, threshold=0.5)


# ---------------------------------------------------------------------------------------------------------
# figures


def test_figures_write_png_and_pdf(tmp_path):
    taus = np.linspace(-2.0, 6.0, 17)
    profiles = ag.performance_profile({"ce": BASE, "mil": LOSS}, taus, reps=100)
    written = draw_performance_profiles(profiles, taus, tmp_path / "profiles", metric="test accuracy (%)",
                                        baseline="ce")
    written += draw_cd_diagram(ag.critical_difference(TASK_MEANS), tmp_path / "cd", metric="test accuracy (%)")
    assert [p.name for p in written] == ["profiles.png", "profiles.pdf", "cd.png", "cd.pdf"]
    for path in written:
        data = path.read_bytes()
        assert len(data) > 1000
        assert data.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF")
    with pytest.raises(BenchError, match="taus"):
        draw_performance_profiles(profiles, taus[:-1], tmp_path / "bad", metric="accuracy")


@pytest.mark.parametrize("diffs, rope", [([0.3, 0.8, -0.2, 0.5], 0.5), ([2.0, 2.1, 1.9, 2.5, 3.0], 0.5),
                                         ([0.05, -0.05, 0.1], 0.5), ([1.0, 0.5, -0.5, 0.25], 0.25)])
def test_the_signed_rank_probabilities_are_baycomps_own(diffs, rope):
    import baycomp

    from bench.leaderboard.aggregate import signed_rank_probs

    d = np.array(diffs)
    theirs = baycomp.SignedRankTest.probs(np.zeros_like(d), d, rope, nsamples=3000, random_state=7, prior=0.5)
    mine = signed_rank_probs(d, rope, 3000, 7, 0.5)
    assert np.allclose(mine, theirs, atol=1e-12), (mine, theirs)


CD_SCRIPT = """
import sys
import numpy as np, pandas as pd
from bench.leaderboard import aggregate as ag
from bench.leaderboard.aggregate_figures import draw_cd_diagram
rng = np.random.default_rng(0)
means = pd.DataFrame(rng.normal(80, 1, (4, 9)), columns=[f"loss_{c}" for c in "abcdefghi"])
draw_cd_diagram(ag.critical_difference(means), sys.argv[1], metric="accuracy")
"""


def test_the_critical_difference_diagram_is_the_same_file_in_every_process(tmp_path):
    """scikit-posthocs draws the bars by iterating sets of names, and str's hash changes per process: the
    same ranks must still give the same PNG (two PYTHONHASHSEEDs, one tie-free 9-loss clique)."""
    import os
    import subprocess

    from tests.conftest import REPO

    png = []
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", CD_SCRIPT, str(tmp_path / f"cd{seed}")], cwd=REPO, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)})
        png.append((tmp_path / f"cd{seed}.png").read_bytes())
    assert png[0] == png[1]
