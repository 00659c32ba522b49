"""The analyst's batch tool: ``localize_files`` and ``pipeline_from_weights``."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reloc
from conftest import build_cached
from reloc.engine import detection
from reloc.engine.inference import Pipeline, pipeline_from_weights
from reloc.engine.localize import (
    LocalizeSummary,
    expand_inputs,
    image_report,
    localize_files,
    unique_stems,
)
from reloc.models.weights import WeightsError, save_network

OUTPUT_SUFFIXES = ("_heatmap.png", "_mask.png", "_overlay.png", ".json")
JSON_KEYS = {
    "file", "size", "tampered_fraction", "max_probability", "mean_probability",
    "image_score", "detection", "threshold", "window", "stride", "inference", "seconds",
    "input", "network_input", "padded", "restored", "restore_window", "networks", "versions", "time_utc", "map",
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
        assert 0.0 <= numbers["mean_probability"] <= numbers["max_probability"] <= 1.0
        assert 0.0 <= numbers["image_score"] <= 1.0
        # a network built in memory has no measured false-alarm rate: the score, no band
        assert numbers["detection"]["score"] == numbers["image_score"] and numbers["detection"]["band"] is None
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
    found = expand_inputs([str(tmp_path / "docs")])
    assert found.files == [] and len(found.failed) == 1 and "no image file" in found.failed[0][1]
    assert found.skipped == [(str(tmp_path / "docs" / "readme.txt"), "not an image file name (.txt)")]


def test_a_file_reached_twice_runs_once(mixed_folder: Path):
    found = expand_inputs([str(mixed_folder / "alpha.png"), str(mixed_folder), str(mixed_folder / "*.png")])
    assert [f.name for f in found.files] == ["alpha.png", "beta.png", "cut.png", "empty.png", "letter.jpg"]
    assert found.failed == []


def test_stem_collisions_do_not_overwrite(tmp_path: Path):
    for folder, seed in (("one", 1), ("two", 2), ("three", 3)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.png").write_bytes(_png_bytes(seed))
    (tmp_path / "one" / "photo-1.png").write_bytes(_png_bytes(4))
    inputs = [str(tmp_path / name) for name in ("one", "two", "three")]
    out = tmp_path / "out"
    summary = localize_files(inputs, Pipeline(None, _localizer()), out, progress=False)
    assert summary.ok and len(summary.processed) == 4
    files = {json.loads(path.read_text())["file"] for path in out.glob("*.json") if path.name != "summary.json"}
    assert files == {str(path) for path in summary.processed}
    stems = sorted(path.stem for path in out.glob("*.json") if path.name != "summary.json")
    assert stems == ["photo", "photo-1", "photo-2", "photo-3"]  # one/photo-1.png sorts first


def test_unique_stems():
    paths = [Path("a/x.png"), Path("b/x.jpg"), Path("c/X.png"), Path("d/x-1.png"), Path("e/y.png")]
    assert unique_stems(paths) == ["x", "x-1", "X-2", "x-1-1", "y"]


def test_image_report_by_hand():
    probabilities = np.zeros((10, 20), dtype=np.float32)
    probabilities[0, :4] = [0.9, 0.8, 0.7, 0.6]
    numbers = image_report(probabilities, threshold=0.65)
    assert numbers["size"] == [10, 20]
    assert numbers["tampered_fraction"] == pytest.approx(3 / 200)
    assert numbers["max_probability"] == pytest.approx(0.9)
    assert numbers["mean_probability"] == pytest.approx(3.0 / 200)
    assert numbers["image_score"] == detection.image_score(probabilities)
    assert numbers["detection"]["band"] is None  # no weights files: no calibration applies


def test_summary_ok_and_report():
    summary = LocalizeSummary(processed=[Path("a.png")])
    assert summary.ok and "1 image(s), 0 failed" in summary.report()


def test_pipeline_from_weights_matches_in_memory_pipeline(tmp_path: Path):
    localizer, restorer = _localizer(), _restorer()
    localizer_path = save_network(localizer, tmp_path / "dfcn.safetensors")
    restorer_path = save_network(restorer, tmp_path / "scunet.safetensors")
    # fp32: under the default (auto) a bf16-capable CPU runs bf16, which is not the point here
    loaded = pipeline_from_weights(localizer_path, restorer_path, device="cpu", precision="fp32")
    assert not loaded.training
    image = torch.rand(3, 40, 48)
    expected = Pipeline(restorer, localizer).predict(image)
    torch.testing.assert_close(loaded.predict(image), expected, rtol=0, atol=1e-6)
    without_restorer = pipeline_from_weights(localizer_path, precision="fp32")
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize("size", [(1, 1), (1, 50), (7, 7)])
def test_images_under_the_network_minimum_are_padded(tmp_path: Path, size):
    (tmp_path / "small.png").write_bytes(_png_bytes(5, size))
    summary = localize_files(
        [str(tmp_path / "small.png")], Pipeline(None, _localizer()), tmp_path / "out", progress=False
    )
    assert summary.ok, summary.report()
    numbers = json.loads((tmp_path / "out" / "small.json").read_text())
    assert numbers["size"] == list(size) and numbers["padded"] is True
    assert numbers["network_input"] == [max(8, size[0]), max(8, size[1])]
    assert np.asarray(Image.open(tmp_path / "out" / "small_heatmap.png")).shape == (*size, 3)


def test_a_window_under_the_network_minimum_is_padded(mixed_folder: Path, tmp_path: Path):
    image = str(mixed_folder / "beta.png")
    summary = localize_files(
        [image], Pipeline(None, _localizer()), tmp_path / "out", window=4, stride=4, progress=False
    )
    assert summary.ok, summary.report()
    numbers = json.loads((tmp_path / "out" / "beta.json").read_text())
    assert numbers["padded"] is True and numbers["network_input"] == [8, 8] and numbers["size"] == [64, 72]
    full = json.loads(
        (
            localize_files([image], Pipeline(None, _localizer()), tmp_path / "o2", progress=False),
            (tmp_path / "o2" / "beta.json").read_text(),
        )[1]
    )
    assert full["padded"] is False and full["network_input"] == [64, 72]


def test_outputs_never_overwrite_an_input(tmp_path: Path):
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "case.png").write_bytes(_png_bytes(1))
    (folder / "case_overlay.png").write_bytes(_png_bytes(2))  # evidence named like an output of case.png
    before = _hashes(folder)
    summary = localize_files([str(folder)], Pipeline(None, _localizer()), folder, progress=False)
    assert summary.ok and len(summary.processed) == 2
    assert summary.out is not None and summary.out.parent == folder and summary.out.name.startswith("localize-")
    assert "case_overlay.png" in summary.note and str(summary.out) in summary.report()
    assert {path: digest for path, digest in _hashes(folder).items() if path in before} == before
    assert (summary.out / "case_overlay.png").is_file() and (summary.out / "case_overlay_overlay.png").is_file()
    # a second run into the same folder goes to another fresh sub-folder
    again = localize_files([str(folder / "case.png")], Pipeline(None, _localizer()), summary.out, progress=False)
    assert again.out != summary.out and again.out.parent == summary.out


def test_a_batch_started_while_another_writes_the_folder_takes_a_sub_folder(tmp_path: Path):
    from reloc.engine.localize import LOCK_NAME, output_names

    (tmp_path / "a.png").write_bytes(_png_bytes(1))
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("12345\n")  # another batch is writing here
    summary = localize_files([str(tmp_path / "a.png")], Pipeline(None, _localizer()), out, progress=False)
    assert summary.ok and summary.out.parent == out and "another reloc localize is writing there" in summary.note
    assert not (out / "a.json").exists() and (summary.out / "a.json").is_file()
    assert not (summary.out / LOCK_NAME).exists(), "the lock goes once the summary is written"
    listed = json.loads((summary.out / "summary.json").read_text())["files"]
    assert sorted(path.name for path in summary.out.iterdir()) == sorted(
        ["summary.json"] + [name for entry in listed for name in output_names(Path(entry["json"]).stem, False)]
    )


def test_multi_frame_inputs_say_only_the_first_frame_was_analysed(tmp_path: Path):
    frames = [Image.fromarray(np.full((20, 24, 3), value, np.uint8)) for value in (0, 120, 240)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    summary = localize_files([str(tmp_path / "anim.gif")], Pipeline(None, _localizer()), tmp_path / "o", progress=False)
    assert summary.ok
    record = json.loads((tmp_path / "o" / "anim.json").read_text())
    assert record["frames"] == 3 and "only the first of 3 frames" in record["note"]
    status = json.loads((tmp_path / "o" / "summary.json").read_text())["files"][0]
    assert "only the first of 3 frames" in status["note"]


def test_an_output_appearing_during_the_run_is_not_overwritten(tmp_path: Path, monkeypatch):
    import reloc.engine.localize as module

    (tmp_path / "a.png").write_bytes(_png_bytes(1))
    out = tmp_path / "out"
    planted = out / "a_mask.png"
    real_heatmap = module.heatmap

    def heatmap_then_plant(probabilities):
        planted.write_bytes(b"someone else's file")
        return real_heatmap(probabilities)

    monkeypatch.setattr(module, "heatmap", heatmap_then_plant)
    summary = localize_files([str(tmp_path / "a.png")], Pipeline(None, _localizer()), out, progress=False)
    assert not summary.ok and "not overwritten" in summary.failed[0][1]
    assert planted.read_bytes() == b"someone else's file"


def test_folder_entries_skipped_are_counted_with_their_reason(tmp_path: Path):
    folder = tmp_path / "case"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.png").write_bytes(_png_bytes(1, (20, 20)))
    (folder / "b.jfif").write_bytes(_png_bytes(2, (20, 20)))  # JPEG's other suffix; content decides the format
    (folder / "notes.txt").write_text("x")
    (folder / "sub" / "c.png").write_bytes(_png_bytes(3, (20, 20)))
    (folder / "sub" / "deeper" / "d.png").write_bytes(_png_bytes(4, (20, 20)))
    os.symlink("missing.png", folder / "broken.png")
    os.symlink("loop", folder / "loop")
    os.symlink("..", folder / "sub" / "up")  # a folder link back to an ancestor
    os.mkfifo(folder / "pipe.png")
    found = expand_inputs([str(folder)])
    assert [p.name for p in found.files] == ["a.png", "b.jfif"]
    reasons = {Path(path).name: reason for path, reason in found.skipped}
    assert reasons == {
        "broken.png": "broken symbolic link (to missing.png)",
        "loop": "symbolic link loop",
        "notes.txt": "not an image file name (.txt)",
        "pipe.png": "not a regular file (a device, socket or named pipe)",
        "sub": "a sub-folder (pass --recursive to descend)",
    }
    deep = expand_inputs([str(folder)], recursive=True)
    assert [p.name for p in deep.files] == ["a.png", "b.jfif", "c.png", "d.png"]
    assert (str(folder / "sub" / "up"), "symbolic link loop (a folder already being scanned)") in deep.skipped
    assert expand_inputs([str(folder / "loop")]).failed == [(str(folder / "loop"), "symbolic link loop")]
    summary = localize_files([str(folder)], Pipeline(None, _localizer()), tmp_path / "out", progress=False)
    assert summary.ok and len(summary.skipped) == 5 and "5 skipped" in summary.report()
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert record["counts"] == {"processed": 2, "failed": 0, "skipped": 5}
    assert {entry["reason"] for entry in record["skipped"]} == set(reasons.values())


class _FailsOnWidth(torch.nn.Module):
    """A localizer that raises for inputs of one width (a network error), else a 1x1 conv."""

    def __init__(self, width: int, error: BaseException) -> None:
        super().__init__()
        self.conv, self.width, self.error = torch.nn.Conv2d(3, 1, 1), width, error

    def forward(self, image):
        if image.shape[-1] == self.width:
            raise self.error
        return self.conv(image)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("kernel failed"), "error while localizing (RuntimeError: kernel failed"),
        (MemoryError(), "out of memory"),
    ],
)
def test_one_file_failing_in_the_network_does_not_stop_the_batch(tmp_path: Path, error, expected):
    for name, size in (("a.png", (20, 20)), ("b.png", (20, 13)), ("c.png", (20, 30))):
        (tmp_path / name).write_bytes(_png_bytes(1, size))
    out = tmp_path / "out"
    summary = localize_files([str(tmp_path / "*.png")], Pipeline(None, _FailsOnWidth(13, error)), out, progress=False)
    assert [p.name for p in summary.processed] == ["a.png", "c.png"]
    assert len(summary.failed) == 1 and summary.failed[0][0].endswith("b.png")
    assert summary.failed[0][1].startswith(expected)
    if isinstance(error, RuntimeError):
        assert "kernel failed" in (out / "reloc-error.log").read_text()
    statuses = {Path(f["input"]).name: f["status"] for f in json.loads((out / "summary.json").read_text())["files"]}
    assert statuses == {"a.png": "ok", "b.png": "failed", "c.png": "ok"}


def test_provenance_in_the_json(tmp_path: Path):
    localizer_path = save_network(_localizer(), tmp_path / "dfcn.safetensors")
    restorer_path = save_network(_restorer(), tmp_path / "scunet.safetensors")
    (tmp_path / "x.png").write_bytes(_png_bytes(7, (24, 24)))
    pipeline = pipeline_from_weights(localizer_path, restorer_path)
    localize_files([str(tmp_path / "x.png")], pipeline, tmp_path / "out", threshold=0.3, progress=False)
    numbers = json.loads((tmp_path / "out" / "x.json").read_text())
    assert numbers["input"] == {
        "path": str(tmp_path / "x.png"),
        "sha256": _sha256(tmp_path / "x.png"),
        "bytes": (tmp_path / "x.png").stat().st_size,
    }
    assert numbers["networks"]["localizer"]["weights_sha256"] == _sha256(localizer_path)
    assert numbers["networks"]["restorer"]["weights_sha256"] == _sha256(restorer_path)
    assert numbers["networks"]["localizer"]["network"] == "dfcn" and numbers["restored"] is True
    assert numbers["versions"]["reloc"] == reloc.__version__ and numbers["versions"]["torch"] == torch.__version__
    assert numbers["time_utc"].endswith("+00:00") and numbers["threshold"] == 0.3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["networks"] == [numbers["networks"]] and summary["options"]["threshold"] == 0.3


def test_pixel_budget_refuses_before_decoding(tmp_path: Path):
    (tmp_path / "big.png").write_bytes(_png_bytes(1, (40, 40)))
    (tmp_path / "ok.png").write_bytes(_png_bytes(2, (10, 10)))
    summary = localize_files(
        [str(tmp_path)], Pipeline(None, _localizer()), tmp_path / "out", max_pixels=1000, progress=False
    )
    assert [p.name for p in summary.processed] == ["ok.png"]
    assert "1,600 pixels, over the cap of 1,000" in summary.failed[0][1] and "--max-pixels" in summary.failed[0][1]


def test_threshold_outside_the_unit_interval_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="threshold"):
        localize_files([], Pipeline(None, _localizer()), tmp_path / "out", threshold=float("nan"), progress=False)
