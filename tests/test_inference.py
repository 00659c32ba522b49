"""Sliding-window inference: window origins and ``Pipeline.predict``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import build_cached
from reloc.engine.inference import Pipeline, window_origins


def _localizer():
    return build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()


def _restorer():
    return build_cached("restorer", "scunet", preset="tiny").eval()


@st.composite
def _geometry(draw):
    window = draw(st.integers(1, 600))
    stride = draw(st.integers(1, window))
    length = draw(st.integers(1, 3000))
    return length, window, stride


@given(_geometry())
def test_window_origins_cover_every_pixel_and_end_flush(geometry):
    length, window, stride = geometry
    origins = window_origins(length, window, stride)
    if length <= window:
        assert origins == [0]
        return
    assert origins[0] == 0
    assert origins[-1] + window == length
    assert all(0 <= origin <= length - window for origin in origins)
    assert origins == sorted(set(origins))
    regular = origins[:-1] if origins[-1] % stride else origins
    assert regular == list(range(0, len(regular) * stride, stride))
    # consecutive windows touch or overlap, so no pixel is left out
    assert all(b - a <= window for a, b in zip(origins, origins[1:]))


def test_window_origins_examples_and_errors():
    assert window_origins(300, 128, 128) == [0, 128, 172]
    assert window_origins(256, 128, 128) == [0, 128]
    assert window_origins(100, 128, 64) == [0]
    assert window_origins(10, 4, 3) == [0, 3, 6]
    with pytest.raises(ValueError, match="stride"):
        window_origins(100, 16, 17)
    with pytest.raises(ValueError):
        window_origins(0, 16, 16)


def _reference(pipeline: Pipeline, image: torch.Tensor, window: int, stride: int):
    """Window by window, one forward each, overlaps averaged: (H, W) and (3, H, W)."""
    _, height, width = image.shape
    probability_sum = torch.zeros(height, width, dtype=torch.float64)
    restored_sum = torch.zeros(3, height, width, dtype=torch.float64)
    count = torch.zeros(height, width, dtype=torch.float64)
    h, w = min(window, height), min(window, width)
    with torch.no_grad():
        for top in window_origins(height, window, stride):
            for left in window_origins(width, window, stride):
                crop = image[None, :, top : top + h, left : left + w]
                restored, probabilities = pipeline.run(crop)
                probability_sum[top : top + h, left : left + w] += probabilities[0, 0]
                restored_sum[:, top : top + h, left : left + w] += restored[0]
                count[top : top + h, left : left + w] += 1
    return (probability_sum / count).float(), (restored_sum / count).float()


def test_predict_on_one_window_equals_forward():
    pipeline = Pipeline(None, _localizer())
    image = torch.rand(3, 128, 128)
    with torch.no_grad():
        expected = pipeline(image[None])[0, 0]
    probabilities = pipeline.predict(image, window=128, stride=128)
    assert probabilities.shape == (128, 128) and probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-6)


def test_predict_smaller_than_window_runs_whole():
    pipeline = Pipeline(None, _localizer())
    image = torch.rand(3, 70, 90)
    with torch.no_grad():
        expected = pipeline(image[None])[0, 0]
    torch.testing.assert_close(pipeline.predict(image, window=128, stride=64), expected, rtol=0, atol=1e-6)


def test_predict_equals_hand_stitched_reference():
    pipeline = Pipeline(None, _localizer())
    image = torch.rand(3, 300, 200)  # origins [0, 128, 172] x [0, 72]: overlaps on both axes
    expected, _ = _reference(pipeline, image, 128, 128)
    probabilities = pipeline.predict(image, window=128, stride=128, batch_size=4)
    assert probabilities.shape == (300, 200)
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-5)


def test_predict_with_restorer_stitches_probabilities_and_restored_image():
    pipeline = Pipeline(_restorer(), _localizer())
    image = torch.rand(3, 150, 100)  # origins [0, 64, 86] x [0, 36]
    expected_probabilities, expected_restored = _reference(pipeline, image, 64, 64)
    probabilities, restored = pipeline.predict(image, window=64, stride=64, batch_size=4, return_restored=True)
    assert restored.shape == (3, 150, 100) and 0.0 <= restored.min() and restored.max() <= 1.0
    torch.testing.assert_close(probabilities, expected_probabilities, rtol=0, atol=1e-5)
    torch.testing.assert_close(restored, expected_restored, rtol=0, atol=1e-5)


def test_batch_size_does_not_change_the_result():
    pipeline = Pipeline(None, _localizer())
    image = torch.rand(3, 300, 200)
    one = pipeline.predict(image, window=128, stride=96, batch_size=1)
    four = pipeline.predict(image, window=128, stride=96, batch_size=4)
    torch.testing.assert_close(one, four, rtol=0, atol=1e-5)


def test_predict_reports_windows_done_out_of_total():
    pipeline = Pipeline(None, _localizer())
    image = torch.rand(3, 150, 100)  # origins [0, 64, 86] x [0, 36]: 6 windows
    calls: list[tuple[int, int]] = []
    with_progress = pipeline.predict(image, window=64, stride=64, batch_size=4, progress=lambda *c: calls.append(c))
    assert calls == [(0, 6), (4, 6), (6, 6)]
    torch.testing.assert_close(with_progress, pipeline.predict(image, window=64, stride=64, batch_size=4))


def test_predict_returns_tensors_usable_outside_inference_mode():
    pipeline = Pipeline(None, _localizer())
    probabilities = pipeline.predict(torch.rand(3, 64, 80), window=32, stride=32)
    assert not probabilities.is_inference()
    probabilities += 1  # in-place on an inference tensor would raise


def test_predict_large_image():
    pipeline = Pipeline(None, _localizer())
    probabilities = pipeline.predict(torch.rand(3, 1000, 1500), window=256, stride=256, batch_size=4)
    assert probabilities.shape == (1000, 1500)
    assert torch.isfinite(probabilities).all()
    assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0


def test_predict_rejects_bad_input():
    pipeline = Pipeline(None, _localizer())
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        pipeline.predict(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.predict(torch.rand(3, 32, 32), batch_size=0)
