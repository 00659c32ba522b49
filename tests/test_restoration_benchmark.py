"""benchmarks/restoration.py: PSNR / SSIM of a restorer's output and of its JPEG input against the
lossless photo, gains over photos, on a toy set checked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import build_cached, load_benchmark


@pytest.fixture()
def bench(monkeypatch):
    return load_benchmark("restoration.py", "restoration", monkeypatch)


def toy_photos() -> dict[str, np.ndarray]:
    """Two 32 x 24 photos: smooth gradients with a little texture (JPEG changes them)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:32, 0:24]
    photos = {}
    for name, tilt in (("a.png", 3.0), ("b.png", 5.0)):
        base = np.stack([x * tilt, y * tilt, (x + y) * tilt / 2], axis=-1) + rng.normal(0, 6, (32, 24, 3))
        photos[name] = np.clip(base + 40, 0, 255).astype(np.uint8)
    return photos


def hand_psnr(reference: np.ndarray, image: np.ndarray) -> float:
    mse = np.mean((reference.astype(np.float64) - image.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def test_the_figures_and_gains_of_a_two_photo_toy_set_match_a_hand_computation(bench):
    photos = toy_photos()

    def brighter(image: np.ndarray) -> np.ndarray:  # a "restorer" that adds 2 to every value, as floats
        return np.clip(image.astype(np.float64) + 2, 0, 255) / 255.0

    rows = bench.measure(photos, (75,), {"identity": lambda image: image, "brighter": brighter})
    assert [row["photo"] for row in rows["jpeg"]["75"]] == ["a.png", "b.png"]
    psnr_in, psnr_out = [], []
    for index, photo in enumerate(photos.values()):
        compressed = bench.jpeg(photo, 75)
        assert compressed.shape == photo.shape and not np.array_equal(compressed, photo)
        psnr_in.append(hand_psnr(photo, compressed))
        psnr_out.append(hand_psnr(photo, np.clip(compressed.astype(int) + 2, 0, 255)))
        assert rows["jpeg"]["75"][index]["psnr"] == pytest.approx(psnr_in[-1], abs=1e-9)
        assert rows["brighter"]["75"][index]["psnr"] == pytest.approx(psnr_out[-1], abs=1e-9)
        assert rows["identity"]["75"][index] == rows["jpeg"]["75"][index]
    summary = bench.summarise(rows["brighter"]["75"], rows["jpeg"]["75"])
    gains = [out - base for out, base in zip(psnr_out, psnr_in, strict=True)]
    assert summary["psnr"] == pytest.approx(np.mean(psnr_out), abs=1e-4)
    assert summary["psnr_gain"] == pytest.approx(np.mean(gains), abs=1e-4)
    low, high = summary["psnr_gain_interval"]  # resampling two photos: between their gains
    assert min(gains) - 1e-4 <= low <= high <= max(gains) + 1e-4
    assert summary["psnr_gain_photos_above_zero"] == sum(g > 0 for g in gains)
    same = bench.summarise(rows["identity"]["75"], rows["jpeg"]["75"])
    assert same["psnr_gain"] == 0 and same["ssim_gain"] == 0 and same["psnr_gain_interval"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="not of the same photos"):
        bench.summarise(rows["brighter"]["75"][::-1], rows["jpeg"]["75"])


def test_centre_crops_and_verdicts(bench):
    image = np.arange(10 * 7 * 3).reshape(10, 7, 3)
    crop = bench.center_crop(image, 4)
    assert crop.shape == (4, 4, 3) and np.array_equal(crop, image[3:7, 1:5])
    assert bench.center_crop(image, 512).shape == image.shape
    assert bench.verdict(75, 0.9) == "met (>= +0.8 dB)" and bench.verdict(75, 1.2).startswith("moonshot met")
    assert bench.verdict(90, 0.1) == "missed (>= +0.5 dB)" and bench.verdict(50, 3.0) == ""


def test_a_restorer_row_is_added_beside_the_rows_measured_before(bench, tmp_path, monkeypatch):
    """End to end on the toy photos with a tiny random restorer file: a second invocation with
    another label keeps the first one's row; the Markdown table has both."""
    from reloc.models.weights import save_network

    names = []
    for name, photo in toy_photos().items():
        Image.fromarray(photo).save(tmp_path / name)
        names.append(name)
    monkeypatch.setattr(bench, "test_photos", lambda: [str(tmp_path / n) for n in names])
    monkeypatch.setattr(bench, "test_photo_names", lambda: names)
    weights = save_network(build_cached("restorer", "scunet", preset="tiny"), tmp_path / "restorer.safetensors")
    out = tmp_path / "restoration.json"
    assert bench.main(["--restorer", f"one={weights}", "--no-classical", "--out", str(out)]) == 0
    assert (
        bench.main(["--restorer", f"two={tmp_path / 'restorer.safetensors'}", "--no-classical", "--out", str(out)]) == 0
    )
    results = json.loads(out.read_text())
    assert list(results["restorers"]) == ["one", "two"]
    assert results["restorers"]["one"]["summary"] == results["restorers"]["two"]["summary"]  # the same weights
    assert results["restorers"]["one"]["window"] == [512, 512] and results["protocol"]["photos"] == names
    assert set(results["jpeg"]) == {"50", "60", "75", "90", "95"}
    page = out.with_suffix(".md").read_text()
    assert "## one" in page and "## two" in page and "| 75 |" in page
    with pytest.raises(SystemExit, match="expected LABEL=PATH"):
        bench.main(["--restorer", "nolabel", "--no-classical", "--out", str(out)])
