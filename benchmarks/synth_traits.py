"""What each trait of the generator costs and how often it lands: a small set per trait.

    python benchmarks/synth_traits.py                      # 24 samples of 256 px per variant
    python benchmarks/synth_traits.py --count 48 --size 320 --photos ../shared/photos/kodak

For each variant (the defaults, each trait of docs/guide/generator.md turned on alone, and
every trait at once from ``configs/synth/traits.yaml``) it makes a set with
:func:`reloc.data.synth.synthesize` in one worker process and records the seconds per
sample, the samples per type, how many samples carry the trait (from the provenance), the
mean redraws, and the photos skipped. Two times: the whole run (checking and reading its
photos cold, the same for every variant, then rendering and writing) and the rendering
alone (the same samples made again in memory, photos already read). CPU seconds are the
process's own, less disturbed than wall seconds on a shared machine. Writes ``benchmarks/results/synth/synth_traits.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "synth" / "synth_traits.json"
DEFAULT_PHOTOS = (ROOT / ".." / "shared" / "photos" / "kodak", ROOT / ".." / "shared" / "photos-large")

#: variant -> (settings over the defaults, or a settings file; edit types; provenance test of the trait)
VARIANTS: dict[str, tuple[Any, tuple[str, ...] | None, Any]] = {
    "defaults": ({}, None, None),
    "object_region": ({"p_object_region": 1.0}, ("splice", "copymove", "removal"), lambda r: r.get("region", {}).get("shape") == "object"),
    "poisson": ({"p_poisson": 1.0}, ("splice", "copymove"), lambda r: "poisson" in r.get("traces", {})),
    "patch_removal": ({"inpaint_methods": ["patch"]}, ("removal",), lambda r: r.get("traces", {}).get("inpaint") == "patch"),
    "donor_jpeg": ({"p_donor_jpeg": 1.0}, ("splice",), lambda r: "donor_jpeg_quality" in r),
    "host_grid_shift": ({"p_host_jpeg": 1.0, "p_host_grid_shift": 1.0}, None, lambda r: "host_jpeg_grid_shift" in r),
    "final_jpeg": ({"p_final_jpeg": 1.0}, None, lambda r: "final_jpeg_quality" in r),
    "box_hosts": ({"host_resize": "box"}, None, lambda r: True),
    "authentic": ({"authentic_fraction": 0.25}, None, lambda r: r["type"] == "authentic"),
    "no_edit": ({"no_edit": True}, None, lambda r: r.get("no_edit") is True),
    "all_traits": (ROOT / "configs" / "synth" / "traits.yaml", None, None),
}  # fmt: skip


def run_variant(name: str, photos: list[str], work: Path, count: int, size: int, seed: int) -> dict:
    """Make variant ``name``'s set in ``work / name``; its row of the results."""
    from reloc.data.photos import usable_photos
    from reloc.data.synth import TAMPER_TYPES, SynthSettings, synthesize
    from reloc.data.synth.edits import _load_host_cached
    from reloc.data.synth.generator import _make, _plan, _resolve

    values, types, carries = VARIANTS[name]
    settings = SynthSettings.from_yaml(values) if isinstance(values, Path) else SynthSettings.from_mapping(values)
    _load_host_cached.cache_clear()  # every variant reads its photos cold
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = synthesize(
        photos, work / name, count=count, seed=seed, size=size, types=types or TAMPER_TYPES,
        settings=settings, progress=False, workers=1, overwrite=True,
    )  # fmt: skip
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    # The same samples again, photos now in memory: the rendering alone.
    hosts, _ = usable_photos(_resolve(photos), settings.min_photo_side)
    jobs, _ = _plan(hosts, None, count, seed, types or TAMPER_TYPES, settings)
    render_started, render_cpu_started = time.perf_counter(), time.process_time()
    for job in jobs:
        _make(job, seed, size, settings)
    render, render_cpu = time.perf_counter() - render_started, time.process_time() - render_cpu_started
    records = [json.loads(line) for line in (work / name / "provenance.jsonl").read_text().splitlines()]
    edits = [r for r in records if r["type"] != "authentic"]
    row: dict[str, Any] = {
        "settings": values if isinstance(values, dict) else str(Path(values).relative_to(ROOT)),
        "types": list(types or TAMPER_TYPES),
        "samples": summary.count,
        "seconds": round(seconds, 2),
        "seconds_per_sample": round(seconds / max(1, summary.count), 3),
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_seconds_per_sample": round(cpu_seconds / max(1, summary.count), 3),
        "render_seconds_per_sample": round(render / max(1, len(jobs)), 3),
        "render_cpu_seconds_per_sample": round(render_cpu / max(1, len(jobs)), 3),
        "per_type": summary.per_type,
        "mean_attempts": round(sum(r["attempts"] for r in edits) / max(1, len(edits)), 2),
        "mean_area": round(sum(r["area"] for r in edits) / max(1, len(edits)), 4),
        "skipped_photos": len(summary.skipped),
    }
    if carries is not None:
        row["carrying_the_trait"] = sum(1 for r in records if carries(r))
    if name == "object_region":
        methods: dict[str, int] = {}
        for r in records:
            method = r.get("region", {}).get("method")
            if method:
                methods[method] = methods.get(method, 0) + 1
        row["per_method"] = dict(sorted(methods.items()))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", action="append", help="photo source (repeatable; default: kodak + photos-large)")
    parser.add_argument("--count", type=int, default=24, help="samples per variant")
    parser.add_argument("--size", type=int, default=256, help="sample side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="only these (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    import cv2

    from reloc.io_utils import write_json_atomic
    from reloc.precision import cpu_model

    photos = args.photos or [str(p.resolve()) for p in DEFAULT_PHOTOS if p.is_dir()] or ["default"]
    cv2.setNumThreads(1)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="synth-traits-") as work:
        for name in args.variant or list(VARIANTS):
            try:
                rows[name] = run_variant(name, photos, Path(work), args.count, args.size, args.seed)
            except (ValueError, RuntimeError) as error:
                print(f"error: variant {name}: {error}", file=sys.stderr)
                return 2
            row = rows[name]
            print(
                f"{name:16s} render {row['render_cpu_seconds_per_sample']:.3f} CPU s/sample "
                f"(wall {row['render_seconds_per_sample']:.3f}; whole run {row['seconds_per_sample']:.3f})  attempts {row['mean_attempts']:.2f}  "
                f"carrying {row.get('carrying_the_trait', '-')}/{row['samples']}  {row['per_type']}"
            )
    result = {
        "command": " ".join(["python", "benchmarks/synth_traits.py", *(argv if argv is not None else sys.argv[1:])]),
        "photos": [os.path.relpath(p, ROOT) if p != "default" else p for p in photos],
        "count": args.count,
        "size": args.size,
        "seed": args.seed,
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "threads": "one process (workers=1), OpenCV 1 thread, OMP_NUM_THREADS as set by the caller",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "variants": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
