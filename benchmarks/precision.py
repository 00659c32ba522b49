"""Accuracy of the shipped pretrained models in fp32 and in bf16 autocast, on the test
images of ``reloc release cards``.

    python benchmarks/precision.py                 # -> benchmarks/results/inference/precision.json (resumable)
    python benchmarks/precision.py --images 24     # fewer test images

``reloc localize``, ``serve`` and the Python API run under bf16 autocast by default where
the processor or GPU has native bf16 (``--precision auto``, :mod:`reloc.precision`), so
the figures an analyst gets there are these models' bf16 figures. Three modes per row:

- ``fp32``: what ``reloc release cards`` measures (the model card);
- ``bf16``: bf16 autocast as reloc runs it: the layers that see pixels (DFCN's first
  block, SCUNet's head) in float32 (:func:`reloc.precision.full_precision`), the rest bf16;
- ``bf16-pixels``: bf16 autocast everywhere, the pixel-facing layers too (reloc before
  that guard; switched off here by replacing ``full_precision`` in the model modules for
  this process only): bf16 keeps 8 significant bits, so ``k / 255`` pixels round to a
  1/256 grid.

Per-image F1 / IoU at 0.5 and AUC, each model in its recorded window, as the card. On a
processor without native bf16 the bf16 modes are emulated (slow, same values). Each row
records the digest of the weights it measured (``reloc release cards``'s); a rerun
keeps only the rows of the weights shipped now.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np

from reloc.io_utils import write_json_atomic
from reloc.release.measure import make_test_set, weights_digest
from reloc.release.provenance import git_commit, read_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "inference" / "precision.json"
#: (model, distortion) rows: DFCN alone on plain and JPEG images, SCUNet + DFCN on JPEG
ROWS = (("plain", "none"), ("robust", "jpeg:75"), ("reloc", "jpeg:75"))
MODES = ("fp32", "bf16", "bf16-pixels")


@contextlib.contextmanager
def pixel_layers_in_bf16():
    """Within: the models' pixel-facing layers follow the caller's autocast (no float32 guard)."""
    from reloc.models import dfcn, scunet

    saved = dfcn.full_precision, scunet.full_precision
    dfcn.full_precision = scunet.full_precision = lambda tensor: contextlib.nullcontext()
    try:
        yield
    finally:
        dfcn.full_precision, scunet.full_precision = saved


def evaluate_row(name: str, spec: str, mode: str, refs: list) -> dict:
    import torch

    from reloc.engine.evaluate import Situation, evaluate_situation
    from reloc.pretrained import roles, weights_file

    restorer = str(weights_file(name, "restorer")) if "restorer" in roles(name) else None
    situation = Situation(name, str(weights_file(name, "localizer")), restorer, distorted=True)
    guard = pixel_layers_in_bf16() if mode == "bf16-pixels" else contextlib.nullcontext()
    tick = time.perf_counter()
    with guard, torch.inference_mode():
        record = evaluate_situation(
            situation,
            refs,
            spec,
            device=torch.device("cpu"),
            window=None,
            stride=None,
            seed=2026,
            pooled_auc=False,
            progress=False,
            precision="fp32" if mode == "fp32" else "bf16",
        )
    values = record["metrics"]["per-image"]
    return {
        **{m: None if values.get(m) is None else round(float(values[m]), 4) for m in ("f1", "iou", "auc")},
        "auc_per_image": [r.get("auc") for r in record["per_image"]],
        "images": record["images"],
        "precision": record["protocol"].get("precision"),
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - tick, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None, help="the first N test images (default: all)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "pretrained-bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    from reloc.data.catalog import load_dataset
    from reloc.precision import cpu_has_bf16, cpu_model

    refs = load_dataset(make_test_set(args.work))[: args.images]
    result = read_results(args.out, {"rows": {}})
    if result.get("images") not in (None, len(refs)):
        result = {"rows": {}}  # another test-set size: start over
    result.update(
        images=len(refs),
        command="python benchmarks/precision.py" + (f" --images {args.images}" if args.images else ""),
        commit=git_commit(),
        torch=torch.__version__,
        cpu=cpu_model(),
        native_bf16=cpu_has_bf16(),
    )
    digests = {name: weights_digest(name) for name, _ in ROWS}
    for name, spec in ROWS:
        for mode in MODES:
            key = f"{name} {spec} {mode}"
            if result["rows"].get(key, {}).get("weights_sha256") == digests[name]:
                continue  # measured for these weights; a row of other weights is measured again
            row = {**evaluate_row(name, spec, mode, refs), "weights_sha256": digests[name]}
            result["rows"][key] = row
            write_json_atomic(args.out, result)
            print(f"{key:<28} F1 {row['f1']:.3f} IoU {row['iou']:.3f} AUC {row['auc']:.3f} ({row['seconds']:.0f} s)")
    for name, spec in ROWS:
        base = np.array(result["rows"][f"{name} {spec} fp32"]["auc_per_image"], dtype=float)
        for mode in MODES[1:]:
            other = np.array(result["rows"][f"{name} {spec} {mode}"]["auc_per_image"], dtype=float)
            result["rows"][f"{name} {spec} {mode}"]["largest_auc_change_per_image"] = round(
                float(np.nanmax(np.abs(other - base))), 4
            )
    write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
