"""benchmarks/inference_variants.py: mirrored maps are mapped back onto the image, and the
variants are scored per image at every threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_benchmark


@pytest.fixture()
def variants(monkeypatch):
    return load_benchmark("inference_variants.py", "inference_variants", monkeypatch)


class PixelwisePipeline:
    """Stands in for a pipeline: the 'probability' of a pixel is its red value."""

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return image[0].clone()


@pytest.mark.parametrize("dims", [(-1,), (-2,), (-2, -1)])
def test_a_mirrored_view_is_mapped_back_onto_the_image(variants, dims):
    image = torch.rand(3, 5, 7)  # no symmetry: a map left mirrored would not match
    mirrored = variants.mirrored_map(PixelwisePipeline(), image, dims)
    np.testing.assert_array_equal(mirrored, image[0].numpy())
    assert not np.array_equal(image.flip(dims)[0].numpy(), image[0].numpy())


def test_scores_are_per_image_means_with_the_best_threshold(variants):
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2] = True
    exact = mask.astype(np.float32) * 0.9 + 0.05  # right at every threshold in (0.05, 0.95)
    inverse = 1.0 - exact
    figures = variants.score([exact, inverse], [mask, mask], ["a", "b"], [0.3, 0.5, 0.7])
    assert figures["auc"] == pytest.approx(0.5)  # AUC 1 and 0
    assert figures["f1"]["0.5"] == pytest.approx(0.5)  # F1 1 and 0
    assert [record["name"] for record in figures["records"]] == ["a", "b"]
    assert figures["best_f1"]["f1"] == max(figures["f1"].values())


def test_bad_arguments_and_a_damaged_data_folder_end_in_one_line(variants, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        variants.main(["--images", "0"])
    assert exit_info.value.code == 2 and "--images must be at least 1" in capsys.readouterr().err
    manifest = tmp_path / variants.DATA_PART / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text("{not json")
    with pytest.raises(SystemExit) as exit_info:
        variants.main(["--work", str(tmp_path), "--out", str(tmp_path / "out.json")])
    assert str(exit_info.value.code).startswith(f"error: {manifest}")
    assert not (tmp_path / "out.json").exists()
