"""Accuracy of the shipped pretrained models on photos never used in training.

    reloc release cards                    # every model (resumable), then the JSON and cards
    reloc release cards --model reloc      # one model's rows (run two side by side)
    reloc release cards --aggregate        # parts -> benchmarks/results/release/pretrained.json + cards

Test set: ``reloc synth`` with the generator's default settings on the held-out photos of
``configs/release/recipe.yaml`` plus scikit-image's colour photos (``--photos default``),
:data:`PER_PHOTO` images per photo, :data:`SIZE` px. Every model (``pretrained:plain``,
``pretrained:robust``, ``pretrained:reloc``) is evaluated with the sliding window its
weights record (what ``reloc localize`` uses by default) at every distortion of :data:`SPECS` (the same seeded distortion of each image for every model),
per-image F1 / IoU at threshold 0.5 (of the shipped networks, into which the release
recipe folded the threshold it chose on validation images) and AUC
(``reloc.engine.evaluate``), with a 95%
bootstrap interval over test images. There is one training seed of each model, so the
intervals say how sure the figures are about these test images, not about retraining.

Table III's four situations at QF 75 with these models are P{P} = plain on plain images,
P{D} = plain at ``jpeg:75``, D|P{D} = robust at ``jpeg:75`` and ReLoc{D} = reloc at
``jpeg:75``: rows of the same runs, not a second evaluation.

Each (model, distortion) result is kept in ``--work``/parts/ as it finishes, so a killed
run resumes; the figures also go into the package's ``cards.json`` (``--model auto``
reads them). A row with no part file is taken from the results file being replaced where
that row was made with the same weights (their digest), so after re-shipping one model a
fresh machine measures only that model before ``--aggregate``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import yaml

from reloc.io_utils import write_json_atomic
from reloc.release.provenance import read_results
from reloc.release.recipe import RECIPE, ROOT

MODELS = ("plain", "robust", "reloc")
SPECS = (
    "none",
    "jpeg:50",
    "jpeg:60",
    "jpeg:70",
    "jpeg:75",
    "jpeg:80",
    "jpeg:90",
    "jpeg:95",
    "resize:0.5",
    "blur:1.0",
    "webp:80",
    # resized or blurred before the last JPEG (a social-network upload, a retouched export):
    # `--model auto` sends such files to a JPEG model by their quality
    "resize:0.5,jpeg:75",
    "blur:1.0,jpeg:75",
)
PER_PHOTO = 4
#: the in-distribution check: test photos edited with the recipe's settings, at these specs
RECIPE_PER_PHOTO = 2
RECIPE_SPECS = ("none", "jpeg:75")
SIZE = 384
SEED = 2026
BOOTSTRAP = 2000
METRICS = ("f1", "iou", "auc")


def test_photos() -> list[str]:
    """The test photos: the recipe's held-out list (absolute paths) and scikit-image's photos."""
    from reloc.data.photos import list_photos

    recipe = yaml.safe_load(RECIPE.read_text())
    root = (ROOT / recipe["photos"]).resolve()
    return [str(root / name) for name in recipe["held_out"]] + [str(p) for p in list_photos("default")]


def test_photo_names() -> list[str]:
    """The test photos as the card names them: the recipe's held-out names (relative to its
    ``photos`` folder), then ``scikit-image/NAME`` for scikit-image's photos."""
    from reloc.data.photos import list_photos

    held_out = yaml.safe_load(RECIPE.read_text())["held_out"]
    return [*held_out, *(f"scikit-image/{Path(p).name}" for p in list_photos("default"))]


def make_test_set(work: Path, recipe_settings: bool = False) -> Path:
    """Synthesise the test images once, reused afterwards: with the generator's default
    settings, or (``recipe_settings``, the in-distribution check) with the release
    recipe's, :data:`RECIPE_PER_PHOTO` per photo."""
    from reloc.data.synth import synthesize
    from reloc.data.synth.settings import SynthSettings

    folder = work / ("test-data-recipe-settings" if recipe_settings else "test-data")
    if (folder / "manifest.json").is_file():
        return folder
    photos = test_photos()
    # every photo is a test photo: no train / val photos to set aside
    options = dict(yaml.safe_load(RECIPE.read_text())["synth"]["settings"]) if recipe_settings else {}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    settings = SynthSettings(**{**options, "test_fraction": 0.0, "val_fraction": 0.0})
    per_photo = RECIPE_PER_PHOTO if recipe_settings else PER_PHOTO
    print(
        synthesize(
            photos,
            folder,
            count=per_photo * len(photos),
            seed=SEED,
            size=SIZE,
            settings=settings,
            overwrite=True,
            progress=False,
        )
    )
    return folder


def bootstrap_interval(values: list[float], rng: np.random.Generator) -> list[float] | None:
    """95% percentile bootstrap interval of the mean over images (None when < 2 values)."""
    data = np.array([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if data.size < 2:
        return None
    means = data[rng.integers(0, data.size, (BOOTSTRAP, data.size))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def evaluate_model(name: str, work: Path, only: list[str] | None = None) -> None:
    """Evaluate ``pretrained:name`` at every spec (or those in ``only``) on both test sets;
    one part file per (test set, spec), skipped when present and made with the same weights
    (their SHA-256 recorded in it), redone when the shipped weights changed."""
    for recipe_settings, specs in ((False, SPECS), (True, RECIPE_SPECS)):
        evaluate_on(name, work, recipe_settings, tuple(s for s in specs if not only or s in only))


def evaluate_on(name: str, work: Path, recipe_settings: bool, specs: tuple[str, ...]) -> None:
    """Evaluate ``pretrained:name`` at ``specs`` on one test set (``recipe_settings``: the recipe's generator settings)."""
    import torch

    from reloc.data.catalog import load_dataset
    from reloc.engine.evaluate import Situation, evaluate_situation
    from reloc.pretrained import roles, weights_file

    refs = load_dataset(make_test_set(work, recipe_settings))
    restorer = str(weights_file(name, "restorer")) if "restorer" in roles(name) else None
    situation = Situation(name, str(weights_file(name, "localizer")), restorer, distorted=True)
    digest = weights_digest(name)
    parts = work / ("parts-recipe-settings" if recipe_settings else "parts")
    parts.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        path = parts / f"{name}__{spec.replace(':', '-')}.json"
        if read_results(path, {}).get("weights_sha256") == digest:
            continue
        tick = time.perf_counter()
        with torch.inference_mode():
            record = evaluate_situation(
                situation,
                refs,
                spec,
                device=torch.device("cpu"),
                window=None,  # the sliding window the model's weights record (their training crop)
                stride=None,
                seed=SEED,
                pooled_auc=False,
                progress=False,
            )
        rng = np.random.default_rng([SEED, MODELS.index(name), SPECS.index(spec)])
        values = record["metrics"]["per-image"]
        row = {m: _round(values.get(m)) for m in METRICS}
        row["ci95"] = {m: bootstrap_interval([r.get(m) for r in record["per_image"]], rng) for m in METRICS}
        row["per_type"] = per_type(record)
        row.update(
            images=record["images"],
            single_class=record["single_class"],
            undefined_f1=record["undefined_f1"],
            window=[record["protocol"]["window"], record["protocol"]["stride"]],
            restore_window=record["protocol"]["restore_window"],
            threads=torch.get_num_threads(),
            seconds=round(time.perf_counter() - tick, 1),
            weights_sha256=digest,
        )
        write_json_atomic(path, row)
        print(
            f"{name:<7} {spec:<11} {'(recipe settings) ' if recipe_settings else ''}F1 {row['f1']:.3f} IoU {row['iou']:.3f} AUC {row['auc']:.3f} "
            f"({row['images']} images, {row['seconds']:.0f} s)",
            flush=True,
        )


def weights_digest(name: str) -> str:
    """SHA-256 of the content of ``pretrained:name``'s weight files (roles in order): each
    file's metadata (keys sorted) and tensors (by name), not its bytes, since safetensors
    writes the metadata in no fixed order and a re-shipped identical model differs in bytes."""
    import torch
    from safetensors import safe_open

    from reloc.pretrained import roles, weights_file

    digest = hashlib.sha256()
    for role in roles(name):
        with safe_open(str(weights_file(name, role)), framework="pt") as weights:
            digest.update(json.dumps(weights.metadata(), sort_keys=True).encode())
            for key in sorted(weights.keys()):
                tensor = weights.get_tensor(key)
                digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}".encode())
                digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def per_type(record: dict) -> dict[str, dict[str, float | None]]:
    """An evaluation record's per-image means by kind of forgery (its ``by_kind``), rounded."""
    return {
        kind: {m: _round(row[m]) for m in METRICS} | {"images": row["images"]}
        for kind, row in record["by_kind"].items()
    }


def _round(value: float | None) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 4)
