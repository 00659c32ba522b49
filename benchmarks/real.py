"""Real forgeries and camera-sized photos: what the shipped models do on what users bring.

    python benchmarks/real.py                      # every part -> benchmarks/results/real/real.json + real.md
    python benchmarks/real.py --parts casia        # one part (casia, windows, camera, seam, timing)

Parts (each resumes from its per-image records under ``--work``; a finished part is not
measured again unless ``--again``):

- ``casia``: ``../shared/real/casia1-dev`` as distributed (no distortion), every shipped
  model and what ``--model auto`` picks per file, per-image F1 / IoU / AUC under the paper
  protocol (threshold 0.5) and F1 at the best threshold per image, splices (``Sp_D_*``)
  and copy-moves (``Sp_S_*``) apart, with 95% bootstrap intervals over images.
- ``windows``: the camera-size set (``reloc synth --size 1536 --no-enlarge-hosts`` on
  ``../shared/photos-large``) through each inference mode of :data:`MODES` for each model
  at the distortions of :data:`WINDOW_DISTORTIONS`: the evidence the default window is
  chosen on.
- ``camera``: the camera-size set plain, at JPEG QF 70 / 80 / 90 / 95 and on the
  ``social`` grid, each model in the default inference mode, and what ``--model auto``
  runs (routed by the JPEG quality read from the encoded file, as ``reloc localize`` does).
- ``seam``: the mean absolute jump of the probability across 512-px tile borders against
  the same between neighbouring pixels elsewhere, on the large photos as they are
  (authentic) and on the camera-size set's tampered images, for each mode.
- ``timing``: wall time and peak RSS of ``reloc localize`` with its defaults on one
  12-megapixel JPEG, in fp32 and, where the processor has it, bf16.

One training seed per model: the intervals cover the images, not retraining.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from reloc import pretrained
from reloc.data.catalog import load_dataset, load_pair
from reloc.data.distortions import encode_jpeg, jpeg_quality_from_file, parse_distortion
from reloc.data.io import ImageError, read_image
from reloc.engine.inference import GRID, Pipeline, retain_freed_memory
from reloc.engine.model_choice import ModelChooser
from reloc.io_utils import write_json_atomic
from reloc.metrics import LocalizationMetrics
from reloc.precision import cpu_flags, cpu_has_bf16, cpu_model
from reloc.release.measure import bootstrap_interval
from reloc.release.provenance import read_results

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = pretrained.NAMES
MODES: dict[str, dict[str, object]] = {
    "tiles-512": {"window": 512, "stride": 512, "blend": "mean"},
    "tiles-512-256": {"window": 512, "stride": 256, "blend": "taper"},
    "tiles-1024-768": {"window": 1024, "stride": 768, "blend": "taper"},
    "whole": {"window": None, "stride": None, "blend": "taper"},
    "default": {"window": "recorded", "stride": None, "blend": "taper"},
}
"""Inference modes: the localizer's window, stride and blend (``whole``: one pass;
``default``: what the weights record, as ``reloc localize`` runs them)."""
WINDOW_MODES = ("tiles-512", "tiles-512-256", "tiles-1024-768", "whole")
SEAM_MODES = ("tiles-512", "tiles-512-256", "default")
WINDOW_DISTORTIONS = ("none", "jpeg:90")
WINDOW_MODELS = ("plain", "robust")
"""The window study's models: the two DFCN localizers (``reloc``'s is one too, behind its restorer)."""
CAMERA_DISTORTIONS = ("none", "jpeg:70", "jpeg:80", "jpeg:90", "jpeg:95", "social:2048", "social:1024", "social:512")
TILE = 512


def bootstrap_mean(values: list[float], seed: int = 0) -> dict[str, float | int | None]:
    """Mean of the finite ``values`` and its 95% interval over images
    (:func:`reloc.release.measure.bootstrap_interval`, the model cards' resampling)."""
    data = [v for v in values if v is not None and np.isfinite(v)]
    if not data:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = round(float(np.mean(data)), 4)
    low, high = bootstrap_interval(data, np.random.default_rng(seed)) or [mean, mean]
    return {"mean": mean, "low": low, "high": high, "n": len(data)}


def image_scores(probabilities: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Per-image F1 / IoU / AUC (paper protocol) and F1 at the best threshold of one map."""
    paper = LocalizationMetrics(pooled_auc=False).update(probabilities, mask)
    best = LocalizationMetrics(pooled_auc=False, protocol="best-threshold").update(probabilities, mask)
    return {"f1": paper["f1"], "iou": paper["iou"], "auc": paper["auc"], "best_f1": best["f1"]}


def predict(pipeline: Pipeline, image: np.ndarray, mode: str) -> np.ndarray:
    """``(H, W)`` probabilities of a uint8 ``(H, W, 3)`` image in inference ``mode`` of :data:`MODES`."""
    settings = MODES[mode]
    pipeline.blend = settings["blend"]
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if settings["window"] == "recorded":
        return pipeline.predict(tensor).numpy()
    if settings["window"] is None:
        side = max(image.shape[:2])
        return pipeline.predict(tensor, window=side, stride=side).numpy()
    return pipeline.predict(tensor, window=settings["window"], stride=settings["stride"]).numpy()


class Records:
    """Per-image records of one part, appended to a JSON Lines file as they are made (resume)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def add(self, row: dict) -> None:
        self.rows[row["key"]] = row
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, allow_nan=True) + "\n")

    def pair(self, key: str, ref) -> tuple[np.ndarray, np.ndarray] | None:
        """``(image, mask)`` of ``ref`` (``load_pair``), or ``None`` once ``key`` is recorded as
        skipped with the reason (a mis-sized or unreadable mask: named, not scored)."""
        try:
            return load_pair(ref)
        except ImageError as error:
            self.add({"key": key, "skipped": error.reason})
            return None


def summarize(rows: list[dict], metrics=("f1", "iou", "auc", "best_f1")) -> dict[str, dict]:
    """Bootstrap means of each metric over ``rows``."""
    return {metric: bootstrap_mean([row[metric] for row in rows]) for metric in metrics}


def chooser() -> ModelChooser:
    return ModelChooser.from_option("auto", precision="fp32")


def casia_part(args, work: Path) -> dict:
    """Every shipped model and ``--model auto`` on casia1-dev's forgeries as distributed."""
    refs = [ref for ref in load_dataset(args.casia) if ref.mask is not None]
    records = Records(work / "casia.jsonl")
    models = chooser()
    skipped = []
    for ref in tqdm(refs, desc="casia1-dev", unit="image"):
        try:
            image, mask = load_pair(ref)
        except ImageError as error:  # a mis-sized or unreadable mask: named in the results, not scored
            skipped.append({"file": str(error.path), "reason": error.reason})
            print(f"skipped {error.path}: {error.reason}", file=sys.stderr)
            continue
        image = (image * 255).round().astype(np.uint8)
        for model in MODELS:
            key = f"{model}/{Path(ref.image).name}"
            if key in records:
                continue
            scores = image_scores(predict(models.pipeline(model), image, "whole"), mask > 0.5)
            records.add({"key": key, "model": model, "image": Path(ref.image).name,
                         "quality": jpeg_quality_from_file(ref.image), **scores})  # fmt: skip
    rows = list(records.rows.values())
    for row in rows:  # the rule as it is now (routing.json), from the quality each file carries
        row["auto"] = pretrained.choose(row["quality"]).name
    kinds = {"all": "", "splice": "Sp_D_", "copy-move": "Sp_S_"}
    table: dict[str, dict] = {}
    for model in (*MODELS, "auto"):
        chosen = [r for r in rows if (r["model"] == r["auto"] if model == "auto" else r["model"] == model)]
        table[model] = {
            kind: summarize([r for r in chosen if r["image"].startswith(prefix)]) for kind, prefix in kinds.items()
        }
        if model == "auto":
            table[model]["picked"] = {m: sum(r["model"] == m for r in chosen) for m in MODELS}
    by_quality = {}
    for quality in sorted({r["quality"] for r in rows}):
        by_quality[str(quality)] = {
            m: summarize([r for r in rows if r["model"] == m and r["quality"] == quality], ("auc", "f1"))
            for m in MODELS
        }
    return {"images": len(refs) - len(skipped), "skipped": skipped, "table": table, "by_jpeg_quality": by_quality}


def camera_refs(args, work: Path) -> list:
    """The camera-size set, made by ``reloc synth`` into ``work`` when missing."""
    folder = work / "camera-set"
    if not (folder / "manifest.json").is_file():
        command = [sys.executable, "-m", "reloc", "synth", "--out", str(folder), "--photos", str(args.photos_large), "--count", "48",
                   "--size", "1536", "--no-enlarge-hosts", "--seed", "42"]  # fmt: skip
        subprocess.run(command, check=True)
    return load_dataset(folder)[: args.camera_images]


def distorted(image: np.ndarray, spec: str, index: int) -> tuple[np.ndarray, int | None]:
    """The image after ``spec`` (seeded per image) as uint8, and the JPEG quality a file of it carries."""
    if spec == "none":
        return image, None
    if spec.startswith("jpeg:"):  # encoded once: the file a user holds, read back
        data = encode_jpeg(image, int(spec.split(":")[1]))
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), jpeg_quality_from_file(data)
    out = parse_distortion(spec)(image.astype(np.float32) / 255.0, np.random.default_rng([7, index]))
    return (out * 255).round().astype(np.uint8), None


def camera_part(
    args,
    work: Path,
    distortions: tuple[str, ...],
    modes: tuple[str, ...],
    name: str,
    models_measured=MODELS,
    images=None,
) -> dict:
    """Each model x mode x distortion on the camera-size set, per-image records resumed."""
    refs = camera_refs(args, work)[:images]
    records = Records(work / f"{name}.jsonl")
    models = chooser()
    for index, ref in enumerate(tqdm(refs, desc=name, unit="image")):
        plain, mask = load_pair(ref)
        plain = (plain * 255).round().astype(np.uint8)
        truth = mask > 0.5
        for spec in distortions:
            keys = [f"{spec}/{model}/{mode}/{index}" for model in models_measured for mode in modes]
            if all(key in records for key in keys):
                continue
            image, quality = distorted(plain, spec, index)
            routed = spec == "none" or spec.startswith("jpeg:")  # a file a user holds: PNG or JPEG
            for model in models_measured:
                for mode in modes:
                    key = f"{spec}/{model}/{mode}/{index}"
                    if key not in records:
                        scores = image_scores(predict(models.pipeline(model), image, mode), truth)
                        records.add({"key": key, "distortion": spec, "model": model, "mode": mode,
                                     "routed": routed, "quality": quality, **scores})  # fmt: skip
    rows = list(records.rows.values())
    for row in rows:  # social: the upsampled image is no file a user holds, so no --model auto row
        row["auto"] = pretrained.choose(row["quality"]).name if row.get("routed") else None
    table: dict[str, dict] = {}
    for spec in distortions:
        for mode in modes:
            for model in (*models_measured, "auto") if name == "camera" else models_measured:
                chosen = [r for r in rows if r["distortion"] == spec and r["mode"] == mode
                          and (r["model"] == r["auto"] if model == "auto" else r["model"] == model)]  # fmt: skip
                if chosen:
                    table.setdefault(spec, {}).setdefault(mode, {})[model] = summarize(chosen)
    return {"images": len(refs), "size": 1536, "models": list(models_measured), "table": table}


def border_columns(length: int, mode: str) -> list[int]:
    """Positions ``x`` where window edges fall (the jump between ``x - 1`` and ``x``): the
    mode's own windows, or the 512-px tiles' for a whole-image pass (for comparison)."""
    from reloc.engine.inference import window_origins

    settings = MODES[mode]
    whole = not isinstance(settings["window"], int)  # whole, or as recorded (whole up to the budget)
    side, stride = (TILE, TILE) if whole else (settings["window"], settings["stride"])
    origins = window_origins(length, side, stride)
    edges = {o for o in origins[1:]} | {o + side for o in origins[:-1]}
    return sorted(e for e in edges if 0 < e < length)


def seam_figures(probabilities: np.ndarray, mode: str) -> tuple[float, float]:
    """(mean |jump| across window edges, mean |jump| across the other 8-px JPEG block edges), both
    axes. Window edges lie on the block grid, where a JPEG's maps jump more than inside
    blocks, so they are compared with the other block edges, not with every pixel."""
    seam, inside = [], []
    for axis_map in (probabilities, probabilities.T):
        jumps = np.abs(np.diff(axis_map.astype(np.float64), axis=1))  # jumps[:, x - 1] is between x - 1 and x
        edges = np.array(border_columns(axis_map.shape[1], mode), dtype=int) - 1
        keep = np.zeros(jumps.shape[1], dtype=bool)
        keep[GRID - 1 :: GRID] = True  # x a multiple of 8
        keep[edges] = False
        if edges.size:
            seam.append(jumps[:, edges].ravel())
        inside.append(jumps[:, keep].ravel())
    seams = np.concatenate(seam) if seam else np.zeros(0)
    return (float(seams.mean()) if seams.size else float("nan"), float(np.concatenate(inside).mean()))


def seam_part(args, work: Path) -> dict:
    """Seam figures on authentic large photos (as they are) and on tampered camera-size images."""
    records = Records(work / "seam.jsonl")
    models = chooser()
    authentic = sorted(p for p in Path(args.photos_large).glob("*.jpg"))[: args.seam_images]
    tampered = [ref.image for ref in camera_refs(args, work)][: args.seam_images]
    for kind, files in (("authentic", authentic), ("tampered", tampered)):
        for path in tqdm(files, desc=f"seam {kind}", unit="image"):
            image = read_image(path, compact=True)
            pipeline, facts = models.choose(path)
            for mode in SEAM_MODES:
                key = f"{kind}/{mode}/{Path(path).name}"
                if key not in records:
                    seam, inside = seam_figures(predict(pipeline, image, mode), mode)
                    records.add(
                        {
                            "key": key,
                            "kind": kind,
                            "mode": mode,
                            "model": facts["model"],
                            "seam": seam,
                            "inside": inside,
                        }
                    )
    table: dict[str, dict] = {}
    for kind in ("authentic", "tampered"):
        for mode in SEAM_MODES:
            rows = [r for r in records.rows.values() if r["kind"] == kind and r["mode"] == mode]
            seam, inside = float(np.nanmean([r["seam"] for r in rows])), float(np.mean([r["inside"] for r in rows]))
            table.setdefault(kind, {})[mode] = {"seam": round(seam, 5), "inside": round(inside, 5),
                                                "ratio": round(seam / inside, 3), "images": len(rows)}  # fmt: skip
    return {"table": table, "note": "jumps at the 512-px tile edges for a whole-image pass, for comparison"}


def timing_part(args, work: Path) -> dict:
    """``reloc localize`` defaults on one 12-megapixel JPEG: wall time and peak RSS per precision."""
    photo = work / "photo-12mp.jpg"
    if not photo.is_file():
        source = max(Path(args.photos_large).glob("*.jpg"), key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
        Image.open(source).convert("RGB").resize((4000, 3000), Image.LANCZOS).save(photo, quality=92)
    precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    rows = {}
    for precision in precisions:
        with tempfile.TemporaryDirectory() as out:
            command = ["/usr/bin/time", "-v", sys.executable, "-m", "reloc", "localize", str(photo), "--out", out,
                       "--precision", precision]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - started
            peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
            record = json.loads(next(Path(out).glob("photo-12mp.json")).read_text()) if done.returncode == 0 else {}
        rows[precision] = {"seconds": round(wall, 2), "localize_seconds": record.get("seconds"),
                           "peak_rss_gb": round(int(peak.group(1)) / 1e6, 3) if peak else None,
                           "model": record.get("model"), "inference": record.get("inference"),
                           "returncode": done.returncode}  # fmt: skip
    return {"image": "4000x3000 JPEG (quality 92)", "threads": torch.get_num_threads(), "rows": rows}


ROUTING = ROOT / "src" / "reloc" / "pretrained" / "routing.json"
MIN_ROUTING_IMAGES = 12
"""A quality whose measured set has fewer images does not get an entry of its own."""


def best_model(models: dict[str, dict]) -> str:
    """The model of the highest per-image AUC mean, then F1 (``{model: {"auc", "f1"}}`` of summaries)."""
    return max(models, key=lambda m: (models[m]["auc"]["mean"] or 0.0, models[m]["f1"]["mean"] or 0.0))


def route_part(results: dict) -> dict:
    """The ``--model auto`` rule from the ``casia`` and ``camera`` parts, written to ``routing.json``.

    Each measured JPEG quality (casia1-dev's files by their own quality; the camera-size set
    at each JPEG distortion) gets the model of the best per-image AUC there (then F1);
    files without JPEG tables get the best model on the camera-size set's PNGs (edits on
    photos with a JPEG history, saved losslessly). Chosen on the sets it is then measured
    on: a development estimate.
    """
    parts = results.get("parts", {})
    if "casia" not in parts or "camera" not in parts:
        raise SystemExit("error: the route part needs the casia and camera parts measured first")

    def figures(models: dict[str, dict]) -> dict[str, dict]:
        return {m: {"auc": v["auc"]["mean"], "f1": v["f1"]["mean"], "images": v["auc"]["n"]} for m, v in models.items()}

    entries = []
    for quality, models in parts["casia"]["by_jpeg_quality"].items():
        if min(v["auc"]["n"] for v in models.values()) >= MIN_ROUTING_IMAGES:
            entries.append({"quality": int(quality), "model": best_model(models),
                            "measured_on": f"casia1-dev's forgeries saved at QF {quality}", "figures": figures(models)})  # fmt: skip
    camera = parts["camera"]["table"]
    for spec, modes in camera.items():
        models = {m: v for m, v in modes["default"].items() if m in MODELS}
        if spec.startswith("jpeg:"):
            quality = int(spec.split(":")[1])
            entries.append({"quality": quality, "model": best_model(models),
                            "measured_on": f"camera-size edits saved at QF {quality}", "figures": figures(models)})  # fmt: skip
    plain = {m: v for m, v in camera["none"]["default"].items() if m in MODELS}
    rule = {
        "chosen_on": "benchmarks/results/real/real.json: casia1-dev as distributed and the camera-size set "
        "(development sets: the same images measure the rule, so its rows are optimistic)",
        "command": "python benchmarks/real.py --parts route",
        "metric": "per-image AUC (paper protocol), then F1 at 0.5",
        "no_jpeg": {"model": best_model(plain), "measured_on": "camera-size edits saved losslessly (PNG)",
                    "figures": figures(plain)},
        "jpeg": sorted(entries, key=lambda entry: entry["quality"]),
    }  # fmt: skip
    write_json_atomic(ROUTING, rule, indent=1, allow_nan=False)
    pretrained.routing.cache_clear()
    return {"routing": ROUTING.name, "rule": {str(e["quality"]): e["model"] for e in rule["jpeg"]},
            "no_jpeg": rule["no_jpeg"]["model"]}  # fmt: skip


def processor() -> dict[str, str]:
    """The CPU model and its bf16-relevant flags, as every timing records."""
    flags = cpu_flags()
    shown = " ".join(flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if flag in flags)
    return {"model": cpu_model(), "flags": shown, "threads": str(torch.get_num_threads())}


def cell(summary: dict | None) -> str:
    """``0.512 [0.480, 0.544]`` from a :func:`bootstrap_mean` result (``-`` when empty)."""
    if not summary or summary.get("mean") is None:
        return "-"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


def markdown(results: dict) -> str:
    """The result file's tables as Markdown (real data first, then the camera-size set)."""
    parts, lines = results.get("parts", {}), ["<!-- made by benchmarks/real.py from real.json; do not edit -->", ""]
    if "casia" in parts:
        casia = parts["casia"]
        lines += [f"### casia1-dev as distributed ({casia['images']} forgeries; per-image means, 95% intervals over images)", "",
                  "| model | kind | F1 (paper, 0.5) | IoU | AUC | F1 (best threshold) |", "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for model, kinds in casia["table"].items():
            for kind in ("all", "splice", "copy-move"):
                row = kinds[kind]
                lines.append(
                    f"| {model} | {kind} ({row['auc']['n']}) | {cell(row['f1'])} | {cell(row['iou'])} | {cell(row['auc'])} | {cell(row['best_f1'])} |"
                )
        picked = casia["table"]["auto"].get("picked", {})
        lines += ["", "`--model auto` ran " + ", ".join(f"`{m}` on {n}" for m, n in picked.items()) + " of the files."]
        lines += [f"Skipped (named): {item['file']}: {item['reason']}." for item in casia.get("skipped", [])]
        lines.append("")
    for name, title in (("camera", "Camera-size set"), ("windows", "Window study")):
        if name not in parts:
            continue
        part = parts[name]
        lines += [f"### {title} ({part['images']} synthetic edits of 1536 px on the large photos; AUC / F1, 95% intervals)", "",
                  "| distortion | mode | model | AUC | F1 | F1 (best threshold) |", "| --- | --- | --- | ---: | ---: | ---: |"]  # fmt: skip
        for spec, modes in part["table"].items():
            for mode, models in modes.items():
                for model, row in models.items():
                    lines.append(
                        f"| {spec} | {mode} | {model} | {cell(row['auc'])} | {cell(row['f1'])} | {cell(row['best_f1'])} |"
                    )
        lines.append("")
    if "seam" in parts:
        lines += ["### Seams (mean absolute jump of the probability across window edges / across the other 8-px block edges)", "",
                  "| images | mode | across window edges | across other block edges | ratio |", "| --- | --- | ---: | ---: | ---: |"]  # fmt: skip
        for kind, modes in parts["seam"]["table"].items():
            for mode, row in modes.items():
                lines.append(
                    f"| {kind} ({row['images']}) | {mode} | {row['seam']:.4f} | {row['inside']:.4f} | {row['ratio']:.2f} |"
                )
        lines.append("")
    if "timing" in parts:
        timing = parts["timing"]
        lines += [f"### One {timing['image']} through `reloc localize` defaults ({timing['processor']['model']}, {timing['threads']} threads)", "",
                  "| precision | wall time (s) | peak RSS (GB) | model | mode |", "| --- | ---: | ---: | --- | --- |"]  # fmt: skip
        for precision, row in timing["rows"].items():
            mode = (row.get("inference") or {}).get("mode", "-")
            lines.append(f"| {precision} | {row['seconds']} | {row['peak_rss_gb']} | {row['model']} | {mode} |")
        lines.append("")
    return "\n".join(lines)


PARTS = ("casia", "windows", "camera", "route", "seam", "timing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--casia", type=Path, default=SHARED / "real" / "casia1-dev")
    parser.add_argument("--photos-large", type=Path, default=SHARED / "photos-large")
    parser.add_argument("--camera-images", type=int, default=12, help="edits of the camera-size set measured")
    parser.add_argument("--window-images", type=int, default=6, help="edits of the window study")
    parser.add_argument("--seam-images", type=int, default=6, help="images per kind in the seam part")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "real")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real" / "real.json")
    parser.add_argument("--again", action="store_true", help="measure the chosen parts again")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    for folder in (args.casia, args.photos_large):
        if not folder.is_dir():
            parser.error(f"{folder}: no such folder")
    retain_freed_memory()
    args.work.mkdir(parents=True, exist_ok=True)
    results = read_results(args.out, default={})
    for part in parts:
        if part in results.get("parts", {}) and not args.again:
            continue
        started = time.perf_counter()
        if part == "casia":
            result = casia_part(args, args.work)
        elif part == "windows":
            result = camera_part(
                args, args.work, WINDOW_DISTORTIONS, WINDOW_MODES, "windows", WINDOW_MODELS, args.window_images
            )
        elif part == "camera":
            result = camera_part(args, args.work, CAMERA_DISTORTIONS, ("default",), "camera")
        elif part == "route":
            result = route_part(results)
        elif part == "seam":
            result = seam_part(args, args.work)
        else:
            result = timing_part(args, args.work)
        result.update(seconds=round(time.perf_counter() - started, 1), processor=processor())
        results.setdefault("parts", {})[part] = result
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, results, indent=1, allow_nan=False)
        args.out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
        print(f"{part}: done in {result['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
