"""bench.train.augment: batched crops and flips against a per-sample reference, seeding, policy, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.train.augment import (  # the policy names are re-exported from bench.config.augment_policy
    FLIP_POLICY,
    augment_batch,
    check_augment,
    draw,
    flip_allowed,
    make_generator,
)
from bench.data.kinds import KINDS
from bench.errors import BenchError


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def _distinct(n: int = 16, c: int = 3, h: int = 8, w: int = 10, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Every pixel of every sample a different value, none of them 0 (the padding value)."""
    return (torch.arange(n * c * h * w, dtype=torch.float64).view(n, c, h, w) + 1).to(dtype)


def test_crop_equals_the_padded_window_at_the_drawn_offset() -> None:
    x = _distinct()
    n, _, h, w = x.shape
    p = 3
    out = augment_batch(x, "crop-flip", p, _gen(7))
    d = draw("crop-flip", n, p, _gen(7), x.device)  # the same generator state replays the draws
    padded = F.pad(x, (p, p, p, p))
    assert d.rows is not None and d.cols is not None
    assert d.flip.any() and not d.flip.all()  # both branches are exercised
    assert len(set(zip(d.rows.tolist(), d.cols.tolist()))) > 4  # offsets vary per sample
    for i in range(n):
        r, c = int(d.rows[i]), int(d.cols[i])
        window = padded[i, :, r:r + h, c:c + w]
        expected = window.flip(2) if d.flip[i] else window
        assert torch.equal(out[i], expected), i


def test_crop_alone_is_the_padded_window_never_mirrored() -> None:
    """``crop`` draws no coins: its offsets are the first draws of the stream, and no sample flips."""
    x = _distinct()
    n, _, h, w = x.shape
    p = 2
    out = augment_batch(x, "crop", p, _gen(4))
    g = _gen(4)
    rows = torch.randint(0, 2 * p + 1, (n,), generator=g)
    cols = torch.randint(0, 2 * p + 1, (n,), generator=g)
    padded = F.pad(x, (p, p, p, p))
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 4
    for i in range(n):
        r, c = int(rows[i]), int(cols[i])
        assert torch.equal(out[i], padded[i, :, r:r + h, c:c + w]), i


def test_crop_offsets_cover_the_range_and_pad_with_zeros() -> None:
    x = _distinct(n=512, c=1, h=6, w=6)
    d = draw("crop-flip", 512, 2, _gen(0), x.device)
    assert d.rows is not None and d.cols is not None
    assert set(d.rows.tolist()) == set(range(5)) and set(d.cols.tolist()) == set(range(5))
    out = augment_batch(x, "crop-flip", 2, _gen(0))
    shifted = (d.rows != 2) | (d.cols != 2)
    assert (out[shifted] == 0).any(dim=(1, 2, 3)).all()  # a shifted crop shows some padding
    assert not (out[~shifted] == 0).any()  # the centred crop is the image itself (or its mirror)


def test_flip_flips_exactly_the_drawn_samples() -> None:
    x = _distinct(n=32)
    out = augment_batch(x, "flip", generator=_gen(3))
    coins = draw("flip", 32, 0, _gen(3), x.device).flip
    assert coins.any() and not coins.all()
    for i in range(32):
        assert torch.equal(out[i], x[i].flip(2) if coins[i] else x[i])


def test_none_is_the_identity() -> None:
    x = _distinct()
    assert augment_batch(x, "none") is x


@pytest.mark.parametrize("kind", ["flip", "crop", "crop-flip"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_seeding_dtype_and_shape(kind: str, dtype: torch.dtype) -> None:
    x = (torch.arange(64 * 3 * 32 * 32) % 251).to(dtype).view(64, 3, 32, 32)
    a = augment_batch(x, kind, 4, _gen(1))
    b = augment_batch(x, kind, 4, _gen(1))
    c = augment_batch(x, kind, 4, _gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == dtype and a.shape == x.shape and a.device == x.device


def test_consecutive_batches_draw_fresh_randomness() -> None:
    g = _gen(5)
    x = _distinct(n=8)
    assert not torch.equal(augment_batch(x, "crop-flip", 2, g), augment_batch(x, "crop-flip", 2, g))


def test_channels_last_input_gives_the_same_values() -> None:
    x = _distinct(n=8, c=3, h=6, w=6)
    a = augment_batch(x, "crop-flip", 2, _gen(9))
    b = augment_batch(x.contiguous(memory_format=torch.channels_last), "crop-flip", 2, _gen(9))
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape,kind,padding,message", [
    ((8, 32, 32), "flip", 4, r"needs an image batch \(N, C, H, W\)"),
    ((8, 1, 1, 5), "crop-flip", 4, "at least 2x2"),
    ((8, 1, 6, 6), "crop-flip", 6, r"crop_padding \(6\) must be below the image size"),
    ((8, 1, 6, 6), "crop-flip", 0, "crop_padding must be a whole number"),
    ((8, 1, 6, 6), "crop-flip", -1, "crop_padding must be a whole number"),
    ((8, 1, 6, 6), "crop_flip", 4, "closest: 'crop-flip'"),
])
def test_bad_batches_are_bench_errors(shape: tuple[int, ...], kind: str, padding: int, message: str) -> None:
    with pytest.raises(BenchError, match=message) as info:
        augment_batch(torch.zeros(shape), kind, padding, _gen(0))
    assert "\n" not in str(info.value)


def test_flip_policy_covers_every_dataset_kind() -> None:
    assert set(FLIP_POLICY) == set(KINDS)
    assert flip_allowed("cifar10")
    assert not flip_allowed("mnist") and not flip_allowed("fashion-mnist") and not flip_allowed("gauss")
    with pytest.raises(BenchError, match="no flip policy"):
        flip_allowed("imagenet")


def test_check_augment() -> None:
    check_augment("none", 4, "gauss", (1, 1, 8))
    check_augment("none", 4, "mnist", (1, 28, 28))
    check_augment("crop-flip", 4, "cifar10", (3, 32, 32))
    check_augment("flip", 4, "cifar10", (3, 32, 32))
    check_augment("crop-flip", 2, "fashion-mnist", (1, 28, 28), force_flip=True)
    check_augment("crop", 2, "fashion-mnist", (1, 28, 28))  # no flip: no policy question
    check_augment("crop", 2, "mnist", (1, 28, 28))
    bad = [
        (("crop-flip", 4, "mnist", (1, 28, 28)), "off for mnist.*force_flip=true"),
        (("flip", 4, "fashion-mnist", (1, 28, 28)), "off for fashion-mnist"),
        (("flip", 4, "gauss", (1, 1, 8)), "not images"),
        (("crop-flip", 4, "gauss", (1, 1, 8)), "not images"),
        (("crop-flip", 4, "gauss", (1, 1, 8), True), "not images"),  # forcing does not make vectors images
        (("crop-flip", 32, "cifar10", (3, 32, 32)), "must be below the image size"),
        (("none", 2, "cifar10", (3, 32, 32)), "crop_padding does not apply to augment 'none'"),
        (("flip", 2, "cifar10", (3, 32, 32)), "crop_padding does not apply to augment 'flip'"),
        (("crop", 4, "gauss", (1, 1, 8)), "not images"),
        (("crop", 28, "mnist", (1, 28, 28)), "must be below the image size"),
        (("rotate", 4, "cifar10", (3, 32, 32)), "not an augmentation"),
    ]
    for args, message in bad:
        with pytest.raises(BenchError, match=message) as info:
            check_augment(*args)
        assert "\n" not in str(info.value)


def test_generator_on_another_device_is_refused() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to have two device types")
    g = torch.Generator(device="cuda")
    with pytest.raises(ValueError, match="generator is on"):
        augment_batch(torch.zeros(2, 1, 4, 4), "flip", generator=g)


def test_make_generator_is_seeded_and_its_own_stream() -> None:
    a = torch.randint(0, 1000, (16,), generator=make_generator(3, "cpu"))
    assert torch.equal(a, torch.randint(0, 1000, (16,), generator=make_generator(3, "cpu")))
    assert not torch.equal(a, torch.randint(0, 1000, (16,), generator=make_generator(4, "cpu")))
    assert not torch.equal(a, torch.randint(0, 1000, (16,), generator=_gen(3)))  # not the permutation's stream
    g = make_generator(3, "cpu")
    state = g.get_state()  # what the checkpoint stores (a uint8 tensor: weights_only-safe)
    first = augment_batch(_distinct(), "crop-flip", 2, g)
    g.set_state(state)
    assert torch.equal(first, augment_batch(_distinct(), "crop-flip", 2, g))
