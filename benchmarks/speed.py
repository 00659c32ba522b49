"""Speed of ReLoc on this machine, each figure next to the machine's own fp32 matmul peak.

    flock /tmp/reloc-cpu.lock python benchmarks/speed.py [--quick] [--no-compile] [--no-levers]

Measures, in one run (randomly initialised weights: timing does not depend on values):

- the fp32 matrix-multiply peak: median GFLOP/s of ``torch.mm`` on 2048x2048 at torch's
  default threads, sampled before and after every section (the machine is shared and
  noisy; every share below is against the median of all samples);
- inference: ``scunet(paper)`` + ``dfcn`` through ``Pipeline.predict`` (512-px windows,
  stride 512, its default batch size) on a 2048x1536 image, as shipped and with
  ``Pipeline.run`` under ``torch.compile`` (a lever); megapixels per second, achieved
  GFLOP/s (the FLOPs of one 512x512 window of restorer + localizer times the number of
  windows) and its share of the peak;
- the plain eager baseline in the same run (a fresh child process, default malloc): the
  release's formulation of SCUNet (``use_reference_path``: roll, partition, einsum +
  softmax attention, NCHW maps), one window at a time, ``torch.no_grad`` (no inference
  mode), no caching; the speed-up;
- peak resident memory of a fresh child process localizing a 4000x3000 image
  (``Pipeline.predict``, window 512; its VmHWM, the kernel's peak RSS of the process);
- training: images per second of a ReLoc restoration step and a localization step
  (``ReLocTask.restoration_step`` / ``localization_step``; ``scunet(small)``, ``dfcn``,
  ``dcgan``; batch 16 of 128x128; a fresh child process, as ``reloc train`` runs) and
  their share of the peak (FLOPs of one step, forward and backward);
- levers: each optimisation switched off alone on one 512x512 window, and predict's
  batch size and malloc setting on 4 windows (fresh processes).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``: matmul and
convolution FLOPs only (2 per multiply-add); norms, activations, softmax and additions
are not counted. Attention is counted on the reference (einsum) path, because the fused
CPU attention kernel is not seen by the counter; both paths do the same multiply-adds.

Writes ``benchmarks/results/speed.json`` (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import reloc.engine.inference as inference_module
from reloc.engine.inference import Pipeline, window_origins
from reloc.models import create_localizer, create_restorer, segmentation_logits
from reloc.models.scunet import use_fused_linear, use_reference_path

RESULTS = Path(__file__).resolve().parent / "results" / "speed.json"
FLOP_NOTE = (
    "torch.utils.flop_counter.FlopCounterMode: matmul/convolution FLOPs only, 2 per multiply-add; "
    "norms, activations, softmax, additions not counted; attention counted on the reference einsum path"
)


# --- measuring ------------------------------------------------------------------------
def seconds(function, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


class Peak:
    """fp32 matmul peak of this machine, sampled repeatedly during the run."""

    def __init__(self, size: int = 2048, repeats: int = 10) -> None:
        self.size, self.repeats = size, repeats
        generator = torch.Generator().manual_seed(0)
        self.a = torch.randn(size, size, generator=generator)
        self.b = torch.randn(size, size, generator=generator)
        self.samples: list[float] = []

    def sample(self) -> float:
        times = seconds(lambda: torch.mm(self.a, self.b), self.repeats, warmup=3)
        value = 2 * self.size**3 / statistics.median(times) / 1e9
        self.samples.append(round(value, 1))
        return value

    @property
    def gflops(self) -> float:
        return statistics.median(self.samples)


def count_flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return create_restorer("scunet", preset="paper").eval(), create_localizer("dfcn").eval()


# --- the eager baseline -------------------------------------------------------------------
def baseline_predict(restorer, localizer, image: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """The plain loop: one window at a time, ``no_grad``, NCHW, the release's attention."""
    _, height, width = image.shape
    sums, counts = torch.zeros(height, width), torch.zeros(height, width)
    h, w = min(window, height), min(window, width)
    with torch.no_grad():
        for top in window_origins(height, window, stride):
            for left in window_origins(width, window, stride):
                crop = image[None, :, top : top + h, left : left + w].contiguous()
                restored = restorer(crop).clamp(0, 1)
                probabilities = torch.sigmoid(segmentation_logits(localizer(restored)))
                sums[top : top + h, left : left + w] += probabilities[0, 0]
                counts[top : top + h, left : left + w] += 1
    return sums / counts


# --- child processes ------------------------------------------------------------------
def child_main(args) -> None:
    """Run one measurement in this (child) process and print it as the last JSON line.

    Kinds: ``predict`` (Pipeline.predict on a random image), ``baseline`` (the plain loop;
    ``--map-out`` saves its map), ``train`` (the two ReLoc steps). A ``predict`` child tunes
    glibc's malloc (:func:`~reloc.engine.inference.retain_freed_memory`, as ``reloc
    localize`` and ``reloc eval`` do) unless ``--no-retain``; ``--retain`` tunes it before
    a ``train`` child.
    """
    if (args.child == "predict" and not args.no_retain) or args.retain:
        inference_module.retain_freed_memory()
    result: dict = {}
    if args.child in ("predict", "baseline"):
        restorer, localizer = networks()
        image = torch.rand(3, args.height, args.width, generator=torch.Generator().manual_seed(args.image_seed))
        started = time.perf_counter()
        if args.child == "predict":
            pipeline = Pipeline(restorer, localizer).eval()
            result_map = pipeline.predict(image, window=args.window, stride=args.window, batch_size=args.batch_size)
        else:
            reference = use_reference_path(restorer)
            result_map = baseline_predict(reference, localizer, image, args.window, args.window)
        result["seconds"] = time.perf_counter() - started
        if args.map_out:
            torch.save(result_map, args.map_out)
    else:
        result.update(training_steps(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM: this process's own peak RSS. (ru_maxrss would also count the parent's RSS at the
    # fork, which Linux carries across exec.)
    status = Path("/proc/self/status").read_text()
    hwm_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    result.update(
        peak_rss_kib=hwm_kib,
        ru_maxrss_kib=usage.ru_maxrss,
        minor_faults=usage.ru_minflt,
        system_seconds=round(usage.ru_stime, 1),
    )
    print(json.dumps(result))


def run_child(args, kind: str, *options: str) -> dict:
    """Run ``kind`` in a child process of this script; returns its JSON."""
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--window",
        str(args.window),
        "--train-batch",
        str(args.train_batch),
        "--train-crop",
        str(args.train_crop),
        "--train-repeats",
        str(args.train_repeats),
        *options,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- sections ---------------------------------------------------------------------------
def window_flops(restorer, localizer, window: int) -> dict[str, int]:
    reference = use_reference_path(copy.deepcopy(restorer))
    image = torch.rand(1, 3, window, window)
    with torch.no_grad():
        restorer_flops = count_flops(lambda: reference(image))
        localizer_flops = count_flops(lambda: localizer(image))
    return {"restorer": restorer_flops, "localizer": localizer_flops, "total": restorer_flops + localizer_flops}


def inference(args, peak: Peak, flops_per_window: int) -> dict:
    restorer, localizer = networks()
    image = torch.rand(3, args.height, args.width, generator=torch.Generator().manual_seed(1))
    n_windows = len(window_origins(args.height, args.window, args.window)) * len(
        window_origins(args.width, args.window, args.window)
    )
    megapixels = args.height * args.width / 1e6

    def entry(times: list[float], **extra) -> dict:
        median = statistics.median(times)
        return {
            "seconds": round(median, 3),
            "all_seconds": [round(t, 3) for t in times],
            "mpix_per_s": round(megapixels / median, 4),
            "achieved_gflops": round(flops_per_window * n_windows / median / 1e9, 1),
            **extra,
        }

    results: dict = {
        "image": f"3x{args.height}x{args.width}",
        "window": args.window,
        "stride": args.window,
        "windows": n_windows,
        "gflop_per_window": round(flops_per_window / 1e9, 1),
    }
    pipeline = Pipeline(restorer, localizer).eval()
    pipeline.predict(torch.rand(3, args.window, args.window), window=args.window, stride=args.window)  # warm-up
    maps = {}

    def predict(which: Pipeline, key: str):
        maps[key] = which.predict(image, window=args.window, stride=args.window, batch_size=args.batch_size)

    peak.sample()
    results["eager"] = entry(
        seconds(lambda: predict(pipeline, "eager"), args.repeats, warmup=0),
        batch_size=args.batch_size or "default (predict batch_size=None)",
        description="Pipeline.predict as shipped: fast SCUNet path, channels_last, one window per pass, "
        "malloc keeps freed memory",
    )
    peak.sample()
    print(f"pipeline eager: {results['eager']}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        map_path = os.path.join(folder, "baseline.pt")
        child = run_child(
            args,
            "baseline",
            "--no-retain",
            "--height",
            str(args.height),
            "--width",
            str(args.width),
            "--image-seed",
            "1",
            "--map-out",
            map_path,
        )
        maps["baseline"] = torch.load(map_path)
    results["baseline"] = entry(
        [child["seconds"]],
        description="release formulation (use_reference_path: roll, partition, einsum + softmax attention, NCHW), "
        "one window at a time, torch.no_grad (no inference mode), no caching, default malloc; in a child process",
    )
    results["max_abs_difference_eager_vs_baseline"] = float((maps["eager"] - maps["baseline"]).abs().max())
    peak.sample()
    print(f"baseline: {results['baseline']}", flush=True)

    if args.compile:
        compiled = Pipeline(restorer, localizer).eval()
        compiled.run = torch.compile(compiled.run, dynamic=False)  # predict calls self.run per batch
        started = time.perf_counter()
        predict(compiled, "compiled")
        first = time.perf_counter() - started
        peak.sample()
        times = seconds(lambda: predict(compiled, "compiled"), args.repeats, warmup=0)
        results["compiled"] = entry(
            times,
            batch_size=args.batch_size or "default (predict batch_size=None)",
            first_call_seconds=round(first, 1),
            compile_seconds=round(first - statistics.median(times), 1),
            description="torch.compile (inductor, dynamic=False) of Pipeline.run (restorer + localizer) inside "
            "predict; a lever, not the shipped path",
        )
        results["max_abs_difference_compiled_vs_eager"] = float((maps["compiled"] - maps["eager"]).abs().max())
        peak.sample()
        print(f"pipeline compiled: {results['compiled']}", flush=True)
    return results


def memory(args) -> dict:
    child = run_child(args, "predict", "--height", str(args.memory_height), "--width", str(args.memory_width))
    return {
        "image": f"3x{args.memory_height}x{args.memory_width}",
        "window": args.window,
        "batch_size": "default (predict batch_size=None)",
        "peak_rss_bytes": child["peak_rss_kib"] * 1024,
        "seconds": round(child["seconds"], 1),
        "how": "Pipeline.predict in a fresh child process; its peak resident set (VmHWM of /proc/self/status)",
    }


def training_steps(args) -> dict:
    """Images per second of ``ReLocTask.restoration_step`` and ``localization_step``."""
    from reloc.config import load_config
    from reloc.engine.distributed import DistContext
    from reloc.engine.tasks import create_task

    overrides = [
        "data.dataset=unused",
        "train.task=reloc",
        "model.restorer=scunet",
        "model.restorer_args={preset: small}",
        "model.localizer=dfcn",
        "model.localizer_args={}",
        "model.discriminator=dcgan",
        f"data.batch_size={args.train_batch}",
        f"data.crop={args.train_crop}",
    ]
    torch.manual_seed(0)
    task = create_task(load_config(None, overrides), torch.device("cpu"), DistContext())
    generator = torch.Generator().manual_seed(3)
    b, c = args.train_batch, args.train_crop
    plain = torch.rand(b, 3, c, c, generator=generator)
    batch = {
        "plain": plain,
        "distorted": (plain + 0.05 * torch.randn(b, 3, c, c, generator=generator)).clamp(0, 1),
        "mask": (torch.rand(b, 1, c, c, generator=generator) > 0.8).float(),
    }
    results: dict = {"batch": b, "crop": c, "networks": "scunet(small) + dfcn + dcgan", "loss": task.config.train.loss}
    restorer = task.networks["restorer"]
    steps = [("restoration", task.restoration_step), ("localization", task.localization_step)]
    for name, step in steps:
        flops = count_flops(lambda step=step: step(batch))
        times = seconds(lambda step=step: step(batch), args.train_repeats, warmup=1)
        results[name] = {"gflop_per_step": round(flops / 1e9, 1), "all_seconds": [round(t, 3) for t in times]}
    use_reference_path(restorer)  # the release's formulation, for the speed-up of training
    times = seconds(lambda: task.restoration_step(batch), args.train_repeats, warmup=1)
    results["restoration_reference_path"] = {"all_seconds": [round(t, 3) for t in times]}
    return results


def training(args, peak: Peak) -> dict:
    peak.sample()
    child = run_child(args, "train", "--no-retain")
    peak.sample()
    b = child["batch"]
    for name in ("restoration", "localization", "restoration_reference_path"):
        median = statistics.median(child[name]["all_seconds"])
        child[name]["step_seconds"] = round(median, 3)
        child[name]["img_per_s"] = round(b / median, 2)
        if "gflop_per_step" in child[name]:
            child[name]["achieved_gflops"] = round(child[name]["gflop_per_step"] / median, 1)
        print(f"train {name}: {child[name]}", flush=True)
    child["description"] = (
        "ReLocTask.restoration_step / localization_step built by create_task, in a child process with "
        "default malloc (as `reloc train` runs); FLOPs of one step, forward and backward"
    )
    return child


def levers(args, peak: Peak) -> dict:
    """Each optimisation switched off alone (median seconds)."""
    restorer, localizer = networks()
    window = torch.rand(1, 3, args.window, args.window)
    reps = args.lever_repeats
    out: dict = {"window": args.window}

    def timed(function, repeats=reps) -> float:
        return round(statistics.median(seconds(function, repeats)), 3)

    with torch.inference_mode():  # malloc was tuned in main() before the inference measurements
        out["scunet_fast"] = timed(lambda: restorer(window))
        restorer.channels_last = False
        out["scunet_without_channels_last"] = timed(lambda: restorer(window))
        restorer.channels_last = True
        use_fused_linear(restorer, False)
        out["scunet_without_fused_linear"] = timed(lambda: restorer(window))
        restorer.channels_last = False
        out["scunet_without_channels_last_and_fused_linear"] = timed(lambda: restorer(window))
        restorer.channels_last = True
        use_fused_linear(restorer, True)
        reference = use_reference_path(copy.deepcopy(restorer))
        out["scunet_reference_path"] = timed(lambda: reference(window))
        out["dfcn_nchw"] = timed(lambda: localizer(window))
        channels_last = window.contiguous(memory_format=torch.channels_last)
        out["dfcn_channels_last"] = timed(lambda: localizer(channels_last))
        # attention alone at level 0 of scunet(paper): (window / 8)^2 windows of 64 tokens, 1 head of 32
        q, k, v = (torch.randn(1, 1, (args.window // 8) ** 2, 64, 32) for _ in range(3))
        bias = torch.randn(1, 1, 1, 64, 64)
        out["attention_sdpa_5d_math_kernel"] = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
        q4, k4, v4 = (t[0] for t in (q, k, v))
        out["attention_sdpa_4d_fused_kernel"] = timed(
            lambda: F.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias[0])
        )
        out["attention_einsum_softmax"] = timed(
            lambda: torch.einsum(
                "bhwij,bhwjc->bhwic", (torch.einsum("bhwic,bhwjc->bhwij", q, k) * 32**-0.5 + bias).softmax(-1), v
            )
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        out["scunet_fast_1_thread"] = timed(lambda: restorer(window))
        torch.set_num_threads(threads)
    peak.sample()
    side = str(2 * args.window)  # 4 windows, in fresh processes (malloc settings are per process)
    for label, options in (
        ("predict_4_windows_batch_1", ["--batch-size", "1"]),
        ("predict_4_windows_batch_4", ["--batch-size", "4"]),
        ("predict_4_windows_batch_1_default_malloc", ["--batch-size", "1", "--no-retain"]),
        ("predict_4_windows_batch_4_default_malloc", ["--batch-size", "4", "--no-retain"]),
    ):
        child = run_child(args, "predict", "--height", side, "--width", side, *options)
        out[label] = round(child["seconds"], 2)
        out[label + "_peak_rss_gb"] = round(child["peak_rss_kib"] * 1024 / 1e9, 2)
    peak.sample()
    child = run_child(args, "train", "--retain")
    out["train_restoration_step_retained_malloc"] = statistics.median(child["restoration"]["all_seconds"])
    out["train_localization_step_retained_malloc"] = statistics.median(child["localization"]["all_seconds"])
    peak.sample()
    print(f"levers: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled pipeline")
    parser.add_argument("--no-levers", dest="levers", action="store_false", help="skip the lever measurements")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the 4000x3000 memory run")
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None, help="windows per pass in predict (default: its own)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-height", type=int, default=3000)
    parser.add_argument("--memory-width", type=int, default=4000)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-crop", type=int, default=128)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--lever-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=["predict", "baseline", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--no-retain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--retain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image-seed", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--map-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if args.quick:
        args.height, args.width, args.window = 512, 768, 256
        args.memory_height, args.memory_width = 768, 1024
        args.repeats, args.train_repeats, args.train_batch, args.lever_repeats = 1, 2, 4, 1

    started = time.time()
    load_start = os.getloadavg()
    peak = Peak()
    peak.sample()
    print(f"matmul peak: {peak.gflops:.1f} GFLOP/s", flush=True)
    record: dict = {}
    if args.memory:
        record["memory"] = memory(args)
        print(f"memory: {record['memory']}", flush=True)
        peak.sample()
    restorer, localizer = networks()
    flops = window_flops(restorer, localizer, args.window)
    del restorer, localizer
    record["window_flops"] = flops
    inference_module.retain_freed_memory()  # the shipped setting, as `reloc localize` / `reloc eval` make it
    record["inference"] = inference(args, peak, flops["total"])
    record["training"] = training(args, peak)
    if args.levers:
        record["levers_seconds"] = levers(args, peak)
    peak.sample()

    peak_gflops = peak.gflops
    eager = record["inference"]["eager"]
    summary = {
        "matmul_peak_gflops": round(peak_gflops, 1),
        "pipeline_mpix_per_s": eager["mpix_per_s"],
        "pipeline_gflops": eager["achieved_gflops"],
        "pipeline_share_of_peak": round(eager["achieved_gflops"] / peak_gflops, 3),
        "eager_baseline_mpix_per_s": record["inference"]["baseline"]["mpix_per_s"],
        "eager_baseline_share_of_peak": round(record["inference"]["baseline"]["achieved_gflops"] / peak_gflops, 3),
        "eager_baseline_speedup": round(record["inference"]["baseline"]["seconds"] / eager["seconds"], 2),
    }
    if "compiled" in record["inference"]:
        compiled = record["inference"]["compiled"]
        summary.update(
            {
                "pipeline_compiled_mpix_per_s": compiled["mpix_per_s"],
                "pipeline_compiled_gflops": compiled["achieved_gflops"],
                "pipeline_compiled_share_of_peak": round(compiled["achieved_gflops"] / peak_gflops, 3),
                "pipeline_compiled_compile_seconds": compiled["compile_seconds"],
                "eager_baseline_speedup_compiled": round(
                    record["inference"]["baseline"]["seconds"] / compiled["seconds"], 2
                ),
            }
        )
    if "memory" in record:
        summary["peak_rss_gb_4000x3000" if not args.quick else "peak_rss_gb_quick"] = round(
            record["memory"]["peak_rss_bytes"] / 1e9, 3
        )
    train = record["training"]
    for name in ("restoration", "localization"):
        summary[f"train_{name}_img_per_s"] = train[name]["img_per_s"]
        summary[f"train_{name}_share_of_peak"] = round(train[name]["achieved_gflops"] / peak_gflops, 3)
    summary["train_restoration_reference_path_img_per_s"] = train["restoration_reference_path"]["img_per_s"]

    result = {
        **summary,
        "flop_counting": FLOP_NOTE,
        "peak_rss_unit": "GB = 1e9 bytes",
        "matmul_peak_method": f"median GFLOP/s of torch.mm on {peak.size}x{peak.size} fp32, sampled between sections; "
        "shares are against the median of the samples",
        "matmul_peak_samples": peak.samples,
        **record,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 1),
        "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
