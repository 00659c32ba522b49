"""Which traits of hand-made edits make a localizer generalize: an ablation chosen on real forgeries.

    python benchmarks/generalization.py                       # every variant -> benchmarks/results/generalization/
    python benchmarks/generalization.py --variants control,traits --seeds 0,1

Each variant is a training set made by the release recipe's generator (the recipe's traces,
its photos and held-out list; ``configs/release/recipe.yaml``) with some traits of
``configs/synth/traits.yaml`` on or off (:data:`VARIANTS`). From each, the shipped
``pretrained:plain`` localizer is fine-tuned for the same number of steps (:data:`TRAINING`),
then measured:

- on ``../shared/real/casia1-dev`` as distributed (whole images, no distortion; **chosen on,
  never trained on**): per-image F1 at 0.5 / best-threshold F1 / AUC over the forgeries,
  splices (``Sp_D_*``) and copy-moves (``Sp_S_*``) apart, and the image AUC of the packaged
  image score over forgeries against the authentic photos (``Au/``);
- on synthetic edits of the recipe's held-out test photos (the recipe's generator, no
  trait; never trained on), the lab row beside the field row.

Paired differences against ``control`` (the generator as the shipped models saw it) come
with 95% bootstrap intervals over images; with one training seed per variant they do not
cover retraining (``--seeds`` adds seeds; the summary then gives the seed spread).
Every part resumes: data folders, training runs (``reloc train --resume``) and per-image
records under ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from real import Records, bootstrap_mean, image_scores, predict  # benchmarks/real.py: one home for these
from tqdm import tqdm

from reloc import runs
from reloc.data.catalog import load_dataset
from reloc.data.synth import synthesize
from reloc.data.synth.settings import SynthSettings
from reloc.engine.detection import image_score
from reloc.engine.inference import pipeline_from_weights
from reloc.image_metrics import image_level_summary
from reloc.io_utils import write_json_atomic
from reloc.precision import cpu_flags, cpu_model
from reloc.release.provenance import run_progress
from reloc.release.recipe import ROOT, load_recipe, photo_split
from reloc.release.training import make_data

SHARED = ROOT.parent / "shared"
TRAITS_FILE = "configs/synth/traits.yaml"
TRAITS = {"hosts": ["../shared/photos-large"], "settings_files": [TRAITS_FILE]}
VARIANTS: dict[str, dict] = {
    "control": {"settings": {"enlarge_hosts": False}},
    "traits": TRAITS,
    "no-objects": {**TRAITS, "settings": {"p_object_region": 0.0}},
    "no-poisson": {**TRAITS, "settings": {"p_poisson": 0.0}},
    "no-histories": {**TRAITS, "settings": {"p_donor_jpeg": 0.0, "p_host_grid_shift": 0.0, "p_final_jpeg": 0.0}},
    "no-authentic": {**TRAITS, "settings": {"authentic_fraction": 0.0}},
    "no-large-hosts": {"settings_files": [TRAITS_FILE]},
}
"""Variant -> the recipe's ``extra_data`` entry it trains on (``control``: the recipe's
generator without enlarged hosts, as the shipped native stages; ``traits``: every trait of
``configs/synth/traits.yaml`` on, with the large photos as more hosts; ``no-X``: all traits
but X)."""
RECIPE_VARIANTS: dict[str, list[str]] = {
    "traits-crop320": ["data.crop=320", "data.batch_size=5"],
    "traits-anywhere": ["data.tamper_bias=0.0"],
    "traits-augment": [
        "train.task=finetune",
        "data.distortion=jpeg:50-100 | jpeg:50-100 | jpeg:50-100 | none | resize:0.45-0.9 | resize:0.45-0.9,jpeg:60-100"
        " | blur:0.5-1.5 | blur:0.5-1.5,jpeg:60-100 | noise:2-8",
    ],
}
"""Recipe changes measured on the ``traits`` training set (overrides after :data:`TRAINING`):
the whole 320-px sample as the crop (more context; 5 crops a step for about the same pixels),
crops drawn anywhere instead of 60% centred on an edit (more authentic pixels per step), and
the ``robust`` localizer's augmentations (JPEG chains, resizing, blur) plus noise on the
crops the localizer sees (``train.task=finetune``)."""
DATA = {"size": 320, "count": 3000, "seed": 21}
"""Each variant's training set: 320-px samples (the recipe's native size), 10% for validation."""
TRAINING = [
    "data.crop=256",
    "data.batch_size=8",
    "data.steps_per_epoch=100",
    "optim.lr=0.0001",
    "train.epochs=4",
]
"""Fine-tuning of ``pretrained:plain`` (the ``plain-8k`` stage's crop, batch and rate):
400 steps of 8 x 256-px crops."""
SYNTH_TEST = {"count": 120, "size": 320, "seed": 5}
"""The lab row: edits of the recipe's held-out photos by the recipe's generator (no trait)."""
KINDS = {"all": "", "splice": "Sp_D_", "copy-move": "Sp_S_"}
THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]
"""Decision thresholds at which each map's F1 (forgeries) or pixel false-alarm share
(authentic photos) is recorded: the threshold is then chosen on casia1-dev."""


def at_thresholds(probabilities: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per-image F1 at each of :data:`THRESHOLDS` (``truth`` has tampered pixels), or the
    share of pixels flagged at each (an authentic photo)."""
    values = []
    for threshold in THRESHOLDS:
        flagged = probabilities > threshold
        if not truth.any():
            values.append(float(flagged.mean()))
            continue
        tp = np.count_nonzero(flagged & truth)
        values.append(2 * tp / (np.count_nonzero(flagged) + np.count_nonzero(truth)))
    return values


def make_variant_data(name: str, work: Path) -> Path:
    """Synthesise variant ``name``'s training set into ``work / data-NAME`` (once; a recipe
    variant trains on the ``traits`` set)."""
    if name in RECIPE_VARIANTS:
        return make_variant_data("traits", work)
    folder = work / f"data-{name}"
    if (folder / "manifest.json").is_file():
        return folder
    recipe = load_recipe("cpu")
    recipe["extra_data"] = {name: {**DATA, **VARIANTS[name]}}
    recipe["models"] = {"probe": {"config": "configs/release/plain.yaml", "data": name}}
    summary = make_data(recipe, work, f"data-{name}")
    write_json_atomic(folder / "recipe-data.json", summary)
    return folder


def train(name: str, seed: int, work: Path, threads: int) -> Path:
    """Fine-tune ``pretrained:plain`` on variant ``name``'s data (resumes a killed run)."""
    run = work / f"{name}-seed{seed}"
    done, total = run_progress(run)
    if total and done >= total:
        return run
    command = [sys.executable, "-m", "reloc", "train", "--out", str(run), "--no-progress"]
    if total and (run / runs.CHECKPOINT).is_file():
        command.append("--resume")
    else:
        if run.exists():
            shutil.rmtree(run)  # started, no epoch finished: start over
        command += ["--config", str(ROOT / "configs/release/plain.yaml")]
        command += ["--set", f"data.dataset={make_variant_data(name, work)}"]
        command += ["--set", "model.localizer_weights=pretrained:plain", "--set", f"train.seed={seed}"]
        for override in TRAINING + RECIPE_VARIANTS.get(name, []):
            command += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    (work / "logs").mkdir(parents=True, exist_ok=True)
    with open(work / "logs" / f"{run.name}.log", "a") as log:
        print(f"{run.name}: training ({' '.join(command[3:])})", flush=True)
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    print(f"{run.name}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    return run


def synthetic_test(work: Path) -> Path:
    """The held-out photos' synthetic edits (made once)."""
    folder = work / "synthetic-test"
    if not (folder / "manifest.json").is_file():
        recipe = load_recipe("cpu")
        _, _, held_out = photo_split(recipe)
        settings = {**recipe["synth"]["settings"], "enlarge_hosts": False, "val_fraction": 0.0}
        synthesize([str(p) for p in held_out], folder, count=SYNTH_TEST["count"], seed=SYNTH_TEST["seed"],
                   size=SYNTH_TEST["size"], settings=SynthSettings.from_mapping(settings), overwrite=True)  # fmt: skip
    return folder


def records_of(label: str, weights: Path, casia: Path, synthetic: Path, work: Path) -> list[dict]:
    """Per-image records of one localizer on casia1-dev (forgeries and authentic photos) and
    on the synthetic test edits (resumed from ``work / records / LABEL.jsonl``)."""
    (work / "records").mkdir(parents=True, exist_ok=True)
    records = Records(work / "records" / f"{label}.jsonl")
    pipeline = None
    refs = [("casia", ref) for ref in load_dataset(casia)] + [("synthetic", ref) for ref in load_dataset(synthetic)]
    for source, ref in tqdm(refs, desc=label, unit="image"):
        key = f"{source}/{Path(ref.image).name}"
        if key in records and ("at_thresholds" in records.rows[key] or "skipped" in records.rows[key]):
            continue
        pair = records.pair(key, ref)
        if pair is None:
            continue
        image, mask = pair
        if pipeline is None:
            pipeline = pipeline_from_weights(weights, precision="fp32")
        probabilities = predict(pipeline, (image * 255).round().astype(np.uint8), "whole")
        truth = mask > 0.5
        row = {"key": key, "source": source, "image": Path(ref.image).name, "tampered": bool(truth.any()),
               "score": image_score(probabilities), "at_thresholds": at_thresholds(probabilities, truth)}  # fmt: skip
        if truth.any():
            row.update(image_scores(probabilities, truth))
        records.add(row)
    return [row for row in records.rows.values() if "skipped" not in row]


def summary_of(rows: list[dict]) -> dict:
    """Pixel figures per kind on casia1-dev and the synthetic edits, and casia1-dev's image level."""
    casia = [r for r in rows if r["source"] == "casia"]
    out: dict = {"casia": {}, "synthetic": {}}
    for kind, prefix in KINDS.items():
        chosen = [r for r in casia if r["tampered"] and r["image"].startswith(prefix)]
        out["casia"][kind] = {m: bootstrap_mean([r[m] for r in chosen]) for m in ("f1", "best_f1", "auc")}
    forgeries = np.array([r["at_thresholds"] for r in casia if r["tampered"]])
    authentic = np.array([r["at_thresholds"] for r in casia if not r["tampered"]])
    best = int(np.argmax(forgeries.mean(axis=0)))
    out["casia"]["chosen_threshold"] = {
        "threshold": THRESHOLDS[best],
        "f1": bootstrap_mean(forgeries[:, best].tolist()),
        "authentic_pixels_flagged": bootstrap_mean(authentic[:, best].tolist()),
        "rule": "the threshold of the highest mean per-image F1 over casia1-dev's forgeries (chosen on them)",
    }
    scores = np.array([r["score"] for r in casia])
    tampered = np.array([r["tampered"] for r in casia])
    level = image_level_summary(scores, tampered, threshold=0.5)
    out["casia"]["image_auc"] = round(float(level["auc"]), 4)
    synthetic = [r for r in rows if r["source"] == "synthetic" and r["tampered"]]
    out["synthetic"] = {m: bootstrap_mean([r[m] for r in synthetic]) for m in ("f1", "best_f1", "auc")}
    return out


def paired(rows: list[dict], base: list[dict], metric: str, source: str, prefix: str = "") -> dict:
    """Mean per-image difference ``rows - base`` over images both scored, with its interval."""
    before = {r["key"]: r.get(metric) for r in base if r["source"] == source and r["tampered"]}
    diffs = [
        r[metric] - before[r["key"]]
        for r in rows
        if r["source"] == source and r["tampered"] and r["image"].startswith(prefix)
        and r["key"] in before and r.get(metric) is not None and before[r["key"]] is not None
        and np.isfinite(r[metric]) and np.isfinite(before[r["key"]])
    ]  # fmt: skip
    return bootstrap_mean(diffs)


def markdown(results: dict) -> str:
    """The results as tables: casia1-dev first, synthetic beside."""

    def cell(figure: dict) -> str:
        if figure["mean"] is None:
            return "-"
        return f"{figure['mean']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"

    lines = [
        "# Generalization ablation (benchmarks/generalization.py)",
        "",
        f"Fine-tuning {results['training']}; casia1-dev as distributed, whole images.",
        f"Processor: {results['processor']['model']}.",
        "",
        "| model | casia F1 at 0.5 | casia F1 at its threshold | casia best-F1 | casia AUC | splices AUC "
        "| copy-moves AUC | casia image AUC | authentic pixels flagged | synthetic F1 | synthetic AUC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in results["models"].items():
        s = entry["summary"]
        c = s["casia"]
        lines.append(
            f"| {label} | {cell(c['all']['f1'])} | {cell(c['chosen_threshold']['f1'])} "
            f"({c['chosen_threshold']['threshold']}) | {cell(c['all']['best_f1'])} | {cell(c['all']['auc'])} "
            f"| {cell(c['splice']['auc'])} | {cell(c['copy-move']['auc'])} | {c['image_auc']:.3f} "
            f"| {cell(c['chosen_threshold']['authentic_pixels_flagged'])} "
            f"| {cell(s['synthetic']['f1'])} | {cell(s['synthetic']['auc'])} |"
        )
    for against, title in (("against_control", "`control` (same seed)"), ("against_shipped", "`shipped-plain`")):
        lines += ["", f"Paired against {title}: mean per-image difference [95% interval over images]:", "",
                  "| model | casia best-F1 | casia AUC | synthetic AUC |", "|---|---|---|---|"]  # fmt: skip
        for label, entry in results["models"].items():
            if against in entry:
                d = entry[against]
                lines.append(
                    f"| {label} | {cell(d['casia_f1_best'])} | {cell(d['casia_auc'])} | {cell(d['synthetic_auc'])} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = [*VARIANTS, *RECIPE_VARIANTS]
    parser.add_argument("--variants", default=",".join(known), help=f"comma list of {', '.join(known)}")
    parser.add_argument("--seeds", default="0", help="comma list of training seeds")
    parser.add_argument("--casia", type=Path, default=SHARED / "real" / "casia1-dev")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "generalization")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalization")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each training run")
    parser.add_argument("--only-data", action="store_true", help="make the training sets, nothing else")
    parser.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="LABEL=WEIGHTS",
        help="also measure this localizer (a run folder or weights file), e.g. a release stage (repeatable)",
    )
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in known]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    if not (args.casia / "Tp").is_dir():
        parser.error(f"{args.casia} has no Tp/ folder (casia1-dev as distributed)")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    if args.only_data:
        for name in variants:
            make_variant_data(name, args.work)
        return 0
    synthetic = synthetic_test(args.work)
    shipped = Path(runs.resolve_weights("pretrained:plain", "localizer"))
    models = {"shipped-plain": records_of("shipped-plain", shipped, args.casia, synthetic, args.work)}
    for seed in seeds:
        for name in variants:
            run = train(name, seed, args.work, args.threads)
            label = f"{name}-seed{seed}"
            models[label] = records_of(label, runs.weights_path(run, "localizer"), args.casia, synthetic, args.work)
    for spec in args.measure:
        label, _, path = spec.partition("=")
        models[label] = records_of(
            label, Path(runs.resolve_weights(path, "localizer")), args.casia, synthetic, args.work
        )
    results = {
        "processor": {"model": cpu_model(), "flags": sorted(cpu_flags() & {"avx2", "avx512_bf16", "amx_tile"})},
        "data": DATA,
        "variants": copy.deepcopy(
            {v: VARIANTS.get(v, {"data": "traits", "training": RECIPE_VARIANTS.get(v)}) for v in variants}
        ),
        "training": "from pretrained:plain, " + ", ".join(TRAINING),
        "synthetic_test": SYNTH_TEST,
        "models": {},
    }
    for label, rows in models.items():
        entry = {"summary": summary_of(rows)}
        if label != "shipped-plain":
            entry["against_shipped"] = {
                "casia_f1_best": paired(rows, models["shipped-plain"], "best_f1", "casia"),
                "casia_auc": paired(rows, models["shipped-plain"], "auc", "casia"),
                "synthetic_auc": paired(rows, models["shipped-plain"], "auc", "synthetic"),
            }
        seed_label = label.rsplit("-seed", 1)
        control = models.get(f"control-seed{seed_label[1]}") if len(seed_label) == 2 else None
        if control is not None and label.startswith("control-") is False:
            entry["against_control"] = {
                "casia_f1_best": paired(rows, control, "best_f1", "casia"),
                "casia_auc": paired(rows, control, "auc", "casia"),
                "synthetic_auc": paired(rows, control, "auc", "synthetic"),
            }
        results["models"][label] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "generalization.json", results)
    (args.out / "generalization.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
