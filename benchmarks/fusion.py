"""Which map to show: the learned map alone or fused with classical evidence, chosen on real forgeries.

    python benchmarks/fusion.py          # -> benchmarks/results/fusion/fusion.{json,md}

For every image the maps are made once and kept under ``--work`` (float16 ``.npz``): the
learned map of what ``--model auto`` runs on the file (whole image, the packaged routing by
the file's JPEG quality), and the maps of the aligned double-quantisation model (``dq``) and
the copy-move matcher (``clones``) where they apply. Each rule of :data:`RULES` combines them
pixel by pixel and is scored per image:

- on ``../shared/real/casia1-dev`` as distributed (the 263 forgeries, one skipped for a
  transposed mask, and the 203 authentic photos; **rules are chosen here**; the dq model's
  constants were also chosen on every third of its images): F1 at 0.5 (paper protocol),
  best-threshold F1, AUC, splices and copy-moves apart; the share of authentic pixels over
  0.5; the image AUC of the packaged image score of the shown map;
- on the camera-size set of ``benchmarks/real.py`` (edits of the large photos at 1536 px),
  as PNG and as JPEG files at qualities 90 and 75: the check that a rule chosen on CASIA
  does not cost camera photos.

Paired differences against the learned map alone come with 95% bootstrap intervals over images.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from real import bootstrap_mean, camera_refs, chooser, distorted, image_scores, predict, processor
from tqdm import tqdm

from reloc import pretrained
from reloc.data.catalog import load_dataset, load_pair
from reloc.data.distortions import encode_jpeg, jpeg_quality_from_file
from reloc.data.io import ImageError
from reloc.engine.detection import image_score
from reloc.evidence import Evidence, analyse, fuse
from reloc.image_metrics import image_level_summary
from reloc.io_utils import write_json_atomic
from reloc.release.recipe import ROOT

SHARED = ROOT.parent / "shared"
CAMERA_DISTORTIONS = ("none", "jpeg:90", "jpeg:75")
KINDS = {"all": "", "splice": "Sp_D_", "copy-move": "Sp_S_"}


def _maximum(learned: np.ndarray, results: list[Evidence]) -> np.ndarray:
    return np.maximum.reduce([learned, *(result.map for result in results if result.applicable)])


DQ_WEIGHTS = (0.25, 0.5, 0.75, 0.9)
RULES: dict[str, Callable[[np.ndarray, list[Evidence]], np.ndarray]] = {
    "learned": lambda learned, found: fuse(learned, found, "none"),
    "clones": lambda learned, found: fuse(learned, found, "clones"),
    "dq-max": lambda learned, found: _maximum(learned, [r for r in found if r.method == "dq"]),
    "clones+dq-max": _maximum,
    **{f"dq-{w}": (lambda learned, found, w=w: fuse(learned, found, "dq", dq_weight=w)) for w in DQ_WEIGHTS},
    **{
        f"clones+dq-{w}": (lambda learned, found, w=w: fuse(learned, found, "clones+dq", dq_weight=w))
        for w in DQ_WEIGHTS
    },
}
"""Rule -> the shown map from the learned float32 ``(H, W)`` map and the evidence found on the
image (dq and clones, each with a map or not applicable): the library's fusions
(:func:`reloc.evidence.fuse`) at several weights of the dq map, and maxima."""


def maps_of(pipeline, image: np.ndarray, path: Path | None, cache: Path) -> dict[str, np.ndarray | None]:
    """The learned, dq and clones maps of one uint8 ``(H, W, 3)`` image (cached in ``cache``)."""
    if cache.is_file():
        with np.load(cache) as stored:
            return {
                name: stored[name].astype(np.float32) if name in stored else None
                for name in ("learned", "dq", "clones")
            }
    maps: dict[str, np.ndarray | None] = {"learned": predict(pipeline, image, "whole")}
    for result in analyse(image, path, ["dq", "clones"]):
        maps[result.method] = result.map
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez_compressed(partial, **{k: v.astype(np.float16) for k, v in maps.items() if v is not None})
    partial.replace(cache)
    return maps


def rule_rows(key: str, maps: dict, truth: np.ndarray, extra: dict) -> list[dict]:
    """One record per rule of one image: per-image scores (forgeries), the share of pixels over
    0.5 (authentic photos), the image score of the shown map."""
    rows = []
    found = [Evidence(method, maps[method], "") for method in ("dq", "clones")]
    for rule, combine in RULES.items():
        shown = combine(maps["learned"], found).astype(np.float32)
        row = {
            "key": f"{rule}/{key}",
            "rule": rule,
            **extra,
            "tampered": bool(truth.any()),
            "score": image_score(shown),
        }
        if truth.any():
            row.update(image_scores(shown, truth))
        else:
            row["flagged"] = float((shown > 0.5).mean())
        rows.append(row)
    return rows


def casia_rows(args) -> tuple[list[dict], list[dict]]:
    """Every rule's records on casia1-dev, and the images skipped (named, with the reason)."""
    models = chooser()
    rows, skipped = [], []
    for ref in tqdm(load_dataset(args.casia), desc="casia1-dev", unit="image"):
        name = Path(ref.image).name
        try:
            image, mask = load_pair(ref)
        except ImageError as error:  # a mis-sized mask: named in the results, not scored
            skipped.append({"file": str(error.path), "reason": error.reason})
            continue
        model = pretrained.choose(jpeg_quality_from_file(ref.image)).name
        image = (image * 255).round().astype(np.uint8)
        maps = maps_of(models.pipeline(model), image, Path(ref.image), args.work / "maps" / "casia" / f"{name}.npz")
        extra = {"source": "casia", "image": name, "model": model, "dq_applies": maps["dq"] is not None,
                 "dq_share": None if maps["dq"] is None else float((maps["dq"] > 0.5).mean())}  # fmt: skip
        rows += rule_rows(name, maps, mask > 0.5, extra)
    return rows, skipped


def camera_rows(args) -> list[dict]:
    """Every rule's records on the camera-size set, as PNG and as JPEG files."""
    models = chooser()
    rows = []
    refs = camera_refs(args, args.camera_work)[: args.camera_images]
    for index, ref in enumerate(tqdm(refs, desc="camera-size set", unit="image")):
        plain, mask = load_pair(ref)
        plain = (plain * 255).round().astype(np.uint8)
        for spec in CAMERA_DISTORTIONS:
            with tempfile.TemporaryDirectory() as folder:
                path = None
                if spec.startswith("jpeg:"):  # the file a user holds: the JPEG methods read its tables
                    path = Path(folder) / "image.jpg"
                    path.write_bytes(encode_jpeg(plain, int(spec.split(":")[1])))
                image, quality = distorted(plain, spec, index)
                model = pretrained.choose(quality).name
                cache = args.work / "maps" / "camera" / f"{spec.replace(':', '-')}-{index}.npz"
                maps = maps_of(models.pipeline(model), image, path, cache)
            extra = {"source": "camera", "distortion": spec, "image": index, "model": model,
                     "dq_applies": maps["dq"] is not None}  # fmt: skip
            rows += rule_rows(f"{spec}/{index}", maps, mask > 0.5, extra)
    return rows


def paired(rows: list[dict], rule: str, metric: str, where) -> dict:
    """Mean per-image difference of ``metric`` between ``rule`` and the learned map alone."""
    base = {r["key"].split("/", 1)[1]: r.get(metric) for r in rows if r["rule"] == "learned" and where(r)}
    diffs = []
    for r in rows:
        if r["rule"] == rule and where(r):
            before = base.get(r["key"].split("/", 1)[1])
            if before is not None and r.get(metric) is not None and np.isfinite(before) and np.isfinite(r[metric]):
                diffs.append(r[metric] - before)
    return bootstrap_mean(diffs)


def casia_summary(rows: list[dict]) -> dict:
    out = {}
    for rule in RULES:
        chosen = [r for r in rows if r["rule"] == rule]
        forgeries = [r for r in chosen if r["tampered"]]
        authentic = [r for r in chosen if not r["tampered"]]
        entry = {
            kind: {m: bootstrap_mean([r[m] for r in forgeries if r["image"].startswith(prefix)])
                   for m in ("f1", "best_f1", "auc")}
            for kind, prefix in KINDS.items()
        }  # fmt: skip
        entry["authentic_pixels_flagged"] = bootstrap_mean([r["flagged"] for r in authentic])
        level = image_level_summary(
            np.array([r["score"] for r in chosen]), np.array([r["tampered"] for r in chosen]), threshold=0.5
        )
        entry["image_auc"] = round(float(level["auc"]), 4)
        if rule != "learned":
            entry["against_learned"] = {
                m: paired(rows, rule, m, lambda r: r["source"] == "casia" and r["tampered"])
                for m in ("f1", "best_f1", "auc")
            }
        out[rule] = entry
    forgeries = [r for r in rows if r["rule"] == "learned" and r["tampered"]]
    authentic = [r for r in rows if r["rule"] == "learned" and not r["tampered"]]
    out["dq_applies"] = {
        "forgeries": sum(r["dq_applies"] for r in forgeries),
        "of_forgeries": len(forgeries),
        "authentic": sum(r["dq_applies"] for r in authentic),
        "of_authentic": len(authentic),
    }
    twice = [r for r in forgeries + authentic if r["dq_applies"]]
    out["dq_image_level"] = {
        "rule": "image score = share of the dq map over 0.5, among the images it applies to",
        "forgeries": sum(r["tampered"] for r in twice),
        "authentic": sum(not r["tampered"] for r in twice),
        "image_auc": round(float(image_level_summary(
            np.array([r["dq_share"] for r in twice]), np.array([r["tampered"] for r in twice]), threshold=0.5
        )["auc"]), 4),
    }  # fmt: skip
    return out


def camera_summary(rows: list[dict]) -> dict:
    out: dict = {}
    for spec in CAMERA_DISTORTIONS:
        for rule in RULES:
            chosen = [r for r in rows if r["distortion"] == spec and r["rule"] == rule]
            entry = {m: bootstrap_mean([r[m] for r in chosen]) for m in ("f1", "best_f1", "auc")}
            if rule != "learned":
                entry["auc_against_learned"] = paired(rows, rule, "auc", lambda r, s=spec: r["distortion"] == s)
            out.setdefault(spec, {})[rule] = entry
        out[spec]["dq_applies"] = sum(
            r["dq_applies"] for r in rows if r["distortion"] == spec and r["rule"] == "learned"
        )
    return out


def markdown(results: dict) -> str:
    def cell(figure: dict) -> str:
        return "-" if figure["mean"] is None else f"{figure['mean']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"

    casia = results["casia"]
    applies = casia["dq_applies"]
    lines = [
        "# Fused maps (benchmarks/fusion.py)",
        "",
        f"Processor: {results['processor']['model']}. Learned map: what `--model auto` runs, whole images.",
        f"dq applies to {applies['forgeries']} of {applies['of_forgeries']} casia1-dev forgeries and "
        f"{applies['authentic']} of {applies['of_authentic']} authentic photos.",
        "",
        "## casia1-dev (per image, 95% intervals over images; rules chosen here)",
        "",
        "| rule | F1 at 0.5 | best-threshold F1 | AUC | splices AUC | copy-moves AUC | authentic pixels > 0.5 | image AUC | AUC vs learned |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        e = casia[rule]
        delta = cell(e["against_learned"]["auc"]) if "against_learned" in e else "-"
        lines.append(
            f"| {rule} | {cell(e['all']['f1'])} | {cell(e['all']['best_f1'])} | {cell(e['all']['auc'])} | "
            f"{e['splice']['auc']['mean']:.3f} | {e['copy-move']['auc']['mean']:.3f} | "
            f"{e['authentic_pixels_flagged']['mean']:.3f} | {e['image_auc']:.3f} | {delta} |"
        )
    level = casia["dq_image_level"]
    lines += [
        "",
        f"Image level, among the {level['forgeries']} forgeries and {level['authentic']} authentic photos the dq model "
        f"applies to: the share of its map over 0.5 as the image score gives image AUC {level['image_auc']:.3f}.",
    ]
    lines += ["", "## Camera-size set (AUC per image; 12 edits of 1536 px)", ""]
    lines += ["| rule | " + " | ".join(CAMERA_DISTORTIONS) + " |", "|---|" + "---|" * len(CAMERA_DISTORTIONS)]
    for rule in RULES:
        lines.append(
            f"| {rule} | " + " | ".join(cell(results["camera"][s][rule]["auc"]) for s in CAMERA_DISTORTIONS) + " |"
        )
    lines.append("")
    lines.append(
        "dq applies to " + ", ".join(f"{results['camera'][s]['dq_applies']} ({s})" for s in CAMERA_DISTORTIONS)
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--casia", type=Path, default=SHARED / "real" / "casia1-dev")
    parser.add_argument("--photos-large", type=Path, default=SHARED / "photos-large")
    parser.add_argument("--camera-images", type=int, default=12, help="edits of the camera-size set measured")
    parser.add_argument(
        "--camera-work", type=Path, default=ROOT / "runs" / "real", help="where real.py keeps the camera-size set"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "fusion")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fusion")
    args = parser.parse_args(argv)
    for folder in (args.casia, args.photos_large):
        if not folder.is_dir():
            parser.error(f"{folder}: no such folder")
    args.work.mkdir(parents=True, exist_ok=True)
    casia, skipped = casia_rows(args)
    results = {
        "processor": processor(),
        "rules": list(RULES),
        "casia": casia_summary(casia),
        "skipped": skipped,
        "camera": camera_summary(camera_rows(args)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "fusion.json", results, indent=1, allow_nan=False)
    (args.out / "fusion.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
