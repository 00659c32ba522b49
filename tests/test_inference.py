"""Sliding-window inference: window origins and ``Pipeline.predict``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import build_cached
from reloc.engine.inference import GRID, Pipeline, taper, window_origins


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
def test_window_origins_cover_every_pixel_on_the_jpeg_grid(geometry):
    length, window, stride = geometry
    origins = window_origins(length, window, stride)
    if length <= window:
        assert origins == [0]
        return
    assert origins[0] == 0
    assert origins == sorted(set(origins))
    grid = GRID if stride >= GRID else 1
    assert all(origin % grid == 0 for origin in origins)
    # the last window reaches the end, passing it by less than a grid block
    assert length <= origins[-1] + window < length + grid
    assert all(origin < length - window + grid for origin in origins)
    step = stride - stride % grid
    regular = origins[:-1]
    assert regular == list(range(0, len(regular) * step, step))
    # consecutive windows touch or overlap, so no pixel is left out
    assert all(b - a <= window for a, b in zip(origins, origins[1:]))


def test_window_origins_examples_and_errors():
    assert window_origins(300, 128, 128) == [0, 128, 176]  # 176 + 128 = 304: 4 pixels past the end, on the grid
    assert window_origins(256, 128, 128) == [0, 128]
    assert window_origins(100, 128, 64) == [0]
    assert window_origins(1000, 512, 300) == [0, 296, 488]  # the stride rounded down to the grid
    assert window_origins(10, 4, 3) == [0, 3, 6]  # a stride under the grid: flush with the end
    with pytest.raises(ValueError, match="stride"):
        window_origins(100, 16, 17)
    with pytest.raises(ValueError):
        window_origins(0, 16, 16)


def _reference(pipeline: Pipeline, image: torch.Tensor, window: int, stride: int, grid: int = GRID):
    """Window by window, one forward each, overlaps averaged: (H, W) and (3, H, W)."""
    _, height, width = image.shape
    probability_sum = torch.zeros(height, width, dtype=torch.float64)
    restored_sum = torch.zeros(3, height, width, dtype=torch.float64)
    count = torch.zeros(height, width, dtype=torch.float64)
    h, w = min(window, height), min(window, width)
    with torch.no_grad():
        for top in window_origins(height, window, stride, grid):
            for left in window_origins(width, window, stride, grid):
                crop = image[None, :, top : top + h, left : left + w]
                rows, columns = crop.shape[2:]  # a window past the far edge is filled by replication
                crop = torch.nn.functional.pad(crop, (0, w - columns, 0, h - rows), mode="replicate")
                restored, probabilities = pipeline.run(crop)
                probability_sum[top : top + rows, left : left + columns] += probabilities[0, 0, :rows, :columns]
                restored_sum[:, top : top + rows, left : left + columns] += restored[0, :, :rows, :columns]
                count[top : top + rows, left : left + columns] += 1
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
    pipeline = Pipeline(None, _localizer(), blend="mean")
    image = torch.rand(3, 300, 200)  # origins [0, 128, 176] x [0, 72]: overlaps on both axes
    expected, _ = _reference(pipeline, image, 128, 128)
    probabilities = pipeline.predict(image, window=128, stride=128, batch_size=4)
    assert probabilities.shape == (300, 200)
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-5)


def test_the_papers_tiling_is_flush_with_the_far_sides_and_averaged():
    assert window_origins(300, 128, 128, grid=1) == [0, 128, 172]  # the last window flush with the end
    pipeline = Pipeline(None, _localizer(), blend="mean", grid=1)
    image = torch.rand(3, 300, 200)
    expected, _ = _reference(pipeline, image, 128, 128, grid=1)
    torch.testing.assert_close(pipeline.predict(image, window=128, stride=128), expected, rtol=0, atol=1e-5)


def test_predict_with_restorer_stitches_probabilities_and_restored_image():
    pipeline = Pipeline(_restorer(), _localizer(), blend="mean")
    image = torch.rand(3, 150, 100)  # origins [0, 64, 88] x [0, 40]
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
    image = torch.rand(3, 150, 100)  # origins [0, 64, 88] x [0, 40]: 6 windows
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


class _Pointwise(torch.nn.Module):
    """A 1x1 convolution: each output pixel depends on its own input pixel only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 4 * self.conv(image)


class _Local(torch.nn.Module):
    """Translation-equivariant with a 9x9 receptive field and zero padding: windows see
    their own borders, so tiles differ from one pass near window edges."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 9, padding=4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 4 * self.conv(image)


class _Constant(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(image.shape[0], 1, *image.shape[2:])


@pytest.mark.parametrize("blend", ["taper", "mean"])
def test_blended_tiles_equal_one_pass_for_a_pointwise_network(blend):
    pipeline = Pipeline(None, _Pointwise(), blend=blend).eval()
    image = torch.rand(3, 300, 203)  # grid-aligned last windows pass both far edges
    whole = pipeline.predict(image, window=300, stride=300)
    tiles = pipeline.predict(image, window=64, stride=40)
    torch.testing.assert_close(tiles, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("blend", ["taper", "mean"])
def test_a_constant_network_leaves_no_seam(blend):
    pipeline = Pipeline(None, _Constant(), blend=blend).eval()
    probabilities = pipeline.predict(torch.rand(3, 333, 250), window=64, stride=48)
    expected = torch.sigmoid(torch.tensor(0.7))
    assert torch.all((probabilities - expected).abs() < 1e-6)


def test_tapered_blending_is_closer_to_one_pass_than_the_mean():
    image = torch.rand(3, 256, 256)
    errors = {}
    for blend in ("taper", "mean"):
        pipeline = Pipeline(None, _Local(), blend=blend).eval()
        whole = pipeline.predict(image, window=256, stride=256)
        errors[blend] = (pipeline.predict(image, window=64, stride=32) - whole).abs().mean().item()
    assert errors["taper"] < 0.5 * errors["mean"], errors


def test_taper_weights_fall_towards_the_window_edges_and_never_vanish():
    weights = taper(64, 48)  # a ramp over the 16 overlapping pixels, then flat
    assert weights.shape == (64,) and weights.min() > 0 and weights.max() == 1
    assert torch.equal(weights, weights.flip(0))
    assert weights[0] < weights[8] < weights[16] == weights[31] == 1
    halves = taper(64, 32)  # half overlap: triangles, whose shifted copies sum to a constant
    torch.testing.assert_close(halves[:32] + halves[32:], torch.full((32,), halves[:32].max() + halves[32:].min()))


def test_whole_image_pass_up_to_the_budget_then_tiles():
    pipeline = Pipeline(None, _Local(), window=(64, 32), whole_image_pixels=100 * 120).eval()
    assert pipeline.plan(100, 120) == (120, 120, True)
    assert pipeline.plan(100, 121) == (64, 32, False)  # over the budget: the recorded tiles
    assert pipeline.plan(100, 120, window=64) == (64, 64, False)  # an explicit window wins
    calls: list[tuple[int, int]] = []
    small = torch.rand(3, 100, 120)
    whole = pipeline.predict(small, progress=lambda *c: calls.append(c))
    assert calls[-1] == (1, 1)
    torch.testing.assert_close(whole, pipeline.predict(small, window=120, stride=120))
    calls.clear()
    pipeline.predict(torch.rand(3, 100, 121), progress=lambda *c: calls.append(c))
    assert calls[-1][1] > 1
    with pytest.raises(ValueError, match="whole_image_pixels"):
        Pipeline(None, _Local(), whole_image_pixels=-1)
    with pytest.raises(ValueError, match="blend"):
        Pipeline(None, _Local(), blend="max")
