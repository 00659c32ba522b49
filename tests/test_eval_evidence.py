"""`reloc eval` scores classical evidence methods and the fusion with the copy-move matcher like any
localizer, with per-kind means where the file names say the kind (CASIA's Sp_D_ / Sp_S_)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image
from test_evidence import paste_rotated, texture
from typer.testing import CliRunner

from reloc.cli import app
from reloc.engine.evaluate import Situation, by_kind, evidence_situations, fused_situations, record_filename


@pytest.fixture(scope="module")
def casia_like(tmp_path_factory):
    """Two copy-moves (a rotated copy the matcher finds; masks on the copy) and two "splices"
    (noise with a marked square, where the matcher finds nothing), named as CASIA v1 names them."""
    root = tmp_path_factory.mktemp("casia-like")
    (root / "Tp").mkdir()
    (root / "Gt").mkdir()
    for number, seed in enumerate((1, 2)):
        image = paste_rotated(texture(300, 400, seed=seed), source=(30, 40), target=(170, 260), angle=30)
        mask = np.zeros((300, 400), np.uint8)
        mask[170:266, 260:356] = 255  # the square the copy was pasted into (its corners too: not exact)
        Image.fromarray(image).save(root / "Tp" / f"Sp_S_CND_A_pla000{number}_pla000{number}_000{number}.png")
        Image.fromarray(mask).save(root / "Gt" / f"Sp_S_CND_A_pla000{number}_pla000{number}_000{number}.png")
    for number in (3, 4):
        noise = np.random.default_rng(number).integers(0, 256, (200, 240, 3), dtype=np.uint8)
        mask = np.zeros((200, 240), np.uint8)
        mask[50:120, 60:150] = 255
        Image.fromarray(noise).save(root / "Tp" / f"Sp_D_CNN_A_ani000{number}_art000{number}_000{number}.png")
        Image.fromarray(mask).save(root / "Gt" / f"Sp_D_CNN_A_ani000{number}_art000{number}_000{number}.png")
    return root


def read(folder, situation):
    return json.loads((folder / "eval" / record_filename(situation, "none")).read_text())


def test_eval_scores_a_classical_method_alone_with_splices_and_copy_moves_apart(casia_like, tmp_path):
    out = tmp_path / "ev"
    result = CliRunner().invoke(
        app, ["eval", "--dataset", str(casia_like), "--evidence", "clones,ghost", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = read(out, "clones{P}")
    assert record["images"] == 4  # no model, no split: every image (the default split is then "all")
    assert record["evidence"] == {"method": "clones", "use": "alone", "not_applicable": 0}
    assert (
        record["localizer"] is None and record["protocol"]["window"] is None and record["protocol"]["metric"] == "paper"
    )
    copies, splices = record["by_kind"]["copy-move"], record["by_kind"]["splice"]
    assert list(record["by_kind"]) == ["splice", "copy-move"] and copies["images"] == splices["images"] == 2
    assert copies["f1"] > 0.8 and copies["auc"] > 0.8  # the matcher marks the copies (and 0.5 on their sources)
    assert splices["f1"] == 0.0 and splices["auc"] == 0.5  # nothing found in noise: an all-zero map
    assert record["metrics"]["per-image"]["f1"] == pytest.approx((copies["f1"] + splices["f1"]) / 2)
    ghost = read(out, "ghost{P}")  # PNG files: the JPEG method does not apply, scored as empty maps
    assert ghost["evidence"]["not_applicable"] == 4 and ghost["metrics"]["per-image"]["f1"] == 0.0
    assert "clones{P}" in result.output and "ghost not applicable to 4" in result.output
    assert "copy-move" in result.output and "(2 images)" in result.output


def test_eval_fuses_a_models_map_with_the_matchers(casia_like, tmp_path):
    from conftest import build_cached
    from reloc.models.weights import save_network

    silent = copy.deepcopy(build_cached("localizer", "dfcn", width=0.25, faithful=False))  # the cached one is shared
    for parameter in silent.parameters():  # every logit 0: probability 0.5 everywhere, nothing above 0.5
        parameter.data.zero_()
    weights = save_network(silent, tmp_path / "silent.safetensors")
    out = tmp_path / "ev"
    options = ["--plain", str(weights), "--fusion", "clones", "--evidence", "clones", "--split", "all"]
    result = CliRunner().invoke(app, ["eval", "--dataset", str(casia_like), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    alone, fused, clones = read(out, "P{P}"), read(out, "P+clones{P}"), read(out, "clones{P}")
    assert fused["evidence"] == {"method": "clones", "use": "fused", "not_applicable": 0}
    assert fused["localizer"] == alone["localizer"] and fused["protocol"]["window"] == alone["protocol"]["window"]
    assert alone["metrics"]["per-image"]["f1"] == 0.0
    # max(0.5, clones) flags exactly what the matcher's map flags: the same F1 on every image
    assert [r["f1"] for r in fused["per_image"]] == [r["f1"] for r in clones["per_image"]]
    assert fused["by_kind"]["splice"]["auc"] == 0.5 and fused["by_kind"]["copy-move"]["f1"] > 0.8
    # the default map's fusion: PNG files leave the double-quantisation model nothing to read
    options = ["--plain", str(weights), "--fusion", "clones+dq", "--split", "all"]
    result = CliRunner().invoke(app, ["eval", "--dataset", str(casia_like), "--out", str(tmp_path / "ev2"), *options])
    assert result.exit_code == 0, result.output
    default = read(tmp_path / "ev2", "P+clones+dq{P}")
    assert default["evidence"] == {"method": "clones+dq", "use": "fused", "not_applicable": 0}
    assert [r["f1"] for r in default["per_image"]] == [r["f1"] for r in fused["per_image"]]
    assert [r["image_score"] for r in default["per_image"]] == [r["image_score"] for r in alone["per_image"]]


def test_eval_refuses_bad_evidence_options_in_one_line(casia_like, tmp_path):
    base = ["eval", "--dataset", str(casia_like), "--out", str(tmp_path / "ev")]
    cases = {
        ("--evidence", "ela,wavelets"): "unknown evidence method(s) wavelets",
        ("--fusion", "ela"): "'ela' is not one of none, clones",
        ("--evidence", "ela", "--fusion", "clones"): "give a model too",
        (): "give at least one of --plain, --finetune, --reloc, --transfer, --evidence",
    }
    for options, message in cases.items():
        result = CliRunner().invoke(app, [*base, *options])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_situation_names_and_rules():
    assert [s.name for s in evidence_situations(["ela", "ghost"])] == ["ela{P}", "ghost{P}"]
    models = [Situation("P{D}", "a.safetensors"), Situation("R(a)+L(b){D}", "b.safetensors", "c.safetensors")]
    fused = fused_situations(models + evidence_situations(["ela"]))
    assert [(s.name, s.evidence, s.restorer) for s in fused] == [
        ("P+clones{D}", "clones", None),
        ("R(a)+L(b)+clones{D}", "clones", "c.safetensors"),
    ]
    with pytest.raises(ValueError, match="plain images"):
        Situation("ela{D}", None, distorted=True, evidence="ela")
    with pytest.raises(ValueError, match="fused by one of clones, dq, clones\\+dq, not 'ela'"):
        Situation("P+ela{D}", "a.safetensors", evidence="ela")
    assert [s.name for s in fused_situations(models[:1], "clones+dq")] == ["P+clones+dq{D}"]


def test_by_kind_groups_the_tampered_images_by_name():
    nan = float("nan")
    records = [
        {"name": "Sp_D_x", "f1": 0.2, "iou": 0.1, "auc": 0.6},
        {"name": "Sp_D_y", "f1": 0.4, "iou": 0.3, "auc": nan},  # one-class mask: AUC left out
        {"name": "000001_copymove", "f1": 1.0, "iou": 1.0, "auc": 1.0},
        {"name": "Au_ani_0001", "authentic": True, "f1": nan, "iou": nan, "auc": nan},
        {"name": "canong3_02", "f1": 0.0, "iou": 0.0, "auc": 0.5},  # no kind in the name
    ]
    kinds = by_kind(records)
    assert list(kinds) == ["splice", "copy-move"]
    assert kinds["splice"] == pytest.approx({"images": 2, "f1": 0.3, "iou": 0.2, "auc": 0.6})
    assert kinds["copy-move"]["images"] == 1
    assert by_kind(records[3:]) == {}
