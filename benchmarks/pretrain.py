"""The release recipe: make the pretrained models shipped inside the package.

    python benchmarks/pretrain.py                      # every part, in order (resumable), preset auto
    python benchmarks/pretrain.py --part plain         # one part
    python benchmarks/pretrain.py --preset cpu-fp32    # a preset by name (cpu, cpu-fp32, gpu; recipe.yaml)
    python benchmarks/pretrain.py --list-parts
    python benchmarks/pretrain.py --start-from-package --part plain-256 --part plain-384 \
        --part robust-256 --part robust-384 --part inference --part ship   # context stages only

The preset sizes the recipe for the machine (``configs/release/recipe.yaml``): ``auto`` picks
``cpu`` (the configs as written, sized for a CPU with AMX, which trains in bf16) or
``cpu-fp32`` (smaller crops and fewer epochs, for any other CPU) by the processor's flags.

The recipe is ``configs/release/recipe.yaml`` (photos, the held-out test photos, the
generator's settings, which training config makes which model); the training configs are
``configs/release/{plain,robust,reloc}.yaml``. Parts:

- ``data``: ``reloc.data.synth.synthesize`` makes the training set from every photo under
  ``photos`` except the held-out ones (split by photo into train / validation);
  ``data-NAME`` makes each of the recipe's ``extra_data`` sets the same way (the same
  photos and split, some settings changed: ``native`` enlarges no photo; a set may add
  ``hosts``, more photo folders, and ``settings_files``, generator settings read before its
  own), for the parts with ``data: NAME``;
- the training parts, the recipe's ``models``: ``plain`` (M^P), then ``robust`` (M^{D|P},
  JPEG 50-100) and ``reloc`` (Algorithm 1, JPEG 50-100), both started from plain's best
  localizer, then the context stages: ``plain-256`` and ``robust-256`` (8 epochs of 256-px
  crops from plain's and robust's best localizers), then ``plain-384`` and ``robust-384``
  (6 epochs of 384-px crops from those), the long stages, ``robust-mix``, and the native
  stages ``plain-native`` and ``robust-native`` (on ``data-native``), the wide and the 8k
  stages, whose last, ``plain-8k`` and ``robust-8k``, make the shipped ``plain`` and
  ``robust`` (``ships_as``; the last part of a model makes its weights), and ``reloc-8k``,
  Algorithm 1 again with its localizer from ``plain-8k`` and its restorer from ``reloc``
  (``restorer_start``), then ``reloc-256`` (both networks from ``reloc-8k``, 256-px crops)
  and ``reloc-320`` (both from ``reloc-256``, 320-px crops), which makes the shipped
  ``reloc``. A part starts once
  the parts it starts from have finished; up to
  ``--jobs`` (default 2) run side by side, in the recipe's order, each with its own torch
  threads. With ``--start-from-package`` a part whose start part has no run in the work
  folder starts from the shipped weights of that model (``pretrained:NAME``) instead: how a
  later stage is added to models trained before it existed;
- ``inference``: per shipped model (its last part), the sliding window and the decision
  threshold it runs with, chosen on validation images (never the test photos): every
  candidate window of the recipe's ``inference`` on its first ``images`` validation images
  (null: all of them) at the model's ``distortion``, a model with a restorer in each of its
  ``restore_windows`` too; the highest per-image AUC picks the window (a localizer trained
  on crops need not carry over to whole images), the highest per-image F1 in that window
  picks the threshold among ``thresholds`` (trained on tamper-biased crops, they may over-predict
  tampering on whole images);
- ``ship``: writes the best weights of each shipped model's last part to
  ``src/reloc/pretrained/<name>/``, the localizer with its chosen window in its metadata
  (``reloc.window``: what ``localize``, ``eval`` and ``serve`` use unless given
  ``--window``) and its threshold folded into its logits
  (:func:`reloc.models.calibration.calibrate`: probability 0.5 of the shipped network is
  the chosen threshold of the trained one; ``reloc.calibration`` metadata), a restorer
  with its chosen restorer window recorded (it restores the image in windows of that size
  before the localizer slides over it; none recorded: window by window), and the cards
  (``cards.json``) with the recipe's provenance (each model's stages); the measured
  figures are added by ``benchmarks/pretrained.py``. A model whose last part has no run
  in the work folder (``--start-from-package`` runs that trained only some) keeps its
  shipped files, card and inference choice.

Every training part is a ``reloc train`` process: a killed part resumes from its last
checkpoint (``reloc train --resume``), a finished one is skipped, so re-running the script
after a kill continues where it stopped; ``--force`` redoes a finished ``inference`` part
(after a change of the recipe's inference settings). Provenance (commit, torch version,
the processor and its training precision, seeds, data summary, wall seconds per part) goes to ``benchmarks/results/pretrain.json``
after every part.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from results_io import read_results

from reloc.io_utils import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "release" / "recipe.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "pretrain.json"
PACKAGE = ROOT / "src" / "reloc" / "pretrained"
#: The recipe key naming the part each network of a training part starts from.
START_KEYS = {"localizer": "start", "restorer": "restorer_start"}
SUMMARIES = {
    "plain": "DFCN x0.5 with the SRM high-pass front end, trained on uncompressed images (M^P), "
    "128-px crops, then 256 and 384, then 320 and 256 of photos never enlarged (1100, then 4000 samples)",
    "robust": "plain fine-tuned on JPEG crops of quality 50-100 (M^{D|P}, mixed quality), 128-px crops, "
    "then 256 and 384, then 384 and 320 (photos never enlarged) on a mix of JPEG, plain, resized and "
    "blurred crops, then 256 on 4000 samples of photos never enlarged",
    "reloc": "small SCUNet restorer + DFCN x0.5 trained by ReLoc's Algorithm 1 on JPEG 50-100, localizer from plain",
}


def auto_preset() -> str:
    """The CPU preset for this processor: ``cpu-2h`` where it computes bf16 natively (AMX or
    ``avx512_bf16``: the whole recipe took 97 min on a 2-core AMD EPYC with avx512_bf16),
    ``cpu-fp32`` anywhere else (the smaller sizing meant to fit the 2 hours in fp32)."""
    from reloc.precision import cpu_has_bf16

    return "cpu-2h" if cpu_has_bf16() else "cpu-fp32"


def load_recipe(preset: str, path: Path = RECIPE) -> dict:
    """The recipe with ``presets[preset]`` applied (``auto``: :func:`auto_preset`): ``synth``,
    ``extra_data`` and ``inference`` merged; a model the preset marks ``skip: true`` is
    dropped, and the preset's ``start`` or ``data`` of a model replace the recipe's; each
    model's ``overrides`` are the preset's for every model (``set``), then the model's own
    (``models.NAME.set`` of the recipe), then the preset's for that model (later ones win);
    ``threads`` set. Every ``start`` and ``restorer_start`` must name an earlier model that
    is not skipped."""
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: cannot read the recipe {path}: {exc}") from exc
    if not isinstance(recipe, dict) or "presets" not in recipe:
        raise SystemExit(f"error: {path} is not a release recipe (no 'presets')")
    presets = recipe.pop("presets")
    if preset == "auto":
        preset = auto_preset()
    if preset not in presets:
        raise SystemExit(f"error: unknown preset {preset!r}; known: auto, {', '.join(presets)}")
    chosen = presets[preset] or {}
    unknown = set(chosen.get("models", {})) - set(recipe["models"])
    if unknown:
        raise SystemExit(f"error: preset {preset!r} sets unknown models: {', '.join(sorted(unknown))}")
    recipe["synth"] = {**recipe["synth"], **{k: v for k, v in chosen.get("synth", {}).items()}}
    extra = recipe.get("extra_data") or {}
    for name, spec in (chosen.get("extra_data") or {}).items():
        if name not in extra:
            raise SystemExit(f"error: preset {preset!r} sets unknown extra data set {name!r}")
        extra[name] = {**extra[name], **spec}
    recipe["extra_data"] = extra
    recipe["inference"] = {**recipe["inference"], **(chosen.get("inference") or {})}
    recipe["summaries"] = chosen.get("summaries") or {}
    for name, spec in (chosen.get("models") or {}).items():
        spec = spec or {}
        if spec.get("skip"):
            del recipe["models"][name]
        for key in ("start", "restorer_start", "data"):
            if key in spec:
                recipe["models"][name][key] = spec[key]
    earlier: set[str] = set()
    for name, model in recipe["models"].items():
        if model.get("data") is not None and model["data"] not in extra:
            raise SystemExit(f"error: model {name!r} trains on data set {model['data']!r}, not in extra_data")
        for key, start in start_parts(model).items():
            if start not in earlier:
                raise SystemExit(f"error: model {name!r} {key}: {start!r} is not listed before it")
        earlier.add(name)
        own = (chosen.get("models", {}).get(name) or {}).get("set", [])
        model["overrides"] = [*chosen.get("set", []), *model.get("set", []), *own]
        if "threads" in chosen:
            model["threads"] = chosen["threads"]
    recipe["preset"] = preset
    return recipe


def data_parts(recipe: dict) -> dict[str, dict]:
    """``{data part: its synth spec}``: ``data`` (the recipe's ``synth``), then ``data-NAME``
    for each of ``extra_data`` (``synth`` with that set's keys replaced, ``settings`` merged
    key by key); only those some training part trains on. Each part writes the folder of
    its name in the work folder."""
    parts = {"data": recipe["synth"]}
    for name, spec in recipe.get("extra_data", {}).items():
        merged = {**recipe["synth"], **{k: v for k, v in spec.items() if k != "settings"}}
        merged["settings"] = {**recipe["synth"].get("settings", {}), **spec.get("settings", {})}
        parts[f"data-{name}"] = merged
    used = {data_of(recipe, name) for name in recipe["models"]}
    return {part: spec for part, spec in parts.items() if part in used}


def data_of(recipe: dict, part: str) -> str:
    """The data part training part ``part`` trains and validates on (``data``, or
    ``data-NAME`` for a part with ``data: NAME``)."""
    name = recipe["models"][part].get("data")
    return "data" if name is None else f"data-{name}"


def ships_as(recipe: dict, part: str) -> str:
    """The package model training part ``part`` makes (``ships_as``, default its own name)."""
    return recipe["models"][part].get("ships_as", part)


def shipped_parts(recipe: dict) -> dict[str, str]:
    """``{package model: the training part that makes it}``: each model's last listed part
    (:func:`ships_as`), in the order the models first appear."""
    shipped: dict[str, str] = {}
    for name in recipe["models"]:
        shipped[ships_as(recipe, name)] = name
    return shipped


def start_parts(model: dict) -> dict[str, str]:
    """The parts a training part's networks start from, by recipe key (:data:`START_KEYS`
    values, e.g. ``{"start": "plain-8k", "restorer_start": "reloc"}``); keys not set are left out."""
    return {key: model[key] for key in START_KEYS.values() if model.get(key) is not None}


def stages_of(recipe: dict, part: str) -> list[str]:
    """The training parts that lead to ``part`` through ``start`` or ``restorer_start``, in
    the recipe's order, ``part`` last (``plain``, ``plain-256``)."""
    leading, waiting = {part}, [part]
    while waiting:
        for earlier in start_parts(recipe["models"][waiting.pop()]).values():
            if earlier not in leading:
                leading.add(earlier)
                waiting.append(earlier)
    return [name for name in recipe["models"] if name in leading]


def photo_split(recipe: dict) -> tuple[Path, list[Path], list[Path]]:
    """``(photo root, training photos, held-out photos)``; every held-out name must exist."""
    from reloc.data.photos import list_photos

    root = (ROOT / recipe["photos"]).resolve()
    if not root.is_dir():
        raise SystemExit(f"error: photo folder {root} not found (the recipe's photos, or --photos)")
    held_out = [root / name for name in recipe["held_out"]]
    missing = [str(p) for p in held_out if not p.is_file()]
    if missing:
        raise SystemExit(f"error: held-out photos not found: {', '.join(missing)}")
    held = {p.resolve() for p in held_out}
    training = [
        p
        for folder in sorted(d for d in root.iterdir() if d.is_dir())
        for p in list_photos(folder)
        if p.resolve() not in held
    ]
    return root, training, held_out


# --- bookkeeping -----------------------------------------------------------------------
def load_results(path: Path) -> dict:
    return read_results(path, {"parts": {}})


def save_results(results: dict, path: Path) -> None:
    write_json_atomic(path, results)


def machine_summary() -> dict:
    """The processor the parts run on, the GPU where there is one, and the precision
    ``train.precision=auto`` trains in there: the recipe's wall time depends on them (bf16
    autocast only with native bf16)."""
    import torch

    from reloc.precision import CPU_BF16_FLAGS, cpu_flags, cpu_model, dtype_name, resolve_precision

    summary = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "bf16_flags": sorted(cpu_flags() & CPU_BF16_FLAGS),
        "training_precision": dtype_name(resolve_precision("auto", "cpu")),
    }
    if torch.cuda.is_available():
        summary["gpu"] = torch.cuda.get_device_name()
        summary["gpu_training_precision"] = dtype_name(resolve_precision("auto", "cuda"))
    return summary


def git_commit() -> str:
    """The checkout's commit; ``RELOC_COMMIT`` where the checkout travelled without its
    ``.git`` (a GPU machine given a copy of the working tree)."""
    if os.environ.get("RELOC_COMMIT"):
        return os.environ["RELOC_COMMIT"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_progress(run: Path) -> tuple[int, int]:
    """``(epochs finished, epochs configured)`` of a run folder (0, 0 when it has none)."""
    from reloc import runs

    config, metrics = run / runs.CONFIG, run / runs.METRICS
    if not config.is_file():
        return 0, 0
    total = int(yaml.safe_load(config.read_text())["train"]["epochs"])
    if not metrics.is_file():
        return 0, total
    with metrics.open() as handle:
        return sum(1 for _ in csv.DictReader(handle)), total


# --- parts -------------------------------------------------------------------------------
def make_data(recipe: dict, work: Path, part: str = "data") -> dict:
    """Synthesise data part ``part``'s training set (train / val photos only; every data
    part splits the photos alike) into ``work / part``; returns the data summary."""
    from reloc.data.photos import list_photos
    from reloc.data.synth import synthesize
    from reloc.data.synth.settings import SynthSettings

    root, training, held_out = photo_split(recipe)
    synth = data_parts(recipe)[part]
    for folder in synth.get("hosts", []):  # more host folders, relative to the checkout: all training photos
        training = training + list_photos(ROOT / folder)
    # settings files first (configs/synth/), then the recipe's and the part's own settings
    files = [ROOT / f for f in synth.get("settings_files", [])]
    base = SynthSettings.from_yaml(*files).to_dict() if files else {}
    settings = SynthSettings.from_mapping({**base, **synth["settings"]})
    summary = synthesize(
        [str(p) for p in training],
        work / part,
        count=int(synth["count"]),
        seed=int(synth["seed"]),
        size=int(synth["size"]),
        settings=settings,
        overwrite=True,
        workers=os.cpu_count(),
    )
    print(summary)
    folders: dict[str, int] = {}
    for path in training:
        folders[path.parent.name] = folders.get(path.parent.name, 0) + 1
    return {
        "photos_root": recipe["photos"],
        "training_photos": len(training),
        "training_photos_per_folder": folders,
        "held_out": list(recipe["held_out"]),
        **{k: v for k, v in summary.as_dict().items() if k != "out"},
        "size": int(synth["size"]),
        "seed": int(synth["seed"]),
        "settings": settings.to_dict(),
    }


def start_weights(
    recipe: dict, name: str, work: Path, from_package: bool = False, role: str = "localizer"
) -> str | None:
    """Where part ``name``'s ``role`` network starts: the best one of the run of the part its
    :data:`START_KEYS` entry names (the run folder), or with ``from_package`` and no such
    run, that model's shipped weights (``pretrained:NAME``); ``None`` where the recipe names
    no part (trained from scratch; a restorer from the identity).

    Raises:
        SystemExit: the start part has no trained run (and not ``from_package``).
    """
    from reloc import runs

    start = recipe["models"][name].get(START_KEYS[role])
    if start is None:
        return None
    run = work / start
    if runs.weights_path(run, role).is_file():
        return str(run)
    if from_package:
        return f"pretrained:{ships_as(recipe, start)}"
    raise SystemExit(
        f"error: {name}'s {role} starts from {start}, which has no trained {role} in {work}: train {start} "
        f"first, or pass --start-from-package to start from the shipped weights"
    )


def train_command(recipe: dict, name: str, work: Path, from_package: bool = False) -> list[str]:
    """The ``reloc train`` command of one part: fresh (config + overrides) or ``--resume``."""
    from reloc import runs

    run = work / name
    done, total = run_progress(run)
    command = [sys.executable, "-m", "reloc", "train", "--out", str(run), "--no-progress"]
    if total and (run / runs.CHECKPOINT).is_file():
        return [*command, "--resume"]
    if run.exists():
        shutil.rmtree(run)  # started, no epoch finished: start over
    model = recipe["models"][name]
    command += ["--config", str(ROOT / model["config"]), "--set", f"data.dataset={work / data_of(recipe, name)}"]
    for role in START_KEYS:
        start = start_weights(recipe, name, work, from_package, role)
        if start is not None:
            command += ["--set", f"model.{role}_weights={start}"]
    for override in model["overrides"]:
        command += ["--set", override]
    return command


def launch(recipe: dict, name: str, work: Path, from_package: bool = False) -> subprocess.Popen | None:
    """Start one training part (None when it finished before)."""
    done, total = run_progress(work / name)
    if total and done >= total:
        print(f"{name}: finished before ({done} epochs), skipped")
        return None
    data = work / data_of(recipe, name)
    if not (data / "manifest.json").is_file():
        raise SystemExit(f"error: {name} trains on {data}, which is not made yet: run the {data.name} part first")
    threads = str(recipe["models"][name]["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    command = train_command(recipe, name, work, from_package)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    log = open(work / "logs" / f"{name}.log", "a")  # noqa: SIM115 - closed when the process ends
    print(f"{name}: {' '.join(command[1:])} ({threads} thread(s); log {log.name})")
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def train_summary(run: Path) -> dict:
    from reloc import runs

    with (run / runs.METRICS).open() as handle:
        rows = list(csv.DictReader(handle))
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    return {
        "epochs": len(rows),
        "train_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
        "seed": config["train"]["seed"],
        "started_from": config["model"].get("localizer_weights"),
        "restorer_started_from": config["model"].get("restorer_weights"),
        "config": config,
        "last_epoch": rows[-1],
    }


def recipe_wall_seconds(results: dict) -> float:
    """The recipe's wall time: the data and inference parts' walls plus the training parts'
    (``training_wall_seconds``: the time spent training, over every invocation; parts that
    ran side by side count once)."""
    parts = results.get("parts", {})

    def wall(name: str) -> float:
        return parts.get(name, {}).get("wall_seconds") or 0.0

    data = sum(wall(name) for name in parts if name == "data" or name.startswith("data-"))
    return round(data + (results.get("training_wall_seconds") or 0.0) + wall("inference"), 1)


def pick_candidate(rows: list[dict], tolerance: float = 0.0) -> dict:
    """The first of ``rows`` (in the recipe's listing order, cheapest first) whose per-image
    ``auc`` is within ``tolerance`` of the best: smaller differences are ties."""
    floor = round(max(row["auc"] for row in rows) - tolerance, 6)  # the AUCs are recorded to 4 decimals
    return next(row for row in rows if row["auc"] >= floor)


def choose_inference(recipe: dict, work: Path) -> dict:
    """Per shipped model whose last part has a trained run (:func:`shipped_parts`): the
    sliding window, the restorer window (models with a restorer) and the decision threshold
    it runs with, chosen on validation images (every candidate's per-image AUC and F1 at
    every threshold; on the GPU where there is one, in fp32); models with no such run are
    left out."""
    import torch

    from reloc import runs
    from reloc.data.datasets import WholeImages
    from reloc.engine.evaluate import evaluation_samples
    from reloc.engine.localize import pipeline_from_weights
    from reloc.metrics import LocalizationMetrics

    settings = recipe["inference"]
    chosen = {}
    for name, part in shipped_parts(recipe).items():
        run = work / part
        if not runs.weights_path(run, "localizer").is_file():
            print(f"inference {name}: {part} has no trained run in {work}, left as it is")
            continue
        started = time.perf_counter()
        refs = evaluation_samples(work / data_of(recipe, part), "val", [run])[: settings["images"]]
        restorer = runs.weights_path(run, "restorer")
        pipeline = pipeline_from_weights(
            runs.weights_path(run, "localizer"),
            restorer if restorer.is_file() else None,
            precision="fp32",
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        restore_windows = settings["restore_windows"] if pipeline.restorer is not None else [None]
        distortion = settings["distortion"][name]
        images = WholeImages(refs, None if distortion == "none" else distortion, seed=settings["seed"])
        view = "plain" if distortion == "none" else "distorted"
        rows = []
        for restore_window in restore_windows:
            pipeline.restore_window = tuple(restore_window) if restore_window else None
            for side, stride in settings["candidates"]:
                tick = time.perf_counter()
                metrics = {t: LocalizationMetrics(threshold=t, pooled_auc=False) for t in settings["thresholds"]}
                for index in range(len(images)):
                    sample = images[index]
                    with torch.inference_mode():
                        probabilities = pipeline.predict(sample[view], window=side, stride=stride).numpy()
                    mask = sample["mask"][0].numpy() > 0.5
                    for metric in metrics.values():
                        metric.update(probabilities, mask, sample["name"])
                summaries = {t: metric.summary()["per-image"] for t, metric in metrics.items()}
                rows.append(
                    {
                        "window": [side, stride],
                        "restore_window": restore_window,
                        "auc": round(next(iter(summaries.values()))["auc"], 4),
                        "f1": {str(t): round(values["f1"], 4) for t, values in summaries.items()},
                        "seconds": round(time.perf_counter() - tick, 1),
                    }
                )
                best_f1 = max(rows[-1]["f1"].items(), key=lambda item: item[1])
                restoring = "" if pipeline.restorer is None else f", restorer {restore_window or 'window by window'}"
                print(
                    f"inference {name}: {side}/{stride}{restoring} at {distortion}: AUC {rows[-1]['auc']:.3f}, "
                    f"F1 {rows[-1]['f1'].get('0.5', float('nan')):.3f} at 0.5, best {best_f1[1]:.3f} at {best_f1[0]}"
                )
        best = pick_candidate(rows, settings.get("auc_tolerance", 0.0))
        threshold, f1 = max(best["f1"].items(), key=lambda item: item[1])
        chosen[name] = {
            "part": part,
            "chosen": best["window"],
            "restore_window": best["restore_window"],
            "threshold": float(threshold),
            "validation_f1": f1,
            "distortion": distortion,
            "images": len(refs),
            "candidates": rows,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
    return chosen


def ship(recipe: dict, work: Path, results: dict, package: Path) -> None:
    """Write the best weights of each shipped model's last part into the package (the
    localizer with its chosen window recorded and its chosen threshold folded into its
    logits) and the cards (figures reset). A model whose last part has no trained run in
    ``work`` keeps its shipped files and card (a run of only some parts)."""
    import torch

    from reloc import runs
    from reloc.models.calibration import calibrate
    from reloc.models.weights import load_network, save_network

    cards_file = package / "cards.json"
    shipped_cards = read_results(cards_file, {"models": {}})["models"]
    cards, kept = {}, []
    for name, last in shipped_parts(recipe).items():
        best = {role: runs.weights_path(work / last, role) for role in ("localizer", "restorer")}
        roles = [role for role, path in best.items() if path.is_file()]
        target = package / name
        if "localizer" not in roles:
            if name in shipped_cards and (target / "localizer.safetensors").is_file():
                cards[name] = shipped_cards[name]
                kept.append(name)
                continue
            raise SystemExit(f"error: {best['localizer']} is missing; train {last} first")
        inference = results["parts"].get("inference", {}).get(name)
        if inference is None or inference.get("part", last) != last:
            raise SystemExit(f"error: no window and threshold chosen for {name} ({last}); run the inference part first")
        target.mkdir(parents=True, exist_ok=True)
        for role in ("localizer", "restorer"):
            (target / f"{role}.safetensors").unlink(missing_ok=True)
        window, threshold = inference["chosen"], inference["threshold"]
        restore_window = tuple(inference["restore_window"]) if inference.get("restore_window") else None
        for role in roles:
            if role == "localizer":  # the window recorded, the threshold folded into the logits
                localizer = calibrate(load_network(best[role]), threshold)
                calibration = {"threshold": threshold, "chosen_on": f"{inference['images']} validation images"}
                save_network(localizer, target / f"{role}.safetensors", window=tuple(window), calibration=calibration)
            else:  # the same tensors, with the restorer's window recorded
                save_network(load_network(best[role]), target / f"{role}.safetensors", window=restore_window)
        stages = []
        for part_name in stages_of(recipe, last):
            part = results["parts"].get(part_name, {})
            stages.append(
                {
                    "part": part_name,
                    "data": data_of(recipe, part_name),
                    "config": recipe["models"][part_name]["config"],
                    "set": recipe["models"][part_name]["overrides"],
                    "started_from": part.get("started_from"),
                    "restorer_started_from": part.get("restorer_started_from"),
                    "epochs": part.get("epochs"),
                    "seed": part.get("seed"),
                    "train_seconds": part.get("train_seconds"),
                    "commit": part.get("commit"),
                }
            )
        cards[name] = {
            "summary": recipe.get("summaries", {}).get(name, SUMMARIES[name]),
            "roles": roles,
            "trained_on": results["parts"].get(last, {}).get("config", {}).get("data", {}).get("distortion"),
            "window": window,
            "threshold": threshold,
            "restore_window": inference.get("restore_window"),
            "recipe": {"preset": recipe["preset"], "stages": stages},
            "figures": {},
        }
    document = {
        "recipe": f"python benchmarks/pretrain.py --preset {recipe['preset']}",
        "preset": recipe["preset"],
        "commit": results.get("commit"),
        "torch": torch.__version__,
        "data": results["parts"].get("data", {}),
        "extra_data": {part: results["parts"].get(part, {}) for part in data_parts(recipe) if part != "data"},
        "models": cards,
    }
    write_json_atomic(cards_file, document)
    print(
        f"shipped {', '.join(n for n in cards if n not in kept)} -> {package}"
        + (f" (kept: {', '.join(kept)})" if kept else "")
    )


def train_parts(recipe: dict, names: list[str], work: Path, results: dict, args: argparse.Namespace) -> None:
    """Train ``names`` (in the recipe's order): a part starts once the part it starts from is
    no longer pending here, up to ``args.jobs`` at a time; each finished part is recorded in
    ``results`` (and saved) as it ends.

    Raises:
        SystemExit: a part failed (the others are waited for first; run again to resume).
    """
    pending, running, failed = list(names), {}, []
    while pending or running:
        for name in list(pending):
            if len(running) >= max(args.jobs, 1) or failed:
                break
            if any(start in [*pending, *running] for start in start_parts(recipe["models"][name]).values()):
                continue  # a part it starts from is not trained yet
            pending.remove(name)
            running[name] = (launch(recipe, name, work, args.start_from_package), time.perf_counter())
        if not running:
            break  # only parts waiting for a failed one are left
        time.sleep(0 if any(process is None for process, _ in running.values()) else 2)
        for name, (process, tick) in list(running.items()):
            if process is not None and process.poll() is None:
                continue
            del running[name]
            if process is not None and process.returncode != 0:
                failed.append(name)
                continue
            before = results["parts"].get(name, {})
            if process is None and before.get("finished"):
                continue  # finished and recorded by an earlier invocation
            entry = {**train_summary(work / name), "finished": True}
            if process is None:  # finished before, never recorded (that invocation was killed)
                entry.update(
                    wall_seconds=None,
                    commit=None,
                    note="trained by an earlier invocation that was stopped before recording it",
                )
            else:
                wall = before.get("wall_seconds", 0.0) + time.perf_counter() - tick
                entry.update(wall_seconds=round(wall, 1), commit=results["commit"], machine=results["machine"])
            results["parts"][name] = entry
            save_results(results, args.results)
    if failed:
        raise SystemExit(
            f"error: part(s) {', '.join(failed)} failed; see {work / 'logs'}; run the script again to resume"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="auto", help="the recipe's preset (auto: cpu-2h on a CPU with bf16, cpu-fp32 on others)"
    )
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the recipe YAML (paths relative to the checkout)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "release")
    parser.add_argument(
        "--photos",
        help="the photo folder instead of the recipe's (e.g. a copy by benchmarks/shrink_photos.py, "
        "which makes the same data at its size)",
    )
    parser.add_argument("--part", action="append", help="run only these parts (repeatable; --list-parts names them)")
    parser.add_argument("--jobs", type=int, default=2, help="training parts run side by side at most")
    parser.add_argument(
        "--start-from-package",
        action="store_true",
        help="a part whose start part has no run in --work starts from that model's shipped weights",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="provenance JSON")
    parser.add_argument("--package", type=Path, default=PACKAGE, help="where ship puts weights and cards")
    parser.add_argument("--threads", type=int, help="torch threads of every training part (default: the recipe's)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override of every training part, after the recipe's (repeatable; e.g. train.epochs=2 "
        "for a trial of a preset on a new machine)",
    )
    parser.add_argument("--force", action="store_true", help="redo the inference part even when recorded as finished")
    parser.add_argument("--list-parts", action="store_true")
    args = parser.parse_args(argv)
    import torch

    recipe = load_recipe(args.preset, args.recipe)
    if args.photos:
        recipe["photos"] = str(Path(args.photos).resolve())
    known = [*data_parts(recipe), *recipe["models"], "inference", "ship"]
    if args.list_parts:
        print("\n".join(known))
        return 0
    unknown = [part for part in args.part or [] if part not in known]
    if unknown:
        raise SystemExit(f"error: unknown part(s) {', '.join(unknown)}; parts: {', '.join(known)}")
    preset = recipe["preset"]
    for model in recipe["models"].values():
        model["overrides"] = [*model["overrides"], *args.set]
        if args.threads:
            model["threads"] = args.threads
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = load_results(args.results)
    if results.get("preset") not in (None, preset):
        raise SystemExit(f"error: {args.results} holds preset {results['preset']!r}; move it away to run {preset!r}")
    print(f"preset {preset}" + (" (auto: this processor)" if args.preset == "auto" else ""))
    results.update(
        preset=preset,
        commit=git_commit(),
        torch=torch.__version__,
        python=sys.version.split()[0],
        machine=machine_summary(),
        command=" ".join(["python", "benchmarks/pretrain.py", *(argv if argv is not None else sys.argv[1:])]),
    )
    parts = args.part or known
    started = time.perf_counter()
    for data_part in data_parts(recipe):
        if data_part in parts and not results["parts"].get(data_part, {}).get("finished"):
            tick = time.perf_counter()
            results["parts"][data_part] = {
                **make_data(recipe, work, data_part),
                "finished": True,
                "wall_seconds": round(time.perf_counter() - tick, 1),
            }
            save_results(results, args.results)
    training = [name for name in recipe["models"] if name in parts]
    if training:
        tick = time.perf_counter()
        try:
            train_parts(recipe, training, work, results, args)
        finally:
            spent = results.get("training_wall_seconds", 0.0) + time.perf_counter() - tick
            results["training_wall_seconds"] = round(spent, 1)
            save_results(results, args.results)
    if "inference" in parts and (args.force or not results["parts"].get("inference", {}).get("finished")):
        chosen = {name: {**row, "commit": results["commit"]} for name, row in choose_inference(recipe, work).items()}
        models = {**results["parts"].get("inference", {}), **chosen}  # models left out keep their choice
        models = {name: row for name, row in models.items() if name in shipped_parts(recipe)}
        results["parts"]["inference"] = {
            **models,
            "finished": True,
            "commit": results["commit"],
            "wall_seconds": round(sum(row.get("wall_seconds") or 0.0 for row in models.values()), 1),
        }
        save_results(results, args.results)
    if "ship" in parts:
        ship(recipe, work, results, args.package)
    results["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    results["wall_seconds_total"] = recipe_wall_seconds(results)
    save_results(results, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
