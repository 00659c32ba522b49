"""Forward time of single networks on one image (median of N runs, ``torch.inference_mode``).

    python benchmarks/forward_time.py [--size 512] [--repeats 5] [--threads 0] [--default-malloc]

Like ``Pipeline.predict``, the process first keeps freed memory in malloc's heap
(:func:`reloc.engine.inference.retain_freed_memory`; ``--default-malloc`` skips it, and
large activations are then page-faulted afresh on every call). Writes ``benchmarks/results/speed/forward_time.json`` and prints it. Randomly initialised
weights (timing does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from reloc.engine.inference import retain_freed_memory
from reloc.models import count_parameters, create_network, segmentation_logits

CASES = [
    ("restorer", "scunet", {"preset": "paper"}),
    ("restorer", "scunet", {"preset": "small"}),
    ("localizer", "dfcn", {}),
    ("localizer", "scse_unet", {}),
    ("localizer", "mvssnet", {}),
]


def median_seconds(network: torch.nn.Module, image: torch.Tensor, repeats: int) -> list[float]:
    times = []
    with torch.inference_mode():
        segmentation_logits(network(image))  # warm-up (allocator, lazy init)
        for _ in range(repeats):
            started = time.perf_counter()
            segmentation_logits(network(image))
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--default-malloc", action="store_true", help="do not call retain_freed_memory()")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed" / "forward_time.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retained = False if args.default_malloc else retain_freed_memory()
    torch.manual_seed(0)
    image = torch.rand(1, 3, args.size, args.size)
    results = []
    for kind, name, kwargs in CASES:
        network = create_network(kind, name, **kwargs).eval()
        times = median_seconds(network, image, args.repeats)
        label = name + (f"({kwargs['preset']})" if "preset" in kwargs else "")
        results.append(
            {
                "network": label,
                "parameters": count_parameters(network),
                "median_seconds": round(statistics.median(times), 4),
                "all_seconds": [round(t, 4) for t in times],
            }
        )
        print(f"{label:<16} {statistics.median(times):8.3f} s  (median of {args.repeats})", flush=True)
        del network
    record = {
        "image": f"1x3x{args.size}x{args.size}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "malloc_retains_freed_memory": retained,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
