"""Two inference-time variants of the shipped models, measured on validation images against
the model ``--model auto`` runs alone: mirror averaging (test-time augmentation) and
averaging the maps of several shipped models (an ensemble).

    python benchmarks/inference_variants.py     # -> benchmarks/results/inference/inference-variants.json

The images are the first ``--images`` validation images of the ``cpu`` recipe's
``data-native8000`` part (synthesised into ``--work`` if missing, ~3 min): the set the
shipped models' windows and thresholds were chosen on, from photos held out of training
and never among the test photos. Per distortion (plain, JPEG 75, JPEG 90):

- the baseline is the model ``--model auto`` picks there (:func:`reloc.pretrained.choose`:
  ``plain`` for plain images, for JPEGs the best by the card);
- ``mirror-h`` averages the baseline's map of the image and of the image mirrored left to
  right (mapped back); ``mirror-4`` also the up-down and both-ways mirrors (2x and 4x the time);
- ``a+b`` (and ``a+b+c``) averages the shipped models' maps (each at its recorded window,
  its validation-chosen threshold folded into its logits, so 0.5 is each one's threshold).

Each variant gets its per-image mean AUC and F1 at each of the recipe's ``inference``
thresholds (its images, distortion seed and thresholds are the inference part's), and its paired difference
from the baseline (AUC, and F1 at 0.5) with a 95% bootstrap interval over the images. One
training seed per model: the intervals cover the images, not retraining.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reloc import pretrained
from reloc.data.datasets import WholeImages
from reloc.engine.evaluate import evaluation_samples
from reloc.engine.model_choice import ModelChooser
from reloc.errors import describe, expected_types
from reloc.io_utils import write_json_atomic
from reloc.metrics import LocalizationMetrics
from reloc.release.provenance import git_commit
from reloc.release.recipe import load_recipe
from reloc.release.training import make_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_spread import paired_difference  # noqa: E402  (one home for the paired interval)

ROOT = Path(__file__).resolve().parents[1]
DATA_PART = "data-native8000"
DISTORTIONS = ("none", "jpeg:75", "jpeg:90")
MIRRORS = {"mirror-h": [(), (-1,)], "mirror-4": [(), (-1,), (-2,), (-2, -1)]}
"""Variant -> the flipped dimensions of each view averaged (``()``: the image as it is)."""


def mirrored_map(pipeline, image: torch.Tensor, dims: tuple[int, ...]) -> np.ndarray:
    """``(H, W)`` probabilities of ``image`` ``(3, H, W)`` mirrored along ``dims``, mirrored back."""
    if not dims:
        return pipeline.predict(image).numpy()
    return pipeline.predict(image.flip(dims)).flip(dims).numpy()  # negative dims: the same axes of the map


def score(maps: list[np.ndarray], masks: list[np.ndarray], names: list[str], thresholds: list[float]) -> dict:
    """Per-image mean AUC and F1 at each of ``thresholds`` (0.5 among them), and the
    per-image records at 0.5."""
    metrics = {t: LocalizationMetrics(threshold=t, pooled_auc=False) for t in thresholds}
    for probabilities, mask, name in zip(maps, masks, names):
        for metric in metrics.values():
            metric.update(probabilities, mask, name)
    summaries = {t: metric.summary()["per-image"] for t, metric in metrics.items()}
    f1 = {str(t): round(values["f1"], 4) for t, values in summaries.items()}
    best = max(f1.items(), key=lambda item: item[1])
    return {
        "auc": round(summaries[0.5]["auc"], 4),
        "f1": f1,
        "best_f1": {"threshold": float(best[0]), "f1": best[1]},
        "records": metrics[0.5].per_image,
    }


def measure(distortion: str, refs: list, pipelines: dict, settings: dict, rng: np.random.Generator) -> dict:
    """Every variant's figures at ``distortion`` (see the module docstring); ``settings``:
    the recipe's ``inference`` part (its distortion ``seed`` and ``thresholds``)."""
    plain = distortion == "none"
    baseline = pretrained.choose(None if plain else int(distortion.split(":")[1])).name
    images = WholeImages(refs, None if plain else distortion, seed=settings["seed"])
    view = "plain" if plain else "distorted"
    plain_maps = {name: [] for name in pipelines}
    mirrored = {(): plain_maps[baseline]}  # the unmirrored view is the baseline's own map
    flips = sorted({dims for views in MIRRORS.values() for dims in views if dims})
    mirrored.update({dims: [] for dims in flips})
    masks, names = [], []
    thresholds = settings["thresholds"]
    started = time.perf_counter()
    for index in tqdm(range(len(images)), desc=distortion, leave=False):
        sample = images[index]
        for name, pipeline in pipelines.items():
            plain_maps[name].append(mirrored_map(pipeline, sample[view], ()))
        for dims in flips:
            mirrored[dims].append(mirrored_map(pipelines[baseline], sample[view], dims))
        masks.append(sample["mask"][0].numpy() > 0.5)
        names.append(sample["name"])
    variants = {name: score(plain_maps[name], masks, names, thresholds) for name in pipelines}
    for variant, views in MIRRORS.items():
        averaged = [np.mean([mirrored[dims][i] for dims in views], axis=0) for i in range(len(masks))]
        variants[f"{baseline} {variant}"] = score(averaged, masks, names, thresholds)
    for size in range(2, len(pipelines) + 1):
        for combo in itertools.combinations(pipelines, size):
            averaged = [np.mean([plain_maps[name][i] for name in combo], axis=0) for i in range(len(masks))]
            variants["+".join(combo)] = score(averaged, masks, names, thresholds)
    base = variants[baseline]["records"]
    for name, figures in variants.items():
        records = figures.pop("records")
        if name != baseline:
            figures["minus_baseline"] = {m: paired_difference(base, records, m, rng) for m in ("auc", "f1")}
    return {
        "baseline": baseline,
        "images": len(masks),
        "seconds": round(time.perf_counter() - started, 1),
        "variants": variants,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "inference-variants")
    parser.add_argument(
        "--images", type=int, help="validation images, the first N (default: the recipe's inference images)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference" / "inference-variants.json"
    )
    args = parser.parse_args(argv)
    if args.images is not None and args.images < 1:
        parser.error(f"--images must be at least 1, got {args.images}")
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe("cpu")
    settings = recipe["inference"]
    images = settings["images"] if args.images is None else args.images
    data = args.work / DATA_PART
    if not (data / "manifest.json").is_file():
        make_data(recipe, args.work, DATA_PART)
    try:  # a damaged data folder or packaged model: one line, no traceback
        refs = evaluation_samples(data, "val", [])[:images]
        chooser = ModelChooser.from_option("auto", precision="fp32")  # the pretrained models as localize runs them
        pipelines = {name: chooser.pipeline(name) for name in pretrained.NAMES}
    except (*expected_types(), pretrained.PretrainedError) as error:
        raise SystemExit(f"error: {describe(error)}") from None
    rng = np.random.default_rng(0)
    results = {
        "command": "python benchmarks/inference_variants.py"
        + (f" --images {args.images}" if args.images is not None else ""),
        "commit": git_commit(),
        "torch": torch.__version__,
        "images": f"the first {len(refs)} validation images of the cpu recipe's {DATA_PART} part",
        "protocol": "per-image means; each model at its recorded window and folded threshold (0.5), fp32",
        "distortions": {},
    }
    for distortion in DISTORTIONS:
        results["distortions"][distortion] = row = measure(distortion, refs, pipelines, settings, rng)
        for name, figures in row["variants"].items():
            delta = figures.get("minus_baseline", {}).get("auc", {})
            print(
                f"{distortion:8} {name:22} AUC {figures['auc']:.4f}  F1@0.5 {figures['f1']['0.5']:.4f}"
                + (f"  dAUC {delta['mean']:+.4f} {delta['ci95']}" if delta else "  (baseline)")
            )
        write_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
