"""Image-level detection metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from reloc.image_metrics import flagged_share, image_level_summary, threshold_at_fpr


def _random_set(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tampered = rng.random(300) < 0.55
    scores = np.round(rng.normal(tampered * 0.8, 1.0), 1)  # rounded: many ties
    return scores, tampered


@pytest.mark.parametrize("seed", range(5))
def test_auc_balanced_accuracy_and_tpr_match_scikit_learn(seed):
    scores, tampered = _random_set(seed)
    summary = image_level_summary(scores, tampered, threshold=0.3)
    assert summary["auc"] == pytest.approx(roc_auc_score(tampered, scores))
    assert summary["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(tampered, scores > 0.3))
    fpr, tpr, _ = roc_curve(tampered, scores, drop_intermediate=False)
    for target in (0.01, 0.05):
        # the best TPR among the ROC points whose FPR is within the target
        assert summary["tpr_at_fpr"][str(target)] == pytest.approx(tpr[fpr <= target + 1e-12].max())
    assert (summary["tampered_images"], summary["authentic_images"]) == (tampered.sum(), (~tampered).sum())
    assert summary["undefined"] == {}


def test_threshold_for_a_target_false_positive_rate_on_a_toy_set():
    authentic = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    # 10 authentic images: 10% allows one above the threshold, so the threshold is the 2nd largest
    assert threshold_at_fpr(authentic, 0.10) == 0.8
    assert flagged_share(authentic, 0.8) == 0.1
    assert threshold_at_fpr(authentic, 0.0) == 0.9  # nothing flagged
    assert threshold_at_fpr(authentic, 0.29) == 0.7  # floor(2.9) = 2 may be flagged
    assert threshold_at_fpr(authentic, 1.0) == -math.inf  # every image may be flagged
    # 0.05 of 20 is exactly one image (not 0.999...)
    assert threshold_at_fpr(np.arange(20.0), 0.05) == 18.0
    # a tie at the cut: flagging either would flag both, so neither is, and the rate stays under the target
    tied = np.array([0.1, 0.2, 0.9, 0.9])
    assert threshold_at_fpr(tied, 0.25) == 0.9 and flagged_share(tied, 0.9) == 0.0


def test_threshold_is_the_lowest_within_the_target():
    rng = np.random.default_rng(3)
    authentic = rng.random(57)
    for target in (0.01, 0.05, 0.2):
        cut = threshold_at_fpr(authentic, target)
        assert flagged_share(authentic, cut) <= target
        lower = authentic[authentic < cut].max()  # the next lower cut flags one image more
        assert flagged_share(authentic, lower) > target


def test_hand_computed_summary():
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.05])
    tampered = np.array([True, True, True, False, False, False])
    summary = image_level_summary(scores, tampered, threshold=0.5)
    # tampered above 0.5: 2 of 3; authentic above 0.5: 1 of 3
    assert summary["tampered_recall"] == pytest.approx(2 / 3)
    assert summary["flagged_authentic"] == pytest.approx(1 / 3)
    assert summary["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    # pairs right: 0.9 beats 3, 0.6 beats 2, 0.2 beats 2 -> 7 of 9
    assert summary["auc"] == pytest.approx(7 / 9)
    # 1% and 5% of 3 authentic images allow none: threshold 0.7, tampered above it 1 of 3
    assert summary["threshold_at_fpr"] == {"0.01": 0.7, "0.05": 0.7}
    assert summary["tpr_at_fpr"] == {"0.01": pytest.approx(1 / 3), "0.05": pytest.approx(1 / 3)}


def test_one_class_sets_give_the_defined_figures_and_name_the_others():
    only_authentic = image_level_summary(np.array([0.2, 0.7, 0.1]), np.zeros(3, bool), threshold=0.5)
    assert only_authentic["flagged_authentic"] == pytest.approx(1 / 3)
    for name in ("auc", "balanced_accuracy", "tampered_recall"):
        assert math.isnan(only_authentic[name]) and only_authentic["undefined"][name] == "no tampered image"
    assert all(math.isnan(v) for v in only_authentic["tpr_at_fpr"].values())
    assert only_authentic["threshold_at_fpr"]["0.05"] == 0.7

    only_tampered = image_level_summary(np.array([0.2, 0.7]), np.ones(2, bool), threshold=0.5)
    assert only_tampered["tampered_recall"] == 0.5
    for name in ("auc", "balanced_accuracy", "flagged_authentic", "tpr_at_fpr"):
        assert only_tampered["undefined"][name] == "no authentic image"
    assert math.isnan(only_tampered["flagged_authentic"]) and math.isnan(only_tampered["auc"])
    assert all(math.isnan(v) for v in only_tampered["tpr_at_fpr"].values())

    empty = image_level_summary(np.array([]), np.array([], bool), threshold=0.5)
    assert math.isnan(empty["auc"]) and set(empty["undefined"]) >= {"auc", "tampered_recall", "flagged_authentic"}


def test_threshold_needs_authentic_scores_and_a_rate():
    with pytest.raises(ValueError, match="authentic"):
        threshold_at_fpr(np.array([]), 0.05)
    with pytest.raises(ValueError, match="0, 1"):
        threshold_at_fpr(np.array([0.5]), 1.5)
    with pytest.raises(ValueError, match="labels"):
        image_level_summary(np.array([0.1, 0.2]), np.array([True]), 0.5)
