"""The strong-baseline recipe through the real trainer (bench.train.loop.train_cell): the recorded lr of
each epoch against the schedule's formula, augmentation streams, clipping, EMA, the calibration
figures of every epoch, temperature scaling, and a kill-and-resume with every option on that ends
bitwise identical on CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.data import Splits
from bench.errors import BenchError
from bench.metrics.compute import SplitMetrics, ece, nll
from bench.config.recipe import check_recipe
from bench.config.registry import TrainConfig
from bench.train.checkpoint import load_checkpoint
from bench.train.loop import TEMPERATURE_COLUMNS, TrainCallback, train_cell

N, K, BATCH = 96, 4, 32
STEPS = N // BATCH
LR = 0.05
TIMES = ("epoch_time", "eval_time")


def _splits(val: bool = False) -> Splits:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (N + 40, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, K, (N + 40,), generator=g)
    # class k brightens channel k % 3: learnable, so the calibration figures move
    for k in range(K):
        x[y == k, k % 3] = (x[y == k, k % 3] // 2 + 128).to(torch.uint8)
    val_part = (x[N + 20:], y[N + 20:]) if val else (None, None)
    return Splits(x[:N], y[:N], x[N:N + 20], y[N:N + 20], K, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, "test", ("a", "b", "c", "d"),
                  kind="cifar10", val_x=val_part[0], val_y=val_part[1])


def _model() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, K))


def _train(cfg: TrainConfig, splits: Splits | None = None, model: torch.nn.Module | None = None, **kw):
    model = model if model is not None else _model()
    result = train_cell(cell_id="c", model=model, criterion=torch.nn.CrossEntropyLoss(), splits=splits or _splits(),
                        cfg=cfg, seed=5, device=torch.device("cpu"), checkpoint=kw.pop("checkpoint", None), **kw)
    return result, model


def _cfg(**kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": BATCH, "lr": LR, "momentum": 0.9, "eval_batch_size": 16, "precision": "fp32"}
    return TrainConfig(**{**base, **kw})


def _cosine_lr(t: int, total: int, warmup: int, min_lr: float) -> float:
    if t < warmup:
        return LR * (t + 1) / (warmup + 1)
    return min_lr + (LR - min_lr) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2


def test_the_recorded_lr_of_each_epoch_follows_the_cosine_formula():
    result, _ = _train(_cfg(schedule="cosine", warmup_epochs=1, min_lr=1e-4))
    expected = [_cosine_lr(e * STEPS, 4 * STEPS, STEPS, 1e-4) for e in range(4)]
    assert expected[0] == pytest.approx(LR / 4) and expected[1] == pytest.approx(LR)
    assert [h["lr"] for h in result.history] == pytest.approx(expected, rel=1e-12)


def test_the_recorded_lr_of_multistep_and_constant():
    result, _ = _train(_cfg(schedule="multistep", milestones="2,3", gamma=0.1))
    assert [h["lr"] for h in result.history] == pytest.approx([LR, LR, LR * 0.1, LR * 0.01], rel=1e-12)
    result, _ = _train(_cfg())
    assert [h["lr"] for h in result.history] == [LR] * 4


def _plain_protocol(cfg: TrainConfig, splits: Splits, seed: int) -> torch.nn.Module:
    """The paper's protocol written out by hand: the seed's permutation, plain SGD with momentum,
    no schedule, no augmentation, no clipping, no EMA."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(N, generator=gen)
        for step in range(STEPS):
            idx = perm[step * BATCH:(step + 1) * BATCH]
            xb = splits.normalise(torch.index_select(splits.train_x, 0, idx))
            loss = torch.nn.functional.cross_entropy(model(xb).float(), torch.index_select(splits.train_y, 0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def test_without_a_recipe_the_trainer_is_the_plain_protocol_bit_for_bit():
    """No recipe setting (or each at its default, spelt out): the weights equal those of the
    hand-written paper protocol exactly, so the recipe's machinery adds no operation to it."""
    splits = _splits()
    expected = _plain_protocol(_cfg(), splits, seed=5)
    for cfg in (_cfg(), _cfg(schedule="constant", augment="none", grad_clip=0.0, ema_decay=0.0)):
        result, model = _train(cfg, splits)
        assert [h["lr"] for h in result.history] == [LR] * 4
        for (name, a), b in zip(expected.state_dict().items(), model.state_dict().values()):
            assert torch.equal(a, b), name
    _, scheduled = _train(_cfg(schedule="cosine"), splits)  # the comparison can fail: a schedule changes the weights
    assert not torch.equal(next(scheduled.parameters()), next(expected.parameters()))


class _Recording(torch.nn.CrossEntropyLoss):
    """Cross entropy that keeps each training batch's labels and first image row."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[torch.Tensor] = []

    def forward(self, logits, target):
        self.labels.append(target.clone())
        return super().forward(logits, target)


def _labels_seen(cfg: TrainConfig, seed: int = 5) -> tuple[list[torch.Tensor], float]:
    loss = _Recording()
    result = train_cell(cell_id="c", model=_model(), criterion=loss, splits=_splits(), cfg=cfg, seed=seed,
                        device=torch.device("cpu"), checkpoint=None)
    return loss.labels, result.history[-1]["train_loss"]


def test_augmentation_changes_the_images_but_not_the_batch_order():
    """crop-flip draws from its own generator: every step sees the labels, in the order, of the
    unaugmented cell; the images differ, so the loss does; the same seed repeats it exactly,
    another seed draws other crops."""
    plain, plain_loss = _labels_seen(_cfg(epochs=2))
    aug, aug_loss = _labels_seen(_cfg(epochs=2, augment="crop-flip", crop_padding=2))
    again, again_loss = _labels_seen(_cfg(epochs=2, augment="crop-flip", crop_padding=2))
    assert len(aug) == 2 * STEPS and all(torch.equal(a, b) for a, b in zip(plain, aug, strict=True))
    assert aug_loss != plain_loss and aug_loss == again_loss
    from bench.train.augment import augment_batch, make_generator

    x = _splits().train_x[:32]
    assert not torch.equal(augment_batch(x, "crop-flip", 2, make_generator(5, "cpu")),
                           augment_batch(x, "crop-flip", 2, make_generator(6, "cpu")))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_tiny_gradient_clip_bounds_each_step(precision):
    """SGD without momentum moves the weights by lr * ||clipped g|| <= lr * clip per step, and by
    about that much (every raw gradient is far above the clip). fp16 (a GradScaler, here torch's CPU
    one) must clip the unscaled gradient: clipping the scaled one would move the weights 2^16 times less."""
    clip = 1e-3
    start = [p.detach().clone() for p in _model().parameters()]
    _, model = _train(_cfg(epochs=1, momentum=0.0, grad_clip=clip, precision=precision))
    moved = torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(model.parameters(), start)))
    assert 0.3 * STEPS * LR * clip < float(moved) <= STEPS * LR * clip * (1 + 1e-6)
    if precision == "fp16":
        return
    _, free = _train(_cfg(epochs=1, momentum=0.0))
    moved_free = torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(free.parameters(), start)))
    assert float(moved_free) > 10 * float(moved)


def test_ema_changes_what_is_evaluated_not_what_is_trained():
    raw, _ = _train(_cfg())
    ema, _ = _train(_cfg(ema_decay=0.9))
    assert [h["train_loss"] for h in raw.history] == [h["train_loss"] for h in ema.history]
    assert [h["test_loss"] for h in raw.history] != [h["test_loss"] for h in ema.history]


def test_every_epoch_records_the_calibration_metrics_as_bench_metrics_computes_them():
    splits = _splits(val=True)
    result, model = _train(_cfg(), splits)
    last = result.history[-1]
    model.eval()
    with torch.no_grad():
        logits = model(splits.normalise(splits.test_x)).float()
        val_logits = model(splits.normalise(splits.val_x)).float()
    # The evaluation pass runs the model batch by batch: its float32 logits may differ from one
    # whole-split forward in the last bits, as the NLL's tolerance already allows.
    assert last["test_ece"] == pytest.approx(ece(logits, splits.test_y), abs=1e-6)
    assert last["test_loss"] == pytest.approx(nll(logits, splits.test_y), abs=1e-6)
    assert last["val_ece"] == pytest.approx(ece(val_logits, splits.val_y), abs=1e-6)
    for h in result.history:
        assert {"test_ece", "test_aece", "test_brier", "test_balanced_acc", "val_brier", "val_balanced_acc"} <= set(h)
    acc = SplitMetrics()
    acc.update(logits, splits.test_y)
    assert result.final["test_class_acc"] == acc.class_accuracy()
    # the bins' counts and hits are exact; their mean confidence carries the batching's last bits
    got, want = result.final["test_reliability"], acc.reliability()
    assert got["count"] == want["count"] and got["accuracy"] == want["accuracy"]
    assert got["confidence"] == [c if c is None else pytest.approx(c, abs=1e-6) for c in want["confidence"]]


def test_temperature_scaling_fills_the_epochs_a_rule_can_select():
    splits = _splits(val=True)
    result, model = _train(_cfg(epochs=5), splits)
    hist = result.history
    from bench.report.selection import RULES

    chosen = {RULES[rule].epoch(hist) for rule in ("last", "val", "oracle")}  # the epochs the report can pick
    for i, h in enumerate(hist):
        filled = [math.isfinite(h[c]) for c in TEMPERATURE_COLUMNS]
        assert all(filled) if i in chosen else not any(filled), (i, h)
    # the last epoch's T is the NLL minimiser on the final model's validation logits
    from bench.train.calibration import fit_temperature

    model.eval()
    with torch.no_grad():
        val_logits = model(splits.normalise(splits.val_x)).float()
        test_logits = model(splits.normalise(splits.test_x)).float()
    t = fit_temperature(val_logits, splits.val_y)
    assert hist[-1]["temperature"] == pytest.approx(t, rel=1e-6)
    assert hist[-1]["test_nll_ts"] == pytest.approx(nll(test_logits / t, splits.test_y), rel=1e-6)
    assert hist[-1]["test_ece_ts"] == pytest.approx(ece(test_logits / t, splits.test_y), abs=1e-6)
    assert sum(result.final["test_reliability_ts"]["count"]) == len(splits.test_y)


def test_without_a_validation_split_there_is_no_temperature():
    result, _ = _train(_cfg())
    assert not any(c in result.history[-1] for c in TEMPERATURE_COLUMNS)
    assert "test_reliability_ts" not in result.final


class _Kill(TrainCallback):
    """Stops the cell after the checkpoint of ``epoch`` (0-based) is on disk: a kill at an epoch end."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, cell_id, epoch, checkpoint_written):
        if epoch == self.epoch:
            assert checkpoint_written() is not None
            raise KeyboardInterrupt


def test_a_cell_killed_with_every_option_on_resumes_bitwise_identical(tmp_path):
    cfg = _cfg(epochs=6, schedule="cosine", warmup_epochs=1, min_lr=1e-4, augment="crop-flip", crop_padding=2,
               grad_clip=1.0, ema_decay=0.9, val_fraction=0.1)
    splits = _splits(val=True)
    whole, whole_model = _train(cfg, splits)
    # the kill falls after a best epoch, so the logits carried in the checkpoint are needed
    assert any(math.isfinite(h["temperature"]) for h in whole.history[:4])
    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, splits, checkpoint=ckpt, callbacks=[_Kill(3)])
    state = load_checkpoint(ckpt, "c")
    assert state["epoch"] == 4 and state["scheduler"] and state["ema"] and state["augment_generator"] is not None
    resumed, resumed_model = _train(cfg, splits, checkpoint=ckpt, resume_state=state)
    assert resumed.resumed_from_epoch == 4
    strip = [{k: v for k, v in h.items() if k not in TIMES} for h in whole.history]
    again = [{k: v for k, v in h.items() if k not in TIMES} for h in resumed.history]
    assert json.dumps(strip) == json.dumps(again)  # NaN-safe, bit-for-bit through repr
    assert resumed.final == whole.final
    for (name, a), b in zip(whole_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_version_1_checkpoint_resumes_only_a_cell_without_a_validation_split():
    from bench.train.checkpoint import resumable

    assert resumable({"version": 1}, has_validation=False) and not resumable({"version": 1}, has_validation=True)
    assert resumable({"version": 2}, has_validation=True)


def test_a_version_1_checkpoint_still_resumes_a_cell_without_the_recipe(tmp_path):
    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(_cfg(), checkpoint=ckpt, callbacks=[_Kill(1)])
    state = torch.load(ckpt, weights_only=True)
    state["version"] = 1
    for key in ("scheduler", "ema", "augment_generator", "best_epochs"):
        del state[key]
    torch.save(state, ckpt)
    whole, _ = _train(_cfg())
    resumed, _ = _train(_cfg(), resume_state=load_checkpoint(ckpt, "c"))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


@pytest.mark.parametrize("settings, kind, message", [
    ({"schedule": "cosine", "milestones": "30,60"}, "cifar10", "milestones does not apply to schedule 'cosine'"),
    ({"schedule": "cosine", "warmup_epochs": 4}, "cifar10", "warmup_epochs (4) must be below epochs (4)"),
    ({"schedule": "multistep"}, "cifar10", "needs milestones"),
    ({"augment": "flip"}, "fashion-mnist", "force_flip=true"),
    ({"augment": "crop"}, "gauss", "is not images"),
    ({"crop_padding": 2}, "cifar10", "crop_padding does not apply to augment 'none'"),
    ({"force_flip": True}, "cifar10", "force_flip does not apply"),
    ({"force_flip": True, "augment": "crop"}, "cifar10", "force_flip does not apply to augment 'crop'"),
    ({"augment": "crop", "crop_padding": 8}, "cifar10", "must be below the image size"),
])
def test_recipe_settings_that_do_not_fit_are_one_error(settings, kind, message):
    train = _cfg(**settings).model_dump()
    shape = (1, 1, 2) if kind == "gauss" else (3, 8, 8)
    with pytest.raises(BenchError) as err:
        check_recipe(train, kind, shape)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_crop_and_an_allowed_flip_pass_the_recipe_check():
    check_recipe(_cfg(augment="crop", crop_padding=2).model_dump(), "fashion-mnist", (1, 28, 28))
    check_recipe(_cfg(augment="flip", force_flip=True).model_dump(), "fashion-mnist", (1, 28, 28))
    check_recipe(_cfg(augment="crop-flip", schedule="onecycle", warmup_epochs=1).model_dump(), "cifar10", (3, 32, 32))
