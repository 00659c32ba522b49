"""benchmarks/reloc_claim.py: the two trainings compared get the same localizer updates in
every preset, seeds become separate runs, and the paired differences and the interval over
seeds are computed as by hand."""

from __future__ import annotations

import statistics

import pytest

from conftest import load_benchmark
from reloc.release import recipe as recipes


@pytest.fixture
def claim(monkeypatch):
    return load_benchmark("reloc_claim.py", "reloc_claim_benchmark", monkeypatch)


@pytest.mark.parametrize("preset", ["cpu", "cpu-fp32"])
def test_reloc_and_its_baseline_train_the_localizer_alike(claim, preset):
    recipe = claim.seeded_recipe(recipes.load_recipe(preset), [0, 3])
    reloc, baseline = (claim.localizer_updates(recipe, part) for part in claim.PARTS)
    assert reloc == baseline and reloc["updates"] > 0
    assert recipe["models"]["reloc-restored"]["overrides"][-1] == "train.seed=0"
    assert recipe["models"]["dp-restored-seed3"]["overrides"][-1] == "train.seed=3"
    # a baseline given fewer updates than ReLoc's localizer is refused before any training
    recipe["models"]["dp-restored"]["overrides"].append("train.epochs=1")
    with pytest.raises(SystemExit, match="not trained alike"):
        claim.train(recipe, None, [0], jobs=1)


def rows(values: dict[str, float], metric_shift: float = 0.0) -> list[dict]:
    """Casia forgeries named ``Sp_D_*`` with F1 and AUC ``value + metric_shift``."""
    return [
        {"key": f"casia/none/{name}", "source": "casia", "distortion": "none", "image": name, "tampered": True,
         "f1": value, "auc": value + metric_shift, "best_f1": value}
        for name, value in values.items()
    ]  # fmt: skip


def test_paired_differences_and_the_interval_over_seeds_match_a_hand_computation(claim):
    images = {"Sp_D_a.jpg": 0.2, "Sp_D_b.jpg": 0.4}
    records = {
        "ReLoc{D} seed 0": rows({k: v + 0.1 for k, v in images.items()}),
        "D|P{D} seed 0": rows(images),
        "ReLoc{D} seed 1": rows({k: v + 0.3 for k, v in images.items()}),
        "D|P{D} seed 1": rows(images),
        "robust{D}": rows(images),
        "R(restorer-jpeg)+L(robust){D}": rows(images, metric_shift=-0.05),
        "R(ReLoc seed 0)+L(robust){D}": rows(images),
        "R(ReLoc seed 1)+L(robust){D}": rows(images),
    }
    records["D|P{D} seed 0"].append(  # an authentic photo: no pixel metric, its flagged share
        {"key": "casia/none/Au_x.jpg", "source": "casia", "distortion": "none", "image": "Au_x.jpg",
         "tampered": False, "flagged": 0.25}
    )  # fmt: skip
    summary = claim.summarize(records, [0, 1])
    f1 = summary["compared"]["ReLoc{D} - D|P{D}"]["casia none all"]["f1"]
    assert [d["mean"] for d in f1["per_seed"]] == pytest.approx([0.1, 0.3])
    assert f1["mean"] == pytest.approx(0.2)
    half = 12.7062 * statistics.stdev([0.1, 0.3]) / 2**0.5  # t(0.975, 1 degree of freedom)
    assert f1["seed_interval"] == pytest.approx([0.2 - half, 0.2 + half], abs=1e-3)
    auc = summary["compared"]["R(restorer-jpeg)+L(robust){D} - robust{D}"]["casia none splice"]["auc"]
    assert auc["mean"] == pytest.approx(-0.05) and auc["seed_interval"] is None  # one restorer, no seeds
    copy_moves = summary["compared"]["ReLoc{D} - D|P{D}"]["casia none copy-move"]["f1"]
    assert copy_moves["mean"] is None  # no Sp_S_ image
    table = summary["table"]["casia none all"]
    assert table["D|P{D} seed 0"]["authentic_pixels_flagged"]["mean"] == 0.25
    assert table["ReLoc{D} seed 1"]["f1"]["mean"] == pytest.approx(0.6)
    results = {"summary": summary, "seeds": [0, 1], "command": "python benchmarks/reloc_claim.py", "commit": "0" * 40,
               "processor": {"cpu": "test"}, "training": {"localizer_updates": {"updates": 500}}}  # fmt: skip
    text = claim.markdown(results)
    assert "| D\\|P{D} seed 0 |" in text and "### casia1-dev as distributed, splices" in text
    # sources with no record are named once, not drawn as empty rows
    assert "### camera-size set JPEG 90" not in text and "| camera-size set JPEG 90 |" not in text
    assert "copy-moves, camera-size set JPEG 90, camera-size set JPEG 75, synthetic edits JPEG 75" in text
