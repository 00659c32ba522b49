"""benchmarks/pretrain.py end to end at its ``smoke`` preset: every part on tiny data, the
choices of the inference part written into the shipped files, resuming, ``--force``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from skimage import data as skimage_data

from reloc.models.weights import read_window

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pretrain():
    spec = importlib.util.spec_from_file_location("pretrain", ROOT / "benchmarks" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pretrain", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recipe_run(pretrain, tmp_path_factory):
    """The smoke preset on five scikit-image photos (one held out): ``(paths, stdout)``."""
    root = tmp_path_factory.mktemp("recipe")
    photos = root / "photos" / "skimage"
    photos.mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"):
        pixels = np.asarray(getattr(skimage_data, name)())[..., :3]
        Image.fromarray(pixels).resize((128, 128)).save(photos / f"{name}.png")
    recipe = yaml.safe_load(pretrain.RECIPE.read_text())
    recipe.update(photos=str(root / "photos"), held_out=["skimage/rocket.png"])
    recipe["synth"]["settings"]["val_fraction"] = 0.25
    recipe["inference"].update(
        images=2, candidates=[[64, 32], [96, 96]], thresholds=[0.4, 0.5], restore_windows=[[512, 512], None]
    )
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    paths = {
        "recipe": root / "recipe.yaml",
        "work": root / "work",
        "results": root / "pretrain.json",
        "package": root / "package",
    }
    argv = ["--preset", "smoke", "--threads", "1", *(f"--{k}={v}" for k, v in paths.items())]
    assert pretrain.main(argv) == 0
    return paths, argv


def test_every_part_finishes_and_records_its_provenance(recipe_run):
    paths, _ = recipe_run
    results = json.loads(paths["results"].read_text())
    assert results["preset"] == "smoke"
    for part in ("data", "plain", "robust", "reloc", "inference"):
        assert results["parts"][part]["finished"], part
    data = results["parts"]["data"]
    assert data["held_out"] == ["skimage/rocket.png"] and data["training_photos"] == 4
    assert results["parts"]["plain"]["epochs"] == 2 and results["parts"]["plain"]["seed"] == 0


def test_the_inference_choices_are_the_best_candidates_and_go_into_the_shipped_files(recipe_run):
    paths, _ = recipe_run
    inference = json.loads(paths["results"].read_text())["parts"]["inference"]
    cards = json.loads((paths["package"] / "cards.json").read_text())["models"]
    tolerance = yaml.safe_load(paths["recipe"].read_text())["inference"]["auc_tolerance"]
    for name in ("plain", "robust", "reloc"):
        chosen = inference[name]
        rows = chosen["candidates"]
        # a restorer tries every localizer window with each restorer window (null: window by window)
        assert len(rows) == (4 if name == "reloc" else 2)
        assert {json.dumps(row["restore_window"]) for row in rows} == (
            {"[512, 512]", "null"} if name == "reloc" else {"null"}
        )
        # the first listed (cheapest) within the recipe's tolerance of the best AUC
        floor = max(row["auc"] for row in rows) - tolerance - 1e-9
        best = next(row for row in rows if row["auc"] >= floor)
        assert (chosen["chosen"], chosen["restore_window"]) == (best["window"], best["restore_window"])
        assert chosen["threshold"] == float(max(best["f1"].items(), key=lambda item: item[1])[0])
        card = cards[name]
        assert (card["window"], card["threshold"], card["restore_window"]) == (
            chosen["chosen"],
            chosen["threshold"],
            chosen["restore_window"],
        )
        assert list(read_window(paths["package"] / name / "localizer.safetensors")) == chosen["chosen"]
    restorer_window = read_window(paths["package"] / "reloc" / "restorer.safetensors")
    assert (list(restorer_window) if restorer_window else None) == inference["reloc"]["restore_window"]


def test_candidates_within_the_auc_tolerance_are_ties_that_go_to_the_first_listed(pretrain):
    rows = [
        {"window": [512, 512], "auc": 0.70},
        {"window": [128, 64], "auc": 0.7372},
        {"window": [96, 48], "auc": 0.738},
    ]
    assert pretrain.pick_candidate(rows, 0.001)["window"] == [128, 64]  # 0.7372 ties 0.738
    assert pretrain.pick_candidate(rows, 0.0)["window"] == [96, 48]
    assert pretrain.pick_candidate(rows, 0.05)["window"] == [512, 512]


def test_a_second_run_skips_finished_parts_and_force_redoes_inference(pretrain, recipe_run, capsys):
    paths, argv = recipe_run
    before = json.loads(paths["results"].read_text())["parts"]
    assert pretrain.main([*argv, "--part", "plain", "--part", "inference"]) == 0
    assert "plain: finished before (2 epochs), skipped" in capsys.readouterr().out
    assert json.loads(paths["results"].read_text())["parts"]["inference"] == before["inference"]
    assert pretrain.main([*argv, "--part", "inference", "--force"]) == 0
    assert "inference reloc: 64/32, restorer window by window" in capsys.readouterr().out


def test_a_missing_or_foreign_recipe_is_a_clear_error(pretrain, tmp_path):
    with pytest.raises(SystemExit, match="cannot read the recipe .*nope.yaml"):
        pretrain.main(["--recipe", str(tmp_path / "nope.yaml")])
    (tmp_path / "other.yaml").write_text("data: {crop: 64}\n")
    with pytest.raises(SystemExit, match="other.yaml is not a release recipe"):
        pretrain.main(["--recipe", str(tmp_path / "other.yaml")])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2", "amx_bf16", "avx512_bf16"}, "cpu"), ({"avx2", "avx512_bf16"}, "cpu-fp32"), ({"avx2"}, "cpu-fp32")],
)
def test_the_auto_preset_follows_the_processor(pretrain, monkeypatch, flags, expected):
    from reloc import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert pretrain.load_recipe("auto")["preset"] == expected


def test_a_preset_sets_every_model_and_each_model_on_its_own(pretrain, tmp_path):
    recipe = yaml.safe_load(pretrain.RECIPE.read_text())
    recipe["presets"]["mine"] = {"set": ["data.workers=1"], "models": {"plain": {"set": ["train.epochs=3"]}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    models = pretrain.load_recipe("mine", tmp_path / "recipe.yaml")["models"]
    assert models["plain"]["overrides"] == ["data.workers=1", "train.epochs=3"]
    assert models["robust"]["overrides"] == models["reloc"]["overrides"] == ["data.workers=1"]
    command = pretrain.train_command({"models": models}, "plain", tmp_path / "work")
    assert command[-4:] == ["--set", "data.workers=1", "--set", "train.epochs=3"]
    # the shipped recipe's fp32 preset makes plain from 96-px crops, the configs as written from 128-px
    fp32, written = pretrain.load_recipe("cpu-fp32")["models"], pretrain.load_recipe("cpu")["models"]
    assert "data.crop=96" in fp32["plain"]["overrides"] and written["plain"]["overrides"] == []
    recipe["presets"]["bad"] = {"models": {"nobody": {"set": []}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(SystemExit, match="preset 'bad' sets unknown models: nobody"):
        pretrain.load_recipe("bad", tmp_path / "recipe.yaml")


def test_the_recipe_wall_time_counts_the_side_by_side_stage_once(pretrain):
    parts = {n: {"wall_seconds": s} for n, s in (("data", 10), ("plain", 100), ("robust", 50), ("reloc", 70))}
    parts["inference"] = {"wall_seconds": 5}
    assert pretrain.recipe_wall_seconds(parts) == 185
    assert pretrain.recipe_wall_seconds({"plain": {"wall_seconds": None}}) == 0
