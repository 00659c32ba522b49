"""Image-level detection with the shipped models on casia1-dev: which aggregation of the
probability map makes the best "was this image edited?" score, and the decision threshold
and evidence bands of each model, set at measured false-alarm rates on authentic photos.

    nice -n 10 python benchmarks/detection.py              # -> benchmarks/results/detection/detection.json
    nice -n 10 python benchmarks/detection.py --calibrate  # also src/reloc/pretrained/detection.json

The committed calibration was made on a shared two-core machine in two steps: ``plain`` and
``robust`` on every image (``--models plain robust --calibrate``), then ``reloc``, whose
restorer makes it several times slower, on every 4th image with the aggregation the first
step chose (``--models reloc --every 4 --aggregation ... --calibrate --out
benchmarks/results/detection/detection-reloc.json``); ``detection-every4.json`` has all three models
on those images, and with them ``--model auto``.

The images are ``../shared/real/casia1-dev`` as distributed: 263 tampered (``Tp/``) and
203 authentic (``Au/``) CASIA v1 JPEGs of 384 x 256, no distortion added. Every shipped
model (``pretrained:plain``, ``robust``, ``reloc``) maps every image, at its recorded
window and the precision ``reloc localize`` uses (``auto``); the maps are cached in
``--work`` as float16 (scores within about 5e-4 of the float32 maps ``reloc localize``
scores) so a re-run only re-scores them. ``--every N`` takes every N-th image (tampered
and authentic alike: the list is tampered images first), for a machine too busy for all
of them; the committed calibration says which it used. Then:

1. every aggregation of :data:`CANDIDATES` scores every map; the one with the highest mean
   image AUC over the models is chosen (one aggregation for all models) among those whose
   gain over :data:`INCUMBENT` has a 95% bootstrap interval above 0, else the incumbent stays;
2. per model, the threshold is the lowest score with at most 5% of the authentic photos
   above it, the strict threshold the same at 1%
   (:func:`reloc.image_metrics.threshold_at_fpr`); reported: image AUC, balanced accuracy,
   the flagged share of authentic photos and the tampered recall at the threshold, each
   with a 95% bootstrap interval over images (tampered and authentic resampled apart, the
   threshold held fixed), and a split-half estimate: the threshold chosen on a random half
   of the authentic photos, its false-alarm rate measured on the other half (repeated);
3. ``--model auto`` as ``reloc localize`` runs it: each file mapped by the model
   :func:`reloc.pretrained.choose` picks from its JPEG quality, judged by that model's
   thresholds.

The thresholds are chosen on the images they are measured on: the figures are a
development estimate, not a test result (the other two thirds of CASIA v1 are kept apart
for that). CASIA v1's tampered and authentic JPEGs were saved at different qualities
(tampered 75 / 93 / 99, authentic 80 / 84 / 90 / 94), so part of what separates them may be
the compression history rather than the edit; the results file lists the qualities.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reloc import pretrained
from reloc.data.catalog import load_dataset
from reloc.data.io import read_image
from reloc.engine.detection import CALIBRATION_FILE, Aggregation
from reloc.engine.model_choice import ModelChooser, estimate_jpeg_quality
from reloc.errors import describe, expected_types
from reloc.image_metrics import flagged_share, image_level_summary, threshold_at_fpr
from reloc.io_utils import write_json_atomic
from reloc.metrics import binary_auc
from reloc.precision import dtype_name
from reloc.release.measure import BOOTSTRAP  # the same resample count as the model cards
from reloc.release.provenance import git_commit, read_results

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "real" / "casia1-dev"
CANDIDATES = (
    "top-mean:0.001",
    "top-mean:0.01",
    "top-mean:0.05",
    "smoothed-max:2",
    "smoothed-max:8",
    "area-above:0.5",
)
"""The aggregations compared (:class:`reloc.engine.detection.Aggregation` labels)."""
INCUMBENT = "top-mean:0.01"
"""The score reloc shipped before this measurement: kept unless another aggregation beats
it by a mean image AUC gain whose 95% interval lies above 0."""
FALSE_ALARM = 0.05
STRICT_FALSE_ALARM = 0.01
SPLITS = 200
"""Random halvings of the authentic photos for the split-half false-alarm estimate."""


def model_maps(name: str, refs: list, work: Path) -> list[np.ndarray]:
    """``pretrained:name``'s probability maps ``(H, W)`` of ``refs``, cached in ``work/name``."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    chooser = ModelChooser.from_option(pretrained.PREFIX + name)
    maps = []
    for ref in tqdm(refs, desc=name, leave=False):
        path = folder / f"{ref.name}.npy"
        if not path.is_file():  # the image as reloc localize reads it (its mask is not needed)
            pipeline = chooser.pipeline(next(iter(chooser.sources)))
            image = torch.from_numpy(read_image(ref.image, compact=True).copy()).permute(2, 0, 1)
            np.save(path, pipeline.predict(image).numpy().astype(np.float16))
        maps.append(np.load(path).astype(np.float32))
    return maps


def bootstrap(statistic, tampered: np.ndarray, rng: np.random.Generator) -> list[float]:
    """95% percentile interval of ``statistic(indices)`` over resamples of the images, the
    tampered and the authentic ones resampled apart (their counts fixed)."""
    positives, negatives = np.flatnonzero(tampered), np.flatnonzero(~tampered)
    values = [
        statistic(np.concatenate([rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)]))
        for _ in range(BOOTSTRAP)
    ]
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def auc_gain(candidate: dict, incumbent: dict, tampered: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean over the models of the candidate's image AUC minus the incumbent's, with its 95%
    bootstrap interval (the same resampled images for both)."""

    def gain(indices: np.ndarray) -> float:
        labels = tampered[indices]
        return float(
            np.mean(
                [
                    binary_auc(candidate[n][indices], labels) - binary_auc(incumbent[n][indices], labels)
                    for n in candidate
                ]
            )
        )

    return {"mean": round(gain(np.arange(tampered.size)), 4), "ci95": bootstrap(gain, tampered, rng)}


def split_half(scores: np.ndarray, tampered: np.ndarray, rng: np.random.Generator) -> dict:
    """Threshold at :data:`FALSE_ALARM` on one random half of the authentic photos, its
    false-alarm rate on the other half and its tampered recall; mean and 95% range over
    :data:`SPLITS` halvings."""
    negatives, positives = scores[~tampered], scores[tampered]
    rates, recalls = [], []
    for _ in range(SPLITS):
        order = rng.permutation(negatives.size)
        half = negatives.size // 2
        for chosen, held in ((order[:half], order[half:]), (order[half:], order[:half])):
            cut = threshold_at_fpr(negatives[chosen], FALSE_ALARM)
            rates.append(flagged_share(negatives[held], cut))
            recalls.append(flagged_share(positives, cut))

    def summary(values: list[float]) -> dict:
        return {
            "mean": round(float(np.mean(values)), 4),
            "range95": [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)],
        }

    return {"held_out_false_alarm": summary(rates), "tampered_recall": summary(recalls), "halvings": SPLITS}


def calibrate(scores: np.ndarray, tampered: np.ndarray, maps: list[np.ndarray], rng: np.random.Generator) -> dict:
    """One model's thresholds and figures at them (see the module docstring, step 2)."""
    negatives = scores[~tampered]
    cut, strict = threshold_at_fpr(negatives, FALSE_ALARM), threshold_at_fpr(negatives, STRICT_FALSE_ALARM)
    summary = image_level_summary(scores, tampered, cut)
    pixel_false_alarms = [float(np.count_nonzero(m > 0.5) / m.size) for m, t in zip(maps, tampered) if not t]
    return {
        "threshold": cut,  # unrounded: a score equal to it must stay unflagged
        "strong_threshold": strict,
        "false_alarm_rate": round(summary["flagged_authentic"], 4),
        "strong_false_alarm_rate": round(flagged_share(negatives, strict), 4),
        "tampered_recall": round(summary["tampered_recall"], 4),
        "strong_tampered_recall": round(flagged_share(scores[tampered], strict), 4),
        "image_auc": round(summary["auc"], 4),
        "balanced_accuracy": round(summary["balanced_accuracy"], 4),
        "ci95": {
            "image_auc": bootstrap(lambda i: binary_auc(scores[i], tampered[i]), tampered, rng),
            "false_alarm_rate": bootstrap(lambda i: flagged_share(scores[i][~tampered[i]], cut), tampered, rng),
            "tampered_recall": bootstrap(lambda i: flagged_share(scores[i][tampered[i]], cut), tampered, rng),
        },
        "split_half": split_half(scores, tampered, rng),
        "pixel_false_alarm_rate": round(float(np.mean(pixel_false_alarms)), 4),
    }


def auto_system(scores: dict, tampered: np.ndarray, qualities: list, models: dict, rng: np.random.Generator) -> dict:
    """``--model auto``: each file's score from the model chosen for it, judged by that
    model's thresholds (step 3)."""
    chosen = [pretrained.choose(quality).name for quality in qualities]
    if any(name not in scores for name in chosen):
        return {"skipped": "a model --model auto picks was not measured"}
    picked = np.array([scores[name][i] for i, name in enumerate(chosen)])
    cuts = np.array([models[name]["threshold"] for name in chosen])
    strict = np.array([models[name]["strong_threshold"] for name in chosen])
    flagged, strong = picked > cuts, picked > strict

    def share(values: np.ndarray, which: np.ndarray) -> float:
        return round(float(values[which].mean()), 4)

    return {
        "models": {
            kind: dict(Counter(n for n, t in zip(chosen, tampered) if t == (kind == "tampered")))
            for kind in ("tampered", "authentic")
        },
        "image_auc_of_scores": round(binary_auc(picked, tampered), 4),
        "false_alarm_rate": share(flagged, ~tampered),
        "strong_false_alarm_rate": share(strong, ~tampered),
        "tampered_recall": share(flagged, tampered),
        "strong_tampered_recall": share(strong, tampered),
        "ci95": {
            "false_alarm_rate": bootstrap(lambda i: float(flagged[i][~tampered[i]].mean()), tampered, rng),
            "tampered_recall": bootstrap(lambda i: float(flagged[i][tampered[i]].mean()), tampered, rng),
        },
    }


def camera_authentic(folder: Path, work: Path, out: Path) -> dict:
    """The packaged calibration on camera-size authentic photos: each photo of ``folder``
    mapped as ``reloc localize --model auto`` maps it (the model its JPEG quality routes to,
    the window its weights record), scored by the packaged aggregation; the share above
    each model's threshold and strong threshold. Maps cached in ``work/camera-authentic``."""
    from reloc.data.photos import list_photos
    from reloc.engine.detection import calibration

    photos = list_photos(folder)
    if not photos:
        raise SystemExit(f"error: no photos in {folder}")
    cache = work / "camera-authentic"
    cache.mkdir(parents=True, exist_ok=True)
    chooser = ModelChooser.from_option("auto")
    rows = []
    for photo in tqdm(photos, desc="camera-size authentic", unit="photo"):
        pipeline, facts = chooser.choose(photo)  # as reloc localize routes the file
        quality, model = facts["jpeg_quality"], facts["model"].removeprefix(pretrained.PREFIX)
        path = cache / f"{photo.stem}-{model}.npy"
        image = read_image(photo, compact=True)
        if not path.is_file():
            tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)
            np.save(path, pipeline.predict(tensor).numpy().astype(np.float16))
        score = calibration().aggregation(np.load(path).astype(np.float32))
        model_calibration = calibration().for_model(model)
        rows.append({"photo": photo.name, "size": list(image.shape[:2]), "jpeg_quality": quality, "model": model,
                     "score": round(score, 4), "flagged": score > model_calibration.threshold,
                     "strong": score > model_calibration.strong_threshold})  # fmt: skip
    flagged = [row["flagged"] for row in rows]
    results = {
        "folder": str(folder),
        "photos": len(rows),
        "flagged_share": round(float(np.mean(flagged)), 4),
        "strong_share": round(float(np.mean([row["strong"] for row in rows])), 4),
        "target": "at most 5% of camera-size authentic photos flagged (issue 44)",
        "rule": "each photo as reloc localize --model auto maps it; the packaged aggregation and thresholds",
        "rows": rows,
        "commit": git_commit(),
    }
    write_json_atomic(out, results, indent=1)
    print(f"wrote {out}: {sum(flagged)} of {len(rows)} authentic camera-size photos flagged")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "detection", help="cached maps")
    parser.add_argument("--models", nargs="+", default=list(pretrained.NAMES), choices=pretrained.NAMES)
    parser.add_argument(
        "--every", type=int, default=1, help="take every N-th image of the dataset (tampered and authentic alike)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and halving seed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "detection" / "detection.json")
    parser.add_argument("--calibrate", action="store_true", help=f"also write the package's {CALIBRATION_FILE}")
    parser.add_argument(
        "--aggregation", choices=CANDIDATES, help="use this aggregation instead of choosing (to add a model later)"
    )
    parser.add_argument(
        "--camera-authentic",
        type=Path,
        metavar="FOLDER",
        help="instead: the packaged calibration on these camera-size authentic photos (e.g. ../shared/photos-large) "
        "-> benchmarks/results/detection/camera-authentic.json",
    )
    args = parser.parse_args(argv)
    if args.camera_authentic:
        if not args.camera_authentic.is_dir():
            parser.error(f"--camera-authentic: {args.camera_authentic} is not a folder")
        camera_authentic(args.camera_authentic, args.work, args.out.parent / "camera-authentic.json")
        return 0
    if args.every < 1:
        parser.error(f"--every must be at least 1, got {args.every}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        refs = load_dataset(args.dataset)[:: args.every]
        tampered = np.array([ref.mask is not None for ref in refs])
        qualities = [estimate_jpeg_quality(ref.image) for ref in refs]
        started = time.perf_counter()
        maps = {name: model_maps(name, refs, args.work) for name in args.models}
    except expected_types() as error:
        raise SystemExit(f"error: {describe(error)}") from None
    seconds = round(time.perf_counter() - started, 1)
    rng = np.random.default_rng(args.seed)
    aucs = {}
    scores = {}
    for label in CANDIDATES:
        aggregation = Aggregation.parse(label)
        scores[label] = {name: np.array([aggregation(m) for m in model]) for name, model in maps.items()}
        aucs[label] = {name: round(binary_auc(values, tampered), 4) for name, values in scores[label].items()}
        aucs[label]["mean"] = round(float(np.mean(list(aucs[label].values()))), 4)
    gains = {label: auc_gain(scores[label], scores[INCUMBENT], tampered, rng) for label in CANDIDATES}
    for label, gain in gains.items():
        aucs[label]["gain_over_incumbent"] = gain
    better = [label for label in CANDIDATES if gains[label]["ci95"][0] > 0]
    best = args.aggregation or max(better, key=lambda label: aucs[label]["mean"], default=INCUMBENT)
    models = {name: calibrate(scores[best][name], tampered, maps[name], rng) for name in maps}
    results = {
        "dataset": str(args.dataset),
        "every": args.every,
        "images": {"tampered": int(tampered.sum()), "authentic": int((~tampered).sum())},
        "jpeg_qualities": {
            kind: dict(sorted(Counter(q for q, t in zip(qualities, tampered) if t == (kind == "tampered")).items()))
            for kind in ("tampered", "authentic")
        },
        "aggregation_auc": aucs,
        "chosen_aggregation": best,
        "rule": (
            "given by --aggregation"
            if args.aggregation
            else f"the highest mean image AUC over the models among the aggregations that beat {INCUMBENT} (mean "
            "AUC gain with a 95% interval above 0), else that one"
        )
        + "; per model, the threshold with at "
        f"most {FALSE_ALARM:.0%} and the strict threshold with at most {STRICT_FALSE_ALARM:.0%} of the authentic "
        "photos above it",
        "models": models,
        "auto": auto_system(scores[best], tampered, qualities, models, rng),
        "caveat": "thresholds chosen on the images they are measured on (casia1-dev): a development estimate; "
        "the split-half figures show how far a threshold chosen on other photos of the same kind moves",
        "intervals": f"95% percentile bootstrap over images ({BOOTSTRAP} resamples, tampered and authentic apart), "
        "thresholds held fixed",
        "precision": dtype_name(
            ModelChooser.from_option("pretrained:plain").pipeline("pretrained:plain").compute_dtype()
        ),
        "maps_seconds": seconds,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "commit": git_commit(),
    }
    write_json_atomic(args.out, results, indent=1)
    args.out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    print(f"wrote {args.out}: {best} chosen (mean image AUC {aucs[best]['mean']})")
    if args.calibrate:
        write_calibration(best, models, args.dataset, results["images"], results["commit"])
    return 0


def markdown(results: dict) -> str:
    """The results as the model card's image-level tables."""

    def interval(values: list[float], percent: bool = False) -> str:
        return " - ".join(f"{v:.1%}" if percent else f"{v:.3f}" for v in values)

    names = [name for name in pretrained.NAMES if name in results["models"]]
    lines = [
        f"Image-level detection on {Path(results['dataset']).name}"
        + (f" (every {results['every']}th image)" if results["every"] > 1 else "")
        + f": {results['images']['tampered']} tampered, "
        f"{results['images']['authentic']} authentic CASIA v1 JPEGs (`benchmarks/detection.py`). Thresholds chosen "
        "on these same images: a development estimate.",
        "",
        "| aggregation | "
        + " | ".join(f"`{name}` image AUC" for name in names)
        + " | mean | gain over incumbent (95%) |",
        "| --- |" + " ---: |" * (len(names) + 1) + " --- |",
    ]
    for label, aucs in results["aggregation_auc"].items():
        mark = " (chosen)" if label == results["chosen_aggregation"] else ""
        gain = aucs["gain_over_incumbent"]
        lines.append(
            f"| `{label}`{mark} | " + " | ".join(f"{aucs[n]:.3f}" for n in names) + f" | {aucs['mean']:.3f} "
            f"| {gain['mean']:+.3f} ({interval(gain['ci95'])}) |"
        )
    lines += [
        "",
        "| model | image AUC (95%) | threshold | authentic flagged (95%) | split-half flagged | tampered recall (95%) "
        "| strict threshold | authentic / tampered above it | pixel false alarms |",
        "| --- | --- | ---: | --- | --- | --- | ---: | --- | ---: |",
    ]
    for name in names:
        m = results["models"][name]
        half = m["split_half"]["held_out_false_alarm"]
        lines.append(
            f"| `{name}` | {m['image_auc']:.3f} ({interval(m['ci95']['image_auc'])}) | {m['threshold']:.3f} "
            f"| {m['false_alarm_rate']:.1%} ({interval(m['ci95']['false_alarm_rate'], True)}) "
            f"| {half['mean']:.1%} ({interval(half['range95'], True)}) "
            f"| {m['tampered_recall']:.1%} ({interval(m['ci95']['tampered_recall'], True)}) "
            f"| {m['strong_threshold']:.3f} | {m['strong_false_alarm_rate']:.1%} / {m['strong_tampered_recall']:.1%} "
            f"| {m['pixel_false_alarm_rate']:.1%} |"
        )
    auto = results["auto"]
    if "skipped" not in auto:
        picks = "; ".join(
            f"{kind}: " + ", ".join(f"{count} {name}" for name, count in counts.items())
            for kind, counts in auto["models"].items()
        )
        lines += [
            "",
            f"`--model auto` (each file to the model its JPEG quality picks; {picks}): image AUC of the "
            f"scores {auto['image_auc_of_scores']:.3f}; authentic flagged {auto['false_alarm_rate']:.1%} "
            f"({interval(auto['ci95']['false_alarm_rate'], True)}), tampered recall {auto['tampered_recall']:.1%} "
            f"({interval(auto['ci95']['tampered_recall'], True)}); strong evidence on "
            f"{auto['strong_false_alarm_rate']:.1%} of authentic and {auto['strong_tampered_recall']:.1%} of tampered.",
        ]
    return "\n".join(lines) + "\n"


def write_calibration(best: str, models: dict, dataset: Path, images: dict, commit: str) -> None:
    """The package's ``detection.json`` (:func:`reloc.engine.detection.read_calibration`): the
    models measured now, plus those already there when they were scored the same way."""
    aggregation = Aggregation.parse(best)
    path = ROOT / "src" / "reloc" / "pretrained" / CALIBRATION_FILE
    keys = (
        "threshold",
        "strong_threshold",
        "false_alarm_rate",
        "strong_false_alarm_rate",
        "tampered_recall",
        "strong_tampered_recall",
        "image_auc",
    )
    measured_on = (
        f"{dataset.name} (CASIA v1 JPEGs, {images['tampered']} tampered, {images['authentic']} authentic; "
        f"thresholds chosen on the same images, a development estimate; commit {commit[:7]})"
    )
    previous = read_results(path, default={})
    kept = (
        previous.get("models", {})
        if previous.get("aggregation", {}).get("name") == aggregation.name
        and (previous["aggregation"].get("parameter") == aggregation.parameter)
        else {}
    )
    calibration = {
        "aggregation": {"name": aggregation.name, "parameter": aggregation.parameter},
        "made_by": "python benchmarks/detection.py --calibrate",
        "models": {name: entry for name, entry in kept.items() if name not in models}
        | {
            name: {key: figures[key] for key in keys}
            | {"image_auc_ci95": figures["ci95"]["image_auc"], "measured_on": measured_on}
            for name, figures in models.items()
        },
    }
    write_json_atomic(path, calibration, indent=1)
    print(f"wrote {path} (measured now: {', '.join(models)}; kept: {', '.join(set(kept) - set(models)) or 'none'})")


if __name__ == "__main__":
    raise SystemExit(main())
