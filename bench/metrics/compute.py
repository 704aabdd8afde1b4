"""Evaluation metrics of a classifier's logits: NLL, ECE, adaptive ECE, Brier, balanced accuracy.

Notation: n samples, K classes, p_i = softmax(z_i), confidence c_i = max_k p_ik, prediction
ŷ_i = argmax_k z_ik = argmax_k p_ik (first index on ties), correct_i = 1[ŷ_i = y_i]; natural logarithms.

- ``nll``: -(1/n) Σ_i log p_{i,y_i}.
- ``ece`` (Guo et al. 2017, "On Calibration of Modern Neural Networks"): M = 15 equal-width bins
  on [0, 1], right-closed, B_m = {i : (m-1)/M < c_i ≤ m/M}; ECE = Σ_m (|B_m|/n) |acc(B_m) -
  conf(B_m)| (the L1 norm), which equals (1/n) Σ_m |Σ_{i∈B_m} (correct_i - c_i)|.
- ``adaptive_ece`` (the equal-mass binning of Nguyen & O'Connor 2015, "Posterior Calibration and
  Exploratory Analysis for Natural Language Processing Models"; named "adaptive ECE" by Mukhoti et
  al. 2020): the same sum over M = 15 equal-mass bins: the samples sorted by confidence (stable
  sort, ties kept in input order) and cut into M consecutive runs of ranks whose sizes differ by at
  most one, the first n mod M runs one longer (``numpy.array_split``'s rule). With n < M some bins
  are empty and add 0. Every sample is in exactly one bin, tied confidences included.

  This is not the binning of Mukhoti et al.'s code (``AdaptiveECELoss``, github.com/torrvision/
  focal_calibration), which cuts by confidence value: edges e_j = ``np.interp(j n / M,
  arange(n), sort(c))`` for j = 0..M and bins (e_{j-1}, e_j]. There, the lowest confidence lies in
  no bin (its gap is left out while n still divides), a bin holds the ranks one later than ours
  (with distinct confidences and n a multiple of M: ranks (j-1)n/M + 1 .. jn/M, the last bin one
  short, against our (j-1)n/M .. jn/M - 1, 0-based), tied confidences share a bin whatever its size, and confidences
  are float32. With distinct confidences and n a multiple of M the two differ by at most 2M/n
  (each bin swaps one sample at each end; 0.003 at n = 10 000), as ``tests/test_metrics.py``
  checks against a numpy transcription of that rule. Ours is kept: it is what stored cells hold,
  and mixing two rules in one grid would compare different numbers.
- ``brier``: (1/n) Σ_i Σ_k (p_ik - 1[y_i = k])², summed over classes (not divided by K), in [0, 2].
- ``balanced_accuracy``: the mean over the classes present in ``labels`` of the per-class
  recall (scikit-learn's ``balanced_accuracy_score`` rule: an absent class has no recall and is
  left out rather than counted as 0).
- ``accuracy``: (1/n) Σ_i correct_i (kept alongside, for the accumulator's callers).

Every function maps ``(logits (n, K), labels (n,)) -> float``; :class:`SplitMetrics` accumulates
all of them over a split batch by batch. The bin count and both binning schemes are stored with
results as :data:`METRIC_SETTINGS`.

torchmetrics or own code: own code. torchmetrics is not a dependency of lossbench; of these
metrics it has ECE (``multiclass_calibration_error(..., n_bins=15, norm="l1")``) and balanced
accuracy (``multiclass_accuracy(..., average="macro")``), but not adaptive ECE or the multiclass
Brier score, so it would cover two of five. ``benchmarks/metrics_overhead.py`` measures both
side by side on 10 000 x 10 logits against one MLP evaluation pass; own code is at least as fast
(docs/benchmarks.md, "metrics overhead"), so adding the dependency buys nothing. The same
benchmark prints how far the two are apart. torchmetrics 1.9's ECE differs from ours in three ways:

- precision: it softmaxes the logits in their own dtype and casts the confidences to float32
  (``confidences.float()`` in ``_multiclass_calibration_error_update``), so its bins are summed in
  float32; ours softmaxes float64 logits and sums in float64. The values differ by float32
  rounding (about 1e-7 relative), and a confidence within float32 rounding of an edge can land in
  the neighbouring bin;
- edges: its bins are left-closed, [(m-1)/M, m/M) (``torch.bucketize(..., right=True)`` against
  ``torch.linspace(0, 1, M + 1)`` in float32), and a confidence of exactly 1 gets a bin of its own
  (its tables have M + 1 entries); ours are right-closed with c = 1 in the last bin, so the two
  differ for a confidence on an edge and when a confidence of 1 shares the top bin with others;
- input: a tensor wholly inside [0, 1] is taken as probabilities and not softmaxed, so logits that
  happen to lie there are misread; ours always takes logits.
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor

ECE_BINS: Final[int] = 15
METRIC_SETTINGS: Final[dict[str, object]] = {
    "ece_bins": ECE_BINS,
    "ece_scheme": "equal-width, right-closed ((m-1)/M, m/M], L1",
    "adaptive_ece_scheme": "equal-mass by sorted confidence, sizes differ by <= 1 (first n mod M larger), L1",
    "brier": "sum over classes, mean over samples",
    "balanced_accuracy": "mean recall over the classes present in the labels",
}
NAMES: Final[tuple[str, ...]] = ("nll", "ece", "adaptive_ece", "brier", "balanced_accuracy", "accuracy")


def _check(logits: Tensor, labels: Tensor) -> None:
    """Shape checks only: metadata, no device read."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, K), got {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits, got {tuple(labels.shape)}")


def equal_width_bins(confidence: Tensor, n_bins: int) -> Tensor:
    """Bin index in [0, n_bins) of each confidence for right-closed bins ((m-1)/M, m/M].

    ``bucketize(right=False)`` against the inner edges m/M (each the float nearest to m/M) puts a
    confidence equal to an edge in the bin below it; c ≤ 1/M (impossible for K ≤ M) is bin 0.
    """
    inner = torch.arange(1, n_bins, dtype=confidence.dtype, device=confidence.device) / n_bins
    return torch.bucketize(confidence, inner, right=False)


def equal_mass_bins(n: int, n_bins: int, device: torch.device | None = None) -> Tensor:
    """Bin index of each rank 0..n-1 (ranks by ascending confidence): ``numpy.array_split``'s sizes."""
    base, extra = divmod(n, n_bins)
    sizes = torch.full((n_bins,), base, dtype=torch.int64, device=device)
    sizes[:extra] += 1
    return torch.repeat_interleave(torch.arange(n_bins, device=device), sizes, output_size=n)


def binned_gap(bins: Tensor, gap: Tensor, n_bins: int) -> Tensor:
    """Σ_m |Σ_{i∈B_m} gap_i| (0-dim): per-bin sums by ``index_add_``, no host read."""
    sums = torch.zeros(n_bins, dtype=gap.dtype, device=gap.device).index_add_(0, bins, gap)
    return sums.abs().sum()


class SplitMetrics:
    """Accumulate every metric of this module over a split, batch by batch, on the device.

    ``update`` adds a batch's sums (NLL, Brier, equal-width per-bin Σ (correct - c), per-class
    label and hit counts) into device tensors and keeps the batch's confidences and hits for the
    adaptive ECE, whose equal-mass bins need the whole split (n floats: 10^4-10^5 of them, a few
    hundred kB). It never reads the device back; :meth:`compute` reads all results in one
    transfer. Like :class:`losses.SplitMI`, sums are kept in ``dtype`` (default float64).
    """

    def __init__(self, n_bins: int = ECE_BINS, dtype: torch.dtype = torch.float64) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
        self.n_bins = n_bins
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._num_classes: int | None = None
        self._sums: Tensor | None = None          # [nll sum, brier sum]
        self._bin_gap: Tensor | None = None       # per equal-width bin Σ (correct - c)
        self._class_counts: Tensor | None = None  # per class: samples
        self._class_hits: Tensor | None = None    # per class: correct predictions
        self._confidence: list[Tensor] = []
        self._correct: list[Tensor] = []
        self._count = 0  # host-side: batch sizes are shape metadata, known without a device read

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add one batch: ``logits`` (n, K), integer ``labels`` (n,) on the same device."""
        _check(logits, labels)
        num_classes = logits.shape[1]
        device = logits.device
        if self._num_classes is None:
            self._num_classes = num_classes
            self._sums = torch.zeros(2, dtype=self.dtype, device=device)
            self._bin_gap = torch.zeros(self.n_bins, dtype=self.dtype, device=device)
            self._class_counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
            self._class_hits = torch.zeros(num_classes, dtype=torch.int64, device=device)
        elif num_classes != self._num_classes:
            raise ValueError(f"logits have {num_classes} classes but earlier batches had {self._num_classes}")
        assert self._sums is not None and self._bin_gap is not None
        assert self._class_counts is not None and self._class_hits is not None
        if labels.shape[0] == 0:
            return
        logprobs = F.log_softmax(logits.detach().to(self.dtype), dim=-1)
        probs = logprobs.exp()
        confidence = probs.amax(dim=-1)
        # the prediction is the logits' argmax, as the harness's accuracy everywhere: max(1).indices is
        # argmax(1) (first maximum) and faster on CPU; softmax keeps the order, so it is the probs' argmax too
        correct = logits.detach().max(dim=-1).indices == labels
        nll = F.nll_loss(logprobs, labels, reduction="sum")
        # Σ_k (p_k - e_yk)² = Σ_k p_k² - 2 p_y + 1
        brier = ((probs * probs).sum(dim=-1) - 2.0 * probs.gather(1, labels.unsqueeze(1)).squeeze(1) + 1.0).sum()
        self._sums += torch.stack([nll, brier])
        gap = correct.to(self.dtype) - confidence
        self._bin_gap.index_add_(0, equal_width_bins(confidence, self.n_bins), gap)
        self._class_counts.index_add_(0, labels, torch.ones_like(labels))
        self._class_hits.index_add_(0, labels, correct.to(torch.int64))
        self._confidence.append(confidence)
        self._correct.append(correct)
        self._count += labels.shape[0]

    def _adaptive_gap(self) -> Tensor:
        confidence = torch.cat(self._confidence)
        correct = torch.cat(self._correct)
        order = torch.argsort(confidence, stable=True)
        bins = equal_mass_bins(confidence.shape[0], self.n_bins, confidence.device)
        return binned_gap(bins, correct.to(self.dtype)[order] - confidence[order], self.n_bins)

    def compute(self) -> dict[str, float]:
        """Return every name in :data:`NAMES` over all samples since the last reset (one host read)."""
        if self._count == 0:
            raise ValueError("SplitMetrics.compute() called before any non-empty update()")
        assert self._sums is not None and self._bin_gap is not None
        assert self._class_counts is not None and self._class_hits is not None
        present = self._class_counts > 0
        recall = self._class_hits.to(torch.float64) / self._class_counts.clamp_min(1).to(torch.float64)
        n = float(self._count)
        values = torch.stack([
            self._sums[0].to(torch.float64) / n,
            self._bin_gap.abs().sum().to(torch.float64) / n,
            self._adaptive_gap().to(torch.float64) / n,
            self._sums[1].to(torch.float64) / n,
            (recall * present).sum() / present.sum(),
            self._class_hits.sum().to(torch.float64) / n,
        ])
        return dict(zip(NAMES, values.tolist(), strict=True))


    def class_accuracy(self) -> list[float | None]:
        """Per-class recall (accuracy on the samples of each class); None for a class absent from the labels."""
        if self._class_counts is None or self._class_hits is None:
            raise ValueError("SplitMetrics.class_accuracy() called before any update()")
        counts, hits = torch.stack([self._class_counts, self._class_hits]).tolist()
        return [h / c if c else None for c, h in zip(counts, hits, strict=True)]

    def reliability(self) -> dict[str, list]:
        """The reliability diagram's data over the ``n_bins`` equal-width bins of :func:`ece`:
        ``count`` per bin, and its mean ``confidence`` and ``accuracy`` (None for an empty bin)."""
        if not self._confidence:
            raise ValueError("SplitMetrics.reliability() called before any non-empty update()")
        confidence = torch.cat(self._confidence)
        correct = torch.cat(self._correct).to(self.dtype)
        bins = equal_width_bins(confidence, self.n_bins)
        zeros = torch.zeros(self.n_bins, dtype=self.dtype, device=confidence.device)
        table = torch.stack([zeros.index_add(0, bins, torch.ones_like(confidence)), zeros.index_add(0, bins, confidence),
                             zeros.index_add(0, bins, correct)]).tolist()
        count, conf, hits = table
        return {"count": [int(c) for c in count],
                "confidence": [s / c if c else None for s, c in zip(conf, count, strict=True)],
                "accuracy": [h / c if c else None for h, c in zip(hits, count, strict=True)]}


def _one(name: str, logits: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> float:
    acc = SplitMetrics(n_bins)
    acc.update(logits, labels)
    return acc.compute()[name]


def nll(logits: Tensor, labels: Tensor) -> float:
    """-(1/n) Σ_i log p_{i,y_i} (nats)."""
    return _one("nll", logits, labels)


def ece(logits: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error, ``n_bins`` equal-width right-closed bins, L1 (module docstring)."""
    return _one("ece", logits, labels, n_bins)


def adaptive_ece(logits: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> float:
    """Adaptive ECE, ``n_bins`` equal-mass bins by sorted confidence, L1 (module docstring)."""
    return _one("adaptive_ece", logits, labels, n_bins)


def brier(logits: Tensor, labels: Tensor) -> float:
    """Multiclass Brier score: (1/n) Σ_i Σ_k (p_ik - 1[y_i = k])², in [0, 2]."""
    return _one("brier", logits, labels)


def balanced_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    return _one("balanced_accuracy", logits, labels)
