"""A cell's data regime: label noise, class imbalance and a few-data subset, as one dataset setting.

A grid's ``regime:`` block (or ``--set regime.KEY=VALUE``) declares it; :class:`RegimeConfig`
validates it at the edge; it is part of a cell's identity only when it is not the default (so
cells without a regime keep the identity they had before regimes existed). :func:`apply_regime`
applies it to a cell's splits, in this order:

1. the validation split has already been drawn from the *clean* training split
   (:func:`bench.data.validation.hold_out`), so it is balanced and stratified;
2. ``imbalance`` then ``subset`` choose which samples of the training part are kept
   (:mod:`bench.data.imbalance`); validation and test stay as they are, the test split balanced;
3. ``noise`` corrupts the kept training labels and the validation labels by two separate calls
   (:mod:`bench.data.noise`), each from its own stream derived from ``noise_seed``, so each
   part's realised rate is exact on its own; the test labels are never corrupted.

Every seed here is separate from the training seed: every loss and every training seed of a
grid trains on the same noisy, long-tailed or subsampled data (a paired design).

:func:`planned_training_labels` gives the labels a cell will train on from the training labels
alone (no images), through the same functions, for the planner's checks before anything trains.

Torch is imported only where tensors are touched: the registry imports this module.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from bench.errors import BenchError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from bench.data.human import HUMAN_LABELS
from bench.data.imbalance import IMBALANCE_PROFILES
from bench.data.noise import NOISE_KINDS

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from bench.data.splits import Splits

NOISE_CHOICES = ("none", *NOISE_KINDS, "human")  # human: a file of real annotations (bench.data.human)
IMBALANCE_CHOICES = ("none", *IMBALANCE_PROFILES)


class RegimeConfig(BaseModel):
    """The data regime of one cell (a grid's ``regime:`` block, ``--set regime.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise: Literal[NOISE_CHOICES] = Field(  # type: ignore[valid-type]  # the noise module's kinds, plus none
        "none", description="label noise of the training and validation labels: none, symmetric (to a uniform "
                            "other class), asymmetric (the dataset's look-alike classes), pairflip (c to c+1), "
                            "human (real annotations from noise_file, e.g. CIFAR-10N)")
    noise_rate: float = Field(0.0, ge=0, lt=1, description="fraction of the labels corrupted, in [0, 1)")
    noise_seed: int = Field(
        0, ge=0, description="seed of the corrupted labels, not the training seed: every loss and seed sees the same labels")
    noise_file: str = Field(
        "", description="noise human: the label file (CIFAR-10_human.pt, CIFAR-100_human.pt), relative to the registry's folder")
    noise_labels: str = Field(
        "", description="noise human: which annotation, aggre, worst, random1-3 (CIFAR-10N) or noisy (CIFAR-100N)")
    imbalance: Literal[IMBALANCE_CHOICES] = Field(  # type: ignore[valid-type]
        "none", description="long-tailed training split: none, exp (n_c = n_max r^(-c/(K-1))), step (half the classes n_max/r)")
    imbalance_ratio: float = Field(1.0, ge=1, description="imbalance ratio r = n_max / n_min (1: balanced)")
    imbalance_seed: int = Field(0, ge=0, description="seed of which samples of each class the long-tailed split keeps")
    subset: int = Field(
        0, ge=0, description="stratified training subset of this many samples, after the imbalance (0: the whole split)")
    subset_seed: int = Field(0, ge=0, description="seed of the training subset")

    @model_validator(mode="after")
    def _consistent(self) -> "RegimeConfig":
        problem = _inconsistency(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_REGIME


def _inconsistency(r: RegimeConfig) -> str:
    """A setting the others make meaningless ("" when none): it would be silently ignored otherwise."""
    if r.noise == "human":
        if r.noise_rate:
            return "noise=human takes its rate from the annotations: drop noise_rate (the realised rate is stored)"
        if not r.noise_file or not r.noise_labels:
            return ("noise=human needs noise_file (CIFAR-10_human.pt or CIFAR-100_human.pt) and noise_labels "
                    f"(one of {', '.join(HUMAN_LABELS)})")
        if r.noise_labels not in HUMAN_LABELS:
            return f"noise_labels={r.noise_labels!r}: use one of {', '.join(HUMAN_LABELS)}"
        return ""
    if r.noise_file or r.noise_labels:
        return "noise_file and noise_labels belong to noise=human: set noise to human, or drop them"
    if r.noise == "none" and r.noise_rate > 0:
        return f"noise_rate={r.noise_rate:g} without a noise kind: set noise to one of {', '.join(NOISE_KINDS)}"
    if r.noise != "none" and r.noise_rate == 0:
        return f"noise={r.noise} with noise_rate 0 corrupts nothing: give noise_rate in (0, 1), e.g. 0.4"
    if r.noise == "none" and r.noise_seed:
        return f"noise_seed={r.noise_seed} without a noise kind: set noise and noise_rate, or drop noise_seed"
    if r.imbalance == "none" and r.imbalance_ratio != 1:
        return (f"imbalance_ratio={r.imbalance_ratio:g} without an imbalance profile: set imbalance to one of "
                f"{', '.join(IMBALANCE_PROFILES)}")
    if r.imbalance != "none" and r.imbalance_ratio == 1:
        return f"imbalance={r.imbalance} with imbalance_ratio 1 is balanced: give imbalance_ratio > 1, e.g. 100"
    if r.imbalance == "none" and r.imbalance_seed:
        return f"imbalance_seed={r.imbalance_seed} without an imbalance profile: set imbalance, or drop imbalance_seed"
    if r.subset == 0 and r.subset_seed:
        return f"subset_seed={r.subset_seed} without a subset: set subset to a sample count, or drop subset_seed"
    return ""


DEFAULT_REGIME = RegimeConfig()
REGIME_FIELDS = tuple(RegimeConfig.model_fields)


def regime_settings() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every regime setting, for ``bench run --help`` and the README."""
    from bench.config.settings import describe

    return describe(RegimeConfig)


def check_regime_value(key: str, value: Any) -> Any:
    """One regime setting on its own (the cross-field checks need the whole regime): its parsed
    value, or ValueError with pydantic's message."""
    field = RegimeConfig.model_fields[key]
    try:
        return TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


def regime_error(exc: ValidationError) -> str:
    """A RegimeConfig validation error as one phrase: ``key: message (got value)`` or the cross-field message."""
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["loc"]:
        return f"{err['loc'][0]}: {msg} (got {err.get('input')!r})"
    return msg


def identity_regime(regime: RegimeConfig) -> dict[str, Any]:
    """The regime as a cell's identity hashes it: only the settings away from their defaults, so
    adding a setting later keeps every existing cell's identity."""
    defaults = DEFAULT_REGIME.model_dump()
    return {k: v for k, v in regime.model_dump().items() if v != defaults[k]}


def regime_label(regime: RegimeConfig) -> str:
    """``noise=symmetric,noise_rate=0.4``: the settings away from their defaults, for messages."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in identity_regime(regime).items())


def derived_seed(seed: int, stream: str) -> int:
    """A 63-bit seed of one stream of ``seed`` (a hash of both), so the training and validation
    labels are corrupted by unrelated draws of one ``noise_seed``."""
    digest = hashlib.sha256(f"{seed}\x00{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class RegimeFacts:
    """What a regime realised on a cell's splits, stored with its row."""

    label_noise_rate: float  # fraction of the kept training labels changed
    val_label_noise_rate: float  # the same on the validation split; NaN without one
    train_size: int
    train_class_counts: tuple[int, ...]  # of the labels as trained on (after the noise)
    # per class of the clean kept training labels, the fraction whose label was changed: the check that
    # a long-tailed split's rare classes get the rate eta too (NaN for a class with no sample)
    train_class_noise_rates: tuple[float, ...] = ()

    def row(self) -> dict[str, Any]:
        return {"label_noise_rate": self.label_noise_rate, "val_label_noise_rate": self.val_label_noise_rate,
                "train_size": self.train_size, "train_class_counts": json.dumps(list(self.train_class_counts)),
                "train_class_noise_rates": json.dumps([None if math.isnan(r) else r
                                                       for r in self.train_class_noise_rates])}


# the row of a cell whose data was never derived (it failed first): same columns and types as RegimeFacts.row()
UNKNOWN_FACTS: dict[str, Any] = {"label_noise_rate": math.nan, "val_label_noise_rate": math.nan, "train_size": 0,
                                 "train_class_counts": "", "train_class_noise_rates": ""}


def _noisy(y: Tensor, regime: RegimeConfig, num_classes: int, kind: str, stream: str,
           human: Tensor | None = None) -> tuple[Tensor, float]:
    if regime.noise == "none":
        return y, 0.0
    if regime.noise == "human":  # the annotations of these samples, read and aligned by the caller
        if human is None:
            raise BenchError("noise=human needs the annotations of the training labels (bench.data.human)")
        human = human.to(y.device)
        return human, float((human != y).sum()) / y.numel() if y.numel() else 0.0
    from bench.data.noise import asymmetric_map, corrupt_labels

    class_map = asymmetric_map(kind) if regime.noise == "asymmetric" else None
    return corrupt_labels(y, regime.noise, regime.noise_rate, num_classes, derived_seed(regime.noise_seed, stream),
                          class_map)


def training_part(train_y: Tensor, regime: RegimeConfig, num_classes: int, kind: str,
                  human: Tensor | None = None) -> tuple[Tensor | None, Tensor, float]:
    """(indices of the kept training samples, or None for all; their labels after the noise; the
    realised noise rate) of the training labels ``train_y`` (what is left after the validation holdout).
    ``human``: with noise=human, the annotation of each of ``train_y``'s samples."""
    from bench.data.imbalance import imbalance_indices, subset_indices

    keep = None
    labels = train_y
    if regime.imbalance != "none":
        keep = imbalance_indices(labels, regime.imbalance, regime.imbalance_ratio, num_classes, regime.imbalance_seed)
        labels = labels.index_select(0, keep.to(labels.device))
        human = None if human is None else human.index_select(0, keep.to(human.device))
    if regime.subset:
        chosen = subset_indices(labels, regime.subset, regime.subset_seed)
        keep = chosen if keep is None else keep.index_select(0, chosen)
        labels = labels.index_select(0, chosen.to(labels.device))
        human = None if human is None else human.index_select(0, chosen.to(human.device))
    noisy, rate = _noisy(labels, regime, num_classes, kind, "train", human)
    return keep, noisy, rate


def apply_regime(splits: Splits, regime: RegimeConfig, kind: str) -> tuple[Splits, RegimeFacts]:
    """``splits`` (validation already held out) under ``regime``, and what it realised (module docstring).

    ``kind`` is the dataset kind (the asymmetric noise map is the kind's). Pure: ``splits`` is not
    modified; without a regime the same object comes back.
    """
    import torch

    human_train = human_val = None
    if regime.noise == "human":
        human_train, human_val = _human_parts(splits, regime)
    keep, train_y, rate = training_part(splits.train_y, regime, splits.num_classes, kind, human_train)
    clean = splits.train_y if keep is None else splits.train_y.index_select(0, keep.to(splits.train_y.device))
    val_y, val_rate = splits.val_y, math.nan
    if val_y is not None:
        val_y, val_rate = _noisy(val_y, regime, splits.num_classes, kind, "val", human_val)
    if not regime.is_default:
        train_x = splits.train_x if keep is None else splits.train_x.index_select(0, keep.to(splits.train_x.device))
        splits = replace(splits, train_x=train_x, train_y=train_y, val_y=val_y)
    counts = torch.bincount(splits.train_y.cpu(), minlength=splits.num_classes).tolist()
    clean = clean.cpu()
    sizes = torch.bincount(clean, minlength=splits.num_classes)
    changed = torch.bincount(clean[clean != splits.train_y.cpu()], minlength=splits.num_classes)
    class_rates = tuple(float(c) / float(n) if n else math.nan for c, n in zip(changed.tolist(), sizes.tolist()))
    return splits, RegimeFacts(rate, val_rate, splits.n_train, tuple(counts), class_rates)


def _human_parts(splits: Splits, regime: RegimeConfig) -> tuple[Tensor, Tensor | None]:
    """The annotations of ``splits``' training and validation samples: the file is aligned with the
    whole training split, which the holdout's indices (``train_index``/``val_index``) map back to."""
    import torch

    from bench.data.human import human_labels

    n_val = splits.n_val
    full = torch.empty(splits.n_train + n_val, dtype=torch.int64)
    t_idx = splits.train_index if splits.train_index is not None else torch.arange(splits.n_train)
    full[t_idx] = splits.train_y.cpu()
    if splits.val_y is not None:
        full[splits.val_index] = splits.val_y.cpu()
    labels = torch.from_numpy(human_labels(regime.noise_file, regime.noise_labels, full.numpy(), splits.num_classes))
    val = labels[splits.val_index] if splits.val_y is not None else None
    return labels[t_idx], val


def planned_training_labels(labels: np.ndarray, val_fraction: float, split_seed: int, regime: RegimeConfig,
                            num_classes: int, kind: str) -> Tensor:
    """The training labels a cell will train on, from its dataset's full training labels alone:
    the validation holdout and :func:`training_part`, the functions :func:`apply_regime`'s input
    and itself go through. BenchError when the regime cannot be drawn from these labels."""
    import torch

    from bench.data.validation import holdout_indices

    y = torch.as_tensor(labels).to(torch.int64)
    human = None
    if regime.noise == "human":
        from bench.data.human import human_labels

        human = torch.from_numpy(human_labels(regime.noise_file, regime.noise_labels, y.numpy(), num_classes))
    if val_fraction > 0:
        train_idx, _ = holdout_indices(labels, val_fraction, split_seed, num_classes)
        y = y.index_select(0, torch.from_numpy(train_idx))
        human = None if human is None else human.index_select(0, torch.from_numpy(train_idx))
    return training_part(y, regime, num_classes, kind, human)[1]
