"""Localization metrics against scikit-learn and by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from reloc.metrics import LocalizationMetrics, best_threshold, binary_auc, border_band, confusion, f1_iou, psnr


def _random_case(rng: np.random.Generator, size: int, quantise: int | None, dtype=np.float32):
    scores = rng.random(size).astype(dtype)
    if quantise:
        scores = np.floor(scores * quantise) / quantise  # many ties, within and across classes
    labels = rng.random(size) < rng.uniform(0.05, 0.95)
    if labels.all() or not labels.any():
        labels[0] = not labels[0]
    return scores, labels


@pytest.mark.parametrize("quantise", [None, 2, 5, 256])
@pytest.mark.parametrize("size", [2, 3, 7, 50, 5000])
def test_binary_auc_equals_sklearn(size, quantise):
    rng = np.random.default_rng(size * 1000 + (quantise or 0))
    for _ in range(20):
        scores, labels = _random_case(rng, size, quantise)
        assert binary_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64, np.uint8])
def test_binary_auc_other_dtypes(dtype):
    rng = np.random.default_rng(7)
    scores = (rng.random((40, 30)) * 200).astype(dtype)
    labels = (rng.random((40, 30)) < 0.3).astype(np.uint8)
    assert binary_auc(scores, labels) == pytest.approx(roc_auc_score(labels.ravel(), scores.ravel()), abs=1e-12)


def test_binary_auc_by_hand():
    assert binary_auc([0.1, 0.9], [0, 1]) == 1.0
    assert binary_auc([0.9, 0.1], [0, 1]) == 0.0
    assert binary_auc([0.5, 0.5], [0, 1]) == 0.5
    # pairs (p, n): (0.4, 0.4) tie, (0.4, 0.2) right, (0.8, 0.4) right, (0.8, 0.2) right
    assert binary_auc([0.4, 0.8, 0.4, 0.2], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    # more positives than negatives (the other branch): 0.4 ties 0.4, 0.8 right, 0.3 wrong
    assert binary_auc([0.4, 0.8, 0.4, 0.3], [1, 1, 0, 1]) == pytest.approx(1.5 / 3)


def test_binary_auc_does_not_round_float32_or_float64():
    # 1 + 2**-40 rounds to 1.0 in float32: a float32 cast would tie it with the negative
    scores = np.array([1.0, 1.0 + 2.0**-40])
    assert binary_auc(scores, [0, 1]) == 1.0


def test_binary_auc_single_class_and_errors():
    assert math.isnan(binary_auc(np.random.rand(10), np.zeros(10)))
    assert math.isnan(binary_auc(np.random.rand(10), np.ones(10, dtype=bool)))
    with pytest.raises(ValueError, match="NaN"):
        binary_auc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="labels"):
        binary_auc([0.1, 0.2, 0.3], [0, 1])


def test_binary_auc_of_a_12_megapixel_map_of_chance_scores_is_a_half():
    rng = np.random.default_rng(0)
    scores = rng.random((4000, 3000), dtype=np.float32)
    labels = rng.random((4000, 3000), dtype=np.float32) < 0.05
    assert 0.49 < binary_auc(scores, labels) < 0.51


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_f1_iou_equal_sklearn(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for _ in range(20):
        probabilities = rng.random((24, 32)).astype(np.float32)
        mask = rng.random((24, 32)) < rng.uniform(0.05, 0.6)
        tp, fp, fn, tn = confusion(probabilities, mask, threshold)
        assert tp + fp + fn + tn == mask.size
        f1, iou = f1_iou(tp, fp, fn)
        predicted = (probabilities > threshold).ravel()
        assert f1 == pytest.approx(f1_score(mask.ravel(), predicted))
        assert iou == pytest.approx(jaccard_score(mask.ravel(), predicted))


def test_f1_iou_undefined_when_nothing_to_find_and_nothing_found():
    assert all(math.isnan(v) for v in f1_iou(0, 0, 0))
    assert f1_iou(0, 3, 0) == (0.0, 0.0)


def _two_images() -> LocalizationMetrics:
    metrics = LocalizationMetrics(threshold=0.5)
    # image A: predicted exactly; every positive above every negative
    metrics.update(np.array([[0.9, 0.1], [0.2, 0.3]]), np.array([[1, 0], [0, 0]]), name="A")
    # image B: predicted [0, 1, 1, 0] -> tp 1, fp 1, fn 1; pairs right: (0.4, 0.1), (0.6, 0.1) -> AUC 2/4
    metrics.update(np.array([[0.4, 0.6], [0.7, 0.1]]), np.array([[1, 1], [0, 0]]), name="B")
    return metrics


def test_per_image_and_pooled_differ_and_are_right_by_hand():
    summary = _two_images().summary()
    per_image, pooled = summary["per-image"], summary["pooled"]
    # per image: A (f1 1, iou 1, auc 1), B (f1 2/4, iou 1/3, auc 1/2), then the mean
    assert per_image["f1"] == pytest.approx(0.75)
    assert per_image["iou"] == pytest.approx(2 / 3)
    assert per_image["auc"] == pytest.approx(0.75)
    # pooled: tp 2, fp 1, fn 1; positives {0.9, 0.4, 0.6} against negatives {0.1, 0.2, 0.3, 0.7, 0.1}
    # are right in 5 + 4 + 4 = 13 of 15 pairs
    assert pooled["f1"] == pytest.approx(4 / 6)
    assert pooled["iou"] == pytest.approx(2 / 4)
    assert pooled["auc"] == pytest.approx(13 / 15)
    assert summary["images"] == 2 and summary["single_class"] == 0 and summary["undefined_f1"] == 0


def test_single_class_images_are_counted_and_left_out_of_the_auc_mean():
    metrics = _two_images()
    metrics.update(np.array([[0.9, 0.8], [0.3, 0.4]]), np.ones((2, 2)), name="all tampered")
    summary = metrics.summary()
    assert summary["images"] == summary["tampered_images"] == 3
    assert summary["single_class"] == 1 and summary["undefined_f1"] == 0
    assert summary["per-image"]["auc"] == pytest.approx(0.75)  # still A and B only
    # f1: A 1, B 0.5, all tampered 2*2/(4+2) = 2/3
    assert summary["per-image"]["f1"] == pytest.approx((1 + 0.5 + 2 / 3) / 3)
    json.dumps(summary)  # plain Python numbers, not numpy scalars


def test_authentic_images_are_left_out_of_localization_with_or_without_false_pixels():
    """The one rule: an authentic image counts in no F1 / IoU / AUC, per image or pooled,
    clean (F1 0/0) or with a false pixel (F1 0 under the formula); its marked pixels are
    the pixel false-alarm rate instead."""
    reference = _two_images().summary()
    metrics = _two_images()
    clean = metrics.update(np.array([[0.1, 0.2], [0.3, 0.4]]), np.zeros((2, 2)), name="clean")
    alarm = metrics.update(np.array([[0.9, 0.2], [0.3, 0.4]]), np.zeros((2, 2)), name="false alarm")
    assert clean["authentic"] and alarm["authentic"]
    assert all(math.isnan(record[key]) for record in (clean, alarm) for key in ("f1", "iou", "auc"))
    assert (clean["pixel_false_alarm"], alarm["pixel_false_alarm"]) == (0.0, 0.25)
    summary = metrics.summary()
    assert summary["per-image"] == reference["per-image"] and summary["pooled"] == reference["pooled"]
    assert summary["images"] == 4 and summary["tampered_images"] == 2
    assert summary["single_class"] == 0 and summary["undefined_f1"] == 0
    authentic = summary["authentic"]
    # pooled: 1 false pixel of 8; per image: (0 + 1/4) / 2
    assert authentic == {
        "images": 2,
        "pixel_false_alarm_rate": pytest.approx(1 / 8),
        "mean_pixel_false_alarm_rate": pytest.approx(1 / 8),
        "images_with_false_alarms": 1,
    }
    bigger = LocalizationMetrics()
    bigger.update(np.zeros((2, 2)), np.zeros((2, 2)))
    bigger.update(np.full((4, 4), 0.9), np.zeros((4, 4)))
    # pooled 16 of 20 pixels; per image (0 + 1) / 2
    assert bigger.summary()["authentic"]["pixel_false_alarm_rate"] == pytest.approx(16 / 20)
    assert bigger.summary()["authentic"]["mean_pixel_false_alarm_rate"] == pytest.approx(0.5)


def test_a_set_of_authentic_images_only_has_no_localization_figures():
    metrics = LocalizationMetrics()
    metrics.update(np.array([[0.9, 0.2], [0.3, 0.4]]), np.zeros((2, 2)))
    summary = metrics.summary()
    assert all(math.isnan(v) for part in ("per-image", "pooled") for v in summary[part].values())
    assert summary["authentic"]["pixel_false_alarm_rate"] == 0.25
    assert math.isnan(_two_images().summary()["authentic"]["pixel_false_alarm_rate"])


def test_authentic_totals_survive_merging():
    first, second = LocalizationMetrics(), LocalizationMetrics()
    first.update(np.array([[0.9, 0.2], [0.3, 0.4]]), np.zeros((2, 2)), name="a")
    second.update(np.array([[0.9, 0.8], [0.1, 0.2]]), np.array([[1, 0], [0, 0]]), name="b")
    second.update(np.full((2, 2), 0.9), np.zeros((2, 2)), name="c")
    merged = LocalizationMetrics.merged([first, second], [[0], [1, 2]])
    assert [r["name"] for r in merged.per_image] == ["a", "b", "c"]
    assert merged.summary()["authentic"]["pixel_false_alarm_rate"] == pytest.approx(5 / 8)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        LocalizationMetrics().update(np.zeros((2, 3)), np.zeros((3, 2)))


def test_psnr_matches_scikit_image_per_image():
    from skimage.metrics import peak_signal_noise_ratio

    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(3, 3, 16, 20, generator=generator)
    estimate = reference + 0.05 * torch.randn(3, 3, 16, 20, generator=generator)
    values = psnr(estimate, reference)
    assert values.shape == (3,)
    for value, e, r in zip(values, estimate.clamp(0, 1), reference, strict=True):
        assert value.item() == pytest.approx(peak_signal_noise_ratio(r.numpy(), e.numpy(), data_range=1.0), rel=1e-5)
    assert psnr(reference, reference).tolist() == pytest.approx([120.0] * 3)


# --- metric protocols -------------------------------------------------------------------


def _sklearn_best_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Oracle F1 by brute force with scikit-learn: every distinct score as the cut."""
    return max(f1_score(labels, scores >= cut, zero_division=0) for cut in np.unique(scores))


def test_best_threshold_by_hand():
    scores = np.array([0.9, 0.6, 0.6, 0.3, 0.1, 0.1])
    labels = np.array([1, 1, 0, 0, 1, 0])
    cut, tp, fp, fn = best_threshold(scores, labels)
    # >= 0.6 keeps the tie group (0.6 pos, 0.6 neg): tp 2 fp 1 fn 1 -> F1 4/6; >= 0.9: tp 1 fp 0 fn 2 -> 2/5;
    # >= 0.3: tp 2 fp 2 -> 4/7; >= 0.1: tp 3 fp 3 -> 6/9
    assert (cut, tp, fp, fn) == (0.6, 2, 1, 1)
    assert f1_iou(tp, fp, fn)[0] == pytest.approx(4 / 6)
    assert best_threshold(np.array([0.2, 0.7]), np.array([0, 0]))[1:] == (0, 0, 0)


@pytest.mark.parametrize("quantise", [None, 4, 256])
def test_best_threshold_equals_sklearn_brute_force(quantise):
    rng = np.random.default_rng(quantise or 1)
    for _ in range(15):
        scores, labels = _random_case(rng, 300, quantise)
        cut, tp, fp, fn = best_threshold(scores, labels)
        assert f1_iou(tp, fp, fn)[0] == pytest.approx(_sklearn_best_f1(scores, labels), abs=1e-12)
        assert f1_score(labels, scores >= cut) == pytest.approx(f1_iou(tp, fp, fn)[0], abs=1e-12)


def test_border_band_by_hand():
    mask = np.zeros((6, 6), dtype=bool)
    mask[2:4, 2:4] = True
    band = border_band(mask, 1)
    # every tampered pixel touches an authentic one, and the authentic ring around them is in the band
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:5, 1:5] = True
    assert np.array_equal(band, expected)
    assert not border_band(mask, 0).any() and not border_band(np.ones((4, 4)), 2).any()
    wide = np.zeros((10, 10), dtype=bool)
    wide[:, 5:] = True  # a vertical boundary between columns 4 and 5
    assert np.array_equal(np.flatnonzero(border_band(wide, 2)[0]), [3, 4, 5, 6])  # two pixels each side


def test_protocols_on_a_hand_computed_image():
    mask = np.zeros((4, 4))
    mask[:, :2] = 1  # left half tampered
    inverse_map = np.where(mask == 1, 0.2, 0.8)  # a map with the polarity the wrong way round
    paper = LocalizationMetrics(protocol="paper")
    paper.update(inverse_map, mask)
    assert paper.per_image[0]["f1"] == 0.0 and paper.per_image[0]["auc"] == 0.0
    inverted = LocalizationMetrics(protocol="inverted")
    record = inverted.update(inverse_map, mask)
    assert record["f1"] == 1.0 and record["iou"] == 1.0 and record["auc"] == 1.0 and record["inverted"]
    best = LocalizationMetrics(protocol="best-threshold")
    record = best.update(inverse_map, mask)
    # the best cut of an anti-correlated map is to flag everything: tp 8, fp 8 -> F1 16 / 24
    assert record["f1"] == pytest.approx(2 / 3) and record["threshold"] == 0.2
    # a weak but right map: paper at 0.5 finds nothing, the oracle threshold finds it all
    weak = np.where(mask == 1, 0.3, 0.1)
    assert LocalizationMetrics().update(weak, mask)["f1"] == 0.0
    assert LocalizationMetrics(protocol="best-threshold").update(weak, mask)["f1"] == 1.0


def test_exclude_border_ignores_the_boundary_pixels():
    mask = np.zeros((4, 8))
    mask[:, :4] = 1
    guess = np.zeros((4, 8))
    guess[:, :5] = 1  # one column too far: 4 false positives, all next to the boundary
    assert LocalizationMetrics().update(guess, mask)["f1"] == pytest.approx(32 / 36)
    assert LocalizationMetrics(exclude_border=1).update(guess, mask)["f1"] == 1.0


def test_protocol_pooled_values_against_sklearn():
    rng = np.random.default_rng(5)
    maps = [rng.random((12, 10)) for _ in range(3)]
    masks = [rng.random((12, 10)) < 0.4 for _ in range(3)]
    for protocol in ("paper", "best-threshold", "inverted"):
        metrics = LocalizationMetrics(protocol=protocol)
        for probability, mask in zip(maps, masks):
            metrics.update(1 - probability if protocol == "inverted" else probability, mask)
        summary = metrics.summary()
        scores, labels = np.concatenate([m.ravel() for m in maps]), np.concatenate([m.ravel() for m in masks])
        pooled = {
            "paper": f1_score(labels, scores > 0.5),
            "best-threshold": _sklearn_best_f1(scores, labels),
            "inverted": max(f1_score(labels, scores > 0.5), f1_score(labels, scores < 0.5)),
        }[protocol]
        assert summary["pooled"]["f1"] == pytest.approx(pooled, abs=1e-12)
        per_image = {
            "paper": [f1_score(m.ravel(), p.ravel() > 0.5) for p, m in zip(maps, masks)],
            "best-threshold": [_sklearn_best_f1(p.ravel(), m.ravel()) for p, m in zip(maps, masks)],
            "inverted": [
                max(f1_score(m.ravel(), p.ravel() > 0.5), f1_score(m.ravel(), p.ravel() < 0.5))
                for p, m in zip(maps, masks)
            ],
        }[protocol]
        assert summary["per-image"]["f1"] == pytest.approx(np.mean(per_image), abs=1e-12)
        aucs = [roc_auc_score(m.ravel(), p.ravel()) for p, m in zip(maps, masks)]
        if protocol == "inverted":
            aucs = [max(a, 1 - a) for a in aucs]
        assert summary["per-image"]["auc"] == pytest.approx(np.mean(aucs), abs=1e-12)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="best-threshold"):
        LocalizationMetrics(protocol="oracle")
