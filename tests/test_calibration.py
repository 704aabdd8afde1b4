"""Temperature scaling (bench.train.calibration) against a brute-force minimum and known temperatures."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.train.calibration import LOG_T_BOUNDS, fit_temperature


def test_three_samples_against_a_brute_force_minimum():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    y = torch.tensor([0, 0, 0])
    grid = torch.linspace(0.05, 20.0, 40_000, dtype=torch.float64)
    nll = torch.stack([F.cross_entropy(z.double() / t, y) for t in grid])
    assert fit_temperature(z, y) == pytest.approx(float(grid[nll.argmin()]), abs=1e-3)


def test_the_nll_is_flat_at_the_fitted_temperature():
    """d/dT NLL(z / T) = 0 at the optimum: by hand, (1/T^2) * mean(z_y - Σ_k p_k z_k) = 0."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(500, 5, generator=g, dtype=torch.float64) * 3
    y = torch.multinomial(torch.softmax(z / 1.7, 1), 1, generator=g).squeeze(1)  # an interior optimum
    t = fit_temperature(z, y)
    assert 1.0 < t < 3.0
    p = torch.softmax(z / t, dim=1)
    grad = (z.gather(1, y[:, None]).squeeze(1) - (p * z).sum(1)).mean() / t ** 2
    assert abs(float(grad)) < 1e-6


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_it_undoes_a_known_over_or_under_confidence(scale):
    """Labels drawn from softmax(z): the logits scaled by s are calibrated again at T = s."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 10, generator=g) * 2
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    assert fit_temperature(z * scale, y) == pytest.approx(scale, rel=0.05)


def test_degenerate_fits_go_to_the_ends():
    """All correct: sharpening always lowers the NLL (T -> 0, stopped where it is flat); every
    label the least likely class: the uniform prediction is best (T -> infinity, clamped)."""
    z = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    t = fit_temperature(z, torch.tensor([0, 1]))
    assert t < 0.3 and float(F.cross_entropy(z / t, torch.tensor([0, 1]))) < 1e-9
    g = torch.Generator().manual_seed(1)
    z = torch.randn(200, 5, generator=g, dtype=torch.float64)
    worst = z.argmin(dim=1)
    t = fit_temperature(z, worst)
    assert t > 20 and t <= math.exp(LOG_T_BOUNDS[1]) + 1e-9
    assert float(F.cross_entropy(z / t, worst)) == pytest.approx(math.log(5), abs=2e-2)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("true_t", [0.6, 1.7, 4.0])
def test_the_reference_codes_start_at_t_1_5_ends_at_the_same_temperature(true_t):
    """Guo et al.'s code starts the fit at T = 1.5; ours at T = 1. One minimum: both end there."""
    g = torch.Generator().manual_seed(2)
    z = torch.randn(500, 5, generator=g, dtype=torch.float64) * 3
    y = torch.multinomial(torch.softmax(z / true_t, 1), 1, generator=g).squeeze(1)
    t = fit_temperature(z, y)
    assert t != 1.0 and fit_temperature(z, y, start=1.5) == pytest.approx(t, rel=1e-6)


def test_a_start_that_is_no_temperature_is_refused():
    with pytest.raises(ValueError, match="start"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), start=0.0)
