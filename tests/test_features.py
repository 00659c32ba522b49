"""Feature analysis (Fig. 2): exact EMD, encoder hooks, the figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloc.analysis.features import FEATURE_LAYERS, earth_movers_distance, encoder_features
from reloc.models import LOCALIZERS, create_localizer


def test_emd_of_shifted_sets_is_the_shift_and_matching_is_optimal():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2))
    assert earth_movers_distance(points, points + [3.0, 4.0]) == pytest.approx(5.0)
    shuffled = points[rng.permutation(50)]
    assert earth_movers_distance(points, shuffled) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same shape"):
        earth_movers_distance(points, points[:10])


def test_every_localizer_has_an_encoder_layer():
    assert set(FEATURE_LAYERS) == set(LOCALIZERS)


def test_encoder_features_come_back_at_input_size():
    localizer = create_localizer("dfcn", width=0.25, faithful=False).eval()
    with torch.inference_mode():
        features = encoder_features(localizer, torch.rand(2, 3, 40, 56), FEATURE_LAYERS["dfcn"])
    assert features.shape == (2, 24, 40, 56)
