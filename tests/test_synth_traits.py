"""Tests of the generator's switchable traits of hand-made edits (docs/guide/generator.md).

Each trait: deterministic for a seed, its mask exactly the pixels it changed, off by
default (default outputs unchanged). Tiny sizes (64-160 px) keep it fast.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from reloc.cli import app
from reloc.data.catalog import load_dataset
from reloc.data.photos import list_photos, usable_photos
from reloc.data.synth import OBJECT_METHODS, SynthSettings, host_crop, load_host, render_sample, synthesize
from reloc.data.synth.edits import jpeg_shifted
from reloc.data.synth.objects import object_region

SIZE = 128


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return list_photos("default")


def _render(photos, kind: str, seed: int, settings: SynthSettings, size: int = SIZE):
    return render_sample(
        kind,
        photos[seed % len(photos)],
        np.random.default_rng([seed, 43]),
        size,
        settings,
        photos[(seed + 1) % len(photos)],
    )


def _changed(sample) -> np.ndarray:
    return (sample.image != sample.host).any(axis=2)


def _digest(out: Path) -> str:
    """Decoded pixels of Tp/ and Gt/, the manifest and the provenance (not the PNG bytes,
    which depend on the zlib build)."""
    h = hashlib.sha256()
    for path in sorted(out.glob("[TG][pt]/*.png")):
        h.update(path.relative_to(out).as_posix().encode())
        with Image.open(path) as image:
            h.update(np.asarray(image).tobytes())
    for name in ("manifest.json", "provenance.jsonl"):
        h.update((out / name).read_bytes())
    return h.hexdigest()


def test_traits_off_by_default_leave_the_outputs_unchanged(tmp_path):
    """Digests of two tiny sets made by the generator before the traits existed (same
    photos, seeds and settings): every trait off by default draws nothing from the
    stream, so the images, masks, manifests and provenance are the same."""
    common = {"count": 6, "size": 64, "types": ("splice", "copymove", "removal"), "progress": False}
    synthesize("default", tmp_path / "a", seed=5, **common)
    traces = SynthSettings(p_host_jpeg=0.6, p_post_sharpen=0.5, p_region_jpeg=0.5, enlarge_hosts=False)
    synthesize("default", tmp_path / "b", seed=6, settings=traces, **common)
    assert _digest(tmp_path / "a") == "816560aaaaf1f391f00150c36163fa09f471084f6ff7fed4f2bea564fdeadeb5"
    assert _digest(tmp_path / "b") == "9685941d78ef7a764e330b4345b9d0167f374daad45eda0d98b8410f09c14db0"


TRAITS = {
    "object": ({"p_object_region": 1.0}, ("splice", "copymove", "removal")),
    "poisson": ({"p_poisson": 1.0}, ("splice", "copymove")),
    "object+poisson": ({"p_object_region": 1.0, "p_poisson": 1.0}, ("splice", "copymove")),
    "patch removal": ({"inpaint_methods": ("patch",)}, ("removal",)),
    "donor jpeg": ({"p_donor_jpeg": 1.0}, ("splice",)),
    "host grid shift": ({"p_host_jpeg": 1.0, "p_host_grid_shift": 1.0}, ("splice", "removal")),
    "box hosts": ({"host_resize": "box"}, ("splice", "copymove")),
}


@pytest.mark.parametrize("trait", list(TRAITS))
def test_each_trait_is_deterministic_and_its_mask_is_exactly_the_changed_pixels(photos, trait):
    values, kinds = TRAITS[trait]
    settings = SynthSettings(**values)
    for seed, kind in enumerate(kinds):
        first, again = _render(photos, kind, seed, settings), _render(photos, kind, seed, settings)
        assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
        assert first.record == again.record
        other = _render(photos, kind, seed + 10, settings)
        assert not np.array_equal(first.image, other.image)
        assert first.mask.any()
        assert np.array_equal(first.mask, _changed(first)), f"{trait} {kind}: mask is not the changed pixels"


def test_traits_are_recorded(photos):
    obj = _render(photos, "splice", 1, SynthSettings(p_object_region=1.0))
    assert obj.record["region"]["shape"] == "object" and obj.record["region"]["method"] in OBJECT_METHODS
    poisson = _render(photos, "copymove", 2, SynthSettings(p_poisson=1.0, poisson_modes=("mixed",)))
    assert poisson.record["traces"]["poisson"] == "mixed"
    patch = _render(photos, "removal", 3, SynthSettings(inpaint_methods=("patch",)))
    assert patch.record["traces"]["inpaint"] == "patch" and len(patch.record["traces"]["patch_offset"]) == 2
    donor = _render(photos, "splice", 4, SynthSettings(p_donor_jpeg=1.0, donor_jpeg_quality_range=(70, 70)))
    assert donor.record["donor_jpeg_quality"] == 70
    shifted = _render(photos, "splice", 5, SynthSettings(p_host_jpeg=1.0, p_host_grid_shift=1.0))
    assert shifted.record["host_jpeg_grid_shift"] != [0, 0]
    plain = _render(photos, "splice", 5, SynthSettings())
    assert not {"host_jpeg_grid_shift", "donor_jpeg_quality", "final_jpeg_quality", "no_edit"} & set(plain.record)
    assert plain.record["region"]["shape"] != "object" and "poisson" not in plain.record["traces"]


@pytest.mark.parametrize("method", OBJECT_METHODS)
def test_object_regions_are_connected_and_follow_the_photo(photos, method):
    image = np.ascontiguousarray(load_host(photos[0], 160)[:160, :160])
    region, info = object_region(np.random.default_rng(7), image, 0.08 * 160 * 160, method)
    again, _ = object_region(np.random.default_rng(7), image, 0.08 * 160 * 160, method)
    assert np.array_equal(region, again)
    assert info["method"] == method and 0.08 * 160 * 160 / 3 <= region.sum() <= 3 * 0.08 * 160 * 160
    assert cv2.connectedComponents(region, connectivity=8)[0] == 2  # background + one region
    # Its border runs along edges: the colour gradient on the border is above the photo's median.
    gradient = np.hypot(*np.gradient(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)))
    border = (cv2.dilate(region, np.ones((3, 3), np.uint8)) > region) | (
        region > cv2.erode(region, np.ones((3, 3), np.uint8))
    )
    assert np.median(gradient[border]) > np.median(gradient)


def test_removal_mask_is_the_inpainted_region(photos):
    """Removal (OpenCV's or by patch, random or object-shaped region): every changed pixel
    is marked, every marked pixel changed, and the marked region is nearly all of the
    region filled: only pixels filled with their own value are left out, so the mask is
    solid (filling its holes adds almost nothing)."""
    for methods in (("telea",), ("ns",), ("patch",)):
        for p_object in (0.0, 1.0):
            settings = SynthSettings(inpaint_methods=methods, p_object_region=p_object, p_feather=0.0, p_noise=0.0)
            sample = _render(photos, "removal", 11, settings)
            assert np.array_equal(sample.mask, _changed(sample))
            assert sample.record["traces"]["inpaint"] == methods[0]
            assert sample.mask.sum() >= 0.95 * ndimage.binary_fill_holes(sample.mask).sum()


def test_final_jpeg_keeps_pixels_away_from_the_edit_equal_to_the_host(photos):
    settings = SynthSettings(p_final_jpeg=1.0, final_jpeg_qualities=(75,))
    sample = _render(photos, "splice", 2, settings)
    assert sample.record["final_jpeg_quality"] == 75
    # A JPEG block (16 x 16 with chroma subsampling) changes only where it touches the
    # edit, plus a pixel or two of chroma upsampling: outside the edit's blocks dilated by
    # one block, the image equals the host saved alike.
    touched = sample.mask.reshape(SIZE // 16, 16, SIZE // 16, 16).any(axis=(1, 3)).astype(np.uint8)
    near = cv2.dilate(touched, np.ones((3, 3), np.uint8))
    blocks = np.kron(near, np.ones((16, 16), np.uint8))
    assert blocks.mean() < 1.0
    assert np.array_equal(sample.image[blocks == 0], sample.host[blocks == 0])
    assert _changed(sample)[sample.mask].mean() > 0.9


def test_host_jpeg_grid_shift_moves_the_block_boundaries():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (96, 96, 3)).astype(np.float32), (0, 0), 6)
    image = np.clip(smooth * 3 - 250 + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)
    for dy, dx in ((0, 0), (3, 5), (7, 1)):
        out = jpeg_shifted(image, 20, (dy, dx)).astype(np.float32).mean(axis=2)
        steps_x = np.abs(np.diff(out, axis=1)).mean(axis=0)  # step between column c and c + 1
        steps_y = np.abs(np.diff(out, axis=0)).mean(axis=1)
        phase_x = int(np.argmax([steps_x[c::8].mean() for c in range(8)]))
        phase_y = int(np.argmax([steps_y[r::8].mean() for r in range(8)]))
        assert (phase_y, phase_x) == ((7 - dy) % 8, (7 - dx) % 8)


def test_box_hosts_are_block_means_by_an_integer_factor(tmp_path):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (200, 310, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "p.png")
    host = load_host(tmp_path / "p.png", 64, resize="box")  # factor 200 // 64 = 3
    expected = photo[:198, :309].astype(np.float64).reshape(66, 3, 103, 3, 3).mean(axis=(1, 3))
    assert host.shape == (66, 103, 3)
    assert np.array_equal(host, np.rint(expected).astype(np.uint8))
    assert np.array_equal(load_host(tmp_path / "p.png", 128, resize="box"), photo)  # factor 1: untouched
    sample = render_sample("splice", tmp_path / "p.png", np.random.default_rng(0), 64, SynthSettings(host_resize="box"))
    assert sample.image.shape == (64, 64, 3)
    y, x = sample.record["crop"]
    assert np.array_equal(sample.host, host[y : y + 64, x : x + 64])


def test_authentic_samples_are_untouched_crops_listed_as_negative(tmp_path, photos):
    out = tmp_path / "set"
    summary = synthesize(
        "default", out, count=8, seed=2, size=64, settings=SynthSettings(authentic_fraction=0.25), progress=False
    )
    assert summary.per_type["authentic"] == 2 and sum(summary.per_type.values()) == 8
    manifest = json.loads((out / "manifest.json").read_text())
    authentic = [pair for pair in manifest if pair[1] == "Negative"]
    assert [a for a, _ in authentic] == ["Au/000003_authentic.png", "Au/000007_authentic.png"]
    assert sorted(p.name for p in (out / "Au").iterdir()) == ["000003_authentic.png", "000007_authentic.png"]
    refs = {ref.name: ref for ref in load_dataset(out)}
    assert refs["000003_authentic"].mask is None
    records = {r["name"]: r for r in map(json.loads, (out / "provenance.jsonl").read_text().splitlines())}
    record = records["000003_authentic"]
    photo = next(p for p in photos if p.name == Path(record["source"]).name)
    with Image.open(out / "Au" / "000003_authentic.png") as image:
        assert np.array_equal(np.asarray(image), host_crop(photo, 64, record["crop"]))
    # the edits still cycle through the types
    edits = [r["type"] for r in records.values() if r["type"] != "authentic"]
    assert edits == ["splice", "copymove", "removal", "text", "splice", "copymove"]


def test_authentic_samples_get_the_same_whole_image_traces(photos):
    settings = SynthSettings(p_host_jpeg=1.0, p_final_jpeg=1.0, final_jpeg_qualities=(93,))
    sample = _render(photos, "authentic", 0, settings)
    assert not sample.mask.any() and sample.record["final_jpeg_quality"] == 93 and "host_jpeg_quality" in sample.record
    assert np.array_equal(sample.image, sample.host)


def test_no_edit_writes_the_mask_but_leaves_the_image_untouched(photos):
    settings = SynthSettings(no_edit=True, p_post_sharpen=1.0)
    for seed, kind in enumerate(("splice", "copymove", "removal", "text")):
        sample = _render(photos, kind, seed, settings)
        edited = _render(photos, kind, seed, SynthSettings(p_post_sharpen=1.0))
        assert sample.record["no_edit"] is True
        assert np.array_equal(sample.mask, edited.mask) and sample.mask.any()
        assert np.array_equal(sample.image, sample.host)
        assert np.array_equal(sample.host, edited.host)


def _bad_folder(folder: Path) -> dict[str, str]:
    """Photos of every awkward kind; returns the expected outcome of each."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    Image.fromarray(colour).save(folder / "rgb.png")
    Image.fromarray(colour[..., 0]).save(folder / "grey.png")
    cv2.imwrite(str(folder / "deep.png"), (rng.integers(0, 65536, (80, 90, 3))).astype(np.uint16))
    Image.fromarray(np.dstack([colour, np.full((80, 90), 128, np.uint8)])).save(folder / "alpha.png")
    Image.fromarray(colour[:10, :12]).save(folder / "tiny.png")
    (folder / "garbage.png").write_bytes(b"not an image at all")
    Image.fromarray(colour).save(folder / "cut.jpg", quality=90)
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])
    return {"rgb.png": "used", "grey.png": "used", "deep.png": "used", "alpha.png": "used",
            "tiny.png": "too small", "garbage.png": "skipped", "cut.jpg": "skipped"}  # fmt: skip


def test_bad_photos_are_skipped_and_named_or_converted(tmp_path):
    expected = _bad_folder(tmp_path / "photos")
    usable, skipped = usable_photos(list_photos(tmp_path / "photos"))
    assert sorted(p.name for p in usable) == sorted(k for k, v in expected.items() if v == "used")
    reasons = {p.name: reason for p, reason in skipped}
    assert set(reasons) == {"tiny.png", "garbage.png", "cut.jpg"}
    assert "too small" in reasons["tiny.png"]
    summary = synthesize(tmp_path / "photos", tmp_path / "out", count=8, seed=0, size=64, progress=False)
    assert summary.count == 8 and {Path(p).name for p, _ in summary.skipped} == set(reasons)
    config = json.loads((tmp_path / "out" / "synth_config.json").read_text())
    assert {Path(p).name for p, _ in config["skipped_photos"]} == set(reasons)
    assert "skipped" in str(summary) and "garbage.png" in str(summary)


def test_reloc_synth_with_bad_photos_and_settings_files(tmp_path):
    _bad_folder(tmp_path / "photos")
    runner = CliRunner()
    (tmp_path / "traits.yaml").write_text("p_object_region: 1.0\nauthentic_fraction: 0.25\n")
    (tmp_path / "off.yaml").write_text("p_object_region: 0.0\n")
    args = ["synth", "--photos", str(tmp_path / "photos"), "--count", "4", "--size", "48", "--workers", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--settings", str(tmp_path / "traits.yaml")])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "cut.jpg" in result.output and "authentic 1" in result.output
    config = json.loads((tmp_path / "a" / "synth_config.json").read_text())
    assert config["settings"]["p_object_region"] == 1.0
    both = ["--settings", str(tmp_path / "traits.yaml"), "--settings", str(tmp_path / "off.yaml")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), *both])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "b" / "synth_config.json").read_text())
    assert config["settings"]["p_object_region"] == 0.0 and config["settings"]["authentic_fraction"] == 0.25
    (tmp_path / "bad.yaml").write_text("p_object_regions: 1.0\n")
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "c"), "--settings", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "bad.yaml" in result.output and "p_object_regions" in result.output
    assert "Traceback" not in result.output
    for name in ("rgb.png", "grey.png", "deep.png", "alpha.png"):
        (tmp_path / "photos" / name).unlink()
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "no usable photo" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "values",
    [
        {"p_poisson": 1.5},
        {"object_methods": ("slic", "sam")},
        {"object_methods": "slic"},
        {"poisson_modes": ()},
        {"inpaint_methods": ("patch", "magic")},
        {"final_jpeg_qualities": (75, 101)},
        {"host_resize": "bicubic"},
        {"authentic_fraction": 1.0},
    ],
)
def test_bad_trait_settings_are_refused(values):
    with pytest.raises(ValueError):
        SynthSettings(**values)


def test_example_settings_files_load():
    root = Path(__file__).resolve().parents[1] / "configs" / "synth"
    traits = SynthSettings.from_yaml(root / "traits.yaml")
    assert traits.p_object_region > 0 and traits.p_poisson > 0 and traits.authentic_fraction > 0
    assert traits.host_resize == "box" and "patch" in traits.inpaint_methods and traits.p_final_jpeg > 0
    check = SynthSettings.from_yaml(root / "traits.yaml", root / "no-edit.yaml")
    assert check.no_edit and check.authentic_fraction == 0.0 and check.p_object_region == traits.p_object_region


def test_release_recipe_traits_set_adds_hosts_and_reads_the_settings_file(tmp_path, monkeypatch):
    """The recipe's ``extra_data.traits`` (made because the plain-traits experiment trains on
    it): its settings file is read before the recipe's settings, its ``hosts`` join the
    training photos, and the held-out photos stay out."""
    import yaml

    from reloc.release import recipe as recipes
    from reloc.release import training

    recipe = recipes.load_recipe("cpu")
    assert recipe["extra_data"]["traits"]["settings_files"] == ["configs/synth/traits.yaml"]
    assert recipes.data_of(recipe, "plain-traits") == "data-traits" and "data-traits" in recipes.data_parts(recipe)
    photos = tmp_path / "photos" / "skimage"
    photos.mkdir(parents=True)
    more = tmp_path / "more"
    more.mkdir()
    for index, path in enumerate(list_photos("default")):
        pixels = np.asarray(Image.open(path).convert("RGB").resize((96, 96)))
        Image.fromarray(pixels).save((photos if index < 3 else more) / path.name)
    (tmp_path / "off.yaml").write_text(yaml.safe_dump({"p_poisson": 0.0, "authentic_fraction": 0.5}))
    small = {
        "photos": str(tmp_path / "photos"),
        "held_out": ["skimage/astronaut.png"],
        "synth": {"count": 6, "size": 64, "seed": 0, "settings": {"test_fraction": 0.0, "val_fraction": 0.0}},
        "extra_data": {
            "traits": {
                "hosts": [str(more)],
                "settings_files": ["configs/synth/traits.yaml", str(tmp_path / "off.yaml")],
                "settings": {"authentic_fraction": 0.25},
            }
        },
        "models": {"plain-traits": {"data": "traits"}},
    }
    monkeypatch.setattr(training.os, "cpu_count", lambda: 1)  # one process: no worker start-up
    summary = training.make_data(small, tmp_path / "work", "data-traits")
    settings = summary["settings"]
    assert settings["p_object_region"] == 0.6 and settings["host_resize"] == "box"  # from traits.yaml
    assert settings["p_poisson"] == 0.0 and settings["authentic_fraction"] == 0.25  # later file, then the part's
    assert summary["training_photos"] == 3 and summary["per_type"]["authentic"] == 1
    sources = {json.loads(line)["source"] for line in (tmp_path / "work" / "data-traits" / "provenance.jsonl").open()}
    assert not any("astronaut" in s for s in sources) and any("more/" in s for s in sources)
