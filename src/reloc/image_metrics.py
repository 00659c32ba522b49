"""Image-level detection metrics: one score per image against "tampered or authentic".

An image is *flagged* when its score is above the threshold (``score > t``, as pixels in
:mod:`reloc.metrics`). Tampered images are the positives, authentic images the negatives:

- ``auc``: ROC AUC of the scores (ties half; :func:`reloc.metrics.binary_auc`);
- ``balanced_accuracy``: the mean of the tampered recall (TPR) and the authentic
  specificity (1 - FPR) at the threshold;
- ``tpr_at_fpr``: the TPR at the lowest threshold whose FPR is at most 1% and 5%
  (:func:`threshold_at_fpr`); that threshold is chosen on the same images, so it is an
  oracle figure, as in the literature;
- ``flagged_authentic``: the share of authentic images flagged at the threshold (the FPR);
  ``tampered_recall``: the share of tampered images flagged.

A set without authentic images has no FPR, AUC, balanced accuracy or TPR at an FPR; one
without tampered images no recall, AUC, balanced accuracy or TPR. Those figures are
``nan`` and :func:`image_level_summary` lists them in ``undefined`` with the reason.
"""

from __future__ import annotations

import math

import numpy as np

from reloc.metrics import binary_auc

TARGET_FPRS = (0.01, 0.05)


def threshold_at_fpr(authentic_scores: np.ndarray, target: float) -> float:
    """The lowest threshold ``t`` with at most ``target`` of the authentic scores above it.

    With ``n`` authentic scores, ``m = floor(target * n)`` of them may be flagged: ``t`` is
    the ``(m + 1)``-th largest score (``-inf`` when ``m >= n``: every image may be flagged).
    Ties at ``t`` are not flagged, so the rate reached can be below the target.

    Args:
        authentic_scores: ``(N,)`` scores of authentic images, N >= 1.
        target: the false-positive rate allowed, in [0, 1].

    Raises:
        ValueError: no authentic score, or ``target`` outside [0, 1].
    """
    scores = np.sort(np.asarray(authentic_scores, dtype=np.float64).ravel())[::-1]
    if scores.size == 0:
        raise ValueError("a threshold for a false-positive rate needs authentic images")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1], got {target}")
    allowed = math.floor(target * scores.size + 1e-9)  # 0.05 * 200 is 10, not 9.999...
    return -math.inf if allowed >= scores.size else float(scores[allowed])


def flagged_share(scores: np.ndarray, threshold: float) -> float:
    """Share of ``scores`` above ``threshold`` (``nan`` for no score)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return float(np.count_nonzero(scores > threshold) / scores.size) if scores.size else math.nan


def image_level_summary(scores: np.ndarray, tampered: np.ndarray, threshold: float) -> dict[str, object]:
    """Image-level figures of one set (see the module docstring).

    Args:
        scores: ``(N,)`` image scores. tampered: ``(N,)`` bool, True for a tampered image.
        threshold: the decision threshold on the score.

    Returns:
        ``{"auc", "balanced_accuracy", "tampered_recall", "flagged_authentic",
        "tpr_at_fpr": {"0.01", "0.05"}, "threshold_at_fpr": {...}, "threshold",
        "tampered_images", "authentic_images", "undefined": {figure: reason}}``, with
        ``nan`` for an undefined figure.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    tampered = np.asarray(tampered, dtype=bool).ravel()
    if scores.size != tampered.size:
        raise ValueError(f"{scores.size} scores but {tampered.size} labels")
    positives, negatives = scores[tampered], scores[~tampered]
    recall, false_alarms = flagged_share(positives, threshold), flagged_share(negatives, threshold)
    undefined: dict[str, str] = {}
    if negatives.size == 0:
        for name in ("auc", "balanced_accuracy", "flagged_authentic", "tpr_at_fpr"):
            undefined[name] = "no authentic image"
    if positives.size == 0:
        for name in ("auc", "balanced_accuracy", "tampered_recall", "tpr_at_fpr"):
            undefined.setdefault(name, "no tampered image")
    cuts = {str(t): threshold_at_fpr(negatives, t) if negatives.size else math.nan for t in TARGET_FPRS}
    return {
        "auc": binary_auc(scores, tampered) if scores.size else math.nan,
        "balanced_accuracy": (recall + 1.0 - false_alarms) / 2 if not undefined.get("balanced_accuracy") else math.nan,
        "tampered_recall": recall,
        "flagged_authentic": false_alarms,
        "tpr_at_fpr": {key: flagged_share(positives, cut) if negatives.size else math.nan for key, cut in cuts.items()},
        "threshold_at_fpr": {key: (None if math.isinf(cut) else cut) for key, cut in cuts.items()},
        "threshold": threshold,
        "tampered_images": int(positives.size),
        "authentic_images": int(negatives.size),
        "undefined": undefined,
    }
