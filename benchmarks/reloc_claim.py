"""ReLoc's claim with a restorer that restores: ReLoc{D} against D|P{D} at equal localizer
updates, with several training seeds, real forgeries first (issue 46).

    python benchmarks/reloc_claim.py --seeds 0,1                   # train, measure, summarize
    python benchmarks/reloc_claim.py --seeds 0,1 --parts summary   # the tables from the records

Trainings: the release recipe's experiment parts (``configs/release/recipe.yaml``) with
``train.seed`` set, in ``--release-work`` beside the ``restorer-jpeg`` run they start from;
seed 0 runs under the part's own name, so ``reloc release run --part reloc-restored`` makes
the same run:

- ``reloc-restored``: Algorithm 1 from the pre-trained JPEG-artifact restorer
  (``restorer-jpeg``'s best-PSNR epoch) and plain's last stage (``pretrained:plain``), the
  published code's loss weights, JPEG 50-100;
- ``dp-restored``: M^{D|P}, the same localizer start fine-tuned on the same JPEG 50-100 crops
  for as many localizer updates of the same batch and crop (:func:`localizer_updates`).

Measured per image on whole images (one pass, fp32; per-image F1 at 0.5, AUC and the best
threshold's F1, the paper protocol), on images no training saw:

- ``casia``: ``../shared/real/casia1-dev`` as distributed (the field row; chosen on, never
  trained on), splices (``Sp_D_``) and copy-moves (``Sp_S_``) apart, and the share of its
  authentic photos' pixels over 0.5;
- ``camera``: ``benchmarks/real.py``'s camera-size set (1536-px edits of the large photos)
  saved at JPEG 90 and 75;
- ``synthetic``: ``benchmarks/generalization.py``'s edits of the recipe's held-out photos
  at JPEG 75 and 90 (the lab row).

Situations: per seed ``ReLoc{D}`` (its restorer, then its localizer) and ``D|P{D}``; once
``P{D}`` (``pretrained:plain``) and Table V's transfer: ``pretrained:robust``'s localizer
alone and behind each restorer (the pre-trained one, and each seed's after Algorithm 1).

The comparison: per seed the mean per-image difference ReLoc{D} - D|P{D} with a 95% bootstrap
interval over images; over seeds the mean of the per-seed differences with a Student-t 95%
interval (the variance a new training brings, wide with two seeds). Writes
``benchmarks/results/restoration/reloc-claim.{json,md}``; every training and per-image record
under ``--work`` resumes. The restorers' PSNR before and after Algorithm 1 is
``benchmarks/restoration.py``'s (``--restorer LABEL=RUN``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from generalization import KINDS, synthetic_test  # benchmarks/generalization.py: the lab row's edits
from real import Records, bootstrap_mean, distorted, image_scores, predict  # benchmarks/real.py: one home for these
from tqdm import tqdm

from reloc.config import load_config
from reloc.data.catalog import load_dataset
from reloc.engine.inference import pipeline_from_weights
from reloc.io_utils import write_json_atomic, write_text_atomic
from reloc.precision import cpu_flags, cpu_model
from reloc.release.provenance import git_commit, run_progress
from reloc.release.recipe import ROOT, load_recipe
from reloc.release.training import launch
from reloc.runs import resolve_weights

SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "restoration" / "reloc-claim.json"
PARTS = ("reloc-restored", "dp-restored")
SOURCES = {"casia": ("none",), "camera": ("jpeg:90", "jpeg:75"), "synthetic": ("jpeg:75", "jpeg:90")}
"""Each test source and the distortions it is measured at (casia1-dev as distributed)."""
CAMERA_IMAGES = 12
METRICS = ("f1", "auc", "best_f1")
PAIRED_METRICS = ("f1", "auc")


def run_name(part: str, seed: int) -> str:
    """The run folder of ``part`` at ``seed``: the part's own name at seed 0."""
    return part if seed == 0 else f"{part}-seed{seed}"


def seeded_recipe(recipe: dict, seeds: list[int], threads: int | None = None) -> dict:
    """``recipe`` with each of :data:`PARTS` again per seed (``train.seed`` set last)."""
    out = copy.deepcopy(recipe)
    for part in PARTS:
        if part not in out["models"]:
            raise SystemExit(f"error: the recipe's preset has no {part} part")
        for seed in seeds:
            model = copy.deepcopy(recipe["models"][part])
            model["overrides"] = [*model["overrides"], f"train.seed={seed}"]
            if threads is not None:
                model["threads"] = threads
            out["models"][run_name(part, seed)] = model
    return out


def localizer_updates(recipe: dict, part: str) -> dict[str, int]:
    """How many localizer updates part ``part`` makes, of which batch and crop.

    Algorithm 1 (``train.task=reloc``) alternates epochs after the restorer's warm-up,
    restoration first, so the localizer gets every second one.
    """
    model = recipe["models"][part]
    config = load_config(ROOT / model["config"], model["overrides"])
    epochs = config.train.epochs
    if config.train.task == "reloc":
        if config.train.alternate_every:
            raise SystemExit(f"error: {part} alternates every {config.train.alternate_every} steps, not by epochs")
        epochs = (epochs - config.train.restorer_warmup_epochs) // 2
    return {"updates": epochs * config.data.steps_per_epoch, "batch": config.data.batch_size, "crop": config.data.crop}


def train(recipe: dict, work: Path, seeds: list[int], jobs: int) -> dict:
    """Train every seed's two parts (resuming), ``jobs`` at a time; their run summaries."""
    reloc, baseline = (localizer_updates(recipe, part) for part in PARTS)
    if reloc != baseline:
        raise SystemExit(f"error: the localizers are not trained alike: reloc-restored {reloc}, dp-restored {baseline}")
    names = [run_name(part, seed) for part in PARTS for seed in seeds]  # the long ReLoc runs first
    running: list = []
    for name in names:
        while len(running) >= jobs:
            running = [p for p in running if p.poll() is None] or running
            if len(running) >= jobs:
                time.sleep(10)
        process = launch(recipe, name, work, from_package=True)
        if process is not None:
            running.append(process)
    for process in running:
        process.wait()
    failed = [name for name in names if not finished(work / name)]
    if failed:
        raise SystemExit(f"error: trainings not finished: {', '.join(failed)} (logs in {work / 'logs'})")
    return {"localizer_updates": reloc, "runs": {name: str(work / name) for name in names}}


def finished(run: Path) -> bool:
    done, total = run_progress(run)
    return bool(total) and done >= total


def situations(work: Path, seeds: list[int]) -> dict[str, tuple[str, str | None]]:
    """Label -> (localizer weights, restorer weights or ``None``), in the order measured:
    the claim's situations first, then the references, then the transfer."""
    robust = "pretrained:robust"
    out: dict[str, tuple[str, str | None]] = {}
    for seed in seeds:
        reloc, baseline = (str(work / run_name(part, seed)) for part in PARTS)
        out[f"ReLoc{{D}} seed {seed}"] = (reloc, reloc)
        out[f"D|P{{D}} seed {seed}"] = (baseline, None)
    out["P{D}"] = ("pretrained:plain", None)
    out["robust{D}"] = (robust, None)
    out["R(restorer-jpeg)+L(robust){D}"] = (robust, str(work / "restorer-jpeg"))
    for seed in seeds:
        out[f"R(ReLoc seed {seed})+L(robust){{D}}"] = (robust, str(work / run_name(PARTS[0], seed)))
    return out


def sources(args) -> dict[str, list]:
    """Each test source's samples."""
    from real import camera_refs  # made by reloc synth into benchmarks/real.py's work folder when missing

    camera_args = argparse.Namespace(photos_large=args.photos_large, camera_images=CAMERA_IMAGES)
    return {
        "casia": load_dataset(args.casia),
        "camera": camera_refs(camera_args, args.real_work),
        "synthetic": load_dataset(synthetic_test(args.generalization_work)),
    }


def records_of(label: str, work: Path) -> Records:
    """The per-image records file of situation ``label`` under ``work/records``."""
    (work / "records").mkdir(parents=True, exist_ok=True)
    return Records(work / "records" / f"{''.join(c if c.isalnum() else '-' for c in label).strip('-')}.jsonl")


def measure(label: str, weights: tuple[str, str | None], refs: dict[str, list], work: Path) -> list[dict]:
    """Per-image records of one situation on every source (resumed)."""
    records = records_of(label, work)
    pipeline = None
    todo = [(source, spec, index, ref) for source, items in refs.items() for index, ref in enumerate(items)
            for spec in SOURCES[source]]  # fmt: skip
    for source, spec, index, ref in tqdm(todo, desc=label, unit="image"):
        name = Path(ref.image).name
        key = f"{source}/{spec}/{name}"
        if key in records:
            continue
        pair = records.pair(key, ref)
        if pair is None:
            continue
        plain, mask = pair
        if pipeline is None:
            localizer, restorer = weights
            pipeline = pipeline_from_weights(
                resolve_weights(localizer, "localizer"),
                None if restorer is None else resolve_weights(restorer, "restorer"),
                precision="fp32",
            )
        image, _ = distorted((plain * 255).round().astype(np.uint8), spec, index)
        probabilities = predict(pipeline, image, "whole")
        truth = mask > 0.5
        row = {"key": key, "source": source, "distortion": spec, "image": name, "tampered": bool(truth.any())}
        if truth.any():
            row.update(image_scores(probabilities, truth))
        else:
            row["flagged"] = float((probabilities > 0.5).mean())
        records.add(row)
    return [row for row in records.rows.values() if "skipped" not in row]


def seed_interval(per_seed: list[float]) -> list[float] | None:
    """Student-t 95% interval of the mean of per-seed values (``None`` with one seed)."""
    from scipy import stats

    if len(per_seed) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(per_seed) - 1)) * statistics.stdev(per_seed) / len(per_seed) ** 0.5
    mean = statistics.mean(per_seed)
    return [round(mean - half, 4), round(mean + half, 4)]


def paired(rows: list[dict], base: list[dict], metric: str, source: str, spec: str, prefix: str = "") -> dict:
    """Mean per-image ``rows - base`` difference of ``metric`` over the forgeries both scored."""
    before = {
        r["key"]: r.get(metric) for r in base if r["source"] == source and r["distortion"] == spec and r["tampered"]
    }
    diffs = [
        r[metric] - before[r["key"]]
        for r in rows
        if r["source"] == source and r["distortion"] == spec and r["tampered"] and r["image"].startswith(prefix)
        and before.get(r["key"]) is not None and r.get(metric) is not None
        and np.isfinite(r[metric]) and np.isfinite(before[r["key"]])
    ]  # fmt: skip
    return bootstrap_mean(diffs)


def cells() -> list[tuple[str, str, str]]:
    """(source, distortion, kind prefix) of every table cell: casia's kinds apart."""
    out = []
    for source, specs in SOURCES.items():
        for spec in specs:
            kinds = KINDS.items() if source == "casia" else [("all", "")]
            out += [(source, spec, kind) for kind, _ in kinds]
    return out


def summarize(records: dict[str, list[dict]], seeds: list[int]) -> dict:
    """Each situation's means per cell, and the paired comparisons (per seed and over seeds)."""
    table: dict = {}
    for label, rows in records.items():
        for source, spec, kind in cells():
            prefix = KINDS[kind] if source == "casia" else ""
            chosen = [r for r in rows if r["source"] == source and r["distortion"] == spec and r["tampered"]
                      and r["image"].startswith(prefix)]  # fmt: skip
            entry = {m: bootstrap_mean([r[m] for r in chosen]) for m in METRICS}
            if source == "casia" and kind == "all":
                authentic = [r["flagged"] for r in rows if r["source"] == "casia" and not r["tampered"]]
                entry["authentic_pixels_flagged"] = bootstrap_mean(authentic)
            table.setdefault(f"{source} {spec} {kind}", {})[label] = entry
    comparisons = {
        "ReLoc{D} - D|P{D}": [(f"ReLoc{{D}} seed {s}", f"D|P{{D}} seed {s}") for s in seeds],
        "R(ReLoc)+L(robust){D} - robust{D}": [(f"R(ReLoc seed {s})+L(robust){{D}}", "robust{D}") for s in seeds],
        "R(restorer-jpeg)+L(robust){D} - robust{D}": [("R(restorer-jpeg)+L(robust){D}", "robust{D}")],
    }
    compared: dict = {}
    for name, pairs in comparisons.items():
        for source, spec, kind in cells():
            prefix = KINDS[kind] if source == "casia" else ""
            entry: dict = {}
            for metric in PAIRED_METRICS:
                per_pair = [paired(records[a], records[b], metric, source, spec, prefix) for a, b in pairs]
                means = [d["mean"] for d in per_pair if d["mean"] is not None]
                entry[metric] = {
                    "per_seed": per_pair,
                    "mean": round(statistics.mean(means), 4) if means else None,
                    "seed_interval": seed_interval(means),
                }
            compared.setdefault(name, {})[f"{source} {spec} {kind}"] = entry
    return {"table": table, "compared": compared}


def shown(path: str | None) -> str | None:
    """A weights path as the results show it: relative to the checkout where it is inside."""
    if path is None or path.startswith("pretrained:"):
        return path
    return str(Path(path).resolve().relative_to(ROOT)) if Path(path).resolve().is_relative_to(ROOT) else path


SOURCE_NAMES = {"casia": "casia1-dev", "camera": "camera-size set", "synthetic": "synthetic edits"}


def described(cell: str) -> str:
    """A table cell's key (``casia none splice``) in words (``casia1-dev as distributed, splice``)."""
    source, spec, kind = cell.split(" ")
    quality = "as distributed" if spec == "none" else spec.replace("jpeg:", "JPEG ")
    return f"{SOURCE_NAMES[source]} {quality}" + ("" if kind == "all" else f", {kind}s")


def escaped(label: str) -> str:
    """``label`` inside a Markdown table cell (``D|P`` keeps its bar)."""
    return label.replace("|", "\\|")


def fmt(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "-"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def markdown(results: dict) -> str:
    """The results as tables: casia1-dev first, then the camera-size set, then the lab row.

    Cells no record reaches (a source not measured yet) are named once under the tables, not
    shown as empty rows."""
    summary, seeds = results["summary"], results["seeds"]
    lines = [
        "# ReLoc against D|P with a restorer that restores",
        "",
        f"`{results['command']}` (commit {results['commit'][:10]}, {results['processor']['cpu']}); "
        f"seeds {', '.join(map(str, seeds))}; localizer updates per training: "
        f"{results['training']['localizer_updates']}.",
        "",
        "## The claim: ReLoc{D} - D|P{D}, per-image mean differences",
        "",
        "Per seed: 95% bootstrap interval over images. Over seeds: Student-t 95% interval of the per-seed "
        "means (the variance of retraining; with two seeds it spans 12.7 standard errors where the seeds "
        "differ and is narrow only where they happen to agree).",
        "",
    ]
    unmeasured = [
        cell for cell, by_label in summary["table"].items() if all(e["f1"]["mean"] is None for e in by_label.values())
    ]
    for name, by_cell in summary["compared"].items():
        lines += [f"### {name}", "", "| images | metric | per seed | mean over seeds | 95% interval, seeds |",
                  "| --- | --- | --- | ---: | --- |"]  # fmt: skip
        for cell, entry in by_cell.items():
            for metric, value in entry.items():
                if value["mean"] is None:
                    continue
                per_seed = "; ".join(fmt(d) for d in value["per_seed"])
                interval = value["seed_interval"]
                shown = f"[{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "- (one seed)"
                lines.append(f"| {described(cell)} | {metric} | {per_seed} | {value['mean']:+.3f} | {shown} |")
        lines.append("")
    lines += ["## Every situation", "", "Per-image means with 95% bootstrap intervals over images.", ""]
    for cell, by_label in summary["table"].items():
        if cell in unmeasured:
            continue
        lines += [
            f"### {described(cell)}",
            "",
            "| situation | F1 at 0.5 | AUC | best-threshold F1 |",
            "| --- | --- | --- | --- |",
        ]
        for label, entry in by_label.items():
            lines.append(f"| {escaped(label)} | {fmt(entry['f1'])} | {fmt(entry['auc'])} | {fmt(entry['best_f1'])} |")
        flagged = {
            label: e["authentic_pixels_flagged"] for label, e in by_label.items() if "authentic_pixels_flagged" in e
        }
        if flagged:
            lines += ["", "Authentic casia1-dev photos, share of pixels over 0.5: "
                      + "; ".join(f"{label} {fmt(value)}" for label, value in flagged.items())]  # fmt: skip
        lines.append("")
    if unmeasured:
        lines += ["## Not measured", "", "No record yet: " + ", ".join(map(described, unmeasured)) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1", help="training seeds, comma-separated")
    parser.add_argument("--parts", default="train,measure,summary", help="comma list of train, measure, summary")
    parser.add_argument("--preset", default="cpu", help="the release recipe's preset")
    parser.add_argument("--release-work", type=Path, default=ROOT / "runs" / "release-restorer",
                        help="the release work folder holding restorer-jpeg and its data")  # fmt: skip
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "reloc-claim", help="per-image records")
    parser.add_argument("--sources", default=",".join(SOURCES), help="the sources measured (the summary reads all)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (each then at one thread)")
    parser.add_argument("--casia", type=Path, default=SHARED / "real" / "casia1-dev")
    parser.add_argument("--photos-large", type=Path, default=SHARED / "photos-large")
    parser.add_argument("--real-work", type=Path, default=ROOT / "runs" / "real", help="benchmarks/real.py's work")
    parser.add_argument("--generalization-work", type=Path, default=ROOT / "runs" / "generalization")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = set(args.parts.split(","))
    if parts - {"train", "measure", "summary"}:
        parser.error(f"unknown part(s): {', '.join(sorted(parts - {'train', 'measure', 'summary'}))}")
    if set(args.sources.split(",")) - set(SOURCES):
        parser.error(f"--sources takes a comma list of {', '.join(SOURCES)}")
    recipe = seeded_recipe(load_recipe(args.preset), seeds, threads=1 if args.jobs > 1 else None)
    training = {"localizer_updates": localizer_updates(recipe, PARTS[0])}
    if "train" in parts:
        training = train(recipe, args.release_work, seeds, args.jobs)
    labelled = situations(args.release_work, seeds)
    refs = sources(args) if parts & {"measure", "summary"} else {}
    if "measure" in parts:
        measured = {source: refs[source] for source in args.sources.split(",")}
        for label, weights in labelled.items():
            measure(label, weights, measured, args.work)
    if "summary" in parts:
        records = {
            label: [r for r in records_of(label, args.work).rows.values() if "skipped" not in r] for label in labelled
        }
        results = {
            "benchmark": "ReLoc against D|P with a pre-trained restorer (issue 46)",
            "command": "python benchmarks/reloc_claim.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "commit": git_commit(),
            "processor": {"cpu": cpu_model(), "flags": sorted(cpu_flags() & {"avx2", "avx512_bf16", "amx_tile"})},
            "seeds": seeds,
            "training": training,
            "situations": {label: {"localizer": shown(w[0]), "restorer": shown(w[1])} for label, w in labelled.items()},
            "images": {source: len(items) for source, items in refs.items()},
            "measured": {label: len(rows) for label, rows in records.items()},
            "summary": summarize(records, seeds),
        }
        write_json_atomic(args.out, results)
        write_text_atomic(args.out.with_suffix(".md"), markdown(results) + "\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
