"""The recipe run part by part (``reloc release run``): make the pretrained models shipped inside the package.

    reloc release run                      # every part, in order (resumable), preset auto
    reloc release run --part plain         # one part
    reloc release run --preset cpu-fp32    # a preset by name (cpu, cpu-fp32, gpu; recipe.yaml)
    reloc release run --list-parts
    reloc release run --start-from-package --part plain-256 --part plain-384 \
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
  figures are added by ``reloc release cards``. A model whose last part has no run
  in the work folder (``--start-from-package`` runs that trained only some) keeps its
  shipped files, card and inference choice.

Every training part is a ``reloc train`` process: a killed part resumes from its last
checkpoint (``reloc train --resume``), a finished one is skipped, so re-running the recipe
after a kill continues where it stopped; ``--force`` redoes a finished ``inference`` part
(after a change of the recipe's inference settings). Provenance (commit, torch version,
the processor and its training precision, seeds, data summary, wall seconds per part) goes to ``benchmarks/results/release/pretrain.json``
after every part.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from reloc.release.provenance import (
    RESULTS,
    git_commit,
    load_results,
    machine_summary,
    recipe_wall_seconds,
    save_results,
)
from reloc.release.recipe import RECIPE, ROOT, data_parts, is_experiment, load_recipe, shipped_parts
from reloc.release.selection import choose_inference
from reloc.release.ship import PACKAGE, ship
from reloc.release.training import make_data, train_parts

#: Where the recipe's data and training runs go by default.
WORK = ROOT / "runs" / "release"


def parts(recipe: dict) -> list[str]:
    """The recipe's parts in their order: data parts, training parts, ``inference``, ``ship``."""
    return [*data_parts(recipe), *recipe["models"], "inference", "ship"]


def default_parts(recipe: dict) -> list[str]:
    """The parts a run without ``--part`` runs: :func:`parts` less the experiments
    (:func:`reloc.release.recipe.is_experiment`), which run only when named."""
    return [part for part in parts(recipe) if part not in recipe["models"] or not is_experiment(recipe, part)]


def run(
    preset: str = "auto",
    recipe_path: Path = RECIPE,
    work: Path = WORK,
    photos: str | None = None,
    only: list[str] | None = None,
    jobs: int = 2,
    start_from_package: bool = False,
    results_path: Path = RESULTS,
    package: Path = PACKAGE,
    threads: int | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    command: str = "reloc release run",
    time_limit: float | None = None,
) -> None:
    """Run the recipe's parts (``only``: these; default every part, in order), resumably.

    Args:
        preset: the recipe's preset (``auto``: :func:`reloc.release.recipe.auto_preset`).
        recipe_path: the recipe YAML (paths in it relative to the checkout).
        work: the folder of the data parts, training runs and logs.
        photos: a photo folder instead of the recipe's.
        only: run only these parts (:func:`parts` names them); default :func:`default_parts`.
        jobs: training parts run side by side at most.
        start_from_package: a part whose start part has no run in ``work`` starts from that
            model's shipped weights.
        results_path: the provenance JSON.
        package: where ``ship`` puts weights and cards.
        threads: torch threads of every training part (default: the recipe's).
        overrides: config overrides of every training part, after the recipe's.
        force: redo the inference part even when recorded as finished.
        command: the command line recorded in the provenance.
        time_limit: seconds for the data and training parts of this invocation; the
            training parts share what the data parts leave (:func:`reloc.release.training.deadlines`).

    Raises:
        SystemExit: ``error: ...`` for a bad recipe, an unknown part, a failed part.
    """
    started = time.perf_counter()
    import torch

    recipe = load_recipe(preset, recipe_path)
    if photos:
        recipe["photos"] = str(Path(photos).resolve())
    known = parts(recipe)
    unknown = [part for part in only or [] if part not in known]
    if unknown:
        raise SystemExit(f"error: unknown part(s) {', '.join(unknown)}; parts: {', '.join(known)}")
    resolved = recipe["preset"]
    for model in recipe["models"].values():
        model["overrides"] = [*model["overrides"], *(overrides or [])]
        if threads:
            model["threads"] = threads
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = load_results(results_path)
    if results.get("preset") not in (None, resolved):
        raise SystemExit(f"error: {results_path} holds preset {results['preset']!r}; move it away to run {resolved!r}")
    print(f"preset {resolved}" + (" (auto: this processor)" if preset == "auto" else ""))
    results.update(
        preset=resolved,
        commit=git_commit(),
        torch=torch.__version__,
        python=sys.version.split()[0],
        machine=machine_summary(),
        command=command,
    )
    selected = only or default_parts(recipe)
    for data_part in data_parts(recipe):
        if data_part in selected and not results["parts"].get(data_part, {}).get("finished"):
            tick = time.perf_counter()
            results["parts"][data_part] = {
                **make_data(recipe, work, data_part),
                "finished": True,
                "wall_seconds": round(time.perf_counter() - tick, 1),
            }
            save_results(results, results_path)
    training = [name for name in recipe["models"] if name in selected]
    if training:
        tick = time.perf_counter()
        try:
            left = None if time_limit is None else time_limit - (time.perf_counter() - started)
            train_parts(recipe, training, work, results, results_path, jobs, start_from_package, left)
        finally:
            spent = results.get("training_wall_seconds", 0.0) + time.perf_counter() - tick
            results["training_wall_seconds"] = round(spent, 1)
            save_results(results, results_path)
    if "inference" in selected and (force or not results["parts"].get("inference", {}).get("finished")):
        chosen = {name: {**row, "commit": results["commit"]} for name, row in choose_inference(recipe, work).items()}
        models = {**results["parts"].get("inference", {}), **chosen}  # models left out keep their choice
        models = {name: row for name, row in models.items() if name in shipped_parts(recipe)}
        results["parts"]["inference"] = {
            **models,
            "finished": True,
            "commit": results["commit"],
            "wall_seconds": round(sum(row.get("wall_seconds") or 0.0 for row in models.values()), 1),
        }
        save_results(results, results_path)
    if "ship" in selected:
        ship(recipe, work, results, package)
    results["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    results["wall_seconds_total"] = recipe_wall_seconds(results)
    save_results(results, results_path)
