"""The sliding window a localizer's weights record: saved, read, and used wherever no
``--window`` is given (``Pipeline``, ``localize``, ``eval``); an explicit window wins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import build_cached
from reloc.cli import app
from reloc.data.io import read_probability_png
from reloc.engine.inference import DEFAULT_WINDOW, Pipeline, pipeline_from_weights
from reloc.engine.localize import localize_files
from reloc.models.weights import WINDOW_KEY, WeightsError, read_whole_image_pixels, read_window, save_network


def _localizer():
    return build_cached("localizer", "dfcn", width=0.25, faithful=False)


@pytest.fixture
def weights(tmp_path: Path) -> dict[str, Path]:
    """The same tiny localizer saved with a recorded window (64, 32) and without one."""
    files = {"window": tmp_path / "windowed.safetensors", "none": tmp_path / "plain.safetensors"}
    save_network(_localizer(), files["window"], window=(64, 32))
    save_network(_localizer(), files["none"])
    return files


def test_window_is_saved_and_read_back(weights):
    assert read_window(weights["window"]) == (64, 32)
    assert read_window(weights["none"]) is None
    assert load_file(weights["window"]).keys() == load_file(weights["none"]).keys()  # metadata only


def test_a_bad_window_is_refused_on_save_and_on_read(tmp_path: Path, weights):
    with pytest.raises(ValueError, match="stride <= side"):
        save_network(_localizer(), tmp_path / "bad.safetensors", window=(32, 64))
    crafted = tmp_path / "crafted.safetensors"
    save_file(load_file(weights["none"]), crafted, metadata={WINDOW_KEY: json.dumps({"window": 0, "stride": 0})})
    with pytest.raises(WeightsError, match="malformed 'reloc.window'"):
        read_window(crafted)


def test_pipeline_windows_default_recorded_and_explicit():
    plain = Pipeline(None, _localizer())
    assert plain.windows() == (DEFAULT_WINDOW, DEFAULT_WINDOW)
    recorded = Pipeline(None, _localizer(), window=(64, 32))
    assert recorded.windows() == (64, 32)
    assert recorded.windows(stride=16) == (64, 16)
    assert recorded.windows(128) == (128, 128)  # an explicit window does not take the recorded stride
    assert recorded.windows(128, 96) == (128, 96)
    with pytest.raises(ValueError, match="stride"):
        Pipeline(None, _localizer(), window=(32, 64))


def test_predict_without_a_window_uses_the_recorded_one(weights):
    pipeline = pipeline_from_weights(weights["window"], precision="fp32")
    assert pipeline.window == (64, 32)
    image = torch.rand(3, 100, 130)
    calls = []
    default = pipeline.predict(image, progress=lambda done, total: calls.append(total))
    explicit = pipeline.predict(image, window=64, stride=32)
    whole = pipeline.predict(image, window=512, stride=512)
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    assert calls[0] == 3 * 4  # windows at rows 0, 32, 40 and columns 0, 32, 64, 72 (on the 8-px grid)
    assert not torch.allclose(default, whole)  # the recorded window is not the whole image


def test_localize_records_the_window_it_used_and_the_option_overrides(weights, tmp_path: Path):
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    Image.new("RGB", (120, 90), (120, 60, 30)).save(image)
    summary = localize_files([image], pipeline_from_weights(weights["window"]), tmp_path / "a", progress=False)
    assert summary.ok
    record = json.loads((tmp_path / "a" / "photo.json").read_text())
    assert (record["window"], record["stride"]) == (64, 32)
    result = CliRunner().invoke(
        app,
        ["localize", str(image), "--localizer", str(weights["window"]), "--window", "96", "--out", str(tmp_path / "b")],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "b" / "photo.json").read_text())
    assert (record["window"], record["stride"]) == (96, 96)


def _restorer():
    return build_cached("restorer", "scunet", preset="tiny", residual=False)


def test_a_restore_window_restores_the_whole_image_first_then_slides_the_localizer(tmp_path: Path):
    """With ``restore_window`` the restorer runs in its own windows, stitched, and the
    localizer slides over the restored image: the same as the two pipelines run in turn."""
    torch.manual_seed(0)
    image = torch.rand(3, 70, 90)
    restorer, localizer = _restorer().eval(), _localizer().eval()
    split = Pipeline(restorer, localizer, window=(32, 16), restore_window=(64, 64)).eval()
    calls: list[tuple[int, int]] = []
    probabilities, restored = split.predict(image, return_restored=True, progress=lambda d, t: calls.append((d, t)))
    expected_restored = Pipeline(restorer, localizer, window=(64, 64)).eval().predict(image, return_restored=True)[1]
    expected = Pipeline(None, localizer, window=(32, 16)).eval().predict(expected_restored)
    torch.testing.assert_close(restored, expected_restored)
    torch.testing.assert_close(probabilities, expected)
    together = Pipeline(restorer, localizer, window=(32, 16)).eval().predict(image)  # the paper's: window by window
    assert not torch.allclose(together, probabilities)  # a real difference: the restorer saw other windows
    total = 2 * 2 + 4 * 5  # restorer: 2 x 2 windows of 64; localizer: 4 x 5 windows of 32 every 16
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_restore_image_is_the_restored_image_predict_stitches():
    """The restorer alone in its restore window (else the pipeline's window), as predict runs it;
    no restorer: the image as float32."""
    torch.manual_seed(0)
    image = torch.rand(3, 70, 90)
    restorer, localizer = _restorer().eval(), _localizer().eval()
    split = Pipeline(restorer, localizer, window=(32, 16), restore_window=(64, 64)).eval()
    torch.testing.assert_close(split.restore_image(image), split.predict(image, return_restored=True)[1])
    own = Pipeline(restorer, localizer, window=(64, 64)).eval()
    torch.testing.assert_close(own.restore_image(image), own.predict(image, return_restored=True)[1])
    as_bytes = (image * 255).round().to(torch.uint8)
    torch.testing.assert_close(Pipeline(None, localizer).restore_image(as_bytes), as_bytes.float() / 255)
    with pytest.raises(ValueError, match="expected an image"):
        split.restore_image(image[None])


def test_pipeline_from_weights_runs_the_restorer_in_the_window_its_file_records(tmp_path: Path):
    restorer_file = save_network(_restorer(), tmp_path / "restorer.safetensors", window=(512, 512))
    localizer_file = save_network(_localizer(), tmp_path / "localizer.safetensors", window=(64, 32))
    pipeline = pipeline_from_weights(localizer_file, restorer_file, precision="fp32")
    assert pipeline.restore_window == (512, 512) and pipeline.window == (64, 32)
    plain_restorer = save_network(_restorer(), tmp_path / "plain-restorer.safetensors")
    assert pipeline_from_weights(localizer_file, plain_restorer, precision="fp32").restore_window is None


def test_whole_image_budget_is_saved_read_and_used(tmp_path: Path, weights):
    path = save_network(_localizer(), tmp_path / "whole.safetensors", window=(64, 32), whole_image_pixels=100 * 130)
    assert read_whole_image_pixels(path) == 100 * 130
    assert read_whole_image_pixels(weights["window"]) == 0 and read_whole_image_pixels(weights["none"]) == 0
    pipeline = pipeline_from_weights(path, precision="fp32")
    assert pipeline.whole_image_pixels == 100 * 130
    image = torch.rand(3, 100, 130)
    torch.testing.assert_close(pipeline.predict(image), pipeline.predict(image, window=130, stride=130))
    with pytest.raises(ValueError, match="give window"):
        save_network(_localizer(), tmp_path / "no-window.safetensors", whole_image_pixels=10)
    for bad in (True, -1, 1.5, "many"):
        crafted = tmp_path / "crafted.safetensors"
        record = {"window": 64, "stride": 32, "whole_image_pixels": bad}
        save_file(load_file(weights["none"]), crafted, metadata={WINDOW_KEY: json.dumps(record)})
        with pytest.raises(WeightsError, match="malformed 'reloc.window'"):
            read_whole_image_pixels(crafted)


def test_localize_records_how_it_ran_and_saves_the_probabilities(tmp_path: Path):
    path = save_network(_localizer(), tmp_path / "whole.safetensors", window=(64, 32), whole_image_pixels=90 * 120)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.effect_noise((120, 90), 60).convert("RGB").save(folder / "small.png")
    Image.effect_noise((200, 90), 60).convert("RGB").save(folder / "large.png")
    pipeline = pipeline_from_weights(path, precision="fp32")
    summary = localize_files([folder], pipeline, tmp_path / "out", progress=False, save_probability=True)
    assert summary.ok
    small = json.loads((tmp_path / "out" / "small.json").read_text())
    large = json.loads((tmp_path / "out" / "large.json").read_text())
    assert small["inference"] == {
        "mode": "whole",
        "window": 120,
        "stride": 120,
        "blend": "taper",
        "whole_image_pixels": 10800,
    }
    assert large["inference"]["mode"] == "tiles" and (large["window"], large["stride"]) == (64, 32)
    saved = read_probability_png(tmp_path / "out" / "small_probability.png")
    pixels = torch.from_numpy(np.asarray(Image.open(folder / "small.png").convert("RGB"))).permute(2, 0, 1)
    expected = pipeline.predict(pixels).numpy()
    assert saved.shape == expected.shape == (90, 120) and saved.dtype == np.float32
    assert np.abs(saved - expected).max() <= 0.5 / 65535 + 1e-7
    assert read_probability_png(tmp_path / "out" / "large_probability.png").shape == (90, 200)


def test_record_window_rewrites_only_the_window(tmp_path: Path, weights):
    from safetensors import safe_open

    from reloc.models.weights import record_window

    path = tmp_path / "copy.safetensors"
    path.write_bytes(weights["window"].read_bytes())
    record_window(path, (128, 96), whole_image_pixels=4_000_000)
    assert read_window(path) == (128, 96) and read_whole_image_pixels(path) == 4_000_000
    before, after = load_file(weights["window"]), load_file(path)
    assert before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)
    with safe_open(str(weights["window"]), framework="pt") as old, safe_open(str(path), framework="pt") as new:
        unchanged = {key: value for key, value in old.metadata().items() if key != WINDOW_KEY}
        assert unchanged == {key: value for key, value in new.metadata().items() if key != WINDOW_KEY}
    with pytest.raises(ValueError, match="stride"):
        record_window(path, (64, 128))


def test_degenerate_sizes_localize_whole_or_in_padded_windows(tmp_path: Path):
    """1x1, 1x20000 and 7x3000 images give a map of their own size (padded to the network's
    minimum and cropped back), and a refusal by the pixel budget names the file."""
    path = save_network(_localizer(), tmp_path / "whole.safetensors", window=(64, 48), whole_image_pixels=5000)
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = {"one": (1, 1), "line": (20000, 1), "thin": (7, 3000)}
    for name, size in sizes.items():
        Image.new("RGB", size, (90, 120, 30)).save(folder / f"{name}.png")
    Image.new("RGB", (300, 300), (90, 120, 30)).save(folder / "large.png")
    summary = localize_files(
        [folder], pipeline_from_weights(path, precision="fp32"), tmp_path / "out", progress=False, max_pixels=30000
    )
    assert len(summary.processed) == 3
    assert [(Path(failed).name, "--max-pixels" in reason) for failed, reason in summary.failed] == [("large.png", True)]
    for name, (width, height) in sizes.items():
        record = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert record["size"] == [height, width]
        assert Image.open(tmp_path / "out" / f"{name}_mask.png").size == (width, height)
    assert json.loads((tmp_path / "out" / "one.json").read_text())["inference"]["mode"] == "whole"
    assert json.loads((tmp_path / "out" / "line.json").read_text())["inference"]["mode"] == "tiles"  # over 5000 px
