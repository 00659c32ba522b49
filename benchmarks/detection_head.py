"""A small learned head on the map as the image score: does it tell edited from authentic
photos where the shipped aggregation (``top-mean:0.01``) does not?

    python benchmarks/detection_head.py   # -> benchmarks/results/detection/head.{json,md}

The head is a logistic regression on summary features of one model's probability map
(:func:`map_features`: top-k means, the share above several thresholds, a smoothed maximum,
the largest connected region, mean and spread). It is **trained on synthetic images only**:
``reloc synth`` edits and untouched crops (half and half, 384 px) of the release recipe's
training photos, split by photo into a training and a validation part, each image saved as
a JPEG at a quality drawn from 70-95 for both classes alike (so the compression does not
tell the classes apart). It is then scored, unchanged, on casia1-dev as distributed (263
tampered, 203 authentic CASIA v1 JPEGs): the choice, not the training, uses those images.
Per model (``plain``, ``robust``; whole-image maps, fp32): image AUC of the head and of the
incumbent ``top-mean:0.01`` on the synthetic validation part and on casia1-dev, with 95%
bootstrap intervals over images (tampered and authentic resampled apart) and the paired
gain; and each feature alone as the score (the candidate aggregations, on both sets). The
features of every image are recorded in ``--work`` (JSON Lines) so a re-run only refits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from detection import bootstrap  # benchmarks/detection.py: the image bootstrap, classes resampled apart
from real import Records, distorted, predict, processor  # benchmarks/real.py: records, JPEG, maps, the CPU
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from reloc.data.catalog import load_dataset
from reloc.data.io import ImageError, read_image
from reloc.data.synth.generator import synthesize
from reloc.data.synth.settings import SynthSettings
from reloc.engine.detection import area_above, image_score, smoothed_max, top_mean
from reloc.engine.inference import pipeline_from_weights
from reloc.io_utils import write_json_atomic, write_text_atomic
from reloc.metrics import binary_auc
from reloc.release.provenance import git_commit
from reloc.release.recipe import ROOT, load_recipe, photo_split
from reloc.runs import resolve_weights

MODELS = ("plain", "robust")
SYNTHETIC = {"count": 600, "seed": 44, "size": 384, "val_fraction": 0.25, "qualities": (70, 95)}
"""The head's training images: edits and untouched crops of the recipe's training photos."""
FEATURES = (
    "top-mean:0.001", "top-mean:0.01", "top-mean:0.05", "top-mean:0.2", "mean", "std",
    "area-above:0.3", "area-above:0.5", "area-above:0.7", "smoothed-max:4", "largest-region:0.5", "regions:0.5",
)  # fmt: skip


def map_features(probabilities: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of an ``(H, W)`` probability map, as a ``(12,)`` float array: the
    candidate aggregations of ``reloc.engine.detection`` and a few more statistics."""
    labels, count = ndimage.label(probabilities > 0.5)
    largest = float(np.bincount(labels.ravel())[1:].max()) / labels.size if count else 0.0
    return np.array([
        top_mean(probabilities, 0.001), top_mean(probabilities, 0.01), top_mean(probabilities, 0.05),
        top_mean(probabilities, 0.2), float(probabilities.mean(dtype=np.float64)),
        float(probabilities.std(dtype=np.float64)), area_above(probabilities, 0.3), area_above(probabilities, 0.5),
        area_above(probabilities, 0.7), smoothed_max(probabilities, 4), largest, float(np.log1p(count)),
    ])  # fmt: skip


def synthetic_set(work: Path) -> Path:
    """The head's training and validation images (made once)."""
    folder = work / "synthetic"
    if not (folder / "manifest.json").is_file():
        recipe = load_recipe("cpu")
        _, training, _ = photo_split(recipe)
        settings = {**recipe["synth"]["settings"], "enlarge_hosts": False, "authentic_fraction": 0.5,
                    "val_fraction": SYNTHETIC["val_fraction"], "test_fraction": 0.0}  # fmt: skip
        synthesize([str(p) for p in training], folder, count=SYNTHETIC["count"], seed=SYNTHETIC["seed"],
                   size=SYNTHETIC["size"], settings=SynthSettings.from_mapping(settings), overwrite=True)  # fmt: skip
    return folder


def features_of(model: str, refs: list[tuple[str, object]], work: Path) -> Records:
    """Per-image features of ``model``'s whole-image map (resumed from ``work/MODEL.jsonl``)."""
    records = Records(work / f"{model}.jsonl")
    pipeline = None
    rng = np.random.default_rng(SYNTHETIC["seed"])
    qualities = rng.integers(SYNTHETIC["qualities"][0], SYNTHETIC["qualities"][1] + 1, size=len(refs))
    for index, ((source, ref), quality) in enumerate(tqdm(list(zip(refs, qualities)), desc=model, unit="image")):
        key = f"{source}/{Path(ref.image).name}"
        if key in records:
            continue
        try:  # the image alone: a tampered image whose mask is mis-sized still counts here, as in detection.py
            image = (read_image(ref.image) * 255).round().astype(np.uint8)
        except ImageError as error:
            records.add({"key": key, "skipped": error.reason})
            continue
        if source == "synthetic":
            image, _ = distorted(image, f"jpeg:{quality}", index)
        if pipeline is None:
            pipeline = pipeline_from_weights(resolve_weights(f"pretrained:{model}", "localizer"), precision="fp32")
        probabilities = predict(pipeline, image, "whole")
        records.add({"key": key, "source": source, "split": ref.split, "tampered": ref.mask is not None,
                     "features": map_features(probabilities).tolist(), "incumbent": image_score(probabilities)})  # fmt: skip
    return records


def evaluate(rows: list[dict], head, rng: np.random.Generator) -> dict:
    """Image AUC of the head and of the incumbent on ``rows``, with 95% bootstrap intervals
    (``detection.bootstrap``) and the paired gain on the same resamples."""
    tampered = np.array([r["tampered"] for r in rows])
    features = np.array([r["features"] for r in rows])
    head_scores = head.predict_proba(features)[:, 1]
    incumbent = np.array([r["incumbent"] for r in rows])

    def auc(scores: np.ndarray) -> float:
        return round(binary_auc(scores, tampered), 4)

    return {
        "tampered": int(tampered.sum()),
        "authentic": int((~tampered).sum()),
        "head_auc": auc(head_scores),
        "head_interval": bootstrap(lambda i: binary_auc(head_scores[i], tampered[i]), tampered, rng),
        "incumbent_auc": auc(incumbent),
        "incumbent_interval": bootstrap(lambda i: binary_auc(incumbent[i], tampered[i]), tampered, rng),
        "head_minus_incumbent": {
            "gain": round(binary_auc(head_scores, tampered) - binary_auc(incumbent, tampered), 4),
            "interval": bootstrap(
                lambda i: binary_auc(head_scores[i], tampered[i]) - binary_auc(incumbent[i], tampered[i]),
                tampered,
                rng,
            ),
        },
        "single_statistics": {name: auc(features[:, i]) for i, name in enumerate(FEATURES)},  # the candidates alone
    }


def markdown(results: dict) -> str:
    lines = [
        "# A learned head on the map as the image score",
        "",
        f"`{results['command']}` (commit {results['commit'][:10]}, {results['processor']}). Logistic regression on "
        f"{len(FEATURES)} map features, trained on {results['trained_on']}; image AUC with 95% bootstrap intervals "
        "over images (tampered and authentic resampled apart); incumbent = the shipped `top-mean:0.01`.",
        "",
        "| model | images | tampered / authentic | head AUC | incumbent AUC | head - incumbent |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, by_set in results["models"].items():
        for name in ("casia1-dev", "synthetic validation"):
            e = by_set[name]
            gain = e["head_minus_incumbent"]
            lines.append(
                f"| `{model}` | {name} | {e['tampered']} / {e['authentic']} | {e['head_auc']:.3f} "
                f"[{e['head_interval'][0]:.3f}, {e['head_interval'][1]:.3f}] | {e['incumbent_auc']:.3f} "
                f"[{e['incumbent_interval'][0]:.3f}, {e['incumbent_interval'][1]:.3f}] | {gain['gain']:+.3f} "
                f"[{gain['interval'][0]:+.3f}, {gain['interval'][1]:+.3f}] |"
            )
    lines += ["", "Each feature alone as the image score (image AUC), casia1-dev / synthetic validation:", "",
              "| feature | " + " | ".join(f"`{model}`" for model in results["models"]) + " |",
              "| --- |" + " --- |" * len(results["models"])]  # fmt: skip
    for name in FEATURES:
        cells = [
            f"{by_set['casia1-dev']['single_statistics'][name]:.3f} / "
            f"{by_set['synthetic validation']['single_statistics'][name]:.3f}"
            for by_set in results["models"].values()
        ]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "Head weights (standardised features): " + "; ".join(
        f"`{model}`: " + ", ".join(f"{name} {w:+.2f}" for name, w in zip(FEATURES, by_set["weights"]))
        for model, by_set in results["models"].items()
    ), ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--casia", type=Path, default=ROOT.parent / "shared" / "real" / "casia1-dev")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "detection-head")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "detection" / "head.json")
    args = parser.parse_args(argv)
    if not args.casia.is_dir():
        parser.error(f"{args.casia}: casia1-dev not found")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    refs = [("synthetic", r) for r in load_dataset(synthetic_set(args.work))]
    refs += [("casia", r) for r in load_dataset(args.casia)]
    results: dict = {
        "benchmark": "learned image-score head (issue 44)",
        "command": "python benchmarks/detection_head.py",
        "commit": git_commit() or "unknown",
        "processor": processor()["model"],
        "trained_on": f"{SYNTHETIC['count']} synthetic images of the training photos (half untouched), "
        f"{SYNTHETIC['size']} px, JPEG {SYNTHETIC['qualities'][0]}-{SYNTHETIC['qualities'][1]}, its training split",
        "synthetic": SYNTHETIC,
        "features": list(FEATURES),
        "models": {},
    }
    for model in MODELS:
        rows = [r for r in features_of(model, refs, args.work).rows.values() if "skipped" not in r]
        train = [r for r in rows if r["source"] == "synthetic" and r["split"] == "train"]
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        head.fit(np.array([r["features"] for r in train]), np.array([r["tampered"] for r in train]))
        rng = np.random.default_rng(0)
        results["models"][model] = {
            "casia1-dev": evaluate([r for r in rows if r["source"] == "casia"], head, rng),
            "synthetic validation": evaluate(
                [r for r in rows if r["source"] == "synthetic" and r["split"] == "val"], head, rng
            ),
            "synthetic training images": len(train),
            "weights": [round(float(w), 4) for w in head[-1].coef_[0]],
        }
    results["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, results)
    write_text_atomic(args.out.with_suffix(".md"), markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
