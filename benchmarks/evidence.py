"""Classical evidence maps measured: speed on a 12-megapixel photo, reliability on casia1-dev.

    nice -n 10 python benchmarks/evidence.py [--casia ../shared/real/casia1-dev] [--limit N]

- **speed**: seconds of each method of :data:`reloc.evidence.METHODS` (median of
  ``--repeats``, wall and CPU time) on a 4000x3000 JPEG (quality 75, then 90) made from the
  largest photo of ``--photos`` (resized with Lanczos), with the processor (``/proc/cpuinfo``), its cores,
  OpenCV's thread count and the load average after the runs (the median and the best run
  are both kept: other work on a shared machine slows some runs). Targets: under 2 s per
  map, under 10 s for the copy-move matcher.
- **casia**: per-image F1 and AUC of each map against the masks (luminance >= 128),
  splices (``Sp_D_*``) and copy-moves (``Sp_S_*``, :func:`reloc.data.kinds.forgery_kind`)
  apart and together (``all``), under two metric protocols of
  :mod:`reloc.metrics`: ``paper`` (map > 0.5) and ``best-threshold`` (the oracle cut per
  image, the usual report for classical maps, an upper bound); a method that does not
  apply to an image scores an all-zero map there (counted in ``not_applicable``). On the
  authentic images (``Au``): the share where more than 1% of the pixels are above 0.5
  (``false_alarm_share``). A sample whose image or mask cannot be used (e.g. a mask of
  another size) is skipped, named and counted, as ``reloc eval`` does. ``seconds_per_image``:
  each map's seconds summed over the run, divided by all the images (the learned model ran
  on the tampered ones only).
- with ``--learned``: the same figures for the pretrained model as ``reloc localize`` runs it
  (``--model auto``) and for the fusion ``max(learned, clones)`` (:func:`reloc.evidence.fuse`:
  the learned map raised where the matcher found a copied region); a fusion must beat the
  learned map by 0.03 F1 over all tampered images to become a default; on the tampered
  images only (the networks take most of the time).

Writes ``benchmarks/results/evidence.json`` (``--out``), prints the table and, on a full run
(no ``--limit``; also from the kept section with ``--skip-casia``), writes the figures the package shows beside each map into
``src/reloc/evidence/reliability.json`` (:func:`reloc.evidence.reliability_line`).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from reloc import evidence
from reloc.data.catalog import load_dataset
from reloc.data.io import ImageError, read_image, read_mask
from reloc.data.kinds import forgery_kind
from reloc.engine.model_choice import ModelChooser
from reloc.evidence import METHODS, analyse, fuse
from reloc.io_utils import write_json_atomic
from reloc.metrics import LocalizationMetrics
from reloc.precision import cpu_model
from reloc.release.provenance import read_results

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("splice", "copy-move")
TABLE_KINDS = (*KINDS, "all")
PROTOCOLS = ("paper", "best-threshold")
FLAGGED_SHARE = 0.01
FUSED = ("learned", "learned+clones")
"""With ``--learned``: the pretrained model (``--model auto``) alone, and its map raised to the
copy-move matcher's where the matcher found a copy (``max(learned, clones)``)."""


def test_photo(
    folder: Path, size: tuple[int, int] = (4000, 3000), qualities: tuple[int, int] = (75, 90)
) -> tuple[np.ndarray, Path, str]:
    """A ``size`` (W, H) JPEG made from the largest photo of ``folder``, compressed at
    ``qualities[0]`` then saved at ``qualities[1]`` (so that every JPEG method makes a map):
    its pixels, its file and its origin."""
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    largest = max(photos, key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
    with Image.open(largest) as image:
        original = image.size
        resized = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=qualities[0])
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"reloc-evidence-{os.getpid()}.jpg"
    Image.open(buffer).save(path, quality=qualities[1])
    origin = f"{largest.name} ({original[0]}x{original[1]}) resized, JPEG {qualities[0]} then {qualities[1]}"
    return read_image(path, compact=True), path, origin


def speed(args) -> dict:
    pixels, path, origin = test_photo(args.photos)
    try:
        timings = {}
        for name in METHODS:
            runs, cpu = [], []
            for _ in range(args.repeats):
                started, processor = time.perf_counter(), time.process_time()
                result = analyse(pixels, path, [name])[0]
                runs.append(time.perf_counter() - started)
                cpu.append(time.process_time() - processor)
            timings[name] = {"seconds": round(statistics.median(runs), 3), "best": round(min(runs), 3),
                             "runs": [round(r, 3) for r in runs], "cpu_seconds": round(statistics.median(cpu), 3),
                             "applicable": result.applicable, "note": result.note}  # fmt: skip
            print(f"speed {name:7s} median {timings[name]['seconds']:.2f} s, best {min(runs):.2f} s, "
                  f"CPU {timings[name]['cpu_seconds']:.2f} s ({result.note[:80]})", flush=True)  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    load = [round(value, 2) for value in os.getloadavg()]  # the machine is shared: say how busy it was
    return {"image": origin, "size": list(pixels.shape[:2]), "repeats": args.repeats, "load_average": load,
            "methods": timings,
            "targets_seconds": {"map": 2.0, "clones": 10.0}}  # fmt: skip


def casia(args) -> dict:
    refs = load_dataset(args.casia)
    groups = {kind: [r for r in refs if r.mask is not None and forgery_kind(r.name) == kind] for kind in KINDS}
    groups["authentic"] = [r for r in refs if r.mask is None]
    if args.limit:
        groups = {kind: items[: args.limit] for kind, items in groups.items()}
    names = list(METHODS) + (list(FUSED) if args.learned else [])
    chooser = ModelChooser.from_option("auto") if args.learned else None
    meters = {(kind, name, protocol): LocalizationMetrics(protocol=protocol, pooled_auc=False)
              for kind in TABLE_KINDS for name in names for protocol in PROTOCOLS}  # fmt: skip
    skipped = {(kind, name): 0 for kind in groups for name in names}
    flagged = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)  # "learned+clones" adds nothing to its parts
    unreadable: list[dict[str, str]] = []
    authentic_seen = 0
    started = time.perf_counter()
    for kind, items in groups.items():
        for number, ref in enumerate(items, 1):
            try:
                image = read_image(ref.image, compact=True)
                mask = None if ref.mask is None else read_mask(ref.mask, size=image.shape[:2], rule=ref.mask_rule)
            except ImageError as error:  # as `reloc eval`: skipped, named and counted
                unreadable.append({"file": error.path, "reason": error.reason})
                continue
            maps, results = {}, analyse(image, ref.image, list(METHODS))
            for result in results:
                seconds[result.method] += result.figures["seconds"]
                maps[result.method] = result.map if result.applicable else None
            if chooser is not None and kind != "authentic":  # the networks take most of the time: tampered only
                clock = time.perf_counter()
                pipeline, _ = chooser.choose(ref.image)
                with torch.inference_mode(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # a read-only decoded buffer, never written
                    learned = pipeline.predict(torch.from_numpy(image).permute(2, 0, 1)).numpy()
                seconds["learned"] += time.perf_counter() - clock
                maps["learned"] = learned
                maps["learned+clones"] = fuse(learned, results[list(METHODS).index("clones")])
            for name, scores in maps.items():
                skipped[kind, name] += scores is None
                scores = np.zeros(image.shape[:2], np.float32) if scores is None else scores
                if kind == "authentic":
                    authentic_seen += name == names[0]
                    flagged[name] += float(np.mean(scores > 0.5)) > FLAGGED_SHARE
                    continue
                for protocol in PROTOCOLS:
                    meters[kind, name, protocol].update(scores, mask, ref.image.name)
                    meters["all", name, protocol].update(scores, mask, ref.image.name)
            if number % 50 == 0:
                print(f"  {kind} {number}/{len(items)} ({time.perf_counter() - started:.0f} s)", flush=True)
    table = {}
    for kind in TABLE_KINDS:
        for name in names:
            unjudged = sum(skipped[k, name] for k in KINDS) if kind == "all" else skipped[kind, name]
            row = {"images": meters[kind, name, "paper"].summary()["images"], "not_applicable": unjudged}
            for protocol in PROTOCOLS:
                summary = meters[kind, name, protocol].summary()["per-image"]
                row[protocol] = {"f1": round(summary["f1"], 4), "auc": round(summary["auc"], 4)}
            table.setdefault(kind, {})[name] = row
    authentic = {name: {"images": authentic_seen, "not_applicable": skipped["authentic", name],
                        "false_alarm_share": round(flagged[name] / max(1, authentic_seen), 4)}
                 if name in METHODS else {"images": 0, "not_applicable": 0, "false_alarm_share": None}
                 for name in names}  # fmt: skip
    total = sum(len(items) for items in groups.values())
    return {"dataset": str(args.casia), "limit": args.limit or None, "mask_rule": "luminance >= 128 is tampered", "averaging": "per-image",
            "tampered": table, "authentic": authentic, "skipped": unreadable,
            "seconds_per_image": {n: round(s / max(1, total), 4) for n, s in seconds.items()}}  # fmt: skip


def print_table(record: dict) -> None:
    for kind, rows in record["tampered"].items():
        print(f"\n{kind} ({next(iter(rows.values()))['images']} images), per-image means")
        print(f"{'method':15s} {'F1@0.5':>7s} {'F1 best':>7s} {'AUC':>6s} {'n/a':>4s} {'authentic flagged':>18s}")
        for name, row in rows.items():
            alarm = record["authentic"][name]["false_alarm_share"]
            alarm = "not run" if alarm is None else f"{alarm:.3f}"
            print(f"{name:15s} {row['paper']['f1']:7.3f} {row['best-threshold']['f1']:7.3f} "
                  f"{row['paper']['auc']:6.3f} {row['not_applicable']:4d} {alarm:>18s}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--casia", type=Path, default=ROOT.parent / "shared" / "real" / "casia1-dev")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos-large")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--learned", action="store_true", help="also score --model auto and its fusion with clones")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per group (0: all)")
    parser.add_argument("--skip-speed", action="store_true", help="keep the speed section of --out")
    parser.add_argument("--skip-casia", action="store_true", help="keep the casia section of --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "evidence.json")
    args = parser.parse_args()
    for folder in (args.casia, args.photos):
        if not folder.is_dir():
            sys.exit(f"error: {folder}: no such folder")
    previous = read_results(args.out, {}) if args.skip_speed or args.skip_casia else {}
    record = {
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "opencv_threads": cv2.getNumThreads(),
                    "opencv": cv2.__version__},
        "command": " ".join(sys.argv[1:]),
        "speed": previous.get("speed") if args.skip_speed else speed(args),
        "casia": previous.get("casia") if args.skip_casia else casia(args),
    }  # fmt: skip
    if record["casia"] is None:
        sys.exit(f"error: {args.out} holds no casia section to keep; run without --skip-casia")
    print_table(record["casia"])
    write_json_atomic(args.out, record, indent=2, allow_nan=False)
    print(f"\nwrote {args.out}")
    if record["casia"].get("limit") is None:  # figures of the whole set only
        package = Path(evidence.__file__).parent / evidence.RELIABILITY_FILE
        write_json_atomic(package, package_figures(record["casia"]), indent=1, allow_nan=False)
        print(f"wrote {package}")


def package_figures(record: dict) -> dict:
    """The figures the package shows beside each map (:func:`reloc.evidence.reliability_line`)."""
    figures = {}
    for name in METHODS:
        tampered = {kind: {"f1": rows[name]["paper"]["f1"], "f1_best": rows[name]["best-threshold"]["f1"],
                           "auc": rows[name]["paper"]["auc"], "images": rows[name]["images"]}
                    for kind, rows in record["tampered"].items() if kind in KINDS}  # fmt: skip
        figures[name] = {"dataset": Path(record["dataset"]).name, "tampered": tampered,
                         "false_alarm_share": record["authentic"][name]["false_alarm_share"]}  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
