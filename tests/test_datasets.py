"""Tests for reloc.data.catalog (listing, validation, splits) and reloc.data.datasets (torch datasets)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from reloc.data.catalog import DatasetError, SampleRef, load_dataset, split_by_source, validate
from reloc.data.datasets import TrainCrops, WholeImages
from reloc.data.io import ImageError


def _write_image(path, height=24, width=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def _write_mask(path, height=24, width=32, box=(4, 12, 8, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((height, width), dtype=np.uint8)
    top, bottom, left, right = box
    mask[top:bottom, left:right] = 255
    Image.fromarray(mask).save(path)
    return path


@pytest.fixture
def tp_gt(tmp_path):
    root = tmp_path / "casia"
    _write_image(root / "Tp" / "a.jpg", seed=1)
    _write_mask(root / "Gt" / "a_gt.png")
    _write_image(root / "Tp" / "b.png", seed=2)
    _write_mask(root / "Gt" / "b_mask.png")
    _write_image(root / "Tp" / "c.tif", seed=3)
    _write_mask(root / "Gt" / "c-mask.bmp")
    _write_image(root / "Tp" / "d.jpg", seed=4)
    _write_mask(root / "Gt" / "d_GT.png")
    _write_image(root / "Tp" / "e.jpg", seed=5)
    _write_mask(root / "Gt" / "e.png")
    _write_image(root / "Au" / "f.jpg", seed=6)
    (root / "Tp" / "notes.txt").write_text("not an image")
    return root


def _benco(tmp_path, entries, name="list.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def test_tp_gt_pairs_suffixes_and_extensions(tp_gt):
    refs = load_dataset(tp_gt)
    pairs = {ref.image.name: (ref.mask.name if ref.mask else None) for ref in refs}
    assert pairs == {
        "a.jpg": "a_gt.png",
        "b.png": "b_mask.png",
        "c.tif": "c-mask.bmp",
        "d.jpg": "d_GT.png",
        "e.jpg": "e.png",
        "f.jpg": None,
    }
    assert [ref.source for ref in refs] == ["a", "b", "c", "d", "e", "f"]
    assert all(ref.split is None for ref in refs)


def test_tp_without_mask_is_an_error_listing_names(tp_gt):
    _write_image(tp_gt / "Tp" / "lonely.jpg")
    _write_image(tp_gt / "Tp" / "alone.png")
    with pytest.raises(DatasetError) as caught:
        load_dataset(tp_gt)
    assert "lonely.jpg" in str(caught.value) and "alone.png" in str(caught.value)
    assert "2 image(s)" in str(caught.value)


def test_two_masks_for_one_image_is_an_error(tp_gt):
    _write_mask(tp_gt / "Gt" / "a_mask.png")
    with pytest.raises(DatasetError, match="two masks"):
        load_dataset(tp_gt)


def test_benco_json_with_negative_gives_zero_mask(tmp_path):
    _write_image(tmp_path / "img" / "t.png", seed=1)
    _write_mask(tmp_path / "msk" / "t.png")
    _write_image(tmp_path / "img" / "n.jpg", seed=2)
    path = _benco(tmp_path, [["img/t.png", "msk/t.png"], ["img/n.jpg", "Negative"]])
    refs = load_dataset(path)
    assert refs == [
        SampleRef(tmp_path / "img" / "t.png", tmp_path / "msk" / "t.png"),
        SampleRef(tmp_path / "img" / "n.jpg", None),
    ]
    negative = WholeImages(refs)[1]
    assert negative["mask"].shape == (1, 24, 32)
    assert negative["mask"].abs().sum() == 0
    assert WholeImages(refs)[0]["mask"].sum() == 8 * 12


@pytest.mark.parametrize(
    "entries",
    [{"a": 1}, [["only-one"]], [["a.png", 3]], [["", "Negative"]]],
)
def test_malformed_benco_json(tmp_path, entries):
    with pytest.raises(DatasetError, match="list.json"):
        load_dataset(_benco(tmp_path, entries))


def test_invalid_json_text(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[[")
    with pytest.raises(DatasetError, match="cannot read JSON"):
        load_dataset(path)


def _manifest(tmp_path, provenance):
    out = tmp_path / "out"
    entries = []
    for index in range(len(provenance)):
        _write_image(out / "images" / f"{index:03d}.png", seed=index)
        _write_mask(out / "masks" / f"{index:03d}.png")
        entries.append([f"images/{index:03d}.png", f"masks/{index:03d}.png"])
    (out / "manifest.json").write_text(json.dumps(entries))
    lines = [json.dumps(record) for record in provenance]
    (out / "provenance.jsonl").write_text("\n".join(lines) + "\n")
    return out


def test_manifest_with_provenance(tmp_path):
    out = _manifest(
        tmp_path,
        [
            {"name": "000", "source": "p1", "split": "train"},
            {"name": "001.png", "source": ["p3", "p2"], "split": "train"},
            {"name": "images/002.png", "source": "p4", "split": "test"},
        ],
    )
    (out / "manifest_sub.json").write_text(json.dumps([["images/002.png", "masks/002.png"]]))
    assert [ref.source for ref in load_dataset(out / "manifest_sub.json")] == ["p4"]
    for path in (out, out / "manifest.json"):
        refs = load_dataset(path)
        assert [ref.source for ref in refs] == ["p1", "p2+p3", "p4"]
        assert refs[1].sources == ("p2", "p3")
        splits = split_by_source(refs, seed=0)
        assert [ref.name for ref in splits["train"]] == ["000", "001"]
        assert [ref.name for ref in splits["test"]] == ["002"]
        assert splits["val"] == []


def test_manifest_provenance_problems(tmp_path):
    out = _manifest(tmp_path, [{"name": "000", "source": "p1"}, {"name": "999", "source": "p2"}])
    with pytest.raises(DatasetError, match="no provenance record.*001.png"):
        load_dataset(out)
    (out / "provenance.jsonl").write_text('{"name": "000"}\n')
    with pytest.raises(DatasetError, match="provenance.jsonl:1"):
        load_dataset(out)


def test_recorded_splits_sharing_a_photo_are_refused(tmp_path):
    out = _manifest(
        tmp_path,
        [
            {"name": "000", "source": "p1", "split": "train"},
            {"name": "001", "source": ["p1", "p2"], "split": "test"},
        ],
    )
    with pytest.raises(DatasetError, match="p1"):
        split_by_source(load_dataset(out), seed=0)


def test_partially_recorded_splits_are_refused(tmp_path):
    refs = [SampleRef(tmp_path / "a.png", split="train"), SampleRef(tmp_path / "b.png")]
    with pytest.raises(DatasetError, match="only 1 of 2"):
        split_by_source(refs, seed=0)


def test_empty_datasets_name_the_path(tmp_path):
    (tmp_path / "empty" / "Tp").mkdir(parents=True)
    (tmp_path / "empty" / "Gt").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="list.json.*empty"):
        load_dataset(_benco(tmp_path, []))
    with pytest.raises(DatasetError, match="no such"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(tmp_path / "other")
    with pytest.raises(DatasetError):
        validate([])
    with pytest.raises(DatasetError):
        split_by_source([], seed=0)


def test_validate_skips_corrupt_file_with_one_warning(tp_gt):
    (tp_gt / "Tp" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _write_mask(tp_gt / "Gt" / "d_GT.png", height=10, width=10)  # wrong size
    refs = load_dataset(tp_gt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        good = validate(refs)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "b.png" in message and "d_GT.png" in message and "2 of 6" in message
    assert [ref.name for ref in good] == ["a", "c", "e", "f"]


def test_validate_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "x.jpg").write_text("text")
    (tmp_path / "y.png").write_bytes(b"")
    refs = [SampleRef(tmp_path / "x.jpg"), SampleRef(tmp_path / "y.png")]
    with pytest.raises(DatasetError) as caught:
        validate(refs)
    assert "x.jpg" in str(caught.value) and "y.png" in str(caught.value)


def test_split_is_deterministic_and_source_disjoint(tmp_path):
    refs = [SampleRef(tmp_path / f"s{i:02d}_{k}.png", source=f"photo{i // 3}") for i in range(60) for k in range(2)]
    refs.append(SampleRef(tmp_path / "bridge.png", source="photo0+photo7"))
    first = split_by_source(refs, seed=3)
    assert first == split_by_source(refs, seed=3)
    reordered = split_by_source(list(reversed(refs)), seed=3)
    assert {k: set(v) for k, v in reordered.items()} == {k: set(v) for k, v in first.items()}
    assert first != split_by_source(refs, seed=4)
    photos = {split: {photo for ref in members for photo in ref.sources} for split, members in first.items()}
    assert not photos["train"] & photos["val"]
    assert not photos["train"] & photos["test"]
    assert not photos["val"] & photos["test"]
    assert sum(len(members) for members in first.values()) == len(refs)
    assert 0.2 <= len(first["test"]) / len(refs) <= 0.32
    assert 0.05 <= len(first["val"]) / len(refs) <= 0.17


def test_split_fraction_checks(tmp_path):
    refs = [SampleRef(tmp_path / "a.png")]
    with pytest.raises(ValueError, match="fractions"):
        split_by_source(refs, seed=0, test_fraction=0.6, val_fraction=0.4)
    assert split_by_source(refs, seed=0, test_fraction=0, val_fraction=0)["train"] == refs


def test_train_crops_shapes_and_determinism(tp_gt):
    refs = load_dataset(tp_gt)
    dataset = TrainCrops(refs, crop=16, distortion="jpeg:75", seed=1)
    item = dataset[0]
    assert list(item) == ["plain", "distorted", "mask", "name"]
    assert item["plain"].shape == (3, 16, 16) and item["distorted"].shape == (3, 16, 16)
    assert item["mask"].shape == (1, 16, 16) and item["name"] == "a"
    assert item["plain"].dtype == item["mask"].dtype == torch.float32
    again = TrainCrops(refs, crop=16, distortion="jpeg:75", seed=1)[0]
    for key in ("plain", "distorted", "mask"):
        assert torch.equal(item[key], again[key])
    assert not torch.equal(item["distorted"], item["plain"])
    # the mask and plain crop are those of the undistorted dataset: JPEG never touches them
    clean = TrainCrops(refs, crop=16, seed=1)[0]
    assert "distorted" not in clean
    assert torch.equal(clean["plain"], item["plain"]) and torch.equal(clean["mask"], item["mask"])
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}


def test_train_crops_epochs_change_crops_and_resume_exactly(tp_gt):
    refs = load_dataset(tp_gt)
    dataset = TrainCrops(refs, crop=8, distortion="noise:5", seed=0)
    epoch0 = [dataset[i]["distorted"] for i in range(len(dataset))]
    dataset.set_epoch(1)
    epoch1 = [dataset[i]["distorted"] for i in range(len(dataset))]
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    resumed = TrainCrops(refs, crop=8, distortion="noise:5", seed=0)
    resumed.set_epoch(1)
    assert all(torch.equal(resumed[i]["distorted"], epoch1[i]) for i in range(len(refs)))
    with pytest.raises(ValueError):
        dataset.set_epoch(-1)


def test_train_crops_pad_small_images_and_tamper_bias(tmp_path):
    image = _write_image(tmp_path / "small.png", height=10, width=40)
    mask = _write_mask(tmp_path / "small_mask.png", height=10, width=40, box=(2, 4, 30, 33))
    refs = [SampleRef(image, mask)]
    padded = TrainCrops(refs, crop=16)[0]
    assert padded["plain"].shape == (3, 16, 16)
    biased = TrainCrops(refs, crop=16, tamper_bias=1.0)
    for epoch in range(5):
        biased.set_epoch(epoch)
        assert biased[0]["mask"].sum() > 0


def test_train_crops_with_dataloader(tp_gt):
    dataset = TrainCrops(load_dataset(tp_gt), crop=8, distortion="jpeg:70-100")
    loader = DataLoader(dataset, batch_size=3)
    batch = next(iter(loader))
    assert batch["plain"].shape == (3, 3, 8, 8) and batch["mask"].shape == (3, 1, 8, 8)
    assert batch["name"] == ["a", "b", "c"]


def test_whole_images_deterministic_per_index(tp_gt):
    refs = load_dataset(tp_gt)
    dataset = WholeImages(refs, distortion="jpeg:70-100", seed=2)
    first, second = dataset[3], WholeImages(refs, distortion="jpeg:70-100", seed=2)[3]
    assert first["plain"].shape == first["distorted"].shape == (3, 24, 32)
    assert first["mask"].shape == (1, 24, 32)
    assert torch.equal(first["distorted"], second["distorted"])
    assert "distorted" not in WholeImages(refs)[3]


def test_whole_images_wrong_mask_size_names_mask(tmp_path):
    image = _write_image(tmp_path / "a.png")
    mask = _write_mask(tmp_path / "a_gt.png", height=12, width=12)
    with pytest.raises(ImageError, match="a_gt.png"):
        WholeImages([SampleRef(image, mask)])[0]


def test_train_crops_preload_fills_the_cache_up_to_its_budget_before_any_item(tp_gt, monkeypatch):
    refs = validate(load_dataset(tp_gt))
    fresh = TrainCrops(refs, crop=16, distortion="jpeg:80", seed=3)
    expected = [fresh[index]["distorted"] for index in range(len(refs))]
    preloaded = TrainCrops(refs, crop=16, distortion="jpeg:80", seed=3, cache_mb=1)
    assert preloaded.preload(threads=2) == len(refs)
    partial = TrainCrops(refs, crop=16, cache_mb=1)
    partial.cache_bytes = sum(array.nbytes for array in preloaded._cache[0])  # room for one sample of this size
    assert partial.preload(threads=2) == 1 and list(partial._cache) == [0]
    monkeypatch.setattr("reloc.data.datasets.load_pair", None)  # items now come from the cache alone
    for index in range(len(refs)):
        assert torch.equal(expected[index], preloaded[index]["distorted"])


def test_train_crops_cache_keeps_8_bit_pixels_as_uint8_and_16_bit_ones_as_float(tmp_path):
    root = tmp_path / "set"
    _write_image(root / "Tp" / "a.png", seed=1)
    _write_mask(root / "Gt" / "a_gt.png")
    deep = np.random.default_rng(2).integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    cv2.imwrite(str(root / "Tp" / "b.png"), deep)
    _write_mask(root / "Gt" / "b_gt.png")
    refs = validate(load_dataset(root))
    fresh = TrainCrops(refs, crop=16, distortion="jpeg:80", seed=3, tamper_bias=0.5)
    cached = TrainCrops(refs, crop=16, distortion="jpeg:80", seed=3, tamper_bias=0.5, cache_mb=1)
    cached.preload(threads=1)
    kept = {Path(ref.image).name: [array.dtype for array in cached._cache[i]] for i, ref in enumerate(refs)}
    assert kept == {"a.png": [np.uint8, np.uint8], "b.png": [np.float32, np.uint8]}
    for index in range(len(refs)):
        for key in ("plain", "distorted", "mask"):
            assert torch.equal(fresh[index][key], cached[index][key]), (index, key)


def test_sample_ref_rejects_unknown_split(tmp_path):
    with pytest.raises(DatasetError, match="split"):
        SampleRef(tmp_path / "a.png", split="holdout")


def test_train_crops_cache_gives_the_same_items_within_its_budget(tp_gt):
    refs = validate(load_dataset(tp_gt))
    fresh = TrainCrops(refs, crop=16, distortion="jpeg:80", seed=3, tamper_bias=0.5)
    cached = TrainCrops(refs, crop=16, distortion="jpeg:80", seed=3, tamper_bias=0.5, cache_mb=1)
    for epoch in (0, 1):
        fresh.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(refs)):
            a, b = fresh[index], cached[index]
            for key in ("plain", "distorted", "mask"):
                assert torch.equal(a[key], b[key]), (epoch, index, key)
    assert len(cached._cache) == len(refs) and cached._cached_bytes <= 2**20
    tiny = TrainCrops(refs, crop=16, cache_mb=0)
    tiny[0]
    assert not tiny._cache
    with pytest.raises(ValueError, match="cache_mb"):
        TrainCrops(refs, crop=16, cache_mb=-1)
