"""The analyst's batch tool: ``localize_files`` and ``pipeline_from_weights``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import build_cached
from reloc.engine.inference import Pipeline
from reloc.engine.localize import (
    LocalizeSummary,
    expand_inputs,
    image_report,
    localize_files,
    pipeline_from_weights,
    unique_stems,
)
from reloc.models.weights import WeightsError, save_network

OUTPUT_SUFFIXES = ("_heatmap.png", "_mask.png", "_overlay.png", ".json")
JSON_KEYS = {
    "file", "size", "tampered_fraction", "max_probability", "mean_probability",
    "image_score", "threshold", "window", "stride", "seconds",
}  # fmt: skip


def _localizer():
    return build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()


def _restorer():
    return build_cached("restorer", "scunet", preset="tiny").eval()


def _png_bytes(seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "alpha.png").write_bytes(_png_bytes(1))
    (folder / "beta.png").write_bytes(_png_bytes(2, (64, 72)))
    (folder / "cut.png").write_bytes(_png_bytes(3)[: len(_png_bytes(3)) // 2])
    (folder / "letter.jpg").write_text("Dear analyst, this is not a JPEG.\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image suffix: skipped in folders")
    return folder


def test_folder_with_good_and_bad_files(mixed_folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = localize_files([str(mixed_folder)], Pipeline(None, _localizer()), out, progress=False)
    assert [p.name for p in summary.processed] == ["alpha.png", "beta.png"]
    assert not summary.ok
    reasons = {Path(path).name: reason for path, reason in summary.failed}
    assert set(reasons) == {"cut.png", "letter.jpg", "empty.png"}
    assert "truncated" in reasons["cut.png"]
    assert "not an image" in reasons["letter.jpg"]
    assert "empty" in reasons["empty.png"]
    report = summary.report()
    for name, reason in reasons.items():
        assert name in report and reason in report

    for stem, size in (("alpha", [96, 80]), ("beta", [64, 72])):
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{stem}{suffix}").is_file()
        assert not (out / f"{stem}_restored.png").exists()
        numbers = json.loads((out / f"{stem}.json").read_text())
        assert set(numbers) == JSON_KEYS
        assert numbers["file"] == str(mixed_folder / f"{stem}.png")
        assert numbers["size"] == size
        assert 0.0 <= numbers["tampered_fraction"] <= 1.0
        assert 0.0 <= numbers["mean_probability"] <= numbers["image_score"] <= numbers["max_probability"] <= 1.0
        assert (numbers["threshold"], numbers["window"], numbers["stride"]) == (0.5, 512, 512)
        assert numbers["seconds"] >= 0.0
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        assert mask.shape == tuple(size) and set(np.unique(mask)) <= {0, 255}
        assert np.count_nonzero(mask) / mask.size == pytest.approx(numbers["tampered_fraction"])
        for kind in ("heatmap", "overlay"):
            assert np.asarray(Image.open(out / f"{stem}_{kind}.png")).shape == (*size, 3)
    assert not any(out.glob("cut*")) and not any(out.glob("letter*")) and not any(out.glob("empty*"))


def test_mask_and_fraction_follow_the_threshold(mixed_folder: Path, tmp_path: Path):
    pipeline = Pipeline(None, _localizer())
    image = str(mixed_folder / "alpha.png")
    localize_files([image], pipeline, tmp_path / "low", threshold=0.0, progress=False)
    localize_files([image], pipeline, tmp_path / "high", threshold=1.0, progress=False)
    assert json.loads((tmp_path / "low" / "alpha.json").read_text())["tampered_fraction"] == 1.0
    assert json.loads((tmp_path / "high" / "alpha.json").read_text())["tampered_fraction"] == 0.0
    assert np.all(np.asarray(Image.open(tmp_path / "low" / "alpha_mask.png")) == 255)
    assert np.all(np.asarray(Image.open(tmp_path / "high" / "alpha_mask.png")) == 0)


def test_glob_missing_path_and_empty_pattern(mixed_folder: Path, tmp_path: Path):
    inputs = [str(mixed_folder / "a*.png"), str(tmp_path / "nowhere.png"), str(tmp_path / "*.tif")]
    summary = localize_files(inputs, Pipeline(None, _localizer()), tmp_path / "out", progress=False)
    assert [p.name for p in summary.processed] == ["alpha.png"]
    assert summary.failed == [
        (inputs[1], "no such file or folder"),
        (inputs[2], "the pattern matches no file"),
    ]
    assert "nowhere.png" in summary.report()


def test_folder_without_images_fails(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    files, failed = expand_inputs([str(tmp_path / "docs")])
    assert files == [] and len(failed) == 1 and "no image file" in failed[0][1]


def test_a_file_reached_twice_runs_once(mixed_folder: Path):
    files, failed = expand_inputs([str(mixed_folder / "alpha.png"), str(mixed_folder), str(mixed_folder / "*.png")])
    assert [f.name for f in files] == ["alpha.png", "beta.png", "cut.png", "empty.png", "letter.jpg"]
    assert failed == []


def test_stem_collisions_do_not_overwrite(tmp_path: Path):
    for folder, seed in (("one", 1), ("two", 2), ("three", 3)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.png").write_bytes(_png_bytes(seed))
    (tmp_path / "one" / "photo-1.png").write_bytes(_png_bytes(4))
    inputs = [str(tmp_path / name) for name in ("one", "two", "three")]
    out = tmp_path / "out"
    summary = localize_files(inputs, Pipeline(None, _localizer()), out, progress=False)
    assert summary.ok and len(summary.processed) == 4
    files = {json.loads(path.read_text())["file"] for path in out.glob("*.json")}
    assert files == {str(path) for path in summary.processed}
    stems = sorted(path.stem for path in out.glob("*.json"))
    assert stems == ["photo", "photo-1", "photo-2", "photo-3"]  # one/photo-1.png sorts first


def test_unique_stems():
    paths = [Path("a/x.png"), Path("b/x.jpg"), Path("c/X.png"), Path("d/x-1.png"), Path("e/y.png")]
    assert unique_stems(paths) == ["x", "x-1", "X-2", "x-1-1", "y"]


def test_image_report_by_hand():
    probabilities = np.zeros((10, 20), dtype=np.float32)
    probabilities[0, :4] = [0.9, 0.8, 0.7, 0.6]  # top 1% of 200 pixels = 2 pixels
    numbers = image_report(probabilities, threshold=0.65)
    assert numbers["size"] == [10, 20]
    assert numbers["tampered_fraction"] == pytest.approx(3 / 200)
    assert numbers["max_probability"] == pytest.approx(0.9)
    assert numbers["mean_probability"] == pytest.approx(3.0 / 200)
    assert numbers["image_score"] == pytest.approx(0.85)


def test_summary_ok_and_report():
    summary = LocalizeSummary(processed=[Path("a.png")])
    assert summary.ok and "1 image(s), 0 failed" in summary.report()


def test_pipeline_from_weights_matches_in_memory_pipeline(tmp_path: Path):
    localizer, restorer = _localizer(), _restorer()
    localizer_path = save_network(localizer, tmp_path / "dfcn.safetensors")
    restorer_path = save_network(restorer, tmp_path / "scunet.safetensors")
    loaded = pipeline_from_weights(localizer_path, restorer_path, device="cpu")
    assert not loaded.training
    image = torch.rand(3, 40, 48)
    expected = Pipeline(restorer, localizer).predict(image)
    torch.testing.assert_close(loaded.predict(image), expected, rtol=0, atol=1e-6)
    without_restorer = pipeline_from_weights(localizer_path)
    assert without_restorer.restorer is None
    torch.testing.assert_close(without_restorer.predict(image), Pipeline(None, localizer).predict(image))
    with pytest.raises(WeightsError, match="not a localizer"):
        pipeline_from_weights(restorer_path)


def test_save_restored_with_sliding_windows(mixed_folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    pipeline = Pipeline(_restorer(), _localizer())
    summary = localize_files(
        [str(mixed_folder / "alpha.png")], pipeline, out, window=64, stride=48, save_restored=True, progress=False
    )
    assert summary.ok
    restored = np.asarray(Image.open(out / "alpha_restored.png"))
    assert restored.shape == (96, 80, 3)
    numbers = json.loads((out / "alpha.json").read_text())
    assert (numbers["window"], numbers["stride"]) == (64, 48)
