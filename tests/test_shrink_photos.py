"""benchmarks/shrink_photos.py: the small copy of the photos that travels to a GPU machine
makes the same data as the photos themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from conftest import load_benchmark
from reloc.data.synth import synthesize
from reloc.data.synth.settings import SynthSettings


@pytest.fixture(scope="module")
def shrink():
    return load_benchmark("shrink_photos.py", "shrink_photos")


def _photos(folder: Path, names: tuple[str, ...]) -> list[Path]:
    (folder / "set").mkdir(parents=True)
    paths = []
    for name in names:
        paths.append(folder / "set" / f"{name}.png")
        Image.fromarray(np.asarray(getattr(skimage_data, name)())[..., :3]).save(paths[-1])
    return paths


def test_the_copy_shrinks_large_photos_and_copies_the_rest_byte_for_byte(shrink, tmp_path):
    _photos(tmp_path / "photos", ("chelsea", "coffee"))  # short sides 300 and 400
    counts = shrink.shrink_photos(tmp_path / "photos", tmp_path / "copy", size=320)
    assert counts == {"shrunk": 1, "copied": 1}
    kept = tmp_path / "copy" / "set" / "chelsea.png"
    assert kept.read_bytes() == (tmp_path / "photos" / "set" / "chelsea.png").read_bytes()
    with Image.open(tmp_path / "copy" / "set" / "coffee.png") as image:
        assert image.size == (480, 320) and image.mode == "RGB"


def test_data_made_from_the_copy_is_the_data_made_from_the_photos(shrink, tmp_path):
    originals = _photos(tmp_path / "photos", ("astronaut", "chelsea", "coffee"))
    shrink.shrink_photos(tmp_path / "photos", tmp_path / "copy", size=160)
    settings = SynthSettings(enlarge_hosts=False, val_fraction=0.0, test_fraction=0.0)
    for source, out in ((tmp_path / "photos", "a"), (tmp_path / "copy", "b")):
        photos = [str(source / "set" / p.name) for p in originals]
        synthesize(photos, tmp_path / out, count=12, seed=3, size=160, settings=settings, workers=1, progress=False)
    made = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(made) == 24
    for name in made:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_missing_photo_folder_is_a_clear_error(shrink, tmp_path, capsys):
    assert shrink.main([str(tmp_path / "copy"), "--photos", str(tmp_path / "none")]) == 2
    assert "photo folder" in capsys.readouterr().err
