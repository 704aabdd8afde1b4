"""Tests of bench/metrics/compute.py against hand computations and an independent numpy version.

The hand batch: six samples, three classes, logits = log p so that softmax(logits) = p:

    row  p                    label  c     ŷ  correct  equal-width bin (M=15, 1-based m: (m-1)/15 < c <= m/15)
    1    [0.90, 0.05, 0.05]   0      0.90  0  yes      14 (13.5)
    2    [0.50, 0.30, 0.20]   1      0.50  0  no        8 (7.5)
    3    [0.20, 0.70, 0.10]   1      0.70  1  yes      11 (10.5)
    4    [0.10, 0.15, 0.75]   2      0.75  2  yes      12 (11.25)
    5    [0.48, 0.42, 0.10]   0      0.48  0  yes       8 (7.2)
    6    [0.35, 0.33, 0.32]   2      0.35  0  no        6 (5.25)

ECE (M=15): bins 14: |1-0.90| = 0.10; 8: |(0+1) - (0.50+0.48)| = 0.02; 11: 0.30; 12: 0.25;
6: |0-0.35| = 0.35; sum 1.02, / 6 = 0.17.
ECE (M=3, bins (0,1/3], (1/3,2/3], (2/3,1]): {0.35,0.48,0.50}: |1-1.33| = 0.33;
{0.70,0.75,0.90}: |3-2.35| = 0.65; (0.33+0.65)/6 = 0.98/6.
Adaptive ECE (M=4, sizes 2,2,1,1 over sorted c 0.35 0.48 | 0.50 0.70 | 0.75 | 0.90):
|1-0.83| + |1-1.20| + |1-0.75| + |1-0.90| = 0.17+0.20+0.25+0.10 = 0.72, / 6 = 0.12.
Adaptive ECE (M=15 >= n: one sample per bin): Σ|correct_i - c_i| / 6 = (0.10+0.50+0.30+0.25+0.52+0.35)/6 = 2.02/6.
Brier rows: 0.015, 0.78, 0.14, 0.095, 0.4568, 0.6938; sum 2.1806, / 6.
Balanced accuracy: class 0 recall 2/2, class 1 1/2, class 2 1/2 -> 2/3 (accuracy 4/6).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.metrics import compute as metrics
from bench.metrics.compute import METRIC_SETTINGS, SplitMetrics, equal_mass_bins, equal_width_bins

P = [[0.90, 0.05, 0.05], [0.50, 0.30, 0.20], [0.20, 0.70, 0.10],
     [0.10, 0.15, 0.75], [0.48, 0.42, 0.10], [0.35, 0.33, 0.32]]
Y = [0, 1, 1, 2, 0, 2]
TOL = 1e-12


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def hand() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(P, dtype=torch.float64).log(), torch.tensor(Y)


def test_hand_values() -> None:
    z, y = hand()
    assert metrics.ece(z, y) == pytest.approx(1.02 / 6, abs=TOL)
    assert metrics.ece(z, y, n_bins=3) == pytest.approx(0.98 / 6, abs=TOL)
    assert metrics.adaptive_ece(z, y, n_bins=4) == pytest.approx(0.72 / 6, abs=TOL)
    assert metrics.adaptive_ece(z, y) == pytest.approx(2.02 / 6, abs=TOL)
    assert metrics.brier(z, y) == pytest.approx(2.1806 / 6, abs=TOL)
    assert metrics.nll(z, y) == pytest.approx(
        -(math.log(0.9) + math.log(0.3) + math.log(0.7) + math.log(0.75) + math.log(0.48) + math.log(0.32)) / 6,
        abs=TOL)
    assert metrics.balanced_accuracy(z, y) == pytest.approx(2 / 3, abs=TOL)
    acc = SplitMetrics()
    acc.update(z, y)
    assert acc.compute()["accuracy"] == pytest.approx(4 / 6, abs=TOL)


def test_reliability_table_and_class_accuracy_by_hand() -> None:
    """The table above by bin (M=3): (0,1/3] is empty; (1/3,2/3]: c 0.50, 0.48, 0.35, correct
    0, 1, 0; (2/3,1]: c 0.70, 0.75, 0.90, all correct. Per-class recall 2/2, 1/2, 1/2."""
    z, y = hand()
    acc = SplitMetrics(n_bins=3)
    acc.update(z[:4], y[:4])
    acc.update(z[4:], y[4:])  # the table spans batches
    table = acc.reliability()
    assert table["count"] == [0, 3, 3]
    assert table["confidence"][0] is None and table["accuracy"][0] is None
    assert table["confidence"][1:] == pytest.approx([1.33 / 3, 2.35 / 3], abs=TOL)
    assert table["accuracy"][1:] == pytest.approx([1 / 3, 1.0], abs=TOL)
    assert acc.class_accuracy() == pytest.approx([1.0, 0.5, 0.5], abs=TOL)
    z4 = torch.cat([z, torch.full((6, 1), -math.inf, dtype=torch.float64)], dim=1)
    absent = SplitMetrics()
    absent.update(z4, y)
    assert absent.class_accuracy()[3] is None


def test_absent_class_is_left_out_of_balanced_accuracy() -> None:
    z, y = hand()
    z4 = torch.cat([z, torch.full((6, 1), -math.inf, dtype=torch.float64)], dim=1)  # p = 0 for class 3
    assert metrics.balanced_accuracy(z4, y) == pytest.approx(2 / 3, abs=TOL)
    assert metrics.brier(z4, y) == pytest.approx(2.1806 / 6, abs=TOL)
    assert metrics.ece(z4, y) == pytest.approx(1.02 / 6, abs=TOL)


def test_bins_are_right_closed() -> None:
    c = torch.tensor([1 / 15, 1 / 15 + 1e-12, 0.6, 0.6 + 1e-12, 14 / 15, 1.0, 0.01], dtype=torch.float64)
    assert equal_width_bins(c, 15).tolist() == [0, 1, 8, 9, 13, 14, 0]
    assert equal_mass_bins(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]  # numpy.array_split's sizes 3, 2, 2
    assert [len(a) for a in np.array_split(np.arange(7), 3)] == [3, 2, 2]
    assert equal_mass_bins(2, 4).tolist() == [0, 1]
    assert METRIC_SETTINGS["ece_bins"] == 15


# ---------- an independent numpy float64 version, for random batches ----------


def np_metrics(z: np.ndarray, y: np.ndarray, m: int = 15) -> dict[str, float]:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n, k = p.shape
    c, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == y).astype(float)
    ece = 0.0
    for b in range(1, m + 1):
        sel = (c > (b - 1) / m) & (c <= b / m)
        if sel.any():
            ece += sel.sum() / n * abs(correct[sel].mean() - c[sel].mean())
    order = np.argsort(c, kind="stable")
    aece = sum(len(ix) / n * abs(correct[ix].mean() - c[ix].mean())
               for ix in np.array_split(order, m) if len(ix))
    onehot = np.eye(k)[y]
    recalls = [correct[y == j].mean() for j in range(k) if (y == j).any()]
    return {"nll": float(-np.log(p[np.arange(n), y]).mean()), "ece": float(ece), "adaptive_ece": float(aece),
            "brier": float(((p - onehot) ** 2).sum(axis=1).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "accuracy": float(correct.mean())}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_numpy_and_batching_does_not_matter(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1000, 10, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 9, (1000,), generator=g)  # class 9 absent
    ref = np_metrics(z.numpy(), y.numpy())
    whole = SplitMetrics()
    whole.update(z, y)
    batched = SplitMetrics()
    for start in range(0, 1000, 128):
        batched.update(z[start:start + 128], y[start:start + 128])
    batched.update(z[:0], y[:0])  # an empty batch adds nothing
    for name, value in ref.items():
        assert whole.compute()[name] == pytest.approx(value, abs=1e-10), name
        assert batched.compute()[name] == pytest.approx(value, abs=1e-10), name
    assert getattr(metrics, "nll")(z, y) == pytest.approx(ref["nll"], abs=1e-10)


def test_float32_and_bfloat16_logits() -> None:
    z, y = hand()
    assert metrics.ece(z.float(), y) == pytest.approx(1.02 / 6, abs=1e-6)
    assert math.isfinite(metrics.brier(z.to(torch.bfloat16), y))


def test_errors_and_reset() -> None:
    acc = SplitMetrics()
    with pytest.raises(ValueError, match="before any"):
        acc.compute()
    z, y = hand()
    acc.update(z, y)
    with pytest.raises(ValueError, match="earlier batches had 3"):
        acc.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        acc.update(z, y[:2])
    acc.reset()
    with pytest.raises(ValueError, match="before any"):
        acc.compute()
    with pytest.raises(ValueError, match="n_bins"):
        SplitMetrics(n_bins=0)


def test_perfect_and_uniform() -> None:
    y = torch.tensor([0, 1, 2, 1])
    sure = torch.nn.functional.one_hot(y, 3).double() * 50.0
    assert metrics.ece(sure, y) == pytest.approx(0.0, abs=1e-12)
    assert metrics.brier(sure, y) == pytest.approx(0.0, abs=1e-12)
    flat = torch.zeros(4, 3, dtype=torch.float64)  # p = 1/3, ŷ = 0 (first index): correct for 1 of 4
    assert metrics.ece(flat, y) == pytest.approx(abs(0.25 - 1 / 3), abs=1e-12)
    assert metrics.brier(flat, y) == pytest.approx(2 / 3, abs=1e-12)  # (2/3)² + 2 (1/3)²
    assert metrics.nll(flat, y) == pytest.approx(math.log(3), abs=1e-12)


# ---------- adaptive ECE against Mukhoti et al.'s binning (the difference the module documents) ----------


def mukhoti_adaptive_ece(c: np.ndarray, correct: np.ndarray, m: int = 15) -> float:
    """AdaptiveECELoss's rule, in numpy: edges at interpolated ranks of the sorted confidences,
    bins (lower, upper] by value, each bin's weight its share of all n samples."""
    n = len(c)
    edges = np.interp(np.linspace(0, n, m + 1), np.arange(n), np.sort(c))
    total = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        sel = (c > lower) & (c <= upper)
        if sel.any():
            total += sel.sum() / n * abs(c[sel].mean() - correct[sel].mean())
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adaptive_ece_is_within_2m_over_n_of_mukhotis_binning(seed: int) -> None:
    """Distinct confidences, n a multiple of M: each of Mukhoti's bins is ours shifted by one rank."""
    g = torch.Generator().manual_seed(seed)
    n, m = 1500, 15
    z = torch.randn(n, 10, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 10, (n,), generator=g)
    p = torch.softmax(z, 1).numpy()
    c, correct = p.max(axis=1), (p.argmax(axis=1) == y.numpy()).astype(float)
    assert len(np.unique(c)) == n
    ours, theirs = metrics.adaptive_ece(z, y, n_bins=m), mukhoti_adaptive_ece(c, correct, m)
    assert ours == pytest.approx(np_metrics(z.numpy(), y.numpy())["adaptive_ece"], abs=1e-12)
    assert ours != theirs and abs(ours - theirs) <= 2 * m / n


def test_mukhotis_binning_leaves_out_the_lowest_confidence_and_ours_does_not() -> None:
    """Two samples, one bin: theirs counts only the higher confidence, ours both."""
    c, correct = np.array([0.6, 0.9]), np.array([1.0, 0.0])
    assert mukhoti_adaptive_ece(c, correct, 1) == pytest.approx(0.5 * 0.9)
    z = torch.log(torch.tensor([[0.6, 0.4], [0.1, 0.9]], dtype=torch.float64))
    y = torch.tensor([0, 0])  # the first prediction right (c 0.6), the second wrong (c 0.9)
    assert metrics.adaptive_ece(z, y, n_bins=1) == pytest.approx(abs((1.0 - 0.6) + (0.0 - 0.9)) / 2)
