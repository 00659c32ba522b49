"""Accuracy of the shipped pretrained models on photos never used in training.

    python benchmarks/pretrained.py                   # every model (resumable), then the JSON and cards
    python benchmarks/pretrained.py --model reloc     # one model's rows (run two side by side)
    python benchmarks/pretrained.py --aggregate       # parts -> benchmarks/results/pretrained.json + cards

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

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from results_io import read_results

from reloc.io_utils import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pretrained.json"
RECIPE = ROOT / "configs" / "release" / "recipe.yaml"
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
        row["per_type"] = per_type(record["per_image"])
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


def per_type(per_image: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per-image means by tampering type (the type is the last part of a synth sample's name)."""
    groups: dict[str, list[dict]] = {}
    for row in per_image:
        groups.setdefault(row["name"].rsplit("_", 1)[-1], []).append(row)
    return {
        kind: {m: _round(np.nanmean([r[m] if r.get(m) is not None else np.nan for r in rows])) for m in METRICS}
        | {"images": len(rows)}
        for kind, rows in sorted(groups.items())
    }


def _round(value: float | None) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 4)


def aggregate(work: Path, command: str) -> dict:
    """Merge the part files into ``benchmarks/results/pretrained.json`` and the cards' figures."""
    import torch

    from reloc import pretrained

    digests = {name: weights_digest(name) for name in MODELS}
    previous = read_results(RESULTS, {})

    def collect(folder: str, specs: tuple[str, ...], earlier: dict[str, dict]) -> dict[str, dict]:
        """Each model's rows: its part files in ``work/folder``, else the row of the results
        file being replaced (``earlier``) where it was made with the same weights (a fresh
        machine re-measures only the models that changed)."""
        found: dict[str, dict] = {}
        for name in MODELS:
            paths = {spec: work / folder / f"{name}__{spec.replace(':', '-')}.json" for spec in specs}
            found[name] = {spec: read_results(path) for spec, path in paths.items() if path.is_file()}
            stale = [
                str(paths[spec]) for spec, row in found[name].items() if row.get("weights_sha256") != digests[name]
            ]
            if stale:
                raise SystemExit(
                    f"{len(stale)} part(s) of {name} were made with other weights than the shipped "
                    f"pretrained:{name} ({', '.join(stale[:3])}...): run `benchmarks/pretrained.py --model {name}`"
                )
            kept = {
                spec: row
                for spec, row in earlier.get(name, {}).items()
                if spec in specs and spec not in found[name] and row.get("weights_sha256") == digests[name]
            }
            if kept:
                print(f"{name}: {len(kept)} row(s) of {folder} kept from {RESULTS.name} (the same weights)")
            rows = {**kept, **found[name]}
            found[name] = {spec: rows[spec] for spec in specs if spec in rows}  # in the order of specs
        return found

    cards_path = Path(str(pretrained._root())) / "cards.json"
    cards = read_results(cards_path)
    models = collect("parts", SPECS, previous.get("models", {}))
    in_distribution = collect(
        "parts-recipe-settings", RECIPE_SPECS, previous.get("recipe_settings_test", {}).get("models", {})
    )
    table3 = {
        label: models.get(model, {}).get(spec)
        for label, model, spec in (
            ("P{P}", "plain", "none"),
            ("P{D}", "plain", "jpeg:75"),
            ("D|P{D}", "robust", "jpeg:75"),
            ("ReLoc{D}", "reloc", "jpeg:75"),
        )
    }
    winner = {}
    for spec in SPECS:
        if spec.startswith("jpeg:") and all(spec in models[n] for n in ("robust", "reloc")):
            winner[spec] = max(
                ("robust", "reloc"), key=lambda n: (models[n][spec]["auc"] or 0, models[n][spec]["f1"] or 0)
            )
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pretrain import git_commit  # the recipe script's: one home for the commit lookup

    result = {
        "models": models,
        "table3_qf75": table3,
        "recipe_settings_test": {
            "models": in_distribution,
            "per_photo": RECIPE_PER_PHOTO,
            "note": "the same test photos edited with the release recipe's generator settings "
            "(the training distribution), for comparison with the default-settings rows",
        },
        "jpeg_winner": winner,
        "test_photos": test_photo_names(),
        "test_set": {
            "per_photo": PER_PHOTO,
            "size": SIZE,
            "seed": SEED,
            "generator": "SynthSettings defaults",
            "protocol": "each model's recorded sliding window (its weights' reloc.window: side, stride; "
            "per row under 'window'; a restorer in its own recorded window, 'restore_window'), "
            "threshold 0.5 of each shipped network (the recipe's validation-chosen threshold folded "
            "into its logits: 'thresholds'), per-image means",
        },
        "thresholds": {name: card.get("threshold") for name, card in cards["models"].items()},
        "training_seeds": 1,
        "intervals": "95% bootstrap over test images; one training seed per model, so no seed-level interval",
        "shipped_weights": cards.get("commit"),
        "weights_sha256": digests,
        "command": command,
        "commit": git_commit(),
        "torch": torch.__version__,
    }
    write_json_atomic(RESULTS, result)
    write_text_atomic(RESULTS.with_suffix(".md"), markdown(result))
    for name, rows in models.items():
        cards["models"][name]["figures"] = {spec: {m: row[m] for m in METRICS} for spec, row in rows.items()}
    cards["figures_from"] = "benchmarks/results/pretrained.json"
    write_json_atomic(cards_path, cards)
    print(f"wrote {RESULTS} and the figures of {cards_path}")
    return result


def markdown(result: dict) -> str:
    """The README / model-card tables: per model and distortion, F1 / IoU / AUC (per-image means)."""

    def cell(row: dict | None) -> str:
        if not row:
            return "–"
        return " / ".join("–" if row.get(m) is None else f"{row[m]:.3f}" for m in METRICS)

    lines = [
        "| distortion | " + " | ".join(f"`{n}` F1 / IoU / AUC" for n in MODELS) + " |",
        "| --- |" + " ---: |" * len(MODELS),
    ]
    for spec in SPECS:
        lines.append(f"| {spec} | " + " | ".join(cell(result["models"].get(n, {}).get(spec)) for n in MODELS) + " |")
    lines += [
        "",
        "| situation (QF 75) | F1 | IoU | AUC | 95% interval of F1 (images) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for label, row in result["table3_qf75"].items():
        if row:
            low_high = row["ci95"]["f1"]
            interval = f"{low_high[0]:.3f} - {low_high[1]:.3f}" if low_high else "–"
            lines.append(
                f"| {label.replace('|', chr(92) + '|')} | {row['f1']:.3f} | {row['iou']:.3f} | {row['auc']:.3f} "
                f"| {interval} |"
            )
    lines += [
        "",
        "Same test photos edited with the recipe's generator settings (the training distribution):",
        "",
        "| distortion | " + " | ".join(f"`{n}` F1 / IoU / AUC" for n in MODELS) + " |",
        "| --- |" + " ---: |" * len(MODELS),
    ]
    for spec in RECIPE_SPECS:
        rows = result["recipe_settings_test"]["models"]
        lines.append(f"| {spec} | " + " | ".join(cell(rows.get(n, {}).get(spec)) for n in MODELS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, action="append", help="evaluate only these (repeatable)")
    parser.add_argument("--aggregate", action="store_true", help="only merge the parts")
    parser.add_argument(
        "--spec", choices=SPECS, action="append", help="evaluate only these distortions (repeatable; default all)"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "pretrained-bench")
    args = parser.parse_args(argv)
    if not args.aggregate:
        for name in args.model or MODELS:
            evaluate_model(name, args.work, args.spec)
    if args.aggregate or not args.model:
        aggregate(args.work, "python benchmarks/pretrained.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
