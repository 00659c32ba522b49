"""Tests for reloc.data.io: readers, writer, and every kind of bad file."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from reloc.data.io import (
    ImageError,
    float_to_uint8,
    orient,
    read_image,
    read_mask,
    to_numpy,
    to_tensor,
    write_png,
)


def _rgb(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def png_path(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(_rgb()).save(path)
    return path


@pytest.fixture
def jpeg_path(tmp_path):
    path = tmp_path / "image.jpg"
    Image.fromarray(_rgb(64, 64)).save(path, quality=90)
    return path


def test_reads_8bit_rgb_exactly(png_path):
    image = read_image(png_path)
    assert image.dtype == np.float32 and image.shape == (20, 30, 3)
    np.testing.assert_array_equal(float_to_uint8(image), _rgb())


def test_image_error_names_file_and_reason(tmp_path):
    error = ImageError(tmp_path / "x.png", "broken")
    assert error.path == str(tmp_path / "x.png") and error.reason == "broken"
    assert str(error) == f"{tmp_path / 'x.png'}: broken"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.mkdir(), "directory"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, I am not a JPEG\n"), "not an image"),
    ],
    ids=["missing", "directory", "empty", "text-named-jpg"],
)
def test_bad_files_raise_image_error(tmp_path, make, reason):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageError) as caught:
        read_image(path)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason


@pytest.mark.parametrize("fixture", ["png_path", "jpeg_path"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_files_are_errors(request, tmp_path, fixture, fraction):
    source = request.getfixturevalue(fixture)
    data = source.read_bytes()
    path = tmp_path / f"truncated{source.suffix}"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageError, match="truncated"):
        read_image(path)


def test_corrupt_png_bytes_are_errors(tmp_path, png_path):
    data = bytearray(png_path.read_bytes())
    data[100] ^= 0xFF  # inside the compressed pixel data
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt.png"):
        read_image(path)


def test_pixel_cap_is_checked_before_decoding(png_path):
    with pytest.raises(ImageError, match="over the cap of 100"):
        read_image(png_path, max_pixels=100)
    with pytest.raises(ImageError, match="over the cap"):
        read_mask(png_path, max_pixels=100)
    assert read_image(png_path, max_pixels=None).shape == (20, 30, 3)


def test_pillow_bomb_error_becomes_image_error_naming_our_option(png_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # hard limit 200 < 600 pixels
    with pytest.raises(ImageError, match="--max-pixels") as caught:
        read_image(png_path, max_pixels=None)
    assert "MAX_IMAGE_PIXELS" not in str(caught.value)


def test_a_cap_below_pillows_limit_is_named_not_pillows_advice(png_path, monkeypatch):
    """An image over Pillow's hard limit and over the user's smaller cap: the refusal quotes the cap."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="over the cap of 300 pixels") as caught:
        read_image(png_path, max_pixels=300)
    assert "--max-pixels" in str(caught.value) and "decompression bomb DOS" not in str(caught.value)


def test_a_tiny_file_declaring_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    from reloc.data import io as io_module
    from reloc.limits import expansion_problem

    path = tmp_path / "flat.png"
    Image.new("RGB", (5000, 4000), (10, 200, 30)).save(path)  # 20 Mpx, about 60 kB
    monkeypatch.setattr(io_module, "_pil_to_array", lambda *a: pytest.fail("decoded"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw Pillow warning either
        with pytest.raises(ImageError, match="decompression bomb") as caught:
            read_image(path, max_expansion=400)
    assert "--max-pixels" in str(caught.value) and "flat.png" in str(caught.value)
    assert expansion_problem(5000, 4000, 60_000_000) is None, "a photograph's file size passes"
    assert expansion_problem(3000, 3000, 1000) is None, "small images are never refused for it"


def test_pillow_bomb_warning_is_superseded_by_our_cap(png_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # warns over 500, fails over 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(png_path, max_pixels=None).shape == (20, 30, 3)


def test_16bit_gray_png(tmp_path):
    values = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 109).astype(np.uint16)
    path = tmp_path / "gray16.png"
    assert cv2.imwrite(str(path), values)
    image = read_image(path)
    assert image.shape == (20, 30, 3)
    np.testing.assert_allclose(image[..., 1], values / 65535.0, atol=1e-7)


def test_16bit_rgb_png_keeps_all_bits_in_rgb_order(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb[..., ::-1])  # OpenCV writes BGR
    np.testing.assert_allclose(read_image(path), rgb / 65535.0, atol=1e-7)


def test_16bit_rgba_png_composited(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint16)
    rgba[..., 0] = 65535  # red
    rgba[:2, ..., 3] = 65535  # top rows opaque, bottom rows transparent
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3]])
    image = read_image(path)
    np.testing.assert_allclose(image[0, 0], [1, 0, 0])
    np.testing.assert_allclose(image[3, 0], [1, 1, 1])


def test_palette_with_transparency_composites_over_white(tmp_path):
    pixels = np.zeros((6, 6, 3), dtype=np.uint8)
    pixels[:3] = (0, 0, 255)
    palette = Image.fromarray(pixels).convert("P")
    transparent = palette.getpixel((0, 5))  # the black entry
    path = tmp_path / "palette.png"
    palette.save(path, transparency=transparent)
    with Image.open(path) as stored:
        assert stored.mode == "P"
    image = read_image(path)
    np.testing.assert_allclose(image[0, 0], [0, 0, 1])
    np.testing.assert_allclose(image[5, 5], [1, 1, 1])
    np.testing.assert_allclose(read_image(path, alpha="drop")[5, 5], [0, 0, 0])


def test_rgba_composite_white_or_drop(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = [[255, 0], [51, 255]]
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    white = read_image(path)
    np.testing.assert_allclose(white[0, 0], [0, 200 / 255, 0], atol=1e-6)
    np.testing.assert_allclose(white[0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(white[1, 0], [0.8, 0.2 * 200 / 255 + 0.8, 0.8], atol=1e-6)
    np.testing.assert_allclose(read_image(path, alpha="drop")[0, 1], [0, 200 / 255, 0], atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        read_image(path, alpha="black")


def test_la_gray_and_bilevel(tmp_path):
    Image.new("LA", (3, 2), (100, 255)).save(tmp_path / "la.png")
    Image.new("L", (3, 2), 100).save(tmp_path / "l.png")
    Image.new("1", (3, 2), 1).save(tmp_path / "one.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), 100 / 255, atol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "l.png"), 100 / 255, atol=1e-6)
    np.testing.assert_array_equal(read_image(tmp_path / "one.png"), 1.0)


def test_integer_and_float_tiff_modes(tmp_path):
    Image.new("I", (3, 2), 65535 // 5).save(tmp_path / "i.tif")
    Image.new("F", (3, 2), 0.25).save(tmp_path / "f.tif")
    np.testing.assert_allclose(read_image(tmp_path / "i.tif"), 0.2, atol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "f.tif"), 0.25, atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[:, :12] = (200, 40, 40)
    rgb[:, 12:] = (40, 40, 200)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    with Image.open(path) as stored:
        assert stored.mode == "CMYK"
    image = read_image(path)
    assert image.shape == (16, 24, 3)
    assert np.abs(image - rgb / 255.0).mean() < 0.05


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[:5, :5] = 255  # white block at the top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    image = read_image(path)
    assert image.shape == (30, 20, 3)
    assert image[:5, -5:].mean() > 0.9 and image[-5:, :5].mean() < 0.1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_numpy_orientation_matches_pillow(orientation):
    rgb = _rgb(4, 6)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    np.testing.assert_array_equal(orient(rgb, orientation), expected)


def test_read_mask_binarises_above_127_5(tmp_path):
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1]])


def test_read_mask_16bit_scaled_to_8bit(tmp_path):
    values = np.array([[0, 127 * 257, 128 * 257, 65535]], dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "m16.png"), values)
    np.testing.assert_array_equal(read_mask(tmp_path / "m16.png"), [[0, 0, 1, 1]])


def test_read_mask_rgb_and_rgba(tmp_path):
    rgb = np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), [[1, 0, 0]])
    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.png"), [[1, 0]])


def test_read_mask_wrong_size_names_mask_and_sizes(tmp_path):
    Image.new("L", (30, 20)).save(tmp_path / "mask.png")
    assert read_mask(tmp_path / "mask.png", size=(20, 30)).shape == (20, 30)
    with pytest.raises(ImageError) as caught:
        read_mask(tmp_path / "mask.png", size=(30, 20))
    assert "mask.png" in str(caught.value)
    assert "20x30" in str(caught.value) and "30x20" in str(caught.value)


def test_read_mask_bad_file(tmp_path):
    (tmp_path / "mask.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_mask(tmp_path / "mask.png")


def test_write_png_float_uint8_bool(tmp_path):
    image = np.random.default_rng(2).random((5, 7, 3), dtype=np.float32)
    write_png(tmp_path / "f.png", image)
    written = read_image(tmp_path / "f.png")
    np.testing.assert_array_equal(float_to_uint8(written), float_to_uint8(image))
    write_png(tmp_path / "u.png", _rgb(5, 7))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "u.png")), _rgb(5, 7))
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:5] = True
    write_png(tmp_path / "m.png", mask)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "m.png")))) == {0, 255}
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_write_png_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "out.png"
    write_png(path, np.zeros((3, 3), dtype=np.uint8))
    write_png(path, np.full((3, 3), 255, dtype=np.uint8))
    assert np.asarray(Image.open(path)).min() == 255
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_png_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "x.png", np.zeros((3, 3, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "x.png", np.full((3, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="int64"):
        write_png(tmp_path / "x.png", np.zeros((3, 3), dtype=np.int64))
    assert list(tmp_path.iterdir()) == []


def test_float_to_uint8_rounds():
    values = np.array([0.4 / 255, 0.6 / 255, 254.5001 / 255, 1.2, -0.1], dtype=np.float32)
    np.testing.assert_array_equal(float_to_uint8(values), [0, 1, 255, 255, 0])


def test_tensor_round_trip():
    image = np.random.default_rng(3).random((4, 6, 3), dtype=np.float32)
    tensor = to_tensor(image)
    assert tensor.shape == (3, 4, 6) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(to_numpy(tensor), image)
    assert to_tensor(np.zeros((4, 6), dtype=np.float32)).shape == (1, 4, 6)


def test_truncated_images_are_not_loaded_silently():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
