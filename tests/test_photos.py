"""Tests of reloc.data.photos: finding the pristine photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reloc.data.photos import DEFAULT_PHOTO_NAMES, list_photos, photo_ids


def _png(path: Path, colour=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(path)
    return path


def test_default_finds_lossless_colour_photos_in_skimage():
    photos = list_photos("default")
    assert len(photos) >= 3
    assert [p.name for p in photos] == [n for n in DEFAULT_PHOTO_NAMES if n in {p.name for p in photos}]
    for path in photos:
        assert path.is_file()
        assert "skimage" in path.parts
        with Image.open(path) as image:
            assert image.format == "PNG"  # lossless
            assert image.mode == "RGB"  # colour, no alpha
            pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
        # really colour, not grey stored as RGB
        assert np.abs(pixels[..., 0] - pixels[..., 1]).mean() > 1.0
        assert min(pixels.shape[:2]) >= 256


def test_folder_is_searched_recursively_and_sorted(tmp_path):
    _png(tmp_path / "b" / "z.png")
    _png(tmp_path / "a.PNG")
    _png(tmp_path / "b" / "c" / "y.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "d.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    _png(tmp_path / ".hidden" / "x.png")
    _png(tmp_path / ".dot.png")
    found = list_photos(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.PNG", "b/c/y.png", "b/z.png", "d.jpg"]
    assert list_photos(str(tmp_path)) == found


def test_single_file(tmp_path):
    path = _png(tmp_path / "one.png")
    assert list_photos(path) == [path]


def test_empty_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match="no image files") as info:
        list_photos(empty)
    assert str(empty) in str(info.value)


def test_missing_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="does not exist") as info:
        list_photos(missing)
    assert str(missing) in str(info.value)


def test_non_image_file_is_an_error(tmp_path):
    text = tmp_path / "list.txt"
    text.write_text("a.png\n")
    with pytest.raises(ValueError, match="not an image file"):
        list_photos(text)


def test_photo_ids_are_relative_to_the_common_folder(tmp_path):
    paths = [_png(tmp_path / "kodak" / "k1.png"), _png(tmp_path / "wiki" / "001.png")]
    assert photo_ids(paths) == ["kodak/k1.png", "wiki/001.png"]
    assert photo_ids(paths[:1]) == ["k1.png"]
    assert photo_ids([]) == []
    with pytest.raises(ValueError):
        photo_ids([paths[0], paths[0]])
