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
gain; and each feature alone as the score (the candidate aggregations, on both sets). Maps are cached in ``--work`` (float16) so a re-run only refits.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image
from real import Records, predict, processor  # benchmarks/real.py: records, whole-image maps, the CPU
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from reloc.data.catalog import load_dataset
from reloc.data.io import ImageError, read_image
from reloc.data.synth.generator import synthesize
from reloc.data.synth.settings import SynthSettings
from reloc.engine.detection import image_score
from reloc.engine.inference import pipeline_from_weights
from reloc.io_utils import write_json_atomic, write_text_atomic
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
    """The :data:`FEATURES` of an ``(H, W)`` probability map, as a ``(12,)`` float array."""
    flat = np.sort(probabilities.astype(np.float64).ravel())[::-1]

    def top(fraction: float) -> float:
        return float(flat[: max(1, int(round(fraction * flat.size)))].mean())

    above = probabilities > 0.5
    labels, count = ndimage.label(above)
    largest = float(np.bincount(labels.ravel())[1:].max()) / above.size if count else 0.0
    smoothed = ndimage.gaussian_filter(probabilities.astype(np.float64), sigma=4)
    return np.array([
        top(0.001), top(0.01), top(0.05), top(0.2), flat.mean(), flat.std(),
        float((flat > 0.3).mean()), float(above.mean()), float((flat > 0.7).mean()),
        float(smoothed.max()), largest, float(np.log1p(count)),
    ])  # fmt: skip


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8 ``(H, W, 3)``) through a JPEG at ``quality``."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


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
    for (source, ref), quality in tqdm(list(zip(refs, qualities)), desc=model, unit="image"):
        key = f"{source}/{Path(ref.image).name}"
        if key in records:
            continue
        try:
            image = (read_image(ref.image) * 255).round().astype(np.uint8)
        except ImageError as error:
            records.add({"key": key, "skipped": error.reason})
            continue
        if source == "synthetic":
            image = jpeg(image, int(quality))
        if pipeline is None:
            pipeline = pipeline_from_weights(resolve_weights(f"pretrained:{model}", "localizer"), precision="fp32")
        probabilities = predict(pipeline, image, "whole")
        records.add({"key": key, "source": source, "split": ref.split, "tampered": ref.mask is not None,
                     "features": map_features(probabilities).tolist(), "incumbent": image_score(probabilities)})  # fmt: skip
    return records


def auc_interval(scores: np.ndarray, tampered: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> list:
    """95% bootstrap interval of the image AUC, tampered and authentic resampled apart."""
    positives, negatives = scores[tampered], scores[~tampered]
    values = []
    for _ in range(draws):
        p = rng.choice(positives, positives.size)
        n = rng.choice(negatives, negatives.size)
        values.append(roc_auc_score(np.r_[np.ones(p.size), np.zeros(n.size)], np.r_[p, n]))
    return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]


def paired_gain(a: np.ndarray, b: np.ndarray, tampered: np.ndarray, rng: np.random.Generator, draws: int = 2000):
    """AUC(a) - AUC(b) on the same images, with a 95% bootstrap interval (same resamples)."""
    pos, neg = np.flatnonzero(tampered), np.flatnonzero(~tampered)
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    values = []
    for _ in range(draws):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        values.append(roc_auc_score(labels, a[idx]) - roc_auc_score(labels, b[idx]))
    gain = roc_auc_score(tampered, a) - roc_auc_score(tampered, b)
    return {"gain": round(float(gain), 4), "interval": [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]}


def evaluate(rows: list[dict], head, rng: np.random.Generator) -> dict:
    """Image AUC of the head and of the incumbent on ``rows``, with intervals and the paired gain."""
    tampered = np.array([r["tampered"] for r in rows])
    head_scores = head.predict_proba(np.array([r["features"] for r in rows]))[:, 1]
    incumbent = np.array([r["incumbent"] for r in rows])
    return {
        "tampered": int(tampered.sum()),
        "authentic": int((~tampered).sum()),
        "head_auc": round(float(roc_auc_score(tampered, head_scores)), 4),
        "head_interval": auc_interval(head_scores, tampered, rng),
        "incumbent_auc": round(float(roc_auc_score(tampered, incumbent)), 4),
        "incumbent_interval": auc_interval(incumbent, tampered, rng),
        "head_minus_incumbent": paired_gain(head_scores, incumbent, tampered, rng),
        "single_statistics": {  # each feature alone as the score: the candidate aggregations
            name: round(float(roc_auc_score(tampered, [r["features"][i] for r in rows])), 4)
            for i, name in enumerate(FEATURES)
        },
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
