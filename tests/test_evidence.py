"""Classical evidence maps on tiny synthetic images: each finds what it is built to find,
stays quiet where there is nothing, and answers odd inputs with a result, not an exception."""

from __future__ import annotations

import copy
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from reloc.evidence import METHODS, analyse, parse_methods
from reloc.evidence.clones import MIN_SIDE, copy_move
from reloc.evidence.dq import block_dct, double_quantisation
from reloc.evidence.ela import error_levels, jpeg_roundtrip
from reloc.evidence.jpeg import block_grid, ghosts


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 ``(H, W, 3)`` detail at several scales (blurred noise), full range."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.float32)
    for sigma in (1.0, 3.0, 8.0):
        image += cv2.GaussianBlur(rng.normal(size=(height, width, 3)).astype(np.float32), (0, 0), sigma) * sigma
    image = (image - image.min()) / (image.max() - image.min())
    return np.rint(image * 255).astype(np.uint8)


def pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


REGION = (slice(64, 160), slice(96, 224))
INSIDE = (slice(72, 152), slice(104, 216))  # the region less a margin of the maps' windows


def outside(scores: np.ndarray) -> np.ndarray:
    keep = np.ones(scores.shape, dtype=bool)
    keep[40:184, 72:248] = False
    return scores[keep]


def test_registry_names_and_parsing():
    assert parse_methods(" ela, clones,ela ") == ["ela", "clones"]
    assert parse_methods("") == []
    with pytest.raises(ValueError, match="unknown evidence method.*wavelets"):
        parse_methods("ela,wavelets")
    assert {"ela", "noise", "ghost", "dq", "blocks", "clones"} <= set(METHODS)


def test_ela_zero_on_a_lossless_jpeg_fixed_point_and_high_on_a_region_saved_at_another_quality(tmp_path):
    stable = texture(256, 320)
    for _ in range(20):  # repeated saves at one quality reach an image that JPEG leaves unchanged
        stable = jpeg_roundtrip(stable, 80)
    path = tmp_path / "stable.png"
    Image.fromarray(stable).save(path)  # lossless
    result = error_levels(np.asarray(Image.open(path)), path, quality=80)
    assert result.map.shape == stable.shape[:2] and result.map.dtype == np.float32
    assert result.map.max() == 0.0
    tampered = stable.copy()
    tampered[REGION] = pillow_jpeg(texture(256, 320), 97)[REGION]
    scores = error_levels(tampered, None, quality=80).map
    assert scores[INSIDE].mean() > 0.5
    assert np.percentile(outside(scores), 95) < 0.1


def test_ela_takes_a_jpeg_files_own_quality(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(texture(128, 128)).save(path, quality=70)
    result = error_levels(np.asarray(Image.open(path).convert("RGB")), path)
    assert result.figures["quality"] == 70 and result.figures["quality_from"] == "file"


@pytest.mark.parametrize("first", [60, 70])
def test_ghost_peaks_at_the_first_compressions_quality(tmp_path, first):
    image = texture(256, 320, seed=5)
    twice = image.copy()
    twice[REGION] = pillow_jpeg(image, first)[REGION]
    path = tmp_path / "ghost.jpg"
    Image.fromarray(twice).save(path, quality=90)
    result = ghosts(np.asarray(Image.open(path).convert("RGB")), path)
    assert result.figures["file_quality"] == 90
    assert result.figures["ghost_quality"] == first
    rest = outside(result.map)
    assert result.map[INSIDE].mean() > 2 * np.percentile(rest, 95)
    assert result.map[INSIDE].mean() > 5 * np.median(rest)


def test_block_grid_marks_a_region_whose_grid_is_shifted():
    image = texture(256, 320, seed=3)
    shifted = np.roll(pillow_jpeg(np.roll(image, (3, 5), (0, 1)), 75), (-3, -5), (0, 1))  # grid at phase 3 / 5
    spliced = pillow_jpeg(image, 75)
    spliced[REGION] = shifted[REGION]
    result = block_grid(spliced)
    assert result.applicable, result.note
    assert result.map[INSIDE].mean() > 0.4
    assert result.map[INSIDE].mean() > 3 * np.median(outside(result.map))


def test_block_dct_is_jpegs_forward_dct_per_block():
    pixels = np.random.default_rng(2).integers(0, 256, (37, 45)).astype(np.uint8)
    cells = [(0, 0), (0, 1), (3, 2), (7, 7)]
    coefficients = block_dct(pixels, cells)
    assert coefficients.shape == (4, 5, 4) and coefficients.dtype == np.float32
    for row, column in np.ndindex(4, 5):
        block = cv2.dct(pixels[row * 8 : row * 8 + 8, column * 8 : column * 8 + 8].astype(np.float32) - 128)
        np.testing.assert_allclose(coefficients[row, column], [block[cell] for cell in cells], atol=1e-3)


def twice_compressed(tmp_path, first: int, second: int, exif: Image.Exif | None = None):
    """A texture saved at quality ``first``, ``REGION`` replaced by never compressed pixels, saved at ``second``."""
    image = texture(256, 320, seed=4)
    spliced = pillow_jpeg(image, first)
    spliced[REGION] = image[REGION]
    path = tmp_path / f"dq-{first}-{second}.jpg"
    Image.fromarray(spliced).save(path, quality=second, **({"exif": exif} if exif else {}))
    return path


def test_double_quantisation_marks_a_region_compressed_once_and_finds_the_first_steps(tmp_path):
    path = twice_compressed(tmp_path, 60, 90)
    result = double_quantisation(np.asarray(Image.open(path).convert("RGB")), path)
    assert result.applicable, result.note
    assert result.map.shape == (256, 320) and result.map.dtype == np.float32
    assert result.map[INSIDE].mean() > 0.8
    assert np.mean(outside(result.map) > 0.5) < 0.2
    buffer = io.BytesIO()
    Image.fromarray(texture(16, 16)).save(buffer, "JPEG", quality=60)
    first = np.reshape(Image.open(buffer).quantization[0], (8, 8))  # the first compression's steps
    assert result.figures["first_steps"][:3] == [first[0, 1], first[1, 0], first[2, 0]]  # zigzag order
    assert result.figures["file_quality"] == 90 and result.figures["frequencies"] >= 10


def test_double_quantisation_follows_the_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path = twice_compressed(tmp_path, 60, 90, exif)
    from reloc.data.io import read_image

    upright = read_image(path, compact=True)
    result = double_quantisation(upright, path)
    assert result.map.shape == (320, 256) == upright.shape[:2]
    turned = np.rot90(result.map, k=1)  # back to the file's orientation
    assert turned[INSIDE].mean() > 0.8 and np.mean(outside(turned) > 0.5) < 0.2


def test_double_quantisation_says_why_it_does_not_apply(tmp_path):
    once = tmp_path / "once.jpg"
    Image.fromarray(texture(256, 320)).save(once, quality=90)
    result = double_quantisation(np.asarray(Image.open(once).convert("RGB")), once)
    assert not result.applicable and "compressed once" in result.note
    png = tmp_path / "plain.png"
    Image.fromarray(texture(64, 64)).save(png)
    assert "not a JPEG file" in double_quantisation(texture(64, 64), png).note
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 64), (10, 20, 30, 40)).save(cmyk, quality=90)
    assert "CMYK JPEG without a luminance plane" in analyse(texture(64, 64), cmyk, ["dq"])[0].note
    assert "another size" in double_quantisation(texture(64, 80), once).note
    tiny = tmp_path / "tiny.jpg"
    Image.fromarray(texture(12, 40)).save(tiny, quality=90)
    assert "under 16x16 pixels" in double_quantisation(texture(12, 40), tiny).note


def paste_rotated(image: np.ndarray, source: tuple[int, int], target: tuple[int, int], angle: float, size: int = 96):
    """``image`` with its ``size`` square at ``source`` (y, x) rotated by ``angle`` and pasted at ``target``."""
    y, x = source
    block = image[y : y + size, x : x + size]
    rotation = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    rotated = cv2.warpAffine(block, rotation, (size, size), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((size, size), np.uint8), rotation, (size, size), flags=cv2.INTER_NEAREST) > 0
    out = image.copy()
    y, x = target
    out[y : y + size, x : x + size][inside] = rotated[inside]
    return out


def box_centre(region: dict) -> np.ndarray:
    x0, y0, x1, y1 = region["box"]
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2])


def test_copy_move_finds_a_rotated_pasted_block_and_its_source():
    image = paste_rotated(texture(300, 400, seed=1), source=(30, 40), target=(170, 260), angle=30)
    result = copy_move(image)
    assert len(result.figures["regions"]) == 1, result.note
    region = result.figures["regions"][0]
    assert region["direction_known"], region["direction"]
    assert np.abs(box_centre(region["source"]) - [88, 78]).max() < 12  # (x, y) centre of the source square
    assert np.abs(box_centre(region["target"]) - [308, 218]).max() < 12
    assert abs(abs(region["rotation_degrees"]) - 30) < 2
    assert result.map[190:250, 280:340].min() == 1.0  # target core
    assert result.map[50:110, 60:120].max() == 0.5  # source core, named but below the target
    assert result.map[:, 160:250].max() == 0.0 and result.map[260:, :200].max() == 0.0


def test_copy_move_finds_nothing_in_noise():
    noise = np.random.default_rng(7).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    result = copy_move(noise)
    assert result.applicable and result.figures["regions"] == [] and result.map.max() == 0.0


def test_every_method_on_odd_inputs_gives_a_result_or_a_reason(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = (cv2.GaussianBlur(rng.normal(size=(96, 128)), (0, 0), 2) * 20000 + 32768).clip(0, 65535)
    png = tmp_path / "plain.png"
    Image.fromarray(texture(96, 128)).save(png)
    cases = {
        "grey 16-bit": (grey16.astype(np.uint16), None),
        "grey float": (rng.random((96, 128)).astype(np.float32), None),
        "rgba": (np.dstack([texture(96, 128), np.full((96, 128), 255, np.uint8)]), None),
        "tiny": (texture(20, 30), None),
        "one pixel": (texture(1, 1), None),
        "png file": (np.asarray(Image.open(png)), png),
        "empty": (np.zeros((0, 5, 3), np.uint8), None),
        "not an image": (np.zeros((4, 4, 7), np.uint8), None),
    }
    for case, (image, path) in cases.items():
        for result in analyse(image, path, list(METHODS)):
            if result.applicable:
                assert result.map.shape == np.shape(image)[:2], (case, result.method)
                assert result.map.dtype == np.float32 and 0.0 <= result.map.min() <= result.map.max() <= 1.0
            else:
                assert result.note.startswith("not applicable: "), (case, result.method, result.note)
    converted = analyse(grey16.astype(np.uint16), None, ["noise"])[0]
    assert converted.applicable and "16-bit reduced to 8 bits" in converted.note
    assert "not a JPEG file" in analyse(np.asarray(Image.open(png)), png, ["ghost"])[0].note
    small = analyse(texture(MIN_SIDE - 1, 200), None, ["clones"])[0]
    assert not small.applicable and "under the matcher's" in small.note


def test_localize_writes_the_evidence_maps_and_their_figures(tmp_path):
    from conftest import build_cached
    from reloc.engine.inference import Pipeline
    from reloc.engine.localize import localize_files

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(paste_rotated(texture(300, 400, seed=1), (30, 40), (170, 260), 30)).save(folder / "copy.png")
    Image.fromarray(texture(128, 160)).save(folder / "photo.jpg", quality=85)
    localizer = build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()
    out = tmp_path / "out"
    summary = localize_files(
        [str(folder)], Pipeline(None, localizer), out, progress=False, evidence=["ghost", "clones"]
    )
    assert summary.ok, summary.report()
    copy = json.loads((out / "copy.json").read_text())["evidence"]
    assert copy["ghost"]["applicable"] is False and copy["ghost"]["map"] is None
    assert not (out / "copy_evidence-ghost.png").exists()
    assert copy["clones"]["map"] == "copy_evidence-clones.png" and len(copy["clones"]["figures"]["regions"]) == 1
    written = np.asarray(Image.open(out / "copy_evidence-clones.png"))
    assert written.shape == (300, 400) and set(np.unique(written)) == {0, 128, 255}
    photo = json.loads((out / "photo.json").read_text())["evidence"]
    assert photo["ghost"]["applicable"] and photo["ghost"]["figures"]["file_quality"] == 85
    assert (out / "photo_evidence-ghost.png").exists()
    assert json.loads((out / "summary.json").read_text())["options"]["evidence"] == ["ghost", "clones"]


def test_cli_refuses_an_unknown_evidence_method_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from reloc.cli import app

    result = CliRunner().invoke(app, ["localize", str(tmp_path), "--evidence", "ela,wavelets"])
    assert result.exit_code == 2
    assert "--evidence: unknown evidence method(s) wavelets" in result.output
    assert "Traceback" not in result.output


def test_serve_shows_the_evidence_as_layers_and_in_the_case_report(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from conftest import build_cached
    from reloc.models.weights import save_network
    from reloc.serve.app import ServeSettings, create_app
    from reloc.serve.models import load_models

    weights = save_network(build_cached("localizer", "dfcn", width=0.25, faithful=False), tmp_path / "dfcn.safetensors")
    models = load_models([], [], str(weights), None)
    settings = ServeSettings(work=tmp_path / "work", window=64, stride=64, evidence=("ela", "ghost", "clones"))
    buffer = io.BytesIO()
    Image.fromarray(paste_rotated(texture(300, 400, seed=1), (30, 40), (170, 260), 30)).save(buffer, "PNG")
    with TestClient(create_app(models, settings)) as client:
        response = client.post("/api/localize", files={"file": ("copy.png", buffer.getvalue(), "image/png")})
        assert response.status_code == 200, response.text
        result = response.json()
        layers = {layer["method"]: layer for layer in result["evidence"]}
        assert list(layers) == ["ela", "ghost", "clones"]
        assert layers["ghost"]["url"] is None and layers["ghost"]["note"].startswith("not applicable")
        assert "copied region" in layers["clones"]["note"] and layers["clones"]["reliability"]
        png = client.get(layers["clones"]["url"])
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (400, 300)
        assert client.get(f"/api/jobs/{result['id']}/evidence/ghost.png").status_code == 404
        report = client.get(result["urls"]["report"]).text
        assert "Classical evidence" in report and "Evidence: clones" in report and "Measured:" in report
        record = client.get(result["urls"]["json"]).json()
        assert record["evidence"]["clones"]["figures"]["regions"][0]["inliers"] >= 6


def test_every_method_has_its_measured_reliability_line_in_the_package():
    from reloc.evidence import reliability_line

    for method in METHODS:
        line = reliability_line(method)
        assert line.startswith("casia1-dev, per image: splices F1 "), (method, line)
        assert "copy-moves F1" in line and "of authentic images flagged" in line
    assert reliability_line("no-such-method") == "not measured"


def test_an_image_over_the_pixel_budget_gets_a_reason_not_a_map(monkeypatch):
    import reloc.evidence

    monkeypatch.setattr(reloc.evidence, "MAX_PIXELS", 100 * 100)
    for result in analyse(texture(101, 100), None, list(METHODS)):
        assert not result.applicable and "over 0.01 megapixels" in result.note
    assert all(result.applicable for result in analyse(texture(100, 100), None, ["ela", "noise", "clones"]))


def silent_localizer(tmp_path):
    """A localizer whose every logit is 0: probability 0.5 everywhere, nothing above the 0.5 threshold."""
    from conftest import build_cached
    from reloc.models.weights import save_network

    network = copy.deepcopy(build_cached("localizer", "dfcn", width=0.25, faithful=False))  # the cached one is shared
    for parameter in network.parameters():
        parameter.data.zero_()
    return save_network(network, tmp_path / "silent.safetensors")


def test_localize_fuses_the_learned_map_with_the_matchers_and_keeps_the_learned_map(tmp_path):
    from typer.testing import CliRunner

    from reloc.cli import app
    from reloc.engine.localize import localize_files
    from reloc.engine.model_choice import ModelChooser

    image = tmp_path / "copy.png"
    Image.fromarray(paste_rotated(texture(300, 400, seed=1), (30, 40), (170, 260), 30)).save(image)
    weights = silent_localizer(tmp_path)
    records = {}
    for fusion in ("none", "clones"):
        out = tmp_path / fusion
        chooser = ModelChooser.from_option(str(weights))
        assert localize_files([str(image)], chooser, out, progress=False, fusion=fusion).ok
        records[fusion] = json.loads((out / "copy.json").read_text())
        mask = np.asarray(Image.open(out / "copy_mask.png"))
        if fusion == "none":
            assert mask.max() == 0 and not (out / "copy_learned.png").exists()
            assert records[fusion]["map"] == {"fusion": "none", "shows": "the learned map"}
        else:  # the copy's target core is marked; the learned map alone is kept
            assert mask[190:250, 280:340].min() == 255 and mask[:, 160:250].max() == 0
            assert (out / "copy_learned.png").exists() and not (out / "copy_evidence-clones.png").exists()
    fused = records["clones"]
    assert fused["map"]["shows"] == "learned map raised where the copy-move matcher matched regions"
    assert fused["map"]["matcher"]["regions"] == 1 and fused["map"]["learned"]["max_probability"] == 0.5
    assert fused["map"]["learned"]["heatmap"] == "copy_learned.png"
    assert fused["max_probability"] == 1.0 and fused["tampered_fraction"] > records["none"]["tampered_fraction"] == 0
    assert fused["image_score"] == records["none"]["image_score"]  # judged on the learned map, as calibrated
    # the command line fuses by default, and says so in one line for a bad value
    result = CliRunner().invoke(
        app, ["localize", str(image), "--localizer", str(weights), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, result.output
    default = json.loads((tmp_path / "c" / "copy.json").read_text())["map"]
    assert default["fusion"] == "clones+dq" and default["dq"]["applied"] is False
    assert default["shows"].startswith(  # a PNG: no quantisation tables, so only the matcher
        "learned map raised where the copy-move matcher matched regions (the double-quantisation model does not apply"
    )
    result = CliRunner().invoke(app, ["localize", str(image), "--fusion", "ela", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "'ela' is not one of none, clones, dq, clones+dq" in result.output
    assert "Traceback" not in result.output


def test_fusion_leaves_a_map_the_matcher_cannot_judge_as_it_is():
    from reloc.engine.localize import main_map

    learned = np.full((40, 50), 0.3, np.float32)
    small = analyse(texture(40, 50), None, ["clones"])
    shown, facts = main_map(learned, small, "clones")
    assert np.array_equal(shown, learned)
    assert facts["shows"].startswith("the learned map (the copy-move matcher does not apply: the image is 40x50")


def test_fuse_averages_the_dq_map_where_it_applies_then_raises_to_the_matchers():
    from reloc.evidence import DQ_WEIGHT, Evidence, fuse
    from reloc.evidence.base import not_applicable

    learned = np.full((4, 6), 0.2, np.float32)
    dq_map = np.zeros((4, 6), np.float32)
    dq_map[:, 3:] = 1.0
    clones_map = np.zeros((4, 6), np.float32)
    clones_map[0, 0] = 1.0
    dq, clones = Evidence("dq", dq_map, ""), Evidence("clones", clones_map, "")
    expected = 0.2 * (1 - DQ_WEIGHT) + dq_map * DQ_WEIGHT
    np.testing.assert_allclose(fuse(learned, [dq], "dq"), expected, rtol=1e-6)
    both = fuse(learned, [clones, dq], "clones+dq")
    assert both[0, 0] == 1.0 and both.dtype == np.float32
    np.testing.assert_allclose(both[1:], expected[1:], rtol=1e-6)
    # a method that did not apply leaves the learned map standing there
    assert fuse(learned, [not_applicable("dq", "not a JPEG file"), clones], "clones+dq")[1, 1] == np.float32(0.2)
    assert fuse(learned, [not_applicable("dq", "x")], "dq") is learned
    assert fuse(learned, [], "none") is learned
    with pytest.raises(ValueError, match="needs the result of dq"):
        fuse(learned, [clones], "clones+dq")
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse(learned, [dq], "ela")
    with pytest.raises(ValueError, match="the dq map is"):
        fuse(learned, [Evidence("dq", np.zeros((3, 3), np.float32), "")], "dq")


def test_default_fusion_follows_the_dq_map_on_a_twice_compressed_jpeg(tmp_path):
    from reloc.engine.localize import localize_files
    from reloc.engine.model_choice import ModelChooser

    path = twice_compressed(tmp_path, 60, 90)
    chooser = ModelChooser.from_option(str(silent_localizer(tmp_path)))
    assert localize_files([str(path)], chooser, tmp_path / "out", progress=False, fusion="clones+dq").ok
    record = json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())
    assert record["map"]["dq"]["applied"] and "aligned double quantisation" in record["map"]["dq"]["note"]
    assert record["map"]["shows"].startswith("learned map averaged with the double-quantisation map")
    mask = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}_mask.png")) > 0
    assert mask[INSIDE].mean() > 0.8 and np.mean(outside(mask)) < 0.2  # the learned map alone is 0.5 everywhere
    assert record["image_score"] == pytest.approx(0.5, abs=1e-3)  # judged on the learned map, as calibrated


def test_serve_shows_the_fused_map_and_the_learned_map_alone(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from reloc.serve.app import ServeSettings, create_app
    from reloc.serve.models import load_models

    models = load_models([], [], str(silent_localizer(tmp_path)), None)
    settings = ServeSettings(work=tmp_path / "work", window=64, stride=64, fusion="clones")
    buffer = io.BytesIO()
    Image.fromarray(paste_rotated(texture(300, 400, seed=1), (30, 40), (170, 260), 30)).save(buffer, "PNG")
    with TestClient(create_app(models, settings)) as client:
        response = client.post("/api/localize", files={"file": ("copy.png", buffer.getvalue(), "image/png")})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["map"]["shows"] == "learned map raised where the copy-move matcher matched regions"
        assert result["max_probability"] == 1.0 and result["evidence"] == []
        learned = client.get(result["urls"]["learned"])
        assert learned.status_code == 200 and Image.open(io.BytesIO(learned.content)).size == (400, 300)
        report = client.get(result["urls"]["report"]).text
        assert "learned map raised where the copy-move matcher matched regions" in report
        assert "Learned map alone" in report
