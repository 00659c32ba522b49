"""Pixel-level localization metrics (F1 and IoU at a threshold, AUC) and the restorer's PSNR.

Two averagings, always named, because they are different numbers:

- ``per-image``: the metric of each image, then the mean over images (the paper's
  protocol). AUC is undefined for an image whose mask holds one class only; such images
  are counted in ``single_class`` and left out of the AUC mean (never silently).
  F1 and IoU of an all-authentic image with no false positives are undefined (0/0)
  and likewise left out, counted in ``undefined_f1``.
- ``pooled``: every pixel of every image in one confusion matrix / one ranking.

AUC is exact (ties get their average rank, as ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_THRESHOLD = 0.5


def psnr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image of a batch, peak 1.

    Args:
        estimate: ``(B, C, H, W)``, clamped to [0, 1] here. reference: ``(B, C, H, W)`` in [0, 1].

    Returns:
        ``(B,)`` dB (an exact match counts as an MSE of 1e-12, 120 dB).
    """
    mse = (estimate.clamp(0, 1) - reference).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC: the share of (positive, negative) pixel pairs ranked right, ties half.

    Equal to the Mann-Whitney statistic with tied scores given their average rank, as
    ``sklearn.metrics.roc_auc_score``. The scores of each class are sorted separately in
    their own dtype (float32 stays float32, nothing is rounded) and each score of the
    smaller class is located among the other class; the pair counts are exact integers.

    Args:
        scores: any shape, real numbers. labels: same shape, bool or {0, 1}.

    Returns:
        AUC in [0, 1], or ``nan`` when ``labels`` holds one class only.

    Raises:
        ValueError: ``scores`` and ``labels`` differ in size, or ``scores`` holds NaN.
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.size != labels.size:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if scores.dtype.kind not in "fiu":
        scores = scores.astype(np.float64)
    if scores.dtype.kind == "f" and np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    positives = np.sort(scores[labels])
    negatives = np.sort(scores[~labels])
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    return _twice_correct_pairs(positives, negatives) / (2 * positives.size * negatives.size)


def _twice_correct_pairs(positives: np.ndarray, negatives: np.ndarray) -> int:
    """2 x #(positive > negative) + #(positive == negative), over all pairs of two sorted 1-D arrays.

    The smaller class is located in the larger one (sorted queries, so the binary
    searches stay cache-friendly).
    """
    if positives.size <= negatives.size:
        below = np.searchsorted(negatives, positives, side="left")  # negatives < each positive
        not_above = np.searchsorted(negatives, positives, side="right")  # negatives <= each positive
        return int(below.sum()) + int(not_above.sum())
    above = positives.size - np.searchsorted(positives, negatives, side="right")  # positives > each negative
    not_below = positives.size - np.searchsorted(positives, negatives, side="left")  # positives >= each negative
    return int(above.sum()) + int(not_below.sum())


def confusion(
    probabilities: np.ndarray, mask: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of ``probabilities > threshold`` against a binary mask."""
    predicted = np.asarray(probabilities) > threshold
    truth = np.asarray(mask).astype(bool)
    tp = int(np.count_nonzero(predicted & truth))
    fp = int(np.count_nonzero(predicted & ~truth))
    fn = int(np.count_nonzero(~predicted & truth))
    return tp, fp, fn, truth.size - tp - fp - fn


def f1_iou(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """F1 = 2tp / (2tp + fp + fn), IoU = tp / (tp + fp + fn); ``nan`` when both are 0/0."""
    if tp + fp + fn == 0:
        return float("nan"), float("nan")
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


@dataclass
class LocalizationMetrics:
    """Accumulates images, then reports per-image means and pooled values.

    Args:
        threshold: probability above which a pixel counts as tampered.
        pooled_auc: also keep every pixel for a pooled AUC, scores in their own dtype
            (memory: 5 bytes per pixel for float32 maps, 9 for float64).
    """

    threshold: float = DEFAULT_THRESHOLD
    pooled_auc: bool = True
    per_image: list[dict[str, float]] = field(default_factory=list)
    _totals: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    _scores: list[np.ndarray] = field(default_factory=list)
    _labels: list[np.ndarray] = field(default_factory=list)

    def update(self, probabilities: np.ndarray, mask: np.ndarray, name: str = "") -> dict[str, float]:
        """Add one image: ``probabilities`` and ``mask`` of the same ``(H, W)`` shape."""
        if np.shape(probabilities) != np.shape(mask):
            raise ValueError(f"{name or 'image'}: map shape {np.shape(probabilities)} != mask shape {np.shape(mask)}")
        tp, fp, fn, tn = confusion(probabilities, mask, self.threshold)
        self._totals += (tp, fp, fn, tn)
        f1, iou = f1_iou(tp, fp, fn)
        record = {"name": name, "f1": f1, "iou": iou, "auc": binary_auc(probabilities, mask)}
        self.per_image.append(record)
        if self.pooled_auc:
            self._scores.append(np.array(probabilities).ravel())
            self._labels.append(np.asarray(mask).astype(bool).ravel())
        return record

    @classmethod
    def merged(cls, parts: list[LocalizationMetrics], orders: list[list[int]]) -> LocalizationMetrics:
        """One accumulator from several that each saw some of the images (e.g. processes).

        Args:
            parts: accumulators with the same threshold and ``pooled_auc``.
            orders: ``orders[i][k]`` is the position in the whole set of the ``k``-th image
                added to ``parts[i]``; the merged per-image list follows these positions.
        """
        merged = cls(threshold=parts[0].threshold, pooled_auc=parts[0].pooled_auc)
        for _, i, k in sorted((position, i, k) for i, order in enumerate(orders) for k, position in enumerate(order)):
            merged.per_image.append(parts[i].per_image[k])
            if merged.pooled_auc:
                merged._scores.append(parts[i]._scores[k])
                merged._labels.append(parts[i]._labels[k])
        merged._totals = sum((part._totals for part in parts), np.zeros(4, dtype=np.int64))
        return merged

    def summary(self) -> dict[str, dict[str, float] | int]:
        """``{"per-image": {f1, iou, auc}, "pooled": {f1, iou, auc}, "images", "single_class", "undefined_f1"}``."""

        def mean(key: str) -> float:
            values = [r[key] for r in self.per_image if not np.isnan(r[key])]
            return float(np.mean(values)) if values else float("nan")

        tp, fp, fn, _ = (int(v) for v in self._totals)
        pooled_f1, pooled_iou = f1_iou(tp, fp, fn)
        pooled_auc = (
            binary_auc(np.concatenate(self._scores), np.concatenate(self._labels))
            if self.pooled_auc and self._scores
            else float("nan")
        )
        return {
            "per-image": {"f1": mean("f1"), "iou": mean("iou"), "auc": mean("auc")},
            "pooled": {"f1": pooled_f1, "iou": pooled_iou, "auc": pooled_auc},
            "images": len(self.per_image),
            "single_class": sum(bool(np.isnan(r["auc"])) for r in self.per_image),
            "undefined_f1": sum(bool(np.isnan(r["f1"])) for r in self.per_image),
        }
