"""``reloc release run`` (:mod:`reloc.release`) end to end at its ``smoke`` preset: every part on tiny data, the
choices of the inference part written into the shipped files, resuming, ``--force``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data as skimage_data
from typer.testing import CliRunner

from reloc.cli import app
from reloc.models.weights import read_whole_image_pixels, read_window
from reloc.release import provenance, selection, training
from reloc.release import recipe as recipes


def release_run(argv: list[str]) -> int:
    """``reloc release run ARGV``: 0 with its output printed, or SystemExit with what it printed."""
    result = CliRunner().invoke(app, ["release", "run", *argv])
    if result.exit_code != 0:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        raise SystemExit(result.output.strip())
    print(result.output, end="")
    return 0


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """The smoke preset on five scikit-image photos (one held out): ``(paths, stdout)``."""
    root = tmp_path_factory.mktemp("recipe")
    photos = root / "photos" / "skimage"
    photos.mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"):
        pixels = np.asarray(getattr(skimage_data, name)())[..., :3]
        Image.fromarray(pixels).resize((128, 128)).save(photos / f"{name}.png")
    recipe = yaml.safe_load(recipes.RECIPE.read_text())
    recipe.update(photos=str(root / "photos"), held_out=["skimage/rocket.png"])
    recipe["synth"]["settings"]["val_fraction"] = 0.25
    recipe["inference"].update(
        images=None, candidates=[[64, 32], [96, 96]], thresholds=[0.4, 0.5], restore_windows=[[512, 512], None]
    )
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    paths = {
        "recipe": root / "recipe.yaml",
        "work": root / "work",
        "results": root / "pretrain.json",
        "package": root / "package",
    }
    argv = ["--preset", "smoke", "--threads", "1", "--set", "data.tamper_bias=0.5"]
    argv += [f"--{k}={v}" for k, v in paths.items()]
    assert release_run(argv) == 0
    return paths, argv


def test_every_part_finishes_and_records_its_provenance(recipe_run):
    paths, _ = recipe_run
    results = json.loads(paths["results"].read_text())
    assert results["preset"] == "smoke"
    assert results["command"].startswith("reloc release run --preset smoke --recipe ")
    assert results["command"].endswith(" --threads 1 --set data.tamper_bias=0.5")
    for part in (
        "data",
        "plain",
        "robust",
        "reloc",
        "plain-256",
        "robust-256",
        "plain-384",
        "robust-384",
        "plain-384-long",
        "robust-384-long",
        "robust-mix",
        "data-native",
        "plain-native",
        "robust-native",
        "data-native4000",
        "plain-wide",
        "robust-wide",
        "data-native8000",
        "plain-8k",
        "robust-8k",
        "reloc-8k",
        "reloc-256",
        "reloc-320",
        "inference",
    ):
        assert results["parts"][part]["finished"], part
    data = results["parts"]["data"]
    assert data["held_out"] == ["skimage/rocket.png"] and data["training_photos"] == 4
    assert results["parts"]["plain"]["epochs"] == 2 and results["parts"]["plain"]["seed"] == 0
    # each context stage started from its start part's run, after it (the smoke preset: 1 epoch)
    parts = results["parts"]
    assert parts["plain"]["started_from"] is None
    assert parts["plain-256"]["started_from"] == str(paths["work"].resolve() / "plain")
    assert parts["robust-256"]["started_from"] == str(paths["work"].resolve() / "robust")
    assert parts["plain-384"]["started_from"] == str(paths["work"].resolve() / "plain-256")
    assert parts["robust-384-long"]["started_from"] == str(paths["work"].resolve() / "robust-384")
    assert parts["robust-mix"]["started_from"] == str(paths["work"].resolve() / "robust-384-long")
    assert " | " in parts["robust-mix"]["config"]["data"]["distortion"]  # the mix of distortions
    assert parts["robust-256"]["epochs"] == 1 and parts["robust-256"]["config"]["data"]["batch_size"] == 4
    # the native stages train on the second data set, made without enlarging any photo
    native = parts["data-native"]
    assert native["settings"]["enlarge_hosts"] is False and data["settings"]["enlarge_hosts"] is True
    assert native["training_photos"] == 4 and native["size"] == 96
    for name, start in (("plain-native", "plain-384-long"), ("robust-native", "robust-mix")):
        assert parts[name]["started_from"] == str(paths["work"].resolve() / start)
        assert parts[name]["config"]["data"]["dataset"] == str(paths["work"].resolve() / "data-native")
    # reloc-8k: its localizer from plain's last stage, its restorer from reloc's
    assert parts["reloc-8k"]["started_from"] == str(paths["work"].resolve() / "plain-8k")
    assert parts["reloc-8k"]["restorer_started_from"] == str(paths["work"].resolve() / "reloc")
    # reloc-256 goes on from reloc-8k: both networks
    assert parts["reloc-256"]["started_from"] == str(paths["work"].resolve() / "reloc-8k")
    assert parts["reloc-256"]["restorer_started_from"] == str(paths["work"].resolve() / "reloc-8k")
    # reloc-320 goes on from reloc-256: both networks
    assert parts["reloc-320"]["started_from"] == str(paths["work"].resolve() / "reloc-256")
    assert parts["reloc-320"]["restorer_started_from"] == str(paths["work"].resolve() / "reloc-256")
    assert parts["reloc"]["restorer_started_from"] is None
    assert results["training_wall_seconds"] > 0
    # --set reaches every training part, after the recipe's settings
    assert {part["config"]["data"]["tamper_bias"] for name, part in parts.items() if "config" in part} == {0.5}


def test_the_inference_choices_are_the_best_candidates_and_go_into_the_shipped_files(recipe_run):
    paths, _ = recipe_run
    inference = json.loads(paths["results"].read_text())["parts"]["inference"]
    cards = json.loads((paths["package"] / "cards.json").read_text())["models"]
    settings = yaml.safe_load(paths["recipe"].read_text())["inference"]
    tolerance, large = settings["auc_tolerance"], settings["large_images"]
    parts = {"plain": "plain-8k", "robust": "robust-8k", "reloc": "reloc-320"}  # the last part of each
    data = {"plain": "data-native8000", "robust": "data-native8000", "reloc": "data-native8000"}  # validated on
    for name in ("plain", "robust", "reloc"):
        chosen = inference[name]
        assert chosen["part"] == parts[name]
        validation = json.loads((paths["work"] / data[name] / "manifest_val.json").read_text())
        assert chosen["images"] == len(validation) > 2  # images: null chooses on every validation image
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
        card = cards[name]  # the threshold chosen here; the tiling of large images the recipe's large_images
        assert (card["window"], card["whole_image_pixels"], card["threshold"], card["restore_window"]) == (
            large["window"],
            large["whole_image_pixels"],
            chosen["threshold"],
            chosen["restore_window"],
        )
        localizer = paths["package"] / name / "localizer.safetensors"
        assert list(read_window(localizer)) == large["window"]
        assert read_whole_image_pixels(localizer) == large["whole_image_pixels"]
        chains = {
            "plain": ["plain", "plain-256", "plain-384", "plain-384-long", "plain-native", "plain-wide", "plain-8k"],
            "robust": [
                "plain",
                "robust",
                "robust-256",
                "robust-384",
                "robust-384-long",
                "robust-mix",
                "robust-native",
                "robust-wide",
                "robust-8k",
            ],
            # the localizer's stages and the restorer's, in the recipe's order
            "reloc": [
                "plain",
                "reloc",
                "plain-256",
                "plain-384",
                "plain-384-long",
                "plain-native",
                "plain-wide",
                "plain-8k",
                "reloc-8k",
                "reloc-256",
                "reloc-320",
            ],
        }
        assert [stage["part"] for stage in card["recipe"]["stages"]] == chains[name]
        assert card["recipe"]["stages"][-1]["data"] == data[name]
    restorer_window = read_window(paths["package"] / "reloc" / "restorer.safetensors")
    assert (list(restorer_window) if restorer_window else None) == inference["reloc"]["restore_window"]


def test_candidates_within_the_auc_tolerance_are_ties_that_go_to_the_first_listed():
    rows = [
        {"window": [512, 512], "auc": 0.70},
        {"window": [128, 64], "auc": 0.7372},
        {"window": [96, 48], "auc": 0.738},
    ]
    assert selection.pick_candidate(rows, 0.001)["window"] == [128, 64]  # 0.7372 ties 0.738
    assert selection.pick_candidate(rows, 0.0)["window"] == [96, 48]
    assert selection.pick_candidate(rows, 0.05)["window"] == [512, 512]


def test_a_second_run_skips_finished_parts_and_force_redoes_inference(recipe_run, capsys):
    paths, argv = recipe_run
    before = json.loads(paths["results"].read_text())["parts"]
    assert release_run([*argv, "--part", "plain", "--part", "inference"]) == 0
    assert "plain: finished before (2 epochs), skipped" in capsys.readouterr().out
    assert json.loads(paths["results"].read_text())["parts"]["inference"] == before["inference"]
    assert release_run([*argv, "--part", "inference", "--force"]) == 0
    assert "inference reloc: 64/32, restorer window by window" in capsys.readouterr().out


def test_a_missing_or_foreign_recipe_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="cannot read the recipe .*nope.yaml"):
        release_run(["--recipe", str(tmp_path / "nope.yaml")])
    (tmp_path / "other.yaml").write_text("data: {crop: 64}\n")
    with pytest.raises(SystemExit, match="other.yaml is not a release recipe"):
        release_run(["--recipe", str(tmp_path / "other.yaml")])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2", "amx_bf16", "avx512_bf16"}, "cpu-2h"), ({"avx2", "avx512_bf16"}, "cpu-2h"), ({"avx2"}, "cpu-fp32")],
)
def test_the_auto_preset_follows_the_processor(monkeypatch, flags, expected):
    from reloc import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert recipes.load_recipe("auto")["preset"] == expected


def test_a_preset_sets_every_model_and_each_model_on_its_own(tmp_path):
    recipe = yaml.safe_load(recipes.RECIPE.read_text())
    recipe["presets"]["mine"] = {"set": ["data.workers=1"], "models": {"plain": {"set": ["train.epochs=3"]}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))  # parts in their order
    models = recipes.load_recipe("mine", tmp_path / "recipe.yaml")["models"]
    assert models["plain"]["overrides"] == ["data.workers=1", "train.epochs=3"]
    assert models["robust"]["overrides"] == models["reloc"]["overrides"] == ["data.workers=1"]
    command = training.train_command({"models": models}, "plain", tmp_path / "work")
    assert command[-4:] == ["--set", "data.workers=1", "--set", "train.epochs=3"]
    # the shipped recipe's fp32 preset makes plain from 96-px crops, the configs as written from 128-px
    fp32, written = recipes.load_recipe("cpu-fp32")["models"], recipes.load_recipe("cpu")["models"]
    assert "data.crop=96" in fp32["plain"]["overrides"] and written["plain"]["overrides"] == []
    recipe["presets"]["bad"] = {"models": {"nobody": {"set": []}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(SystemExit, match="preset 'bad' sets unknown models: nobody"):
        recipes.load_recipe("bad", tmp_path / "recipe.yaml")


def test_the_recipe_wall_time_counts_the_training_time_not_the_sum_of_the_parts():
    parts = {n: {"wall_seconds": s} for n, s in (("data", 10), ("plain", 100), ("robust", 50), ("reloc", 70))}
    parts["inference"] = {"wall_seconds": 5}
    assert provenance.recipe_wall_seconds({"parts": parts, "training_wall_seconds": 170}) == 185
    assert provenance.recipe_wall_seconds({"parts": {"plain": {"wall_seconds": None}}}) == 0


def test_context_stages_ship_as_their_model_and_a_start_must_come_first(tmp_path):
    recipe = recipes.load_recipe("cpu")
    assert recipes.shipped_parts(recipe) == {"plain": "plain-8k", "robust": "robust-8k", "reloc": "reloc-320"}
    assert recipes.stages_of(recipe, "robust-native") == [
        "plain",
        "robust",
        "robust-256",
        "robust-384",
        "robust-384-long",
        "robust-mix",
        "robust-native",
    ]
    assert recipes.data_of(recipe, "robust-native") == "data-native" and recipes.data_of(recipe, "plain") == "data"
    assert recipe["models"]["plain-256"]["overrides"][0] == "data.crop=256"
    # a preset's own setting for a part wins over the part's; the part's over the preset's for all
    smoke = recipes.load_recipe("smoke")["models"]["plain-256"]["overrides"]
    own = ["data.crop=256", "data.batch_size=4", "optim.lr=0.0003", "train.epochs=8"]
    assert smoke[-6:] == [*own, "data.crop=64", "train.epochs=1"] and smoke[0] == "data.steps_per_epoch=2"
    raw = yaml.safe_load(recipes.RECIPE.read_text())
    raw["models"] = {"late": {"config": "x.yaml", "start": "plain"}, **raw["models"]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SystemExit, match="'late' start: 'plain' is not listed before it"):
        recipes.load_recipe("cpu", tmp_path / "recipe.yaml")
    raw["models"].pop("late")
    raw["models"]["plain-native"]["data"] = "nowhere"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SystemExit, match="'plain-native' trains on data set 'nowhere', not in extra_data"):
        recipes.load_recipe("cpu", tmp_path / "recipe.yaml")


def test_extra_data_sets_are_the_synth_settings_with_their_own_keys(tmp_path):
    recipe = recipes.load_recipe("cpu")
    sets = recipes.data_parts(recipe)
    assert list(sets) == ["data", "data-native", "data-native4000", "data-native8000", "data-traits"]
    traits = sets["data-traits"]  # the plain-traits experiment's: every trait, the large photos as hosts
    assert traits["settings_files"] == ["configs/synth/traits.yaml"] and traits["hosts"] == ["../shared/photos-large"]
    assert recipes.data_parts(recipes.load_recipe("smoke"))["data-traits"]["hosts"] == []  # none in a test
    assert (sets["data-native4000"]["count"], sets["data-native4000"]["settings"]) == (
        4000,
        sets["data-native"]["settings"],
    )
    native, main = sets["data-native"], sets["data"]
    assert (native["size"], native["count"], native["seed"]) == (320, main["count"], main["seed"])
    assert native["settings"] == {**main["settings"], "enlarge_hosts": False}
    assert recipes.data_parts(recipes.load_recipe("smoke"))["data-native"]["size"] == 96  # the preset's
    with pytest.raises(SystemExit, match="robust-native trains on .*data-native, which is not made yet"):
        training.launch(recipe, "robust-native", tmp_path / "work")


def test_a_stage_added_later_starts_from_the_shipped_weights_and_the_rest_is_kept(recipe_run, tmp_path):
    import shutil

    paths, argv = recipe_run
    package = tmp_path / "package"
    shutil.copytree(paths["package"], package)
    work = tmp_path / "work"
    for data in ("data", "data-native", "data-native4000", "data-native8000"):  # the data only: no training part
        shutil.copytree(paths["work"] / data, work / data)
    results = tmp_path / "pretrain.json"
    common = ["--preset", "smoke", "--threads", "1", f"--recipe={paths['recipe']}", f"--work={work}"]
    common += [f"--results={results}", f"--package={package}"]
    stage = [
        "--part",
        "plain-256",
        "--part",
        "plain-384",
        "--part",
        "plain-384-long",
        "--part",
        "plain-native",
        "--part",
        "plain-wide",
        "--part",
        "plain-8k",
        "--part",
        "inference",
        "--part",
        "ship",
    ]
    with pytest.raises(
        SystemExit,
        match="plain-256's localizer starts from plain, which has no trained localizer .*--start-from-package",
    ):
        release_run([*common, *stage])
    kept = {name: (package / name / "localizer.safetensors").read_bytes() for name in ("robust", "reloc")}
    before = (package / "plain" / "localizer.safetensors").read_bytes()
    assert release_run([*common, *stage, "--start-from-package"]) == 0
    recorded = json.loads(results.read_text())["parts"]
    assert recorded["plain-256"]["started_from"] == "pretrained:plain"
    assert recorded["plain-384"]["started_from"] == str(work.resolve() / "plain-256")
    assert set(recorded["inference"]) >= {"plain"} and "robust" not in recorded["inference"]
    assert (package / "plain" / "localizer.safetensors").read_bytes() != before
    assert {name: (package / name / "localizer.safetensors").read_bytes() for name in kept} == kept
    cards = json.loads((package / "cards.json").read_text())["models"]
    original = json.loads((paths["package"] / "cards.json").read_text())["models"]
    assert cards["robust"] == original["robust"] and cards["reloc"] == original["reloc"]
    stages = cards["plain"]["recipe"]["stages"]
    assert [(stage["part"], stage["started_from"]) for stage in stages[1:]] == [
        ("plain-256", "pretrained:plain"),
        ("plain-384", str(work.resolve() / "plain-256")),
        ("plain-384-long", str(work.resolve() / "plain-384")),
        ("plain-native", str(work.resolve() / "plain-384-long")),
        ("plain-wide", str(work.resolve() / "plain-native")),
        ("plain-8k", str(work.resolve() / "plain-wide")),
    ]


def test_a_preset_may_skip_parts_and_give_a_part_another_start_data_and_summary(tmp_path):
    raw = yaml.safe_load(recipes.RECIPE.read_text())
    skipped = [name for name in raw["models"] if name not in ("plain", "robust", "reloc", "plain-native")]
    raw["presets"]["short"] = {
        "models": {
            **{name: {"skip": True} for name in skipped},
            "plain": {"data": "native"},
            "plain-native": {"start": "plain", "set": ["train.epochs=1"]},
        },
        "inference": {"images": 7},
        "summaries": {"plain": "a shorter plain"},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    recipe = recipes.load_recipe("short", tmp_path / "recipe.yaml")
    assert list(recipe["models"]) == ["plain", "robust", "reloc", "plain-native"]
    assert recipes.stages_of(recipe, "plain-native") == ["plain", "plain-native"]
    assert recipes.shipped_parts(recipe) == {"plain": "plain-native", "robust": "robust", "reloc": "reloc"}
    assert list(recipes.data_parts(recipe)) == ["data", "data-native"]  # robust and reloc still train on data
    assert recipes.data_of(recipe, "plain") == "data-native"
    assert recipe["inference"]["images"] == 7 and recipe["inference"]["candidates"] == raw["inference"]["candidates"]
    assert recipe["summaries"] == {"plain": "a shorter plain"}
    raw["presets"]["broken"] = {"models": {"plain": {"skip": True}}}  # robust would start from nothing
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SystemExit, match="'robust' start: 'plain' is not listed before it"):
        recipes.load_recipe("broken", tmp_path / "recipe.yaml")


def test_the_gpu_preset_trains_on_cuda_on_native_data_in_three_parts():
    recipe = recipes.load_recipe("gpu")
    assert list(recipe["models"]) == ["plain", "robust", "reloc"]
    assert list(recipes.data_parts(recipe)) == ["data-native"]  # the 512-px set is not made
    assert recipes.data_parts(recipe)["data-native"]["settings"]["enlarge_hosts"] is False
    for model in recipe["models"].values():
        assert "train.device=cuda" in model["overrides"] and model["data"] == "native"
    assert set(recipe["summaries"]) == {"plain", "robust", "reloc"}


def test_the_2_hour_cpu_preset_trains_three_parts_on_the_4000_sample_native_set():
    recipe = recipes.load_recipe("cpu-2h")
    assert list(recipe["models"]) == ["plain", "robust", "reloc"]
    assert list(recipes.data_parts(recipe)) == ["data-native4000"]
    assert recipes.data_parts(recipe)["data-native4000"]["count"] == 4000
    assert recipe["models"]["plain"]["threads"] == 2 and recipe["models"]["robust"]["threads"] == 1
    for name, model in recipe["models"].items():
        assert model["data"] == "native4000" and model.get("start") == (None if name == "plain" else "plain")
        assert not any(override.startswith("train.device") for override in model["overrides"])
    assert set(recipe["summaries"]) == {"plain", "robust", "reloc"}


def test_photos_given_on_the_command_line_replace_the_recipes(tmp_path):
    with pytest.raises(SystemExit, match=f"photo folder {tmp_path / 'none'} not found"):
        release_run(
            [
                "--preset",
                "cpu",
                "--part",
                "data",
                "--photos",
                str(tmp_path / "none"),
                "--work",
                str(tmp_path / "w"),
                "--results",
                str(tmp_path / "r.json"),
            ]
        )


def test_experiment_parts_run_only_when_named_and_never_ship(tmp_path):
    """restorer-jpeg, reloc-restored and dp-restored (issue 46): left out of a run without --part and of the
    shipped models; named, restorer-jpeg trains the restorer alone (the localizer it starts from
    goes through bit for bit) and reloc-restored starts its restorer from it."""
    from reloc import runs
    from reloc.models.weights import load_network
    from reloc.release import runner

    raw = yaml.safe_load(recipes.RECIPE.read_text())
    assert {name for name, model in raw["models"].items() if model.get("experiment")} == {
        "restorer-jpeg",
        "reloc-restored",
        "dp-restored",
        "plain-traits",
    }
    recipe = recipes.load_recipe("cpu")
    assert recipes.shipped_parts(recipe) == {"plain": "plain-8k", "robust": "robust-8k", "reloc": "reloc-320"}
    assert {"restorer-jpeg", "reloc-restored"} <= set(runner.parts(recipe))
    assert not {"restorer-jpeg", "reloc-restored"} & set(runner.default_parts(recipe))
    for preset in ("gpu", "cpu-2h"):  # their plain-8k is skipped, so are the experiments
        assert "restorer-jpeg" not in recipes.load_recipe(preset)["models"]
    # a shipped part may not start from an experiment, and an experiment names no ships_as
    broken = yaml.safe_load(recipes.RECIPE.read_text())
    broken["models"]["late"] = {"config": "x.yaml", "start": "restorer-jpeg"}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))
    with pytest.raises(SystemExit, match="'late' start: 'restorer-jpeg' is an experiment, which never ships"):
        recipes.load_recipe("cpu", tmp_path / "recipe.yaml")
    broken["models"].pop("late")
    broken["models"]["reloc-restored"]["ships_as"] = "reloc"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))
    with pytest.raises(SystemExit, match="'reloc-restored' is an experiment, which never ships: drop its ships_as"):
        recipes.load_recipe("cpu", tmp_path / "recipe.yaml")

    # a recipe of plain-8k and the two experiments on tiny data
    photos = tmp_path / "photos" / "skimage"
    photos.mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"):
        pixels = np.asarray(getattr(skimage_data, name)())[..., :3]
        Image.fromarray(pixels).resize((128, 128)).save(photos / f"{name}.png")
    tiny = yaml.safe_load(recipes.RECIPE.read_text())
    tiny.update(photos=str(tmp_path / "photos"), held_out=["skimage/rocket.png"])
    tiny["synth"]["settings"]["val_fraction"] = 0.25
    tiny["extra_data"] = {"native8000": {**tiny["extra_data"]["native8000"], "size": 96, "count": 24}}
    tiny["inference"].update(images=4, candidates=[[64, 64]], thresholds=[0.5], restore_windows=[[512, 512]])
    models = tiny["models"]
    tiny["models"] = {
        "plain-8k": {"config": "configs/release/plain.yaml", "data": "native8000", "ships_as": "plain", "threads": 1},
        "restorer-jpeg": models["restorer-jpeg"],
        "reloc-restored": models["reloc-restored"],
    }
    tiny["presets"] = {"smoke": tiny["presets"]["smoke"]}
    smoke = tiny["presets"]["smoke"]
    smoke["models"] = {k: smoke["models"][k] for k in ("restorer-jpeg", "reloc-restored")}
    smoke.pop("extra_data")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    work, package, results = tmp_path / "work", tmp_path / "package", tmp_path / "pretrain.json"
    argv = ["--preset", "smoke", "--threads", "1", f"--recipe={tmp_path / 'tiny.yaml'}", f"--work={work}"]
    argv += [f"--results={results}", f"--package={package}"]
    assert release_run(argv) == 0  # no --part: data, plain-8k, inference, ship
    assert set(json.loads(results.read_text())["parts"]) == {"data-native8000", "plain-8k", "inference"}
    assert sorted(p.name for p in package.iterdir()) == ["cards.json", "plain"]
    shipped = {p: p.read_bytes() for p in sorted(package.rglob("*")) if p.is_file()}
    assert release_run([*argv, "--part", "restorer-jpeg", "--part", "reloc-restored"]) == 0
    parts = json.loads(results.read_text())["parts"]
    assert parts["restorer-jpeg"]["finished"] and parts["reloc-restored"]["finished"]
    assert parts["restorer-jpeg"]["config"]["train"]["select_by"] == "psnr"
    assert parts["reloc-restored"]["restorer_started_from"] == str(work.resolve() / "restorer-jpeg")
    assert {p: p.read_bytes() for p in sorted(package.rglob("*")) if p.is_file()} == shipped  # nothing shipped
    rows = (work / "restorer-jpeg" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == ["warmup", "warmup"]
    start = load_network(runs.weights_path(work / "plain-8k", "localizer")).state_dict()
    for which in runs.WEIGHT_SETS:
        end = load_network(runs.weights_path(work / "restorer-jpeg", "localizer", which)).state_dict()
        assert all(torch.equal(start[k], end[k]) for k in start), which
