"""Tests for reloc.data.distortions."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reloc.data.distortions import (
    Distortion,
    DistortionMix,
    Step,
    distort_tensor,
    encode_jpeg,
    jpeg_quality_from_file,
    parse_distortion,
)
from reloc.data.io import ImageError, float_to_uint8


def _image(height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth float32 image with some texture, exactly representable in 8 bits."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 3.0)], axis=-1)
    noisy = base + rng.normal(0, 0.05, base.shape)
    return float_to_uint8(noisy).astype(np.float32) / 255.0


def _pillow_jpeg(uint8: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(uint8).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize("quality", [10, 50, 75, 95])
def test_encode_jpeg_equals_pillow_default(quality):
    uint8 = float_to_uint8(_image())
    assert encode_jpeg(uint8, quality) == _pillow_jpeg(uint8, quality)


def test_jpeg75_distortion_equals_pillow_round_trip():
    image = _image()
    expected = np.asarray(Image.open(io.BytesIO(_pillow_jpeg(float_to_uint8(image), 75))))
    result = parse_distortion("jpeg:75")(image, np.random.default_rng(0))
    np.testing.assert_array_equal(float_to_uint8(result), expected)
    assert not np.array_equal(result, image)


@pytest.mark.parametrize("quality", [1, 5, 10, 25, 49, 50, 51, 75, 90, 95, 99, 100])
def test_quality_read_back_from_file(tmp_path, quality):
    data = encode_jpeg(float_to_uint8(_image()), quality)
    assert jpeg_quality_from_file(data) == quality
    path = tmp_path / "q.jpg"
    path.write_bytes(data)
    assert jpeg_quality_from_file(path) == quality


def test_quality_of_non_jpeg_is_an_error(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(ImageError, match="quantisation"):
        jpeg_quality_from_file(path)
    with pytest.raises(ImageError, match="<bytes>"):
        jpeg_quality_from_file(b"not an image")


def test_jpeg_range_draws_cover_range_as_integers():
    step = parse_distortion("jpeg:70-100").steps[0]
    rng = np.random.default_rng(0)
    draws = [step.draw(rng) for _ in range(2000)]
    assert all(type(value) is int for value in draws)
    assert set(draws) == set(range(70, 101))


def test_jpeg_range_applies_the_drawn_quality():
    image = _image()
    distortion = parse_distortion("jpeg:70-100")
    quality = distortion.steps[0].draw(np.random.default_rng(5))
    expected = parse_distortion(f"jpeg:{quality}")(image, np.random.default_rng(0))
    np.testing.assert_array_equal(distortion(image, np.random.default_rng(5)), expected)


def test_double_jpeg_differs_from_single():
    image = _image()
    rng = np.random.default_rng(0)
    double = parse_distortion("jpeg:90,jpeg:75")(image, rng)
    single = parse_distortion("jpeg:75")(image, rng)
    assert not np.array_equal(double, single)


def test_same_seed_same_output_and_different_seed_differs():
    image = _image()
    distortion = parse_distortion("resize:0.5-0.9,blur:0.5-1.5,noise:5,jpeg:70-100,webp:50-90")
    first = distortion(image, np.random.default_rng(7))
    second = distortion(image, np.random.default_rng(7))
    other = distortion(image, np.random.default_rng(8))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_identity_specs():
    image = _image()
    for spec in ("none", "", "  NONE "):
        distortion = parse_distortion(spec)
        assert distortion == Distortion() and str(distortion) == "none"
        result = distortion(image, np.random.default_rng(0))
        np.testing.assert_array_equal(result, image)
        assert result is not image


def test_individual_kinds_change_the_image_but_keep_shape():
    image = _image()
    for spec in ("resize:0.5", "resize:1.5", "blur:1.0", "noise:5", "webp:80"):
        result = parse_distortion(spec)(image, np.random.default_rng(0))
        assert result.shape == image.shape and result.dtype == np.float32, spec
        assert not np.array_equal(result, image), spec
    blur0 = parse_distortion("blur:0")(image, np.random.default_rng(0))
    np.testing.assert_array_equal(blur0, image)


@pytest.mark.parametrize(
    "spec",
    ["jpeg:75", "jpeg:70-100", "resize:0.5", "blur:1.0", "noise:5.0", "webp:80",
     "resize:0.75,jpeg:80", "jpeg:90,jpeg:75", "blur:0.5-2.0", "none"],
)  # fmt: skip
def test_spec_round_trips(spec):
    distortion = parse_distortion(spec)
    assert str(distortion) == spec
    assert parse_distortion(str(distortion)) == distortion


def test_parse_is_lenient_on_case_and_spaces():
    assert str(parse_distortion(" JPEG:80 , Resize : 0.5 ")) == "jpeg:80,resize:0.5"
    assert parse_distortion("blur:1") == parse_distortion("blur:1.0")
    assert str(parse_distortion("blur:1e-3-2")) == "blur:0.001-2.0"


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("jpeg:101", "jpeg:101"),
        ("jpeg:0", "jpeg:0"),
        ("jpeg:abc", "jpeg:abc"),
        ("jpeg:7.5", "jpeg:7.5"),
        ("foo:1", "foo:1"),
        ("jpeg", "jpeg"),
        ("resize:0", "resize:0"),
        ("noise:-1", "noise:-1"),
        ("jpeg:90-80", "jpeg:90-80"),
        ("jpeg:80,,blur:1", ""),
        ("blur:1e-3.5", "blur:1e-3.5"),
        ("jpeg:1e2", "jpeg:1e2"),
    ],
)
def test_parse_errors_name_token_and_list_kinds(spec, bad):
    with pytest.raises(ValueError) as caught:
        parse_distortion(spec)
    message = str(caught.value)
    assert repr(bad) in message
    for kind in ("jpeg", "webp", "resize", "blur", "noise"):
        assert kind in message


def test_call_rejects_wrong_arrays():
    distortion = parse_distortion("jpeg:75")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="float32"):
        distortion(_image().astype(np.float64), rng)
    with pytest.raises(ValueError, match="float32"):
        distortion(np.zeros((8, 8), dtype=np.float32), rng)


def test_distort_tensor_single_and_batch():
    images = np.stack([_image(seed=0), _image(seed=1)])
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).double()
    distortion = parse_distortion("noise:3,jpeg:70-100")
    out = distort_tensor(batch, distortion, np.random.default_rng(4))
    assert out.shape == batch.shape and out.dtype == torch.float64
    rng = np.random.default_rng(4)
    for item, image in zip(out, images):
        expected = distortion(image, rng)
        np.testing.assert_allclose(item.numpy().transpose(1, 2, 0), expected, atol=1e-7)
    single = distort_tensor(batch[0].float(), "jpeg:75", np.random.default_rng(0))
    assert single.shape == (3, 32, 48) and single.dtype == torch.float32
    with pytest.raises(ValueError, match="expected"):
        distort_tensor(batch[:, :2], distortion, np.random.default_rng(0))


_steps = st.one_of(
    st.integers(1, 100).map(lambda q: f"jpeg:{q}"),
    st.integers(0, 100).map(lambda q: f"webp:{q}"),
    st.floats(0.05, 4.0).map(lambda f: f"resize:{f!r}"),
    st.floats(0.0, 5.0).map(lambda s: f"blur:{s!r}"),
    st.floats(0.0, 255.0).map(lambda s: f"noise:{s!r}"),
    st.tuples(st.integers(1, 100), st.integers(1, 100)).map(lambda qs: f"jpeg:{min(qs)}-{max(qs)}"),
)


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(_steps, min_size=1, max_size=4),
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_chain_keeps_shape_dtype_and_range(specs, height, width, seed):
    distortion = parse_distortion(",".join(specs))
    assert parse_distortion(str(distortion)) == distortion
    image = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    result = distortion(image, np.random.default_rng(seed))
    assert result.shape == image.shape
    assert result.dtype == np.float32
    assert np.isfinite(result).all()
    assert result.min() >= 0.0 and result.max() <= 1.0


def test_step_is_public_and_formats():
    assert str(Step("jpeg", 70, 100)) == "jpeg:70-100"
    assert str(Distortion((Step("resize", 0.5, 0.5), Step("jpeg", 80, 80)))) == "resize:0.5,jpeg:80"


def test_step_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown distortion kind"):
        Step("sharpen", 1, 1)


# --- kinds of the robustness grids -------------------------------------------------------


def test_gaussblur_uses_opencv_kernel_sigma_as_albumentations():
    image = _image()
    expected = cv2.GaussianBlur(image, (7, 7), 0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(parse_distortion("gaussblur:7")(image, np.random.default_rng(0)), expected)
    np.testing.assert_array_equal(parse_distortion("gaussblur:0")(image, np.random.default_rng(0)), image)
    with pytest.raises(ValueError, match="even"):
        parse_distortion("gaussblur:4")


def test_gaussnoise_has_the_variance_asked_for():
    flat = np.full((200, 200, 3), 0.5, dtype=np.float32)
    noisy = parse_distortion("gaussnoise:23")(flat, np.random.default_rng(0))
    assert ((noisy - flat) * 255).var() == pytest.approx(23, rel=0.05)


def test_jpegshift_is_a_jpeg_on_a_shifted_grid():
    image = _image(64, 64)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        dy, dx = (int(rng.integers(1, 7, endpoint=True)) for _ in range(2))  # the draws jpegshift makes
        padded = np.pad(float_to_uint8(image), ((dy, 0), (dx, 0), (0, 0)), mode="edge")
        decoded = np.asarray(Image.open(io.BytesIO(encode_jpeg(padded, 70))).convert("RGB"), dtype=np.float32) / 255
        shifted = parse_distortion("jpegshift:70")(image, np.random.default_rng(seed))
        np.testing.assert_array_equal(shifted, decoded[dy:, dx:])
        aligned = parse_distortion("jpeg:70")(image, np.random.default_rng(seed))
        assert not np.array_equal(shifted, aligned)


def test_social_caps_the_long_side_then_compresses_and_keeps_the_size():
    image = _image(60, 100)
    capped = parse_distortion("social:50")(image, np.random.default_rng(0))
    assert capped.shape == image.shape and capped.dtype == np.float32
    quality = int(np.random.default_rng(0).integers(70, 85, endpoint=True))
    # an image already within the cap is only compressed, at a quality drawn from 70..85
    uncapped = parse_distortion("social:2048")(image, np.random.default_rng(0))
    np.testing.assert_array_equal(uncapped, parse_distortion(f"jpeg:{quality}")(image, np.random.default_rng(0)))
    assert np.abs(capped - image).mean() > np.abs(uncapped - image).mean()  # the downscale loses detail


def test_mix_draws_each_alternative_and_round_trips():
    mix = parse_distortion(" jpeg:50 | none | blur:2 ")
    assert isinstance(mix, DistortionMix)
    assert str(mix) == "jpeg:50 | none | blur:2.0" and parse_distortion(str(mix)) == mix
    image = _image(seed=3)
    chains = [parse_distortion(spec) for spec in ("jpeg:50", "none", "blur:2")]
    seen = set()
    for seed in range(40):
        result = mix(image, np.random.default_rng(seed))
        matches = [
            i for i, chain in enumerate(chains) if np.array_equal(result, chain(image, np.random.default_rng(0)))
        ]
        assert len(matches) == 1, f"seed {seed}: output equals {len(matches)} alternatives"
        seen.add(matches[0])
    assert seen == {0, 1, 2}


def test_mix_is_seeded_and_works_on_tensors():
    mix = parse_distortion("jpeg:30-90 | resize:0.5,jpeg:60")
    batch = torch.rand(4, 3, 24, 24)
    first = distort_tensor(batch, mix, np.random.default_rng(1))
    np.testing.assert_array_equal(first, distort_tensor(batch, str(mix), np.random.default_rng(1)))
    assert first.shape == batch.shape and not torch.equal(first, batch)


@pytest.mark.parametrize("spec", ["jpeg:50 |", "| none", "jpeg:50 || none"])
def test_mix_rejects_empty_alternatives(spec):
    with pytest.raises(ValueError, match="empty alternative"):
        parse_distortion(spec)


def test_mix_rejects_bad_alternative_naming_it():
    with pytest.raises(ValueError, match="sharpen"):
        parse_distortion("jpeg:50 | sharpen:2")
    with pytest.raises(ValueError, match="at least two"):
        DistortionMix((Distortion(),))
