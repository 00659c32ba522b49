"""benchmarks/detection_head.py: the map features against a hand computation, and the
head's figures on a toy set whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture
def head(monkeypatch):
    return load_benchmark("detection_head.py", "detection_head_benchmark", monkeypatch)


def test_map_features_match_a_hand_computation(head):
    probabilities = np.full((10, 10), 0.1, dtype=np.float32)
    probabilities[2:4, 1:6] = 0.9  # one region of 10 pixels
    probabilities[8, 8] = 0.6  # a second region of 1 pixel
    features = dict(zip(head.FEATURES, head.map_features(probabilities)))
    assert features["top-mean:0.01"] == pytest.approx(0.9)
    assert features["top-mean:0.2"] == pytest.approx((10 * 0.9 + 0.6 + 9 * 0.1) / 20)
    assert features["mean"] == pytest.approx((10 * 0.9 + 0.6 + 89 * 0.1) / 100)
    assert features["area-above:0.5"] == pytest.approx(0.11)
    assert features["area-above:0.7"] == pytest.approx(0.10)
    assert features["largest-region:0.5"] == pytest.approx(0.10)
    assert features["regions:0.5"] == pytest.approx(math.log1p(2))
    assert len(head.map_features(probabilities)) == len(head.FEATURES)


def test_a_head_that_separates_gains_over_an_incumbent_that_does_not(head):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    tampered = np.r_[np.ones(30, bool), np.zeros(30, bool)]
    rows = [
        {"tampered": bool(t), "features": [float(t) + rng.normal(0, 0.1)] + [0.0] * (len(head.FEATURES) - 1),
         "incumbent": float(i % 2)}
        for i, t in enumerate(tampered)
    ]  # fmt: skip  # the first feature separates, the others are constant; the incumbent scores both classes alike
    fitted = LogisticRegression().fit(np.array([r["features"] for r in rows]), tampered)
    figures = head.evaluate(rows, fitted, rng)
    assert figures["head_auc"] == 1.0 and figures["tampered"] == 30 and figures["authentic"] == 30
    gain = figures["head_minus_incumbent"]
    assert gain["gain"] == pytest.approx(1.0 - figures["incumbent_auc"], abs=1e-4)
    assert gain["interval"][0] > 0
    assert figures["incumbent_auc"] == 0.5
    alone = figures["single_statistics"]
    assert alone[head.FEATURES[0]] == 1.0 and all(alone[name] == 0.5 for name in head.FEATURES[1:])
