"""Public benchmark layouts read as unpacked, from tiny fake trees of generated images."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from fake_trees import build_fake_tree, expected_mask
from reloc.cli import app
from reloc.data.catalog import DatasetError, load_dataset, load_pair, read_benco_json, split_by_source, validate
from reloc.data.inspection import inspect_dataset
from reloc.data.io import ImageError, MaskRule, read_mask
from reloc.data.layouts import LAYOUTS, detect_layout

NAMES = [layout.name for layout in LAYOUTS]


@pytest.mark.parametrize("name", NAMES)
def test_each_layout_is_detected_and_its_masks_read_the_right_way_round(name, tmp_path):
    tree = build_fake_tree(name, tmp_path / name, tampered=3, authentic=2, missing=1)
    assert detect_layout(tree.root).name == name
    with pytest.warns(UserWarning, match="without a mask"):
        refs = load_dataset(tree.root)
    tampered = [ref for ref in refs if ref.mask is not None]
    assert len(tampered) == 3 and len(refs) - len(tampered) == tree.authentic
    for ref in tampered:
        image, mask = load_pair(ref)
        assert image.shape == (*expected_mask().shape, 3)
        assert np.array_equal(mask, expected_mask()), f"{ref.mask} read with {ref.mask_rule.describe()}"
    for ref in refs:
        if ref.mask is None:
            assert not load_pair(ref)[1].any()


@pytest.mark.parametrize("name", NAMES)
def test_inspect_counts_faults_of_each_layout(name, tmp_path):
    tree = build_fake_tree(name, tmp_path / name, tampered=4, authentic=2, missing=1, missized=1, unreadable=1)
    found = inspect_dataset(tree.root, progress=False)
    assert found.layout == name
    assert (found.tampered, found.authentic) == (tree.tampered, tree.authentic)
    assert len(found.missing) == 1 and len(found.missized) == 1 and len(found.unreadable) == 1
    assert len(found.usable) == tree.usable
    assert found.tampered_share < 0.5  # the polarity is right: the rectangle, not its complement
    assert found.histogram.sum() > 0


def test_inverted_polarity_and_colour_channel_rules(tmp_path):
    mask = np.full((4, 6, 3), 255, dtype=np.uint8)
    mask[1:3, 1:4] = 0
    from PIL import Image

    Image.fromarray(mask).save(tmp_path / "black-marks.png")
    assert read_mask(tmp_path / "black-marks.png", rule=MaskRule(invert=True)).sum() == 6
    assert read_mask(tmp_path / "black-marks.png").sum() == 24 - 6
    colour = np.zeros((4, 6, 3), dtype=np.uint8)
    colour[..., 0] = 255  # red host
    colour[1:3, 1:4] = (0, 255, 0)  # green splice
    Image.fromarray(colour).save(tmp_path / "colour.png")
    assert read_mask(tmp_path / "colour.png", rule=MaskRule(channel=1)).sum() == 6
    assert read_mask(tmp_path / "colour.png", rule=MaskRule(channel=0)).sum() == 24 - 6
    with pytest.raises(ValueError):
        MaskRule(channel=3)


def test_sources_keep_the_photos_of_a_sample_in_one_split(tmp_path):
    # CASIA names cite their Au photos; COVERAGE pairs {N}t with {N}; NIST16 has BaseFileName
    for name in ("casia1", "casia2", "coverage", "nist16", "imd2020", "korus"):
        tree = build_fake_tree(name, tmp_path / name, tampered=6, authentic=4)
        refs = load_dataset(tree.root)
        splits = split_by_source(refs, seed=0, test_fraction=0.3, val_fraction=0.2)
        where = {photo: split for split, members in splits.items() for ref in members for photo in ref.sources}
        for split, members in splits.items():
            assert all(where[photo] == split for ref in members for photo in ref.sources)
    coverage = load_dataset(tmp_path / "coverage")
    assert {ref.source for ref in coverage if ref.image.stem == "1t"} == {
        ref.source for ref in coverage if ref.image.stem == "1"
    }


def test_mis_sized_masks_are_skipped_or_resized(tmp_path):
    tree = build_fake_tree("coverage", tmp_path / "c", tampered=3, authentic=1, missized=1)
    refs = load_dataset(tree.root)
    with pytest.warns(UserWarning, match=r"mask is 32x56 \(HxW\) but its image is 32x48"):
        kept = validate(refs)
    assert len(kept) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(validate(refs, mask_resize="nearest")) == 4
    bad = next(ref for ref in refs if ref not in kept)
    with pytest.raises(ImageError, match="1forged.tif"):
        load_pair(bad)
    assert load_pair(bad, mask_resize="nearest")[1].shape == (32, 48)


def test_inspect_command_and_benco_json_with_converted_masks(tmp_path):
    tree = build_fake_tree("dso1", tmp_path / "tifs-database", tampered=3, authentic=1, missized=1)
    out = tmp_path / "lists" / "dso1.json"
    result = CliRunner().invoke(app, ["data", "inspect", str(tree.root), "--write-json", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "layout: dso1" in result.output and "luminance < 128 is tampered" in result.output
    assert "mask of another size: 1" in result.output
    entries = json.loads(out.read_text())
    assert len(entries) == 3 and sum(mask == "Negative" for _, mask in entries) == 1
    for ref in read_benco_json(out):  # the list reads back with white = tampered
        if ref.mask is not None:
            assert ref.mask.parent.name == "dso1_masks"
            assert np.array_equal(load_pair(ref)[1], expected_mask())
    missing = CliRunner().invoke(app, ["data", "inspect", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output


def test_unknown_folder_names_the_layouts(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetError, match="casia2, columbia, coverage"):
        load_dataset(tmp_path)


def test_training_skips_mis_sized_masks_unless_resized(tmp_path):
    from reloc.config import load_config
    from reloc.engine.distributed import DistContext
    from reloc.engine.trainer import build_datasets

    tree = build_fake_tree("casia2", tmp_path / "CASIA2", tampered=8, authentic=4, missized=2)
    options = [f"data.dataset={tree.root}", "data.crop=16", "data.val_fraction=0.2", "data.test_fraction=0.2"]
    with pytest.warns(UserWarning, match="skipping 2 of 12 samples"):
        train, val, _ = build_datasets(load_config(None, options), False, DistContext())
    assert len(train) + len(val) < 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, val, _ = build_datasets(load_config(None, [*options, "data.mask_resize=nearest"]), False, DistContext())
    assert all(train[i]["mask"].shape == (1, 16, 16) for i in range(len(train)))
    with pytest.raises(ValueError, match="mask_resize"):
        load_config(None, [*options, "data.mask_resize=bilinear"])
