"""The image score, its calibration and bands, and image-level figures in ``reloc eval`` / ``reloc report``."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from fake_trees import build_fake_tree
from reloc import pretrained
from reloc.cli import app
from reloc.engine import detection
from reloc.engine.detection import (
    AGGREGATIONS,
    Aggregation,
    ModelCalibration,
    assess,
    band,
    evidence_text,
    image_level,
    pretrained_label,
    read_calibration,
)
from reloc.models import create_localizer
from reloc.models.weights import save_network


def test_aggregations_by_hand():
    probabilities = np.zeros((10, 20), dtype=np.float32)
    probabilities[0, :4] = [0.9, 0.8, 0.7, 0.6]
    assert detection.top_mean(probabilities, 0.01) == pytest.approx(0.85)  # top 2 of 200 pixels
    assert detection.top_mean(probabilities, 0.0) == pytest.approx(0.9)  # at least one pixel
    assert detection.area_above(probabilities, 0.65) == pytest.approx(3 / 200)
    assert detection.smoothed_max(np.full((9, 9), 0.3, np.float32), 2) == pytest.approx(0.3)
    spike = np.zeros((21, 21), dtype=np.float32)
    spike[10, 10] = 1.0
    blurred = detection.smoothed_max(spike, 2)  # one pixel spread over a Gaussian: 1 / (2 pi sigma^2)
    assert blurred == pytest.approx(1 / (2 * math.pi * 4), rel=0.05)
    assert Aggregation.parse("smoothed-max:2")(spike) == blurred


def test_aggregation_names_are_checked():
    with pytest.raises(ValueError, match="unknown aggregation"):
        Aggregation("median", 1)
    with pytest.raises(ValueError, match="NAME:NUMBER"):
        Aggregation.parse("top-mean")
    assert Aggregation.parse("top-mean:0.01").label == "top-mean:0.01"


MODEL = ModelCalibration(
    threshold=0.4,
    strong_threshold=0.7,
    false_alarm_rate=0.05,
    strong_false_alarm_rate=0.01,
    tampered_recall=0.6,
    strong_tampered_recall=0.3,
    image_auc=0.8,
    image_auc_ci95=(0.75, 0.85),
    measured_on="a toy set",
)


def test_band_rule():
    assert band(0.1, MODEL) == band(0.4, MODEL) == "no evidence found"  # at the threshold: not flagged
    assert band(0.41, MODEL) == band(0.7, MODEL) == "weak evidence"
    assert band(0.71, MODEL) == "strong evidence"
    assert MODEL.informative
    assert not dataclasses.replace(MODEL, image_auc=0.55, image_auc_ci95=(0.48, 0.61)).informative


def test_a_model_whose_score_does_not_separate_gets_no_band(monkeypatch):
    packaged = detection.calibration()
    blind = dataclasses.replace(MODEL, image_auc=0.45, image_auc_ci95=(0.40, 0.50))
    monkeypatch.setattr(detection, "calibration", lambda: dataclasses.replace(packaged, models={"plain": blind}))
    record = assess(0.99, "pretrained:plain")
    assert record["band"] is None and "did not separate" in record["caveat"] and "0.45" in record["caveat"]
    assert record["false_alarm_rate"] == 0.05  # the measured figures stay
    informative = dataclasses.replace(packaged, models={"plain": MODEL})
    monkeypatch.setattr(detection, "calibration", lambda: informative)
    strong = assess(0.99, "pretrained:plain")
    assert strong["band"] == "strong evidence"
    text = evidence_text(strong)
    assert "above 0.700" in text and "1.0% of authentic and 30.0% of tampered" in text and "not a verdict" in text
    assert "(a toy set)" in text
    weak = evidence_text(assess(0.5, "pretrained:plain"))
    assert weak.startswith("weak evidence") and "5.0% of authentic and 60.0% of tampered" in weak
    none = evidence_text(assess(0.2, "pretrained:plain"))
    assert none.startswith("no evidence found") and "at or below 0.400" in none


def test_packaged_calibration_is_consistent():
    packaged = detection.calibration()
    assert packaged.aggregation.name in AGGREGATIONS
    assert packaged.models and set(packaged.models) <= set(pretrained.NAMES)
    for model in packaged.models.values():
        assert model.threshold <= model.strong_threshold
        assert 0 <= model.strong_false_alarm_rate <= model.false_alarm_rate <= 1
    listed = detection.detection_lines()
    assert all(f"pretrained:{name}" in listed for name in packaged.models)
    assert detection.image_score(np.full((8, 8), 0.25, np.float32)) == pytest.approx(
        packaged.aggregation(np.full((8, 8), 0.25, np.float32))
    )


def test_assess_follows_the_packaged_calibration_and_bands_no_other_model():
    for name, model in detection.calibration().models.items():
        above = assess(model.strong_threshold + 1e-6, pretrained.PREFIX + name)
        assert above["false_alarm_rate"] == model.false_alarm_rate and above["measured_on"]
        assert above["band"] == ("strong evidence" if model.informative else None)
        assert assess(model.threshold, name)["band"] == ("no evidence found" if model.informative else None)
    other = assess(0.99, "runs/my-run")
    assert (
        other["band"] is None
        and other["false_alarm_rate"] is None
        and "no false-alarm rate has been measured" in other["caveat"]
    )
    assert evidence_text(other).startswith("image score 0.990; no band")


def test_pretrained_label_needs_the_model_exactly():
    reloc_localizer = pretrained.weights_file("reloc", "localizer")
    reloc_restorer = pretrained.weights_file("reloc", "restorer")
    assert pretrained_label(reloc_localizer, reloc_restorer) == "pretrained:reloc"
    assert pretrained_label(reloc_localizer) is None  # --no-restore: not the measured system
    assert pretrained_label(pretrained.weights_file("plain", "localizer")) == "pretrained:plain"
    assert pretrained_label(pretrained.weights_file("plain", "localizer"), reloc_restorer) is None
    assert pretrained_label() is None


def test_calibration_file_errors_name_the_file(tmp_path):
    with pytest.raises(pretrained.PretrainedError, match="missing"):
        read_calibration(tmp_path / "none.json")
    broken = tmp_path / "detection.json"
    broken.write_text('{"aggregation": {"name": "top-mean", "parameter": 0.01}, "models": {"plain": {"threshold": 1}}}')
    with pytest.raises(pretrained.PretrainedError, match=str(broken)):
        read_calibration(broken)


def test_image_level_takes_the_calibrated_threshold_of_pretrained_weights_only():
    records = [
        {"name": "a", "image_score": 0.9},
        {"name": "b", "image_score": 0.3},
        {"name": "c", "image_score": 0.6, "authentic": True},
        {"name": "d", "image_score": 0.1, "authentic": True},
    ]
    ours = image_level(records, "runs/x/localizer.safetensors", None)
    assert ours["threshold"] == detection.DEFAULT_THRESHOLD and "no calibration" in ours["threshold_source"]
    assert (ours["tampered_recall"], ours["flagged_authentic"], ours["auc"]) == (0.5, 0.5, 0.75)
    name, model = next(iter(detection.calibration().models.items()))
    localizer = pretrained.weights_file(name, "localizer")
    restorer = pretrained.weights_file(name, "restorer") if "restorer" in pretrained.roles(name) else None
    shipped = image_level(records, localizer, restorer)
    assert shipped["threshold"] == model.threshold and name in shipped["threshold_source"]


@pytest.fixture(scope="module")
def tiny_localizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("detection") / "localizer.safetensors"
    save_network(create_localizer("dfcn", width=0.25, faithful=False), path)
    return path


EVAL = ["--split", "all", "--window", "32", "--stride", "32", "--save-maps", "0", "--device", "cpu"]


@pytest.mark.parametrize(("tampered", "authentic"), [(3, 2), (0, 2), (3, 0)])
def test_eval_and_report_give_the_defined_image_level_figures(tiny_localizer, tmp_path, tampered, authentic):
    tree = build_fake_tree("casia1", tmp_path / "data", tampered=max(tampered, 1), authentic=authentic)
    if not tampered:  # an authentic-only set: a Tp/Gt folder with nothing in Tp
        for folder in ("Tp", "Gt"):
            for path in sorted((tree.root / folder).rglob("*")):
                if path.is_file():
                    path.unlink()
    arguments = ["--dataset", str(tree.root), "--out", str(tmp_path / "ev"), "--plain", str(tiny_localizer)]
    result = CliRunner().invoke(app, ["eval", *arguments, "--distortion", "jpeg:75", *EVAL])
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "ev" / "eval").glob("P_D_*.json")).read_text())
    figures = record["image_level"]
    assert (figures["tampered_images"], figures["authentic_images"]) == (tampered, authentic)
    assert record["authentic"]["images"] == authentic
    assert [r["name"] for r in record["per_image"] if r.get("authentic")] == [
        r["name"] for r in record["per_image"] if "Au" in r["name"]
    ]
    assert all(0 <= r["image_score"] <= 1 for r in record["per_image"])
    if tampered and authentic:
        assert figures["undefined"] == {} and figures["auc"] is not None
        assert record["authentic"]["pixel_false_alarm_rate"] is not None
        assert "undefined" not in result.output
    elif authentic:
        assert figures["auc"] is None and figures["undefined"]["auc"] == "no tampered image"
        assert figures["flagged_authentic"] is not None
        assert record["metrics"]["per-image"]["f1"] is None and "none tampered" in result.output
        assert "undefined (no tampered image)" in result.output
    else:
        assert figures["flagged_authentic"] is None and figures["undefined"]["auc"] == "no authentic image"
        assert figures["tampered_recall"] is not None and record["authentic"]["pixel_false_alarm_rate"] is None
        assert "undefined (no authentic image)" in result.output
    report = CliRunner().invoke(app, ["report", str(tmp_path / "ev"), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Image-level detection" in text
    assert ("| image AUC |" in text) == bool(authentic)
