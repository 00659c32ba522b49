"""Load on ``reloc serve``: concurrent uploads of 2-megapixel images to a server on loopback.

Starts ``reloc serve`` (its default settings: 512-px windows, a queue of 16) as its own
process on 127.0.0.1 with a **tiny random-weight model** (``dfcn(width=0.25,
faithful=False)``, no restorer: the figures are the server's overhead and queueing with a
light network, not a trained model's speed), sends ``--count``
(default 20, at most 50) different 2 MP JPEGs at once, one thread each, and checks that
every upload is answered with its own result (SHA-256, name, size). A 503 (full queue) is
retried after its ``Retry-After``, as the page does; the latency counts from the first try.
The server's peak resident memory is its ``VmHWM`` from ``/proc`` (Linux).

    python benchmarks/serve_load.py            # -> benchmarks/results/speed/serve.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from reloc.models import create_localizer
from reloc.models.weights import save_network

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1250, 1600)  # (H, W): 2.0 megapixels
MAX_COUNT = 50


def photos(count: int) -> list[bytes]:
    """``count`` distinct 2 MP JPEGs (quality 90): a real photo with a different patch pasted in each."""
    from skimage import data

    host = np.asarray(Image.fromarray(data.astronaut()).resize(SIZE[::-1], Image.Resampling.BICUBIC))
    donor = np.asarray(Image.fromarray(data.chelsea()).resize((600, 450)))
    images = []
    for index in range(count):
        forged = host.copy()
        top, left = 100 + 40 * index, 100 + 50 * index
        forged[top : top + 200, left : left + 300] = donor[100:300, 150:450]
        buffer = io.BytesIO()
        Image.fromarray(forged).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (``VmHWM``) in MiB, or ``None`` off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help=f"concurrent uploads (1-{MAX_COUNT})")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed" / "serve.json")
    args = parser.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be 1-{MAX_COUNT}")
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    torch.manual_seed(0)
    save_network(create_localizer("dfcn", width=0.25, faithful=False), work / "dfcn.safetensors")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "reloc", "serve", "--localizer", str(work / "dfcn.safetensors"),
        "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=5) as client:
            for _ in range(600):
                try:
                    if client.get(f"{url}/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
        idle_rss = peak_rss_mb(server.pid)
        images = photos(args.count)
        answers: list[dict] = [{} for _ in images]
        start = threading.Barrier(args.count)

        def client_thread(index: int) -> None:
            with httpx.Client(timeout=1800) as client:
                start.wait()
                began, refused = time.perf_counter(), 0
                while True:
                    response = client.post(
                        f"{url}/api/localize", files={"file": (f"photo-{index:02d}.jpg", images[index], "image/jpeg")}
                    )
                    if response.status_code != 503:
                        break
                    refused += 1
                    time.sleep(float(response.headers.get("retry-after", 1)))
                answers[index] = {
                    "status": response.status_code,
                    "latency": time.perf_counter() - began,
                    "refused": refused,
                    "result": response.json(),
                }

        began = time.perf_counter()
        threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(args.count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        peak = peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(300)
        shutil.rmtree(work, ignore_errors=True)
    mixed = [
        index
        for index, answer in enumerate(answers)
        if answer["status"] == 200
        and (
            answer["result"]["sha256"] != hashlib.sha256(images[index]).hexdigest()
            or answer["result"]["file"] != f"photo-{index:02d}.jpg"
            or (answer["result"]["height"], answer["result"]["width"]) != SIZE
        )
    ]
    latencies = np.array([answer["latency"] for answer in answers])
    results = {
        "what": "concurrent uploads of 2 MP JPEGs to reloc serve on 127.0.0.1 (benchmarks/serve_load.py)",
        "model": "a tiny random-weight localizer, dfcn(width=0.25, faithful=False), no restorer",
        "image": f"{SIZE[1]}x{SIZE[0]} JPEG quality 90 ({SIZE[0] * SIZE[1] / 1e6:.1f} MP), "
        f"{np.mean([len(i) for i in images]) / 2**20:.2f} MiB on average",
        "server": "default settings: window 512, stride 512, one inference worker, queue of 16, device cpu",
        "uploads": args.count,
        "answered_200": sum(answer["status"] == 200 for answer in answers),
        "other_statuses": sorted({answer["status"] for answer in answers} - {200}),
        "mixed_up": len(mixed),
        "refused_503_then_retried": sum(answer["refused"] for answer in answers),
        "latency_s": {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p95": round(float(np.percentile(latencies, 95)), 2),
            "max": round(float(latencies.max()), 2),
        },
        "wall_s": round(wall, 2),
        "images_per_s": round(args.count / wall, 3),
        "server_rss_mib": {"after_start": idle_rss and round(idle_rss, 1), "peak": peak and round(peak, 1)},
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if mixed or results["answered_200"] != args.count:
        raise SystemExit(f"FAILED: {len(mixed)} mixed up, {results['answered_200']} of {args.count} answered 200")


if __name__ == "__main__":
    main()
