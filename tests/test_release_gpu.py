"""``reloc release pack`` and ``reloc release gpu`` (:mod:`reloc.release.gpu`) rehearsed on the CPU at a tiny
size: the pack and its size check, a run killed mid-training that resumes, the time limit stopping it with its
best weights kept, and the time shared out between the training waves."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image
from skimage import data as skimage_data

from reloc import runs
from reloc.models.weights import check_spec_fits
from reloc.release import gpu, training
from reloc.release import recipe as recipes


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A recipe of one training part at a ``tiny`` preset (1-step epochs, far more of them than its time
    limit allows) on four 96-px photos (one held out), and its pack: ``(recipe path, pack folder, pack.json)``."""
    root = tmp_path_factory.mktemp("gpu")
    photos = root / "photos" / "skimage"
    photos.mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        pixels = np.asarray(getattr(skimage_data, name)())[..., :3]
        Image.fromarray(pixels).resize((96, 72)).save(photos / f"{name}.png")
    recipe = yaml.safe_load(recipes.RECIPE.read_text())
    recipe.update(photos=str(root / "photos"), held_out=["skimage/rocket.png"], extra_data={})
    recipe["synth"].update(count=12, size=64)
    recipe["synth"]["settings"]["val_fraction"] = 0.34
    recipe["models"] = {"plain": recipe["models"]["plain"]}
    tiny = ["data.crop=32", "data.batch_size=2", "data.steps_per_epoch=1", "train.epochs=1000", "data.cache_mb=8"]
    recipe["presets"] = {"tiny": {"set": tiny, "threads": 1}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    manifest = gpu.make_pack(root / "pack", "tiny", root / "recipe.yaml", wheels=False)
    return root / "recipe.yaml", root / "pack", manifest


def _rows(run):
    with (run / runs.METRICS).open() as handle:
        return list(csv.DictReader(handle))


def test_the_pack_holds_the_photos_shrunk_to_the_synthesisers_size_and_checks_the_travel_limit(packed, capsys):
    recipe, pack, manifest = packed
    shrunk = sorted((pack / "photos" / "skimage").glob("*.png"))
    assert [p.name for p in shrunk] == ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"]
    assert {Image.open(p).size for p in shrunk} == {(85, 64)}  # short side 72 -> 64
    assert manifest["preset"] == "tiny" and manifest["size"] == 64 and manifest["photos"]["shrunk"] == 4
    assert manifest["pack_bytes"] == pytest.approx(gpu.folder_bytes(pack), rel=0.05)
    assert manifest["tree_bytes"] > 1_000_000  # the package's weights travel with it
    assert gpu.read_pack(pack, recipe)[0] == manifest
    with pytest.raises(SystemExit, match="over the 1 MiB limit"):
        gpu.make_pack(pack.parent / "too-big", "tiny", recipe, wheels=False, limit_mib=1)
    changed = yaml.safe_load(recipe.read_text())
    changed["synth"]["seed"] = 12
    (pack.parent / "changed.yaml").write_text(yaml.safe_dump(changed))
    with pytest.raises(SystemExit, match="other data settings"):
        gpu.read_pack(pack, pack.parent / "changed.yaml")


def test_a_killed_run_resumes_and_the_time_limit_stops_it_with_its_best_weights(packed, tmp_path, capsys):
    recipe, pack, _ = packed
    out = tmp_path / "out"
    command = [sys.executable, "-m", "reloc", "release", "gpu", f"--pack={pack}", f"--out={out}"]
    command += [f"--recipe={recipe}", "--time-limit=600"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    run = out / "work" / "plain"
    try:
        deadline = time.monotonic() + 120
        while not ((run / runs.CHECKPOINT).is_file() and (run / runs.METRICS).is_file() and len(_rows(run)) >= 2):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended or never trained"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the recipe and its `reloc train` process
        process.wait()
    before = _rows(run)

    results = gpu.run(pack, out, time_limit=15, recipe_path=recipe)
    printed = capsys.readouterr().out
    assert "--resume" in printed and "samples in" not in printed  # the data part was kept, the run resumed
    after = _rows(run)
    assert [int(row["epoch"]) for row in after] == list(range(1, len(after) + 1))
    assert all(0 <= float(row["data_wait_seconds"]) <= float(row["seconds"]) for row in after)
    assert len(after) > len(before) and after[: len(before) - 1] == before[:-1]  # the last may be run again
    part = results["parts"]["plain"]
    assert part["finished"] is False and part["epochs_configured"] == 1000 and part["epochs"] == len(after) < 1000
    assert [row["time_limit_seconds"] for row in results["gpu_release"]["invocations"]] == [15]  # one ended
    assert results["gpu_release"]["epochs"]["plain"] == after
    assert results["preset"] == "tiny" and "cpu" in results["machine"]
    best = runs.weights_path(run, "localizer", "best")
    assert check_spec_fits(best).kind == "localizer"  # a whole safetensors file of the package's format


def test_the_time_limit_is_shared_out_between_waves_of_parts():
    recipe = recipes.load_recipe("gpu")
    start = time.monotonic()
    ends = training.deadlines(recipe, ["plain", "robust", "reloc"], 400)
    assert ends["plain"] - start == pytest.approx(200, abs=1)
    assert ends["robust"] == ends["reloc"] and ends["robust"] - start == pytest.approx(400, abs=1)
    # parts whose start part is not among them start at once
    assert training.deadlines(recipe, ["robust", "reloc"], 100)["robust"] - start == pytest.approx(100, abs=1)
