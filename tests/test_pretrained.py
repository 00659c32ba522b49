"""The shipped pretrained models: loading by name, ``pretrained:`` everywhere, ``--model auto``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from reloc import pretrained
from reloc.cli import app
from reloc.engine.model_choice import ModelChooser, model_source
from reloc.engine.tasks import resolve_weights
from reloc.models.weights import CALIBRATION_KEY, WeightsError, load_network, read_spec, read_window


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the packaged models in a temporary folder, used in place of the package's."""
    import shutil

    root = tmp_path / "pretrained"
    shutil.copytree(Path(str(pretrained._root())), root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    monkeypatch.setattr(pretrained, "_root", lambda: root)
    pretrained.cards.cache_clear()
    pretrained.routing.cache_clear()
    yield root
    pretrained.cards.cache_clear()
    pretrained.routing.cache_clear()


def _image(path: Path, quality: int | None = None, size: int = 48) -> Path:
    pixels = (np.random.default_rng(0).random((size, size + 8, 3)) * 255).astype(np.uint8)
    if quality is None:
        Image.fromarray(pixels).save(path)
    else:
        Image.fromarray(pixels).save(path, quality=quality)
    return path


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_every_model_loads_by_name_with_its_card(name: str):
    card = pretrained.card("pretrained:" + name)
    assert card["roles"][0] == "localizer"
    for role in card["roles"]:
        network = load_network(pretrained.weights_file(name, role))
        assert network.spec.kind == role
    assert ("restorer" in card["roles"]) == (name == "reloc")


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_every_localizer_records_the_window_its_card_names(name: str):
    """The recipe's inference part chose it; localize, eval and serve run with it by default."""
    window = read_window(pretrained.weights_file(name, "localizer"))
    assert window is not None and list(window) == pretrained.card(name)["window"]


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_every_localizer_records_the_threshold_folded_into_it(name: str):
    """The recipe's inference part chose it on validation images; ship folded it into the logits."""
    with safe_open(str(pretrained.weights_file(name, "localizer")), framework="pt") as handle:
        record = json.loads(handle.metadata()[CALIBRATION_KEY])
    assert 0 < record["threshold"] < 1 and record["threshold"] == pretrained.card(name)["threshold"]


def test_packaged_weights_are_small_and_in_the_package_data():
    total = sum(p.stat().st_size for p in Path(str(pretrained._root())).glob("*/*.safetensors"))
    assert 0 < total <= 25 * 2**20
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"reloc.pretrained" = ["cards.json", "routing.json", "detection.json", "*/*.safetensors"]' in pyproject


def test_resolve_weights_takes_pretrained_names():
    assert Path(resolve_weights("pretrained:reloc", "restorer")) == pretrained.weights_file("reloc", "restorer")
    assert read_spec(resolve_weights("pretrained:plain", "localizer")).kind == "localizer"
    with pytest.raises(pretrained.PretrainedError, match="has no restorer"):
        resolve_weights("pretrained:plain", "restorer")
    with pytest.raises(pretrained.PretrainedError, match="unknown pretrained model 'pretrained:bogus'"):
        resolve_weights("pretrained:bogus", "localizer")


def test_model_source_of_names_and_run_folders(tmp_path: Path):
    assert model_source("reloc").restorer is not None
    assert model_source("pretrained:reloc", restore=False).restorer is None
    assert model_source("plain").restorer is None
    run = tmp_path / "run" / "weights" / "best"
    run.mkdir(parents=True)
    (run / "localizer.safetensors").write_bytes(pretrained.weights_file("plain", "localizer").read_bytes())
    source = model_source(tmp_path / "run")
    assert source.localizer.endswith("localizer.safetensors") and source.restorer is None


def test_auto_follows_the_packaged_routing_rule():
    rule = pretrained.routing()
    assert pretrained.choose(None).name == rule["no_jpeg"]["model"]
    for entry in rule["jpeg"]:
        choice = pretrained.choose(entry["quality"])
        assert choice.name == entry["model"] and f"QF {entry['quality']}" in choice.reason


def test_auto_picks_the_model_measured_best_at_the_nearest_quality(packaged: Path):
    rule = {
        "chosen_on": "a test",
        "no_jpeg": {"model": "robust", "measured_on": "PNGs with a JPEG history"},
        "jpeg": [
            {"quality": 50, "model": "reloc", "measured_on": "set A"},
            {"quality": 90, "model": "plain", "measured_on": "set B"},
        ],
    }
    (packaged / "routing.json").write_text(json.dumps(rule))
    pretrained.routing.cache_clear()
    try:
        assert pretrained.choose(None).name == "robust" and "PNGs with a JPEG history" in pretrained.choose(None).reason
        assert pretrained.choose(52).name == "reloc"  # nearest measured QF 50
        assert pretrained.choose(88).name == "plain" and "QF 90 (set B)" in pretrained.choose(88).reason
        assert pretrained.choose(70).name == "plain"  # equally near: the higher quality's entry
        rule["jpeg"][1]["model"] = "nonesuch"
        (packaged / "routing.json").write_text(json.dumps(rule))
        pretrained.routing.cache_clear()
        with pytest.raises(pretrained.PretrainedError, match="unknown model"):
            pretrained.choose(88)
        (packaged / "routing.json").write_text("{")
        pretrained.routing.cache_clear()
        with pytest.raises(pretrained.PretrainedError, match="cannot be read"):
            pretrained.choose(88)
    finally:
        pretrained.routing.cache_clear()


def test_chooser_reads_the_quality_from_the_file(tmp_path: Path):
    chooser = ModelChooser.from_option("auto")
    _, facts = chooser.choose(_image(tmp_path / "a.png"))
    assert facts["model"] == "pretrained:" + pretrained.choose(None).name and facts["jpeg_quality"] is None
    _, facts = chooser.choose(_image(tmp_path / "b.jpg", quality=70))
    assert facts["jpeg_quality"] == 70
    assert facts["model"] == "pretrained:" + pretrained.choose(70).name
    assert facts["restorer_used"] == (facts["model"] == "pretrained:reloc")
    _, facts = chooser.choose(_image(tmp_path / "c.jpg", quality=99))
    assert facts["model"] == "pretrained:" + pretrained.choose(99).name and facts["jpeg_quality"] == 99


def test_missing_or_corrupt_packaged_files_give_clear_errors(packaged: Path):
    (packaged / "robust" / "localizer.safetensors").unlink()
    with pytest.raises(pretrained.PretrainedError, match="missing; reinstall reloc"):
        pretrained.weights_file("robust", "localizer")
    (packaged / "plain" / "localizer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="localizer.safetensors"):
        load_network(pretrained.weights_file("plain", "localizer"))
    (packaged / "cards.json").write_text("{broken")
    pretrained.cards.cache_clear()
    with pytest.raises(pretrained.PretrainedError, match="cannot be read"):
        pretrained.card("plain")
    (packaged / "cards.json").unlink()
    pretrained.cards.cache_clear()
    with pytest.raises(pretrained.PretrainedError, match="cards are missing"):
        pretrained.card("plain")


def test_localize_with_no_model_option_uses_auto(tmp_path: Path):
    files = [_image(tmp_path / "uncompressed.png"), _image(tmp_path / "web.jpg", quality=75)]
    result = CliRunner().invoke(app, ["localize", *map(str, files), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "out" / "uncompressed.json").read_text())
    jpeg = json.loads((tmp_path / "out" / "web.json").read_text())
    assert plain["model"] == "pretrained:plain" and plain["jpeg_quality"] is None
    assert jpeg["jpeg_quality"] == 75 and jpeg["model"] == "pretrained:" + pretrained.choose(75).name
    assert "--model auto" in jpeg["model_reason"]
    for suffix in ("_heatmap.png", "_mask.png", "_overlay.png"):
        assert (tmp_path / "out" / f"web{suffix}").is_file()
    card = pretrained.card(jpeg["model"])  # no --window given: as the model's weights record
    assert jpeg["inference"]["whole_image_pixels"] == card["whole_image_pixels"] > 48 * 56
    assert jpeg["inference"]["mode"] == "whole" and [jpeg["window"], jpeg["stride"]] == [56, 56]


def test_localize_run_and_localizer_options_take_pretrained_names(tmp_path: Path):
    image = _image(tmp_path / "x.png")
    for option in (["--run", "pretrained:reloc"], ["--localizer", "pretrained:robust"], ["--model", "plain"]):
        out = tmp_path / option[0].strip("-")
        result = CliRunner().invoke(app, ["localize", str(image), *option, "--out", str(out)])
        assert result.exit_code == 0, result.output
        facts = json.loads((out / "x.json").read_text())
        assert facts["model"] == "pretrained:" + option[1].split(":")[-1]
    result = CliRunner().invoke(app, ["localize", str(image), "--model", "pretrained:nope"])
    assert result.exit_code == 2 and "unknown pretrained model" in result.output


def test_eval_takes_pretrained_names(tmp_path: Path):
    from reloc.data.synth import synthesize

    synthesize("default", tmp_path / "data", count=4, seed=0, size=64, progress=False)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "eval"),
            "--split",
            "all",
            "--plain",
            "pretrained:plain",
            "--finetune",
            "pretrained:robust",
            "--reloc",
            "pretrained:reloc",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (tmp_path / "eval" / "eval").glob("*.json")]
    assert {r["situation"] for r in records} == {"P{P}", "P{D}", "D|P{D}", "ReLoc{D}"}
    assert any(r["restorer"] == str(pretrained.weights_file("reloc", "restorer")) for r in records)


def test_training_starts_from_a_pretrained_localizer(tmp_path: Path):
    from reloc.config import load_config
    from reloc.engine.distributed import DistContext
    from reloc.engine.tasks import create_task

    config = load_config(
        None,
        [
            "train.task=finetune",
            "model.localizer_weights=pretrained:plain",
            "model.localizer_args={width: 0.5, faithful: false, highpass: true}",
            "train.device=cpu",
            "data.dataset=unused",
        ],
    )
    task = create_task(config, torch.device("cpu"), DistContext.from_environment("cpu"))
    expected = load_network(pretrained.weights_file("plain", "localizer")).state_dict()
    for key, value in task.networks["localizer"].state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_models_lists_the_pretrained_models():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in pretrained.NAMES:
        assert f"pretrained:{name}" in result.output
