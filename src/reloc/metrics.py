"""Pixel-level localization metrics (F1 and IoU at a threshold, AUC) under the literature's
protocols, and the restorer's PSNR.

Two averagings, always named, because they are different numbers:

- ``per-image``: the metric of each image, then the mean over images (the paper's
  protocol). AUC is undefined for an image whose mask holds one class only; such images
  are counted in ``single_class`` and left out of the AUC mean (never silently).
- ``pooled``: every pixel of every image in one confusion matrix / one ranking.

Authentic images (a mask without a tampered pixel) follow one rule: they are left out of
every localization figure, per-image and pooled (F1, IoU and AUC measure how well the
tampered region is found, and an authentic image has none), whether or not the map marks
a pixel there; what the map marks on them is the ``authentic`` part of the summary, the
pixel false-alarm rate (pixels above the threshold). IMDL-BenCo's ``PixelF1`` instead
counts each authentic image as F1 0 in the per-image mean whatever its map (its
epsilon-guarded F1 with no tampered pixel), so a clean map and a fully marked one score
alike there; reloc does not follow it. Image-level detection is :mod:`reloc.image_metrics`.

Metric protocols (:data:`PROTOCOLS`), stamped on every record:

- ``paper``: F1 / IoU of ``probability > threshold`` (0.5), AUC of the map (the default);
- ``best-threshold``: F1 / IoU at the oracle threshold, chosen per image for per-image
  means (as many papers report) and once for all pixels when pooled;
- ``inverted``: the larger of the F1 of the map and of its inverse ``1 - map`` (IoU of the
  same orientation, AUC ``max(AUC, 1 - AUC)``), as IMDL-BenCo's ``mode="double"`` and
  TruFor's evaluation; per image for per-image means, one orientation for all pixels
  when pooled.

Any protocol can ignore a band around the mask boundary (``exclude_border=N``: the
pixels within N pixels, Chebyshev distance, of a pixel of the other class).

AUC is exact (ties get their average rank, as ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
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


PROTOCOLS = ("paper", "best-threshold", "inverted")


def border_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels (Chebyshev) of a pixel of the other class.

    Args:
        mask: ``(H, W)`` bool or {0, 1}.
        width: band half-width N >= 0; N pixels on each side of the boundary.

    Returns:
        bool ``(H, W)``; all ``False`` for ``width == 0`` or a one-class mask. The image's
        own frame is no boundary.
    """
    truth = np.asarray(mask).astype(bool)
    if width <= 0 or truth.all() or not truth.any():
        return np.zeros(truth.shape, dtype=bool)
    kernel = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)
    near_tampered = cv2.dilate(truth.astype(np.uint8), kernel) > 0
    near_authentic = cv2.dilate((~truth).astype(np.uint8), kernel) > 0
    return near_tampered & near_authentic


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, int, int, int]:
    """The cut ``scores >= t`` with the largest F1, over every distinct score (exact).

    Args:
        scores: any shape, real numbers. labels: same shape, bool or {0, 1}.

    Returns:
        ``(t, tp, fp, fn)``; predicting nothing (``t = inf``) is one of the candidates,
        so an all-authentic input gives ``(inf, 0, 0, 0)`` (F1 0/0, undefined).
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    positives = int(labels.sum())
    order = np.argsort(scores, kind="stable")[::-1]  # descending (also for unsigned dtypes)
    ranked, hits = scores[order], labels[order]
    tp = np.cumsum(hits, dtype=np.int64)
    fp = np.arange(1, ranked.size + 1, dtype=np.int64) - tp
    last_of_value = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # cut after each tie group
    if positives == 0 or last_of_value.size == 0:
        return float("inf"), 0, 0, positives
    tp, fp = tp[last_of_value], fp[last_of_value]
    f1 = 2 * tp / (tp + fp + positives)
    best = int(np.argmax(f1))
    return float(ranked[last_of_value[best]]), int(tp[best]), int(fp[best]), positives - int(tp[best])


def _better(first: tuple[float, float], second: tuple[float, float]) -> tuple[tuple[float, float], bool]:
    """The (F1, IoU) pair with the larger F1 (undefined loses), and whether it is ``second``."""
    if np.isnan(first[0]) or (not np.isnan(second[0]) and second[0] > first[0]):
        return second, True
    return first, False


def _oriented_auc(auc: float, inverted: bool) -> float:
    return max(auc, 1.0 - auc) if inverted and not np.isnan(auc) else auc


def describe_protocol(metric: str = "paper", threshold: float = DEFAULT_THRESHOLD, exclude_border: int = 0) -> str:
    """One sentence naming a metric protocol, for reports."""
    text = {
        "paper": f"`paper`: F1 and IoU of probability > {threshold}, AUC of the map",
        "best-threshold": "`best-threshold`: F1 and IoU at the oracle threshold (per image for per-image means, "
        "one for all pixels when pooled), AUC of the map",
        "inverted": f"`inverted`: the larger F1 of the map and of its inverse at {threshold} (IoU of the same "
        "orientation), AUC max(AUC, 1 - AUC)",
    }[metric]
    return text + (f"; {exclude_border} px each side of the mask boundary ignored" if exclude_border else "")


def per_image_means(records: list[dict[str, float]]) -> dict[str, float]:
    """``{"f1", "iou", "auc"}``: each the mean over the per-image ``records`` (as
    :meth:`LocalizationMetrics.update` returns them) of the tampered images where it is
    defined (authentic images and ``nan`` values left out; ``nan`` where none is)."""

    def mean(key: str) -> float:
        values = [r[key] for r in records if not r.get("authentic") and r[key] is not None and not np.isnan(r[key])]
        return float(np.mean(values)) if values else float("nan")

    return {"f1": mean("f1"), "iou": mean("iou"), "auc": mean("auc")}


@dataclass
class LocalizationMetrics:
    """Accumulates images, then reports per-image means and pooled values.

    Args:
        threshold: probability above which a pixel counts as tampered (``paper`` and
            ``inverted``).
        pooled_auc: also keep every pixel for the pooled AUC (and the pooled
            ``best-threshold`` F1), scores in their own dtype (memory: 5 bytes per pixel
            for float32 maps, 9 for float64); without it those pooled values are ``nan``.
        protocol: one of :data:`PROTOCOLS`.
        exclude_border: ignore the pixels within this many pixels of the mask boundary.
    """

    threshold: float = DEFAULT_THRESHOLD
    pooled_auc: bool = True
    protocol: str = "paper"
    exclude_border: int = 0
    per_image: list[dict[str, float]] = field(default_factory=list)
    _totals: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    _inverse_totals: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    _scores: list[np.ndarray] = field(default_factory=list)
    _labels: list[np.ndarray] = field(default_factory=list)
    _authentic_totals: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))  # (fp, pixels)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"metric protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.exclude_border < 0:
            raise ValueError(f"exclude_border must be >= 0, got {self.exclude_border}")

    def describe(self) -> dict[str, object]:
        """The protocol as stamped on records: name, threshold, excluded border."""
        return {"metric": self.protocol, "threshold": self.threshold, "exclude_border": self.exclude_border}

    def update(self, probabilities: np.ndarray, mask: np.ndarray, name: str = "") -> dict[str, float]:
        """Add one image: ``probabilities`` and ``mask`` of the same ``(H, W)`` shape.

        Returns:
            the image's record ``{name, f1, iou, auc}`` (plus ``threshold`` under
            ``best-threshold``, ``inverted`` under ``inverted``); for an authentic image
            ``{name, authentic: True, f1, iou, auc}`` all ``nan`` (left out, see the module
            docstring) and ``pixel_false_alarm``, the share of its pixels above the threshold.
        """
        if np.shape(probabilities) != np.shape(mask):
            raise ValueError(f"{name or 'image'}: map shape {np.shape(probabilities)} != mask shape {np.shape(mask)}")
        scores, truth = np.asarray(probabilities), np.asarray(mask).astype(bool)
        if not truth.any():
            false_alarms = int(np.count_nonzero(scores > self.threshold))
            self._authentic_totals += (false_alarms, scores.size)
            nan = float("nan")
            record = {"name": name, "authentic": True, "f1": nan, "iou": nan, "auc": nan}
            record["pixel_false_alarm"] = false_alarms / scores.size
            self.per_image.append(record)
            if self.pooled_auc:  # nothing pooled, but one entry per image (see merged)
                self._scores.append(np.asarray(scores).ravel()[:0])
                self._labels.append(truth.ravel()[:0])
            return record
        if self.exclude_border:
            kept = ~border_band(truth, self.exclude_border)
            scores, truth = scores[kept], truth[kept]
        counts = np.array(confusion(scores, truth, self.threshold), dtype=np.int64)
        self._totals += counts
        record: dict[str, float] = {"name": name}
        auc = binary_auc(scores, truth)
        if self.protocol == "paper":
            record["f1"], record["iou"] = f1_iou(*counts[:3])
        elif self.protocol == "best-threshold":
            cut, tp, fp, fn = best_threshold(scores, truth)
            record["f1"], record["iou"] = f1_iou(tp, fp, fn)
            record["threshold"] = cut if np.isfinite(cut) else None  # None: nothing predicted
        else:
            inverse = np.array(confusion(1.0 - scores.astype(np.float64), truth, self.threshold), dtype=np.int64)
            self._inverse_totals += inverse
            (record["f1"], record["iou"]), flipped = _better(f1_iou(*counts[:3]), f1_iou(*inverse[:3]))
            record["inverted"] = flipped
            auc = _oriented_auc(auc, True)
        record["auc"] = auc
        self.per_image.append(record)
        if self.pooled_auc:
            self._scores.append(np.array(scores).ravel())
            self._labels.append(truth.ravel())
        return record

    @classmethod
    def merged(cls, parts: list[LocalizationMetrics], orders: list[list[int]]) -> LocalizationMetrics:
        """One accumulator from several that each saw some of the images (e.g. processes).

        Args:
            parts: accumulators with the same threshold, ``pooled_auc``, protocol and border.
            orders: ``orders[i][k]`` is the position in the whole set of the ``k``-th image
                added to ``parts[i]``; the merged per-image list follows these positions.
        """
        first = parts[0]
        merged = cls(
            threshold=first.threshold,
            pooled_auc=first.pooled_auc,
            protocol=first.protocol,
            exclude_border=first.exclude_border,
        )
        for _, i, k in sorted((position, i, k) for i, order in enumerate(orders) for k, position in enumerate(order)):
            merged.per_image.append(parts[i].per_image[k])
            if merged.pooled_auc:
                merged._scores.append(parts[i]._scores[k])
                merged._labels.append(parts[i]._labels[k])
        merged._totals = sum((part._totals for part in parts), np.zeros(4, dtype=np.int64))
        merged._inverse_totals = sum((part._inverse_totals for part in parts), np.zeros(4, dtype=np.int64))
        merged._authentic_totals = sum((part._authentic_totals for part in parts), np.zeros(2, dtype=np.int64))
        return merged

    def summary(self) -> dict[str, dict[str, float] | int]:
        """``{"per-image": {f1, iou, auc}, "pooled": {f1, iou, auc}, "images", "tampered_images",
        "single_class", "undefined_f1", "authentic": {images, pixel_false_alarm_rate,
        mean_pixel_false_alarm_rate, images_with_false_alarms}}``; the localization figures
        and counts are over the tampered images, ``authentic`` over the others (rates ``nan``
        without authentic images)."""
        tampered = [r for r in self.per_image if not r.get("authentic")]
        authentic = [r["pixel_false_alarm"] for r in self.per_image if r.get("authentic")]
        kept = self.pooled_auc and bool(self._scores)
        scores = np.concatenate(self._scores) if kept else None
        labels = np.concatenate(self._labels) if kept else None
        pooled_auc = binary_auc(scores, labels) if kept else float("nan")
        tp, fp, fn, _ = (int(v) for v in self._totals)
        false_alarms, pixels = (int(v) for v in self._authentic_totals)
        pooled_f1, pooled_iou = f1_iou(tp, fp, fn)
        if self.protocol == "best-threshold":
            pooled_f1, pooled_iou = f1_iou(*best_threshold(scores, labels)[1:]) if kept else (float("nan"),) * 2
        elif self.protocol == "inverted":
            (pooled_f1, pooled_iou), _ = _better((pooled_f1, pooled_iou), f1_iou(*self._inverse_totals[:3]))
            pooled_auc = _oriented_auc(pooled_auc, True)
        return {
            "per-image": per_image_means(tampered),
            "pooled": {"f1": pooled_f1, "iou": pooled_iou, "auc": pooled_auc},
            "images": len(self.per_image),
            "tampered_images": len(tampered),
            "single_class": sum(bool(np.isnan(r["auc"])) for r in tampered),
            "undefined_f1": sum(bool(np.isnan(r["f1"])) for r in tampered),
            "authentic": {
                "images": len(authentic),
                "pixel_false_alarm_rate": float(false_alarms / pixels) if pixels else float("nan"),
                "mean_pixel_false_alarm_rate": float(np.mean(authentic)) if authentic else float("nan"),
                "images_with_false_alarms": sum(value > 0 for value in authentic),
            },
        }
