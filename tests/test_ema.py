"""bench.train.ema: the EMA recursion by hand, BatchNorm buffers, checkpoint round trip, decay validation."""

from __future__ import annotations

import io

import pytest
import torch

from bench.train.ema import WeightEMA, validate_decay
from bench.errors import BenchError


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 3))


def _train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, ema: WeightEMA, steps: int,
                 seed: int) -> list[dict[str, torch.Tensor]]:
    """``steps`` SGD steps, updating the EMA after each; the model's floating state after each."""
    g = torch.Generator().manual_seed(seed)
    seen = []
    for _ in range(steps):
        x = torch.randn(8, 2, 6, 6, generator=g)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()})
    return seen


@pytest.mark.parametrize("decay", [0.9, 0.5])
def test_ema_follows_the_recursion(decay: float) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = WeightEMA(model, decay)
    seen = _train_steps(model, opt, ema, 5, seed=1)
    expected = dict(seen[0])  # the first update copies the weights
    for state in seen[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * state[k] for k in expected}
    got = ema.module.state_dict()
    for k, value in expected.items():  # weights and BatchNorm running statistics alike
        torch.testing.assert_close(got[k], value, rtol=1e-6, atol=1e-7, msg=k)
    assert "1.running_mean" in expected and "1.running_var" in expected
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])
    # the integer counter is the model's, not an averaged (rounded, frozen) value
    assert int(got["1.num_batches_tracked"]) == int(model.state_dict()["1.num_batches_tracked"]) == 5
    assert int(ema.n_averaged) == 5


def test_state_dict_round_trip_resumes_bitwise() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = WeightEMA(model, 0.99)
    _train_steps(model, opt, ema, 3, seed=2)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "ema": ema.state_dict()}, buf)
    _train_steps(model, opt, ema, 4, seed=3)
    reference = {k: v.clone() for k, v in ema.state_dict().items()}

    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    model2 = _model()
    model2.load_state_dict(state["model"])
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(state["optimizer"])
    ema2 = WeightEMA(model2, 0.99)
    ema2.load_state_dict(state["ema"])
    _train_steps(model2, opt2, ema2, 4, seed=3)
    resumed = ema2.state_dict()
    assert resumed.keys() == reference.keys()
    for k, value in reference.items():
        assert torch.equal(resumed[k], value), k


def test_evaluating_the_ema_module_uses_its_weights() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ema = WeightEMA(model, 0.9)
    _train_steps(model, opt, ema, 3, seed=4)
    x = torch.randn(4, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    ema.eval()
    model.eval()
    with torch.inference_mode():
        assert not torch.equal(ema.module(x), model(x))
        assert torch.equal(ema(x), ema.module(x))


@pytest.mark.parametrize("decay", [0, 1, 1.0, -0.5, 1.5, float("nan"), True, "0.9", None])
def test_decay_outside_the_open_unit_interval_is_one_line(decay: object) -> None:
    with pytest.raises(BenchError, match=r"ema_decay must be in \(0, 1\)") as info:
        validate_decay(decay)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    with pytest.raises(BenchError):
        WeightEMA(_model(), decay)  # type: ignore[arg-type]


def test_good_decays() -> None:
    for decay in (0.5, 0.999, 0.9999):
        validate_decay(decay)


def test_the_update_is_torchs_averaged_model_bit_for_bit() -> None:
    """WeightEMA's own step (no device reads) against torch's AveragedModel with the same EMA
    function, integer buffers copied after each step as WeightEMA documents."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ours = WeightEMA(model, 0.8)
    torchs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        loss = model(torch.randn(8, 2, 6, 6, generator=g)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.update_parameters(model)
        torchs.update_parameters(model)
        for mine, theirs in zip(torchs.module.buffers(), model.buffers()):
            if not mine.is_floating_point():
                mine.copy_(theirs)
    assert int(ours.n_averaged) == int(torchs.n_averaged) == 5 and ours.n_averaged.device.type == "cpu"
    for (name, a), b in zip(ours.module.state_dict().items(), torchs.module.state_dict().values()):
        assert torch.equal(a, b), name
