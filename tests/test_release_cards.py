"""The card writer's aggregation (:mod:`reloc.release.cards`, ``reloc release cards``): the JSON layout the issue asks for, Table III from
the same rows, the JPEG winner per quality, and the figures written into the cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from reloc import pretrained
from reloc.release import cards


@pytest.fixture()
def bench(tmp_path, monkeypatch):
    module = cards
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results" / "release" / "pretrained.json")
    package = tmp_path / "package"
    shutil.copytree(Path(str(pretrained._root())), package)  # cards and weights: parts record the weights' digest
    monkeypatch.setattr(pretrained, "_root", lambda: package)
    return module


def write_row(work: Path, folder: str, model: str, spec: str, auc: float, digest: str) -> None:
    row = {
        "weights_sha256": digest,
        "f1": round(auc / 2, 4),
        "iou": round(auc / 3, 4),
        "auc": round(auc, 4),
        "ci95": {"f1": [0.1, 0.2], "iou": [0.05, 0.1], "auc": [auc - 0.05, auc + 0.05]},
        "per_type": {},
        "images": 4,
        "window": [64, 32],
        "restore_window": None,
    }
    path = work / folder / f"{model}__{spec.replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row))


def test_aggregate_writes_the_issue_layout_table_three_winners_and_card_figures(bench, tmp_path):
    work = tmp_path / "work"
    digest = {name: bench.weights_digest(name) for name in bench.MODELS}
    for index, spec in enumerate(bench.SPECS):
        write_row(work, "parts", "plain", spec, 0.60, digest["plain"])
        write_row(work, "parts", "robust", spec, 0.70 + index / 100, digest["robust"])
        if spec != "jpeg:95":  # one row missing: reported as not measured, never invented
            write_row(work, "parts", "reloc", spec, 0.90 if spec == "jpeg:60" else 0.65, digest["reloc"])
    write_row(work, "parts-recipe-settings", "plain", "none", 0.80, digest["plain"])

    result = bench.aggregate(work, bench.COMMAND)

    saved = json.loads(bench.RESULTS.read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved["models"]) == {"plain", "robust", "reloc"}
    assert saved["models"]["robust"]["jpeg:75"]["auc"] == pytest.approx(0.74)
    assert set(saved["models"]["plain"]) == set(bench.SPECS) and "jpeg:95" not in saved["models"]["reloc"]
    assert {"f1", "iou", "auc"} <= set(saved["models"]["plain"]["none"])
    assert saved["command"] and saved["commit"] and saved["weights_sha256"] == digest
    assert "kodak/kodim03.png" in saved["test_photos"] and "scikit-image/astronaut.png" in saved["test_photos"]
    assert saved["table3_qf75"]["D|P{D}"] == saved["models"]["robust"]["jpeg:75"]
    assert saved["table3_qf75"]["P{D}"] == saved["models"]["plain"]["jpeg:75"]
    assert saved["jpeg_winner"]["jpeg:60"] == "reloc" and saved["jpeg_winner"]["jpeg:75"] == "robust"
    assert "jpeg:95" not in saved["jpeg_winner"]  # reloc not measured there: no winner claimed
    assert saved["recipe_settings_test"]["models"]["plain"]["none"]["auc"] == 0.80

    cards = json.loads((pretrained._root() / "cards.json").read_text())
    assert cards["models"]["robust"]["figures"]["jpeg:75"] == {"f1": 0.37, "iou": 0.2467, "auc": 0.74}
    assert "jpeg:95" not in cards["models"]["reloc"]["figures"]
    table = bench.RESULTS.with_suffix(".md").read_text()
    assert "| jpeg:95 | 0.300 / 0.200 / 0.600 | 0.385 / 0.257 / 0.770 | – |" in table


def test_a_part_made_with_other_weights_is_refused_and_the_digest_follows_the_files(bench, tmp_path):
    work = tmp_path / "work"
    before = bench.weights_digest("robust")
    for spec in bench.SPECS:
        write_row(work, "parts", "robust", spec, 0.7, before)
    weights = pretrained._root() / "robust" / "localizer.safetensors"
    tensors, metadata = load_file(weights), safe_open(str(weights), "pt").metadata()
    save_file(dict(reversed(tensors.items())), weights, metadata=dict(reversed(metadata.items())))
    assert bench.weights_digest("robust") == before  # the same content written again: the same digest
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, weights, metadata=metadata)  # the shipped weights changed after the parts
    assert bench.weights_digest("robust") != before
    with pytest.raises(SystemExit, match=r"part\(s\) of robust were made with other weights.*--model robust"):
        bench.aggregate(work, bench.COMMAND)


def test_rows_without_part_files_are_kept_from_the_results_only_for_unchanged_weights(bench, tmp_path):
    work = tmp_path / "work"
    digest = {name: bench.weights_digest(name) for name in bench.MODELS}
    for spec in bench.SPECS:
        for name in bench.MODELS:
            write_row(work, "parts", name, spec, 0.7, digest[name])
    write_row(work, "parts-recipe-settings", "robust", "jpeg:75", 0.8, digest["robust"])
    bench.aggregate(work, bench.COMMAND)

    fresh = tmp_path / "fresh"  # a new machine: only reloc, re-shipped with other weights, is measured again
    weights = pretrained._root() / "reloc" / "localizer.safetensors"
    tensors, metadata = load_file(weights), safe_open(str(weights), "pt").metadata()
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, weights, metadata=metadata)
    write_row(fresh, "parts", "reloc", "jpeg:75", 0.9, bench.weights_digest("reloc"))

    saved = bench.aggregate(fresh, bench.COMMAND)

    assert set(saved["models"]["plain"]) == set(bench.SPECS)  # unchanged weights: kept
    assert saved["models"]["robust"]["jpeg:75"]["auc"] == pytest.approx(0.7)
    assert saved["recipe_settings_test"]["models"]["robust"]["jpeg:75"]["auc"] == pytest.approx(0.8)
    assert saved["models"]["reloc"] == {"jpeg:75": saved["models"]["reloc"]["jpeg:75"]}  # old reloc rows dropped
    assert saved["models"]["reloc"]["jpeg:75"]["auc"] == pytest.approx(0.9)
    cards = json.loads((pretrained._root() / "cards.json").read_text())
    assert set(cards["models"]["reloc"]["figures"]) == {"jpeg:75"}
    assert cards["models"]["plain"]["figures"]["jpeg:50"]["auc"] == pytest.approx(0.7)
