"""Does a restorer restore? PSNR and SSIM of its output against the lossless photo, next to its
JPEG input's, per JPEG quality, on photos never trained on (issue 46).

    python benchmarks/restoration.py                                  # pretrained:reloc + classical
    python benchmarks/restoration.py --restorer jpeg=runs/release/restorer-jpeg --no-classical

Photos: the release recipe's ``held_out`` test photos and scikit-image's lossless colour
photos (``reloc.release.measure.test_photos``, the model cards' test photos), each as its
centre crop of at most :data:`SIDE` x :data:`SIDE` px (whole where smaller). Each crop is
JPEG-compressed at every quality of :data:`QUALITIES` (Pillow / libjpeg, 4:2:0, as training's
``jpeg:Q``: ``reloc.data.distortions.encode_jpeg``) and given to each restorer; output and
input are compared with the crop as 8-bit RGB images (the output rounded to 8 bits, as a
saved image would be): scikit-image's ``peak_signal_noise_ratio`` and
``structural_similarity`` (data range 255, SSIM on the three channels with its default
7 x 7 uniform window). The gain of a restorer is its figure minus the JPEG input's, per photo;
the table gives its mean over photos with a 95% percentile bootstrap interval over photos
(``reloc.release.measure.bootstrap_interval``, the cards' resampling).

Restorers: ``--restorer LABEL=PATH`` (repeatable; a run folder, a weights file or
``pretrained:NAME``: ``reloc.runs.resolve_weights``), default ``reloc=pretrained:reloc``; each
runs in fp32 on the CPU through the inference pipeline's restorer windowing
(``reloc.engine.inference.Pipeline.restore_image``: the window its file records, else 512 px),
so larger photos would fit. Beside them a classical baseline (unless ``--no-classical``): the
best of :data:`CLASSICAL` by mean PSNR gain at QF 75 and 90 on the centre crops of
:data:`TUNING_PHOTOS`, training photos of the recipe (never the test photos); every
candidate's tuning figures are recorded. Targets (issue 46): :data:`TARGETS`.

Rows of restorers not measured in this invocation are kept from the results file when it
was made on the same photos, crop and qualities: a new restorer's row is added without
measuring the others again. Writes ``--out`` (JSON) and the same name with ``.md``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from reloc.io_utils import write_json_atomic, write_text_atomic
from reloc.release.measure import bootstrap_interval, test_photo_names, test_photos
from reloc.release.provenance import git_commit, read_results

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "restoration" / "restoration.json"
QUALITIES = (50, 60, 75, 90, 95)
SIDE = 512
#: issue 46's targets: mean PSNR gain (dB) over the JPEG input on unseen photos, by quality
TARGETS = {75: 0.8, 90: 0.5}
MOONSHOT = {75: 1.0}
SEED = 0
#: training photos of the recipe (never held out) on which the classical baseline is chosen
TUNING_PHOTOS = ("kodak/kodim01.png", "wikipedia/010.png", "urban100/img_010.png")
TUNING_QUALITIES = (75, 90)

Restore = Callable[[np.ndarray], np.ndarray]


# --- pure pieces ----------------------------------------------------------------------------
def center_crop(image: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The centre ``min(side, H) x min(side, W)`` crop of an ``(H, W, C)`` image."""
    height, width = image.shape[:2]
    h, w = min(side, height), min(side, width)
    top, left = (height - h) // 2, (width - w) // 2
    return image[top : top + h, left : left + w]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8 RGB) through JPEG at ``quality``, decoded back to uint8 RGB."""
    from reloc.data.distortions import encode_jpeg

    return np.asarray(Image.open(io.BytesIO(encode_jpeg(image, quality))).convert("RGB"))


def figures(reference: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """``{"psnr", "ssim"}`` of uint8 RGB ``image`` against ``reference`` (data range 255)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return {
        "psnr": float(peak_signal_noise_ratio(reference, image, data_range=255)),
        "ssim": float(structural_similarity(reference, image, data_range=255, channel_axis=2)),
    }


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] rounded to uint8 (a uint8 image as it is)."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def measure(
    photos: dict[str, np.ndarray], qualities: tuple[int, ...], restorers: dict[str, Restore]
) -> dict[str, dict[str, list[dict]]]:
    """Per-photo figures: ``{"jpeg" and each restorer's label: {str(quality): [{"photo",
    "psnr", "ssim"}, ...]}}``, the photos in the order given; each restorer gets the JPEG of
    each photo (uint8 RGB) and returns the restored image (uint8, or float in [0, 1])."""
    rows: dict[str, dict[str, list[dict]]] = {label: {} for label in ("jpeg", *restorers)}
    for quality in qualities:
        for name, photo in photos.items():
            compressed = jpeg(photo, quality)
            rows["jpeg"].setdefault(str(quality), []).append({"photo": name, **figures(photo, compressed)})
            for label, restore in restorers.items():
                restored = to_uint8(restore(compressed))
                rows[label].setdefault(str(quality), []).append({"photo": name, **figures(photo, restored)})
    return rows


def summarise(rows: list[dict], baseline: list[dict], seed: int = SEED) -> dict:
    """Means of ``rows`` (one restorer at one quality) and their gains over ``baseline`` (the
    JPEG input's rows, the same photos), each gain with its 95% bootstrap interval over photos.

    Raises:
        ValueError: the two lists are not of the same photos in the same order.
    """
    if [row["photo"] for row in rows] != [row["photo"] for row in baseline]:
        raise ValueError("a restorer's rows and the JPEG input's are not of the same photos")
    summary: dict = {"photos": len(rows)}
    for metric in ("psnr", "ssim"):
        gains = [row[metric] - base[metric] for row, base in zip(rows, baseline, strict=True)]
        summary[metric] = round(float(np.mean([row[metric] for row in rows])), 4)
        summary[f"{metric}_gain"] = round(float(np.mean(gains)), 4)
        summary[f"{metric}_gain_interval"] = bootstrap_interval(gains, np.random.default_rng(seed))
        summary[f"{metric}_gain_photos_above_zero"] = int(sum(gain > 0 for gain in gains))
    return summary


def verdict(quality: int, psnr_gain: float) -> str:
    """Against issue 46's target at ``quality`` (:data:`TARGETS`; ``""`` where there is none)."""
    target = TARGETS.get(quality)
    if target is None:
        return ""
    moonshot = MOONSHOT.get(quality)
    if moonshot is not None and psnr_gain >= moonshot:
        return f"moonshot met (>= +{moonshot} dB)"
    return f"{'met' if psnr_gain >= target else 'missed'} (>= +{target} dB)"


# --- restorers ------------------------------------------------------------------------------
def learned_restorer(source: str) -> tuple[Restore, dict]:
    """A restorer from a run folder, weights file or ``pretrained:NAME``, in fp32 on the CPU
    in the pipeline's restorer windows, and its provenance."""
    import torch

    from reloc.engine.inference import Pipeline
    from reloc.engine.localize import sha256_file
    from reloc.models.weights import load_network, read_window
    from reloc.runs import resolve_weights

    weights = resolve_weights(source, "restorer")
    window = read_window(weights)
    # the localizer is never run: restore_image uses the restorer alone
    pipeline = Pipeline(load_network(weights), torch.nn.Identity(), precision="fp32", restore_window=window).eval()

    def restore(image: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)  # uint8 (3, H, W), writable
        return pipeline.restore_image(tensor).permute(1, 2, 0).numpy()

    path = Path(weights).resolve()
    shown = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    provenance = {
        "source": source,
        "weights": shown,
        "sha256": sha256_file(weights),
        "window": list(pipeline.restore_window or pipeline.window),
        "precision": "fp32",
    }
    return restore, provenance


def _nlm(h: float) -> Restore:
    def restore(image: np.ndarray) -> np.ndarray:
        import cv2

        cv2.setNumThreads(1)
        bgr = np.ascontiguousarray(image[..., ::-1])
        return cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)[..., ::-1]

    return restore


def _tv(weight: float) -> Restore:
    def restore(image: np.ndarray) -> np.ndarray:
        from skimage.restoration import denoise_tv_chambolle

        return denoise_tv_chambolle(image.astype(np.float64) / 255.0, weight=weight, channel_axis=-1)

    return restore


def _bilateral(sigma_color: float, sigma_spatial: float) -> Restore:
    def restore(image: np.ndarray) -> np.ndarray:
        from skimage.restoration import denoise_bilateral

        return denoise_bilateral(
            image.astype(np.float64) / 255.0, sigma_color=sigma_color, sigma_spatial=sigma_spatial, channel_axis=-1
        )

    return restore


#: classical candidates (installed libraries), the baseline chosen among them on training photos
CLASSICAL: dict[str, tuple[str, Restore]] = {
    "nlm-h2": ("cv2.fastNlMeansDenoisingColored(h=2, hColor=2, template 7, search 21)", _nlm(2)),
    "nlm-h3": ("cv2.fastNlMeansDenoisingColored(h=3, hColor=3, template 7, search 21)", _nlm(3)),
    "nlm-h5": ("cv2.fastNlMeansDenoisingColored(h=5, hColor=5, template 7, search 21)", _nlm(5)),
    "tv-0.005": ("skimage.restoration.denoise_tv_chambolle(weight=0.005)", _tv(0.005)),
    "tv-0.01": ("skimage.restoration.denoise_tv_chambolle(weight=0.01)", _tv(0.01)),
    "tv-0.03": ("skimage.restoration.denoise_tv_chambolle(weight=0.03)", _tv(0.03)),
    "bilateral": ("skimage.restoration.denoise_bilateral(sigma_color=0.03, sigma_spatial=1)", _bilateral(0.03, 1.0)),
}


def load_photo(path: str | Path, side: int) -> np.ndarray:
    return center_crop(np.asarray(Image.open(path).convert("RGB")), side)


def choose_classical(side: int) -> dict:
    """Every :data:`CLASSICAL` candidate's mean PSNR gain at :data:`TUNING_QUALITIES` on the
    :data:`TUNING_PHOTOS` (checked not held out) and the best one."""
    from reloc.release.recipe import load_recipe, photo_split

    root, training, held_out = photo_split(load_recipe("cpu"))
    paths = [root / name for name in TUNING_PHOTOS]
    held = {p.resolve() for p in held_out}
    for path in paths:
        if path.resolve() in held or path.resolve() not in {p.resolve() for p in training}:
            raise SystemExit(f"error: tuning photo {path} is not one of the recipe's training photos")
    photos = {name: load_photo(path, side) for name, path in zip(TUNING_PHOTOS, paths, strict=True)}
    candidates = {name: restore for name, (_, restore) in CLASSICAL.items()}
    rows = measure(photos, TUNING_QUALITIES, candidates)
    trials = {}
    for name in CLASSICAL:
        gains = {str(q): summarise(rows[name][str(q)], rows["jpeg"][str(q)])["psnr_gain"] for q in TUNING_QUALITIES}
        trials[name] = {
            "method": CLASSICAL[name][0],
            "psnr_gain": gains,
            "mean": round(float(np.mean(list(gains.values()))), 4),
        }
    best = max(trials, key=lambda name: trials[name]["mean"])
    return {
        "chosen": best,
        "method": CLASSICAL[best][0],
        "photos": list(TUNING_PHOTOS),
        "qualities": list(TUNING_QUALITIES),
        "trials": trials,
    }


# --- the report -----------------------------------------------------------------------------
def interval(values: list[float] | None, digits: int) -> str:
    return "n/a" if values is None else f"{values[0]:+.{digits}f} to {values[1]:+.{digits}f}"


def markdown(results: dict) -> str:
    """The results as a Markdown page: one table per restorer, the JPEG input beside it."""
    protocol = results["protocol"]
    lines = [
        "# Restoration: PSNR / SSIM gain over the JPEG input",
        "",
        f"`{results['command']}` (commit {results['commit']}); processor: {results['processor']}.",
        f"{len(protocol['photos'])} photos never trained on ({protocol['photos_are']}), {protocol['crop']}; "
        f"{protocol['metrics']}. Gains: mean over photos of (output - JPEG input), 95% bootstrap interval "
        f"over photos; targets (issue 46): " + ", ".join(f"+{t} dB at QF {q}" for q, t in TARGETS.items()) + ".",
        "",
    ]
    for label, row in results["restorers"].items():
        lines += [f"## {label}", "", f"{row['description']}.", ""]
        lines += [
            "| QF | JPEG PSNR | output PSNR | PSNR gain (95%) | photos gaining | JPEG SSIM | output SSIM | SSIM gain (95%) | target |",
            "| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |",
        ]
        for quality in protocol["qualities"]:
            s, base = row["summary"][str(quality)], results["jpeg"][str(quality)]
            lines.append(
                f"| {quality} | {base['psnr']:.2f} | {s['psnr']:.2f} | {s['psnr_gain']:+.3f} ({interval(s['psnr_gain_interval'], 3)}) "
                f"| {s['psnr_gain_photos_above_zero']}/{s['photos']} | {base['ssim']:.4f} | {s['ssim']:.4f} "
                f"| {s['ssim_gain']:+.4f} ({interval(s['ssim_gain_interval'], 4)}) | {verdict(quality, s['psnr_gain'])} |"
            )
        lines.append("")
    if results.get("classical_choice"):
        choice = results["classical_choice"]
        lines += [
            "## How the classical baseline was chosen",
            "",
            f"Mean PSNR gain at QF {', '.join(map(str, choice['qualities']))} on the centre crops of "
            f"{', '.join(choice['photos'])} (training photos of the recipe, not test photos): "
            f"`{choice['chosen']}` chosen.",
            "",
            "| candidate | method | " + " | ".join(f"QF {q}" for q in choice["qualities"]) + " | mean |",
            "| --- | --- | " + " | ".join("---:" for _ in choice["qualities"]) + " | ---: |",
        ]
        for name, trial in choice["trials"].items():
            gains = " | ".join(f"{trial['psnr_gain'][str(q)]:+.3f}" for q in choice["qualities"])
            lines.append(f"| `{name}` | {trial['method']} | {gains} | {trial['mean']:+.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--restorer", action="append", default=[], metavar="LABEL=PATH", help="a restorer to measure (repeatable)"
    )
    parser.add_argument("--no-classical", action="store_true", help="leave the classical baseline as recorded")
    parser.add_argument("--side", type=int, default=SIDE, help="centre crops of at most this side")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import torch

    from reloc.precision import cpu_model

    specs = args.restorer or ["reloc=pretrained:reloc"]
    sources = {}
    for spec in specs:
        label, sep, source = spec.partition("=")
        if not sep or not label or not source:
            raise SystemExit(f"error: --restorer {spec!r}: expected LABEL=PATH")
        sources[label] = source
    photos = {name: load_photo(path, args.side) for name, path in zip(test_photo_names(), test_photos(), strict=True)}
    protocol = {
        "photos": list(photos),
        "photos_are": "the release recipe's held-out test photos and scikit-image's lossless colour photos",
        "crop": f"centre crops of at most {args.side} x {args.side} px",
        "crop_sizes": {name: list(photo.shape[:2]) for name, photo in photos.items()},
        "qualities": list(QUALITIES),
        "jpeg": "Pillow / libjpeg, 4:2:0 chroma (reloc.data.distortions.encode_jpeg, training's jpeg:Q)",
        "metrics": "RGB PSNR and SSIM of 8-bit images (scikit-image, data range 255, SSIM's 7 x 7 uniform window)",
    }
    previous = read_results(args.out, {}) if args.out.is_file() else {}
    kept = previous.get("restorers", {}) if previous.get("protocol") == protocol else {}
    restorers: dict[str, Restore] = {}
    described: dict[str, dict] = {}
    for label, source in sources.items():
        restorers[label], provenance = learned_restorer(source)
        described[label] = {
            **provenance,
            "description": f"learned restorer `{source}` ({provenance['weights']}), fp32, restorer window {provenance['window']}",
        }
    choice = previous.get("classical_choice") if kept else None
    if not args.no_classical:
        tick = time.perf_counter()
        choice = choose_classical(args.side)
        print(
            f"classical baseline: {choice['chosen']} ({choice['method']}), chosen in {time.perf_counter() - tick:.0f} s",
            flush=True,
        )
        label = f"classical:{choice['chosen']}"
        restorers[label] = CLASSICAL[choice["chosen"]][1]
        described[label] = {
            "method": choice["method"],
            "description": f"classical baseline {choice['method']}, chosen on training photos (below)",
        }
        kept = {name: row for name, row in kept.items() if not name.startswith("classical:")}
    tick = time.perf_counter()
    rows = measure(photos, QUALITIES, restorers)
    print(
        f"measured {len(photos)} photos x {len(QUALITIES)} qualities in {time.perf_counter() - tick:.0f} s", flush=True
    )
    jpeg_summary = {
        str(q): {m: round(float(np.mean([r[m] for r in rows["jpeg"][str(q)]])), 4) for m in ("psnr", "ssim")}
        for q in QUALITIES
    }
    measured = {}
    for label in restorers:
        summary = {str(q): summarise(rows[label][str(q)], rows["jpeg"][str(q)]) for q in QUALITIES}
        measured[label] = {**described[label], "summary": summary, "per_photo": rows[label], "commit": git_commit()}
        for q in QUALITIES:
            s = summary[str(q)]
            print(
                f"{label} QF {q}: PSNR {s['psnr']:.2f} ({s['psnr_gain']:+.3f} dB, {interval(s['psnr_gain_interval'], 3)}) SSIM gain {s['ssim_gain']:+.4f} {verdict(q, s['psnr_gain'])}"
            )
    results = {
        "benchmark": "restoration (issue 46)",
        "command": " ".join(["python benchmarks/restoration.py", *(argv if argv is not None else sys.argv[1:])]),
        "commit": git_commit(),
        "processor": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "protocol": protocol,
        "targets_psnr_gain_db": {str(q): t for q, t in TARGETS.items()},
        "jpeg": jpeg_summary,
        "jpeg_per_photo": rows["jpeg"],
        "restorers": {**kept, **measured},
        "classical_choice": choice,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, results, indent=1, allow_nan=False)
    write_text_atomic(args.out.with_suffix(".md"), markdown(results))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
