"""Tuning-budget curves: Dodge et al. 2019's expected best of k trials against brute force, the two
selection conventions, incomplete trials, trials-to-beat and the figure."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.leaderboard.budget import beat_text, budget_curves, expected_best, trials_to_beat

# T = 4 trials; trials 1 and 2 tie for the best validation score with different test scores, so the
# tie-break decides the test score whenever both are drawn
VAL = np.array([0.61, 0.83, 0.83, 0.47])
TEST = np.array([0.58, 0.79, 0.71, 0.66])


def brute_force(val: np.ndarray, test: np.ndarray, trials: np.ndarray, k: int,
                lowest_wins: bool = True) -> tuple[float, float, float, float]:
    """Mean and std of (max val, test of the selected trial) over all T^k ordered draws with replacement,
    the selected trial being the drawn one of best val, the lowest (or highest) trial number on ties."""
    sign = -1 if lowest_wins else 1
    picked = [max(draw, key=lambda i: (val[i], sign * trials[i]))
              for draw in itertools.product(range(len(val)), repeat=k)]
    v, t = val[picked], test[picked]
    ev, et = math.fsum(v) / len(v), math.fsum(t) / len(t)
    return ev, et, math.sqrt(math.fsum((v - ev) ** 2) / len(v)), math.sqrt(math.fsum((t - et) ** 2) / len(t))


@pytest.mark.parametrize("trials", [np.array([0, 1, 2, 3]), np.array([3, 2, 0, 1])])
def test_expected_best_is_the_brute_force_mean_over_every_draw(trials):
    e = expected_best(VAL, TEST, 4, trials=trials)
    assert e.k.tolist() == [1, 2, 3, 4]
    for k in range(1, 5):
        ev, et, sv, st = brute_force(VAL, TEST, trials, k)
        assert e.expected_val[k - 1] == pytest.approx(ev, abs=1e-12)
        assert e.expected_test[k - 1] == pytest.approx(et, abs=1e-12)
        assert e.val_std[k - 1] == pytest.approx(sv, abs=1e-12)
        assert e.test_std[k - 1] == pytest.approx(st, abs=1e-12)
        if k >= 2:  # the other tie-break moves the test score: the check above sees which one is used
            assert abs(brute_force(VAL, TEST, trials, k, lowest_wins=False)[1] - et) > 1e-3


def test_without_trial_numbers_the_earlier_position_wins_a_tie():
    assert np.array_equal(expected_best(VAL, TEST).expected_test,
                          expected_best(VAL, TEST, trials=np.arange(4)).expected_test)
    # the tied pair swapped: now trial 1 holds test 0.71, and it is still trial 1 that is selected
    swapped = expected_best(VAL, TEST[[0, 2, 1, 3]])
    assert swapped.expected_test[-1] == pytest.approx(brute_force(VAL, TEST[[0, 2, 1, 3]], np.arange(4), 4)[1],
                                                      abs=1e-12)


def test_one_trial_is_the_mean_and_many_tend_to_the_best_validation_trial():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 17):
        val, test = rng.random(n), rng.random(n)
        e = expected_best(val, test)
        assert len(e.k) == n
        assert e.expected_val[0] == pytest.approx(val.mean(), abs=1e-12)
        assert e.expected_test[0] == pytest.approx(test.mean(), abs=1e-12)
    e = expected_best(VAL, TEST, 400)
    assert e.expected_val[-1] == pytest.approx(0.83, abs=1e-12)
    assert e.expected_test[-1] == pytest.approx(0.79, abs=1e-12)  # trial 1, the lowest of the tied pair
    assert e.val_std[-1] == pytest.approx(0.0, abs=1e-12)


def test_expected_validation_never_decreases_with_k():
    rng = np.random.default_rng(7)
    for n in (2, 3, 8, 40):
        val = np.round(rng.normal(0.8, 0.05, n), 2)  # rounded: ties
        e = expected_best(val, rng.random(n), 3 * n)
        assert np.all(np.diff(e.expected_val) >= -1e-15)
        assert e.expected_val[-1] <= val.max() + 1e-15


@pytest.mark.parametrize("args, message", [
    (([0.5, math.nan], [0.1, 0.2]), "val is not finite at positions [1]"),
    (([0.5, 0.6], [0.1, math.inf]), "test is not finite"),
    (([0.5, 0.6], [0.1]), "2 val scores but 1 test scores"),
    (([], []), "no trials given"),
    (([0.5], [0.1], 0), "k_max must be a positive integer"),
])
def test_expected_best_rejects_bad_scores_in_one_line(args, message):
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        expected_best(*args)
    assert "\n" not in str(err.value)


def test_expected_best_rejects_repeated_trial_numbers():
    with pytest.raises(BenchError, match="distinct integers"):
        expected_best([0.5, 0.6], [0.1, 0.2], trials=np.array([1, 1]))


def frame(cells: dict[tuple[int, int], tuple[float, float]], task: str = "t", loss: str = "x",
          failed: tuple[tuple[int, int], ...] = ()) -> pd.DataFrame:
    """Rows from {(trial, seed): (val, test)}; the cells in ``failed`` have status "failed"."""
    return pd.DataFrame([{"task": task, "loss": loss, "trial": t, "seed": s, "val": v, "test": te,
                          "status": "failed" if (t, s) in failed else "done"} for (t, s), (v, te) in cells.items()])


# two seeds, three trials, scores in eighths (exact in binary, so the means tie exactly):
# mean val 0.6875, 0.6875, 0.75 (trials 0 and 1 tie); seed 1 ties trials 0 and 2 at 0.875
HAND = {(0, 0): (0.5, 0.625), (1, 0): (0.75, 0.375), (2, 0): (0.625, 0.875),
        (0, 1): (0.875, 0.75), (1, 1): (0.625, 0.5), (2, 1): (0.875, 0.25)}


def curve(curves: pd.DataFrame, column: str, loss: str = "x") -> list[float]:
    return curves[curves["loss"] == loss].sort_values("k")[column].tolist()


def test_per_seed_averages_each_seeds_curve_by_hand():
    curves, summary = budget_curves(frame(HAND), [0, 1], "per-seed")
    # weights of ranks 1..3: k = 2: 1/9, 3/9, 5/9; k = 3: 1/27, 7/27, 19/27
    # seed 0 ranks trials 0, 2, 1; seed 1 ranks trials 1, 2, 0 (trial 0 wins its tie with trial 2)
    # k = 2: seed 0 val (.5 + 3 * .625 + 5 * .75) / 9 = 6.125 / 9, test (.625 + 3 * .875 + 5 * .375) / 9 = 5.125 / 9
    #        seed 1 val (.625 + 3 * .875 + 5 * .875) / 9 = 7.625 / 9, test (.5 + 3 * .25 + 5 * .75) / 9 = 5 / 9
    # k = 3: seed 0 val 19.125 / 27, test 13.875 / 27; seed 1 val 23.375 / 27, test 16.5 / 27
    assert curve(curves, "k") == [1, 2, 3]
    assert curve(curves, "expected_val") == pytest.approx([4.25 / 6, 13.75 / 18, 42.5 / 54], abs=1e-12)
    assert curve(curves, "expected_test") == pytest.approx([3.375 / 6, 10.125 / 18, 30.375 / 54], abs=1e-12)
    assert set(curves["selection"]) == {"per-seed"}
    row = summary.iloc[0]
    assert (row["complete"], row["incomplete"], row["trials"]) == (3, (), 3)
    assert (row["untuned_val"], row["untuned_test"]) == (0.6875, 0.6875)
    assert (row["tuned_trial"], row["tuned_val"], row["tuned_test"]) == (2, 0.75, 0.5625)


def test_mean_convention_on_the_same_cells_differs_and_breaks_the_mean_tie_as_tuned_does():
    curves, summary = budget_curves(frame(HAND), [0, 1], "mean")
    # means ranked trials 1, 0, 2 (trial 0 wins its tie with trial 1): k = 2 test (.4375 + 3 * .6875 + 5 * .5625) / 9
    assert curve(curves, "expected_test") == pytest.approx([1.6875 / 3, 5.3125 / 9, 15.9375 / 27], abs=1e-12)
    assert curve(curves, "expected_val") == pytest.approx([2.125 / 3, 6.5 / 9, 19.75 / 27], abs=1e-12)
    assert summary.iloc[0]["tuned_trial"] == 2  # the summary's tuned score does not depend on the convention


@pytest.mark.parametrize("selection", ["mean", "per-seed"])
def test_an_incomplete_trial_is_left_out_and_listed(selection):
    cells = dict(HAND)
    cells[(3, 0)] = (0.99, 0.99)  # would be selected on its one seed
    cells[(3, 1)] = (math.nan, math.nan)
    cells[(4, 0)] = (0.98, 0.98)  # seed 1 has no row
    cells[(5, 0)] = (0.97, 0.97)
    cells[(5, 1)] = (0.97, math.nan)  # done, but no test score
    cells[(7, 0)] = (0.99, 0.99)  # a seed that is not expected: not read
    cells[(7, 1)] = (0.99, 0.99)
    cells[(7, 9)] = (0.99, 0.99)
    rows = frame(cells, failed=((3, 1),))
    rows = rows[~((rows["trial"] == 7) & (rows["seed"] == 1))]
    curves, summary = budget_curves(rows, [0, 1], selection, n_trials=8)
    clean, _ = budget_curves(frame(HAND), [0, 1], selection)
    pd.testing.assert_frame_equal(curves, clean)
    row = summary.iloc[0]
    assert row["incomplete"] == (3, 4, 5, 6, 7)  # trial 6 has no row at all; trial 7 lacks seed 1
    assert (row["complete"], row["trials"], row["tuned_trial"]) == (3, 8, 2)


def test_an_incomplete_trial_0_has_no_untuned_score_and_leaves_the_pool():
    curves, summary = budget_curves(frame(HAND, failed=((0, 1),)), [0, 1])
    row = summary.iloc[0]
    assert not row["untuned_complete"] and math.isnan(row["untuned_val"]) and math.isnan(row["untuned_test"])
    assert row["incomplete"] == (0,)
    # trials 1 and 2 only: means (0.6875, 0.4375) and (0.75, 0.5625)
    assert curve(curves, "expected_test") == pytest.approx([0.5, (0.4375 + 3 * 0.5625) / 4], abs=1e-12)
    # no row of trial 0 at all: it is listed just the same
    _, summary = budget_curves(frame({k: v for k, v in HAND.items() if k[0] != 0}), [0, 1])
    assert summary.iloc[0]["incomplete"] == (0,) and not summary.iloc[0]["untuned_complete"]


def test_a_loss_without_complete_trials_has_a_summary_and_no_curve():
    curves, summary = budget_curves(frame({(0, 0): (0.5, 0.5)}), [0, 1])
    assert curves.empty and list(curves.columns)[:6] == ["task", "loss", "selection", "k", "expected_val",
                                                          "expected_test"]
    assert summary.iloc[0]["complete"] == 0 and pd.isna(summary.iloc[0]["tuned_trial"])


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="status"), "lacks column"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "rows repeat a cell"),
    (lambda f: f.assign(trial=f["trial"] + 0.5), "not an integer"),
    (lambda f: f.assign(val="high"), "non-numbers"),
])
def test_budget_curves_rejects_bad_frames_in_one_line(change, message):
    with pytest.raises(BenchError, match=message) as err:
        budget_curves(change(frame(HAND)), [0, 1])
    assert "\n" not in str(err.value)


def test_budget_curves_rejects_bad_seeds_and_conventions():
    with pytest.raises(BenchError, match="unknown selection 'per_seed'.*'per-seed'"):
        budget_curves(frame(HAND), [0, 1], "per_seed")
    with pytest.raises(BenchError, match="non-empty list of seeds"):
        budget_curves(frame(HAND), [])
    with pytest.raises(BenchError, match=r"trial 2 is outside 0\.\.1"):
        budget_curves(frame(HAND), [0, 1], n_trials=2)


def beat_frame() -> pd.DataFrame:
    """One seed. Task a: ce untuned 0.6, tuned 0.7; x's expected test 0.5125, 0.640625, 0.688, 0.710 for k = 1..4.
    Task b: ce untuned 0.6, tuned 0.95; x: 0.575, 0.6125. Task c: ce's trial 0 failed. Task d: x never completes."""
    def rows(task, loss, scores, failed=()):
        return frame({(t, 0): s for t, s in enumerate(scores)}, task, loss, tuple((t, 0) for t in failed))
    return pd.concat([
        rows("a", "ce", [(0.5, 0.6), (0.7, 0.7)]),
        rows("a", "x", [(0.4, 0.55), (0.6, 0.65), (0.8, 0.75), (0.2, 0.1)]),
        rows("b", "ce", [(0.5, 0.6), (0.9, 0.95)]),
        rows("b", "x", [(0.4, 0.65), (0.3, 0.5)]),
        rows("c", "ce", [(0.5, 0.6), (0.6, 0.5)], failed=(0,)),
        rows("c", "x", [(0.4, 0.7), (0.3, 0.5)]),
        rows("d", "ce", [(0.5, 0.6)]),
        rows("d", "x", [(0.4, 0.7)], failed=(0,)),
    ], ignore_index=True)


def test_trials_to_beat_by_hand():
    curves, summary = budget_curves(beat_frame(), [0])
    out = trials_to_beat(curves, summary, "x", "ce").set_index("task")
    assert out.loc["a", "beats_untuned_at"] == 2 and out.loc["a", "beats_tuned_at"] == 4
    assert out.loc["b", "beats_untuned_at"] == 2 and out.loc["b", "beats_tuned_at"] is None
    assert out.loc["c", "beats_untuned_at"] is None and out.loc["c", "beats_tuned_at"] == 1
    assert out.loc["d", "beats_untuned_at"] is None and out.loc["d", "beats_tuned_at"] is None
    assert out["trials"].to_dict() == {"a": 4, "b": 2, "c": 2, "d": 0}
    assert beat_text(out.loc["a", "beats_tuned_at"], 4, out.loc["a", "baseline_tuned_test"]) == "k = 4"
    assert beat_text(out.loc["b", "beats_tuned_at"], 2, out.loc["b", "baseline_tuned_test"]) == "not within 2 trials"
    assert beat_text(None, 2, out.loc["c", "baseline_untuned_test"]).startswith("no baseline score")
    assert beat_text(None, 0, 0.6) == "no complete trial"


def test_trials_to_beat_names_an_unknown_loss():
    curves, summary = budget_curves(beat_frame(), [0])
    with pytest.raises(BenchError, match="unknown loss 'cee'.*'ce'"):
        trials_to_beat(curves, summary, "x", "cee")


def suite_frame(losses: int = 13, n_trials: int = 8) -> pd.DataFrame:
    """One task, ``losses`` losses (the first the baseline ``ce``), two seeds; loss l4's trial 0 fails."""
    rng = np.random.default_rng(11)
    names = ["ce"] + [f"l{i}" for i in range(1, losses)]
    return pd.concat([frame({(t, s): (v, v - 0.01) for t in range(n_trials) for s in (0, 1)
                             for v in [float(rng.normal(0.8, 0.05))]}, "cifar10 / resnet18", name,
                            ((0, 1),) if name == "l4" else ())
                      for name in names], ignore_index=True)


@pytest.mark.parametrize("x_scale", ["log2", "linear"])
def test_the_figure_writes_png_and_pdf(tmp_path, x_scale):
    from bench.leaderboard.budget_figures import draw_budget_curves

    curves, summary = budget_curves(suite_frame(), [0, 1])
    paths = draw_budget_curves(curves, summary, "cifar10 / resnet18", "accuracy", tmp_path / f"budget-{x_scale}",
                               "ce", x_scale=x_scale)
    assert [p.name for p in paths] == [f"budget-{x_scale}.png", f"budget-{x_scale}.pdf"]
    assert paths[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and paths[0].stat().st_size > 10_000
    assert paths[1].read_bytes().startswith(b"%PDF") and paths[1].stat().st_size > 5_000


def test_the_figure_draws_the_baseline_apart_and_each_untuned_score_at_the_left():
    from bench.leaderboard.budget_figures import budget_figure

    curves, summary = budget_curves(suite_frame(), [0, 1])
    fig = budget_figure(curves, summary, "cifar10 / resnet18", "accuracy", "ce")
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    assert len([g for g in lines if g.startswith("curve:")]) == 13
    assert lines["curve:ce"].get_linewidth() > lines["curve:l1"].get_linewidth()
    assert lines["curve:ce"].get_color() == "black"
    assert len({lines[f"curve:l{i}"].get_color() for i in range(1, 13)}) == 12
    untuned = summary.set_index("loss")["untuned_test"]
    assert "untuned:l4" not in lines  # its trial 0 is incomplete
    assert lines["untuned:l1"].get_xdata()[0] == 0.5 and lines["untuned:l1"].get_ydata()[0] == untuned["l1"]
    assert lines["baseline-untuned"].get_ydata()[0] == untuned["ce"]
    assert lines["baseline-tuned"].get_ydata()[0] == summary.set_index("loss").loc["ce", "tuned_test"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["untuned", "1", "2", "4", "8"]
    assert "accuracy" in ax.get_ylabel() and "mean over seeds" in fig.get_suptitle()
    assert "l4 (trial 0)" in fig.get_suptitle()


def test_the_figure_names_an_unknown_task_and_an_ambiguous_convention(tmp_path):
    from bench.leaderboard.budget_figures import draw_budget_curves

    curves, summary = budget_curves(suite_frame(3), [0, 1])
    with pytest.raises(BenchError, match="unknown task 'cifar10 / resnet'.*closest"):
        draw_budget_curves(curves, summary, "cifar10 / resnet", "accuracy", tmp_path / "b", "ce")
    both = pd.concat([curves, budget_curves(suite_frame(3), [0, 1], "per-seed").curves])
    with pytest.raises(BenchError, match="several selection conventions"):
        draw_budget_curves(both, summary, "cifar10 / resnet18", "accuracy", tmp_path / "b", "ce")
    paths = draw_budget_curves(both, summary, "cifar10 / resnet18", "accuracy", tmp_path / "b", "ce",
                               selection="per-seed")
    assert all(p.stat().st_size > 0 for p in paths)
