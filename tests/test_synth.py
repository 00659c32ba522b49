"""Tests of reloc.data.synth: the synthetic tampering generator.

Tiny counts and sizes (8 samples of 128 x 128 from scikit-image's photos) keep it fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from reloc.data.photos import list_photos, photo_ids
from reloc.data.synth import (
    SPLITS,
    TAMPER_TYPES,
    SynthSettings,
    SynthSummary,
    assign_splits,
    host_crop,
    render_sample,
    synthesize,
)
from reloc.data.synth import text as synth_text

SIZE = 128
COUNT = 8
SEED = 3


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return list_photos("default")


@pytest.fixture(scope="module")
def run(tmp_path_factory, photos) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "out"
    summary = synthesize("default", out, count=COUNT, seed=SEED, size=SIZE, progress=False)
    return out, summary


def test_layout_and_summary(run):
    out, summary = run
    assert summary.out == out and summary.count == COUNT and summary.seconds >= 0
    assert summary.per_type == {t: COUNT // 4 for t in TAMPER_TYPES}
    assert sum(summary.per_split.values()) == COUNT
    assert set(summary.per_split) == set(SPLITS)
    assert len(list((out / "Tp").iterdir())) == COUNT
    assert len(list((out / "Gt").iterdir())) == COUNT
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_same_seed_gives_identical_bytes(run, tmp_path):
    out, _ = run
    again = tmp_path / "again"
    synthesize("default", again, count=COUNT, seed=SEED, size=SIZE, progress=False)
    first, second = _files(out), _files(again)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)


def test_parallel_workers_give_the_same_files(run, tmp_path):
    out, _ = run
    parallel = tmp_path / "parallel"
    summary = synthesize("default", parallel, count=COUNT, seed=SEED, size=SIZE, progress=False, workers=2)
    assert summary.workers == 2
    assert _files(out) == _files(parallel)


def test_other_seed_gives_other_images(run, tmp_path):
    out, _ = run
    other = tmp_path / "other"
    synthesize("default", other, count=COUNT, seed=SEED + 1, size=SIZE, progress=False)
    assert _files(out)["Tp/000000_splice.png"] != _files(other)["Tp/000000_splice.png"]


def test_all_types_present_and_named(run):
    out, _ = run
    records = _records(out)
    assert {r["type"] for r in records} == set(TAMPER_TYPES)
    for index, record in enumerate(records):
        assert record["name"] == f"{index:06d}_{record['type']}"
        assert record["split"] in SPLITS
        assert isinstance(record["traces"], dict)


def test_manifest_is_imdl_benco_format(run):
    out, _ = run
    manifest = json.loads((out / "manifest.json").read_text())
    assert isinstance(manifest, list) and len(manifest) == COUNT
    for pair in manifest:
        assert isinstance(pair, list) and len(pair) == 2
        tp, gt = pair
        assert tp.startswith("Tp/") and gt.startswith("Gt/") and tp[3:] == gt[3:]
        assert (out / tp).is_file() and (out / gt).is_file()
    per_split = [p for s in SPLITS for p in json.loads((out / f"manifest_{s}.json").read_text())]
    assert sorted(map(tuple, per_split)) == sorted(map(tuple, manifest))


def test_masks_are_binary_and_within_area_range(run):
    out, _ = run
    low, high = SynthSettings().area_range
    for record in _records(out):
        mask = _png(out / "Gt" / f"{record['name']}.png")
        image = _png(out / "Tp" / f"{record['name']}.png")
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}
        area = float((mask == 255).mean())
        assert low <= area <= high
        assert area == pytest.approx(record["area"], abs=1e-4)


def test_mask_marks_exactly_the_changed_pixels(run, photos):
    out, _ = run
    by_id = dict(zip(photo_ids(photos), photos))
    for record in _records(out):
        host = host_crop(by_id[record["source"]], SIZE, record["crop"])
        image = _png(out / "Tp" / f"{record['name']}.png")
        mask = _png(out / "Gt" / f"{record['name']}.png") == 255
        changed = (image != host).any(axis=2)
        np.testing.assert_array_equal(changed, mask, err_msg=record["name"])


def test_splits_never_share_a_photo(run):
    out, _ = run
    split_of: dict[str, set[str]] = {}
    for record in _records(out):
        for key in ("source", "donor"):
            if record.get(key):
                split_of.setdefault(record[key], set()).add(record["split"])
    assert all(len(splits) == 1 for splits in split_of.values()), split_of


def test_splits_by_photo_with_fractions():
    ids = [f"p{i:02d}.png" for i in range(20)]
    splits = assign_splits(ids, seed=7)
    counts = {s: sum(v == s for v in splits.values()) for s in SPLITS}
    assert counts == {"train": 13, "val": 2, "test": 5}
    assert assign_splits(list(reversed(ids)), seed=7) == splits
    assert assign_splits(ids, seed=8) != splits
    small = assign_splits(["a", "b", "c", "d"], seed=0)
    assert sorted(small.values()) == ["test", "train", "train", "val"]


def test_donors_from_another_photo_set_keep_splits_apart(tmp_path, photos):
    hosts, donors = tmp_path / "hosts", tmp_path / "donors"
    for folder, chosen in ((hosts, photos[:2]), (donors, photos[2:])):
        folder.mkdir()
        for path in chosen:
            (folder / path.name).symlink_to(path)
    out = tmp_path / "out"
    synthesize(hosts, out, count=8, seed=1, types=("splice",), size=96, donors=donors, progress=False)
    records = _records(out)
    host_names = {p.name for p in photos[:2]}
    assert {r["source"] for r in records} <= host_names
    for record in records:
        assert record["type"] == "splice" and record["donor"] != record["source"]
    split_of: dict[str, set[str]] = {}
    for record in records:
        split_of.setdefault(record["source"], set()).add(record["split"])
        split_of.setdefault(record["donor"], set()).add(record["split"])
    assert all(len(s) == 1 for s in split_of.values())


def test_text_works_offline_with_every_font(photos, monkeypatch):
    for font in synth_text._font_files():
        monkeypatch.setattr(synth_text, "_font_files", lambda font=font: (font,))
        for seed in range(2):
            sample = render_sample("text", photos[0], np.random.default_rng(seed), SIZE)
            assert sample.mask.any() and sample.record["text"]["font"] == font[0]
    monkeypatch.setattr(synth_text, "_font_files", lambda: (("pillow-default", None),))
    sample = render_sample("text", photos[1], np.random.default_rng(0), SIZE)
    assert sample.record["text"]["font"] == "pillow-default" and sample.mask.any()


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(TAMPER_TYPES), seed=st.integers(0, 2**32 - 1), size=st.sampled_from([64, 96, 160]))
def test_render_sample_invariants(photos, kind, seed, size):
    settings = SynthSettings(area_range=(0.03, 0.2))
    sample = render_sample(
        kind,
        photos[seed % len(photos)],
        np.random.default_rng(seed),
        size,
        settings,
        donor_path=photos[(seed + 1) % len(photos)],
    )
    assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == (size, size) and sample.mask.dtype == bool
    np.testing.assert_array_equal((sample.image != sample.host).any(axis=2), sample.mask)
    assert 0.03 <= sample.mask.mean() <= 0.2


def test_traces_are_applied_and_recorded(photos):
    always = SynthSettings(
        p_resample=1.0,
        scale_range=(0.7, 0.7),
        interpolations=("area",),
        p_rotate=0.0,
        p_noise=1.0,
        p_blur=0.0,
        p_gamma=1.0,
        p_color_match=1.0,
    )
    sample = render_sample("splice", photos[0], np.random.default_rng(0), SIZE, always, photos[1])
    traces = sample.record["traces"]
    assert traces["resample"] == {"scale": 0.7, "interp": "area"}
    assert 4.0 <= traces["noise_sigma"] <= 10.0 and "gamma" in traces and "color_match" in traces
    never = SynthSettings(
        p_resample=0.0,
        p_rotate=0.0,
        p_flip=0.0,
        p_noise=0.0,
        p_blur=0.0,
        p_denoise=0.0,
        p_gamma=0.0,
        p_color_match=0.0,
        p_region_jpeg=0.0,
        p_feather=0.0,
    )
    sample = render_sample("copymove", photos[0], np.random.default_rng(0), SIZE, never)
    assert set(sample.record["traces"]) == {"source_center"}  # a plain pixel copy


def test_existing_output_needs_overwrite(run, tmp_path):
    out = tmp_path / "o"
    synthesize("default", out, count=4, seed=0, size=64, progress=False)
    with pytest.raises(FileExistsError):
        synthesize("default", out, count=4, seed=0, size=64, progress=False)
    synthesize("default", out, count=2, seed=0, size=64, progress=False, overwrite=True)
    assert len(list((out / "Tp").iterdir())) == 2 and len(json.loads((out / "manifest.json").read_text())) == 2


def test_bad_arguments(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        synthesize(empty, tmp_path / "o1", count=2, seed=0, size=64, progress=False)
    with pytest.raises(ValueError, match="types"):
        synthesize("default", tmp_path / "o2", count=2, seed=0, types=("blur",), size=64, progress=False)
    with pytest.raises(ValueError):
        SynthSettings(p_noise=1.5)
    with pytest.raises(ValueError):
        SynthSettings(area_range=(0.3, 0.1))
    with pytest.raises(ValueError):
        SynthSettings(interpolations=("bicubic",))


def test_whole_image_traces_host_jpeg_and_post_sharpening(photos):
    """The release recipe's traces: a JPEG host before the edit, sharpening after it."""
    from reloc.data.synth.edits import jpeg_roundtrip, load_host

    settings = SynthSettings(p_host_jpeg=1.0, host_jpeg_quality_range=(80, 80), p_post_sharpen=0.0)
    sample = render_sample("removal", photos[0], np.random.default_rng(1), SIZE, settings)
    assert sample.record["host_jpeg_quality"] == 80 and "post_sharpen" not in sample.record
    y, x = sample.record["crop"]
    original = load_host(photos[0], SIZE)[y : y + SIZE, x : x + SIZE]
    expected = np.rint(jpeg_roundtrip(np.ascontiguousarray(original), 80) * 255).astype(np.uint8)
    np.testing.assert_array_equal(sample.host, expected)  # the host the edit was made on is the JPEG
    np.testing.assert_array_equal((sample.image != sample.host).any(axis=2), sample.mask)

    sharp = SynthSettings(p_post_sharpen=1.0, post_sharpen_amount_range=(1.0, 1.0), post_sharpen_sigma_range=(1.0, 1.0))
    sample = render_sample("copymove", photos[0], np.random.default_rng(2), SIZE, sharp)
    assert sample.record["post_sharpen"] == {"amount": 1.0, "sigma": 1.0}
    changed = (sample.image != sample.host).any(axis=2)
    assert changed[sample.mask].mean() > 0.5  # the edit stays visible against the sharpened host
    far = ~cv2_dilate(sample.mask, 9)
    assert not changed[far].any()  # away from the edit the sharpened image equals the sharpened host


def test_default_settings_draw_no_whole_image_traces(photos):
    sample = render_sample("splice", photos[0], np.random.default_rng(3), SIZE, SynthSettings(), photos[1])
    assert "host_jpeg_quality" not in sample.record and "post_sharpen" not in sample.record


def cv2_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def test_hosts_are_enlarged_by_default_and_kept_at_their_size_without_enlarge_hosts(photos):
    """chelsea is 451 x 300: at size 360 the default enlarges it, enlarge_hosts=False makes a
    300-px sample from it as it is (the record says so), and the larger astronaut stays at 360."""
    chelsea, astronaut = (
        next(p for p in photos if p.stem == "chelsea"),
        next(p for p in photos if p.stem == "astronaut"),
    )
    enlarged = render_sample("copymove", chelsea, np.random.default_rng(0), 360)
    assert enlarged.image.shape == (360, 360, 3) and "side" not in enlarged.record
    native = SynthSettings(enlarge_hosts=False)
    sample = render_sample("splice", chelsea, np.random.default_rng(0), 360, native, astronaut)
    assert sample.image.shape == (300, 300, 3) and sample.mask.shape == (300, 300)
    assert sample.record["side"] == 300 and sample.record["resized"] == [300, 451]  # not resampled
    host = host_crop(chelsea, sample.record["side"], sample.record["crop"])
    np.testing.assert_array_equal(sample.host, host)
    np.testing.assert_array_equal((sample.image != host).any(axis=2), sample.mask)
    assert render_sample("removal", astronaut, np.random.default_rng(0), 360, native).image.shape == (360, 360, 3)


def test_a_data_set_without_enlarged_hosts_has_samples_of_their_photos_size(photos, tmp_path):
    summary = synthesize(
        "default",
        tmp_path / "out",
        count=4,
        seed=SEED,
        size=360,
        settings=SynthSettings(enlarge_hosts=False),
        progress=False,
    )
    sides = {}
    for record in _records(tmp_path / "out"):
        with Image.open(tmp_path / "out" / "Tp" / f"{record['name']}.png") as image:
            sides[record["source"]] = image.size
        assert record.get("side", 360) == sides[record["source"]][0]
    assert summary.count == 4 and sorted(set(sides.values())) == [(300, 300), (360, 360)]


def test_reloc_synth_no_enlarge_hosts_keeps_small_photos_at_their_size(tmp_path):
    from typer.testing import CliRunner

    from reloc.cli import app

    argv = ["synth", "--out", str(tmp_path / "out"), "--count", "4", "--size", "360", "--no-enlarge-hosts"]
    result = CliRunner().invoke(app, [*argv, "--workers", "1"])
    assert result.exit_code == 0, result.output
    chelsea = [r for r in _records(tmp_path / "out") if r["source"].endswith("chelsea.png")]
    assert chelsea and all(r["side"] == 300 for r in chelsea)
