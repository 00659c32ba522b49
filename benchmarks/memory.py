"""Peak resident memory of localizing one very large image (``reloc localize``'s library path).

    OMP_NUM_THREADS=1 python benchmarks/memory.py [--side 12000] [--localizer conv1x1|dfcn] [--save-restored]

Makes a ``side x side`` 8-bit RGB PNG (blocks of 32 px of random colours: a small file
that decodes to ``3 * side**2`` bytes, like the issue's 140 KB PNG of 12000x12000), then
localizes it in a fresh child process with :func:`reloc.engine.localize.localize_files`
(window 512, stride 512, all outputs: heat map, mask, overlay, JSON, summary) and reads
the child's ``VmHWM`` (the kernel's peak resident set) from ``/proc/self/status``.

The localizer is random-weight and tiny on purpose: ``conv1x1`` (a 1x1 convolution, 4
parameters) measures everything that grows with the image (decoding, the stitched
probability map, rendering, PNG encoding) without hours of convolutions on a shared CPU;
the networks' own memory is per window and does not grow with the image
(``benchmarks/results/speed/speed.json`` has ``peak_rss_gb_4000x3000`` for ``scunet(paper)`` +
``dfcn``). ``dfcn`` (``width=0.125``) runs a real registered localizer instead.

Writes ``benchmarks/results/speed/memory.json`` (``--out``; runs are keyed by their settings, so
several runs accumulate) and prints the record.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reloc.io_utils import write_json_atomic
from reloc.release.provenance import read_results

RESULTS = Path(__file__).resolve().parent / "results" / "speed" / "memory.json"


def peak_rss_bytes() -> int:
    """This process's peak resident set (``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def make_image(path: Path, side: int, seed: int = 0) -> None:
    """A ``side x side`` RGB PNG of 32-px blocks of random colours."""
    from PIL import Image

    blocks = -(-side // 32)
    small = np.random.default_rng(seed).integers(0, 256, (blocks, blocks, 3), dtype=np.uint8)
    Image.fromarray(small).resize((blocks * 32, blocks * 32), Image.NEAREST).crop((0, 0, side, side)).save(path)


def child(image: Path, out: Path, localizer_name: str, save_restored: bool) -> dict[str, object]:
    """Localize ``image`` into ``out`` in this process; the peak RSS before and after."""
    import torch

    from reloc.engine.inference import Pipeline
    from reloc.engine.localize import localize_files
    from reloc.models import create_localizer, create_restorer

    torch.manual_seed(0)
    localizer = (
        torch.nn.Conv2d(3, 1, 1)
        if localizer_name == "conv1x1"
        else create_localizer("dfcn", width=0.125, faithful=False)
    )
    restorer = create_restorer("scunet", preset="tiny") if save_restored else None
    pipeline = Pipeline(restorer, localizer).eval()
    before = peak_rss_bytes()
    started = time.perf_counter()
    summary = localize_files([str(image)], pipeline, out, save_restored=save_restored, progress=False)
    if not summary.ok:
        raise RuntimeError(summary.report())
    return {
        "peak_rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=12000)
    parser.add_argument("--localizer", choices=("conv1x1", "dfcn"), default="conv1x1")
    parser.add_argument(
        "--save-restored", action="store_true", help="also run a tiny SCUNet and write the restored image"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, type=Path, metavar=("IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.localizer, args.save_restored)))
        return
    with tempfile.TemporaryDirectory(prefix="reloc-memory-") as folder:
        image = Path(folder) / "large.png"
        make_image(image, args.side)
        command = [
            sys.executable,
            __file__,
            "--localizer",
            args.localizer,
            "--child",
            str(image),
            str(Path(folder) / "out"),
        ]
        if args.save_restored:
            command.append("--save-restored")
        finished = subprocess.run(command, check=True, capture_output=True, text=True)
        measured = json.loads(finished.stdout.strip().splitlines()[-1])
        png_bytes = image.stat().st_size
    pixels = args.side * args.side
    record = {
        "image": f"{args.side}x{args.side} RGB 8-bit PNG, {png_bytes} bytes",
        "pixels": pixels,
        "localizer": args.localizer,
        "save_restored": args.save_restored,
        "peak_rss_gb": round(measured["peak_rss_bytes"] / 1e9, 3),
        "peak_rss_before_localizing_gb": round(measured["peak_rss_before_bytes"] / 1e9, 3),
        "peak_bytes_per_pixel": round(measured["peak_rss_bytes"] / pixels, 2),
        "seconds": round(measured["seconds"], 1),
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    results = read_results(args.out, {})
    key = f"{args.side}px-{args.localizer}" + ("-restored" if args.save_restored else "")
    results[key] = record
    write_json_atomic(args.out, results, indent=2)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
