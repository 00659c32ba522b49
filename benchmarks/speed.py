"""Speed of ReLoc on this machine, every figure next to the machine's own measured peak.

    flock /tmp/reloc-cpu.lock python benchmarks/speed.py [--quick] [--onnx-networks dfcn] [--no-memory]
    python benchmarks/speed.py --device cuda --quick      # the GPU path -> speed-cuda.json

Measures, in one run (randomly initialised weights: timing does not depend on values):

- **peak**: fp32 and bf16 GFLOP/s the way vendors quote them: ``torch.mm`` on square
  matrices of several sizes and a 3x3 64->64 convolution (8x256x256, channels_last),
  best of N at the thread count of the runs; the peak is the best of these, and every
  share below is against it. The CPU model and its flags are recorded (``/proc/cpuinfo``);
- **pipeline**: ``scunet(paper)`` + ``dfcn`` through ``Pipeline.predict`` (512-px windows,
  stride 512) on one image, fp32 and bf16 (autocast), prepared (:meth:`Pipeline.prepare`);
  megapixels per second, achieved GFLOP/s (FLOPs of one window times the windows) and
  its share of the peak; the plain eager baseline (release formulation of SCUNet, plain
  localizer, one window at a time, ``no_grad``) in a child process, for the speed-up;
- **localizers**: seconds per 512x512 window in fp32 of each localizer in its plain eager
  formulation (the published definition as built, NCHW, BatchNorm, ``no_grad``) and
  prepared (BatchNorm folded, channels_last, ``inference_mode``), and ONNX Runtime fp32
  (plus its dynamic int8 quantization for DFCN), each with its largest difference from
  the eager output;
- **bf16_accuracy**: per-image F1 and AUC of fp32 and bf16 on a fixed synthetic
  evaluation set (``reloc synth`` from scikit-image's photos, JPEG 75) with trained
  weights when given (``--accuracy-weights``), and the largest probability difference;
- **memory**: peak resident memory of a fresh child process localizing a 4000x3000 image;
- **training**: images per second of a ReLoc restoration and localization step
  (``scunet(small)``, ``dfcn``, ``dcgan``; batch 16 of 128x128) in fp32 and bf16.

With ``--device cuda`` it measures the GPU path instead (pipeline megapixels/s in fp32,
bf16/fp16 and compiled, the paper-scale training steps: DFCN batch 56 at 128 px behind
SCUNet(paper), img/s and peak GPU memory) and writes ``results/speed/speed-cuda.json``.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``: matmul and
convolution FLOPs only (2 per multiply-add); norms, activations, softmax and additions
are not counted. Attention is counted on the reference (einsum) path, because the fused
CPU attention kernel is not seen by the counter; both paths do the same multiply-adds.

Writes ``benchmarks/results/speed/speed.json`` (``--out``) and prints its summary.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from reloc.engine.inference import Pipeline, retain_freed_memory, window_origins
from reloc.models import create_localizer, create_restorer, segmentation_logits
from reloc.models.fusion import prepare_for_inference
from reloc.models.scunet import use_reference_path
from reloc.precision import CPU_BF16_FLAGS, cpu_flags, cpu_has_bf16, cpu_model, dtype_name, resolve_precision

RESULTS = Path(__file__).resolve().parent / "results"
FLOP_NOTE = (
    "torch.utils.flop_counter.FlopCounterMode: matmul/convolution FLOPs only, 2 per multiply-add; "
    "norms, activations, softmax, additions not counted; attention counted on the reference einsum path"
)
LOCALIZERS = ("dfcn", "scse_unet", "mvssnet")
#: flags worth recording next to the peak (the full list is long)
SHOWN_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


# --- measuring ------------------------------------------------------------------------
def seconds(function, repeats: int, warmup: int = 1, sync=lambda: None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - started)
    return times


def count_flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def measure_peak(args, device: torch.device, sync) -> dict:
    """Best GFLOP/s of matmuls (several sizes) and a 3x3 convolution, per dtype."""
    generator = torch.Generator().manual_seed(0)
    sizes = (512, 1024, 2048) if device.type == "cpu" else (2048, 4096, 8192)
    conv_shape = (8, 64, 256, 256) if device.type == "cpu" else (64, 64, 256, 256)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    result: dict = {"method": f"best of {args.peak_repeats} after a warm-up, torch threads {torch.get_num_threads()}"}
    emulated = device.type == "cpu" and not cpu_has_bf16()
    for name, dtype in dtypes.items():
        entries = {}
        if emulated and dtype == torch.bfloat16:  # a probe only: the full sizes take minutes each here
            a = torch.randn(512, 512, generator=generator).to(device, dtype)
            best = min(seconds(lambda a=a: torch.mm(a, a), 2, sync=sync))
            entries["mm_512"] = round(2 * 512**3 / best / 1e9, 2)
            result[f"{name}_measurements"] = entries
            result[f"{name}_gflops"] = entries["mm_512"]
            result[f"{name}_note"] = "emulated (no avx512_bf16 / AMX): a 512x512 matmul probe, best of 2"
            print(f"peak {name} (emulated probe): {entries}", flush=True)
            continue
        for n in sizes:
            a = torch.randn(n, n, generator=generator).to(device, dtype)
            b = torch.randn(n, n, generator=generator).to(device, dtype)
            best = min(seconds(lambda a=a, b=b: torch.mm(a, b), args.peak_repeats, sync=sync))
            entries[f"mm_{n}"] = round(2 * n**3 / best / 1e9, 1)
        x = (
            torch.randn(*conv_shape, generator=generator)
            .to(device, dtype)
            .contiguous(memory_format=torch.channels_last)
        )
        conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device, dtype, memory_format=torch.channels_last)
        with torch.inference_mode():
            best = min(seconds(lambda conv=conv, x=x: conv(x), args.peak_repeats, sync=sync))
        flops = 2 * conv_shape[0] * 64 * 64 * 9 * conv_shape[2] * conv_shape[3]
        entries["conv3x3_64_channels_last"] = round(flops / best / 1e9, 1)
        result[f"{name}_measurements"] = entries
        result[f"{name}_gflops"] = max(entries.values())
        print(f"peak {name}: {entries}", flush=True)
    if device.type == "cpu":
        flags = cpu_flags()
        result.update(
            cpu=cpu_model(),
            flags=sorted(flag for flag in flags if flag in SHOWN_FLAGS or flag in CPU_BF16_FLAGS),
            native_bf16=cpu_has_bf16(),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
        )
    else:
        result.update(gpu=torch.cuda.get_device_name(device), bf16_supported=torch.cuda.is_bf16_supported())
    return result


def networks(device: torch.device | None = None) -> tuple[torch.nn.Module, torch.nn.Module]:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    return create_restorer("scunet", preset="paper").eval().to(device), create_localizer("dfcn").eval().to(device)


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

    Kinds: ``predict`` (prepared Pipeline.predict in fp32 on a random image), ``baseline``
    (the plain loop; ``--map-out`` saves its map), ``train`` (the two ReLoc steps in
    ``--precision``).
    """
    result: dict = {}
    if args.child in ("predict", "baseline"):
        restorer, localizer = networks()
        image = torch.rand(3, args.height, args.width, generator=torch.Generator().manual_seed(args.image_seed))
        started = time.perf_counter()
        if args.child == "predict":
            retain_freed_memory()  # as reloc localize / eval do by default
            pipeline = Pipeline(restorer, localizer).prepare()
            result_map = pipeline.predict(image, window=args.window, stride=args.window)
        else:
            result_map = baseline_predict(use_reference_path(restorer), localizer, image, args.window, args.window)
        result["seconds"] = time.perf_counter() - started
        if args.map_out:
            torch.save(result_map, args.map_out)
    else:
        result.update(training_steps(args, torch.device("cpu"), args.precision))
    status = Path("/proc/self/status").read_text()  # VmHWM: this process's own peak RSS
    result["peak_rss_kib"] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    result["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
    reference = use_reference_path(copy.deepcopy(restorer)).cpu()
    image = torch.rand(1, 3, window, window)
    with torch.no_grad():
        restorer_flops = count_flops(lambda: reference(image))
        localizer_flops = count_flops(lambda: copy.deepcopy(localizer).cpu()(image))
    return {"restorer": restorer_flops, "localizer": localizer_flops, "total": restorer_flops + localizer_flops}


def pipeline_section(args, peak: dict, device: torch.device, sync) -> dict:
    """Pipeline.predict, prepared, in fp32 and reduced precision; the eager baseline on the CPU."""
    restorer, localizer = networks(device)
    flops = window_flops(restorer, localizer, args.window)["total"]
    image = torch.rand(3, args.height, args.width, generator=torch.Generator().manual_seed(1))
    n_windows = len(window_origins(args.height, args.window, args.window)) * len(
        window_origins(args.width, args.window, args.window)
    )
    megapixels = args.height * args.width / 1e6
    results: dict = {
        "image": f"3x{args.height}x{args.width}",
        "window": args.window,
        "stride": args.window,
        "windows": n_windows,
        "gflop_per_window": round(flops / 1e9, 1),
        "batch_size": args.batch_size or "predict's default (1 window per pass on the CPU, 4 on a GPU)",
    }
    pipeline = Pipeline(restorer, localizer).prepare()
    maps = {}
    reduced = (["bf16"] if time_bf16(args) else []) if device.type == "cpu" else ["bf16", "fp16"]
    if device.type == "cpu" and not reduced:
        results["bf16"] = {"skipped": BF16_SKIPPED}
    for precision in ["fp32", *reduced]:
        pipeline.precision = precision

        def predict(key=precision):
            maps[key] = pipeline.predict(image, window=args.window, stride=args.window, batch_size=args.batch_size)

        pipeline.predict(torch.rand(3, args.window, args.window), window=args.window, stride=args.window)  # warm-up
        times = seconds(predict, args.repeats, warmup=0, sync=sync)
        best = min(times)
        results[precision] = {
            "seconds": round(best, 3),
            "all_seconds": [round(t, 3) for t in times],
            "mpx_s": round(megapixels / best, 4),
            "achieved_gflops": round(flops * n_windows / best / 1e9, 1),
            "share_of_peak": round(flops * n_windows / best / 1e9 / peak[f"{precision}_gflops"], 3),
        }
        if precision != "fp32":
            results[precision]["max_prob_diff_vs_fp32"] = float((maps[precision] - maps["fp32"]).abs().max())
        print(f"pipeline {precision}: {results[precision]}", flush=True)
    if args.compile:
        compiled = Pipeline(restorer, localizer, precision="auto").prepare()
        compiled.run = torch.compile(compiled.run, dynamic=False)
        started = time.perf_counter()
        compiled.predict(image, window=args.window, stride=args.window, batch_size=args.batch_size)
        sync()
        first = time.perf_counter() - started
        times = seconds(
            lambda: compiled.predict(image, window=args.window, stride=args.window, batch_size=args.batch_size),
            args.repeats,
            warmup=0,
            sync=sync,
        )
        results["compiled_auto"] = {
            "precision": dtype_name(resolve_precision("auto", device)),
            "seconds": round(min(times), 3),
            "mpx_s": round(megapixels / min(times), 4),
            "first_call_seconds": round(first, 1),
        }
        print(f"pipeline compiled: {results['compiled_auto']}", flush=True)
    if device.type == "cpu" and args.baseline:
        with tempfile.TemporaryDirectory() as folder:
            map_path = os.path.join(folder, "baseline.pt")
            child = run_child(
                args,
                "baseline",
                "--height",
                str(args.height),
                "--width",
                str(args.width),
                "--image-seed",
                "1",
                "--map-out",
                map_path,
            )
            baseline_map = torch.load(map_path)
        results["baseline"] = {
            "seconds": round(child["seconds"], 3),
            "mpx_s": round(megapixels / child["seconds"], 4),
            "achieved_gflops": round(flops * n_windows / child["seconds"] / 1e9, 1),
            "description": "release formulation of SCUNet (roll, partition, einsum + softmax attention), plain "
            "DFCN, NCHW, one window at a time, torch.no_grad, default malloc; in a child process",
            "max_abs_difference_vs_fp32": float((baseline_map - maps["fp32"]).abs().max()),
        }
        results["fp32_speedup_vs_baseline"] = round(child["seconds"] / results["fp32"]["seconds"], 2)
        print(f"pipeline baseline: {results['baseline']}", flush=True)
    return results


def localizer_section(args, device: torch.device, sync) -> dict:
    """Per 512x512 window in fp32: plain eager vs prepared (and ONNX Runtime on the CPU)."""
    out: dict = {}
    image = torch.rand(1, 3, args.window, args.window, generator=torch.Generator().manual_seed(4)).to(device)
    for name in LOCALIZERS:
        torch.manual_seed(0)
        plain = create_localizer(name).eval().to(device)
        with torch.no_grad():
            eager = seconds(lambda plain=plain: plain(image), args.localizer_repeats, sync=sync)
            expected = segmentation_logits(plain(image))
        fast_network = prepare_for_inference(copy.deepcopy(plain))
        shown = image.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fast = seconds(lambda net=fast_network, x=shown: net(x), args.localizer_repeats, sync=sync)
            fast_difference = float((segmentation_logits(fast_network(shown)) - expected).abs().max())
        entry = {
            "eager_s": round(min(eager), 4),
            "fast_s": round(min(fast), 4),
            "speedup": round(min(eager) / min(fast), 3),
            "max_abs_logit_diff_fast": fast_difference,
            "eager": "the published definition as built: NCHW input and weights, BatchNorm, torch.no_grad",
            "fast": "prepare_for_inference (BatchNorm folded, channels_last weights and input), inference_mode",
        }
        if device.type == "cpu" and name in args.onnx_networks.split(","):
            try:
                entry.update(onnx_runtime(plain, image, expected, args, quantize=name == "dfcn"))
            except Exception as error:  # noqa: BLE001 - recorded; the PyTorch figures stand
                entry["onnxruntime_error"] = f"{type(error).__name__}: {error}"
        out[name] = entry
        print(f"localizer {name}: {entry}", flush=True)
    return out


def onnx_runtime(network, image, expected, args, quantize: bool) -> dict:
    """ONNX Runtime (all graph optimisations) fp32 and, with ``quantize``, dynamic int8."""
    import onnxruntime

    from reloc.export import export_onnx

    result: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = export_onnx(network, Path(folder) / "model.onnx", args.window, args.window, dynamic=False)
        result["onnx_export_s"] = round(time.perf_counter() - started, 1)
        variants = [("onnxruntime_fp32", path)]
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = Path(folder) / "model-int8.onnx"
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QUInt8)
            variants.append(("onnxruntime_int8_dynamic", quantized))
        feed = {"image": image.cpu().numpy()}
        for key, model in variants:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            times = seconds(lambda session=session: session.run(None, feed), args.localizer_repeats)
            outputs = session.run(None, feed)
            logits = torch.from_numpy(outputs[-1])  # MVSS-Net: (edge, seg); the others: one output
            result[f"{key}_s"] = round(min(times), 4)
            result[f"{key}_max_abs_logit_diff"] = float((logits - expected.cpu()).abs().max())
    return result


BF16_SKIPPED = "not timed: this CPU has no native bf16 (--bf16 auto), so autocast emulates it far slower than fp32"


def time_bf16(args) -> bool:
    """Whether the bf16 sections run: ``--bf16 on``, or ``auto`` on a CPU with native bf16."""
    return args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_bf16())


def accuracy_section(args) -> dict:
    """fp32 against bf16 on a fixed synthetic evaluation set: per-image F1 / AUC and probabilities."""
    if not time_bf16(args):
        return {"skipped": BF16_SKIPPED}
    from reloc.data.catalog import load_dataset
    from reloc.data.datasets import WholeImages
    from reloc.data.synth import synthesize
    from reloc.metrics import LocalizationMetrics
    from reloc.models.weights import load_network

    if args.accuracy_weights:
        folder = Path(args.accuracy_weights)
        localizer = load_network(folder / "localizer.safetensors")
        restorer_file = folder / "restorer.safetensors"
        restorer = load_network(restorer_file) if restorer_file.is_file() else None
        weights = str(folder)
    else:
        restorer, localizer = networks()
        weights = "random initialisation (no --accuracy-weights): F1 near the 0.5 threshold is fragile"
    with tempfile.TemporaryDirectory() as folder:
        synthesize("default", Path(folder) / "synth", count=args.accuracy_images, seed=11, size=args.accuracy_size)
        refs = load_dataset(Path(folder) / "synth")
        images = WholeImages(refs, "jpeg:75", seed=0)
        metrics = {key: LocalizationMetrics(pooled_auc=False) for key in ("fp32", "bf16")}
        pipeline = Pipeline(restorer, localizer).prepare()
        max_prob = 0.0
        for index in range(len(images)):
            item = images[index]
            maps = {}
            for key, accumulator in metrics.items():
                pipeline.precision = key
                maps[key] = pipeline.predict(item["distorted"], window=args.window, stride=args.window)
                accumulator.update(maps[key].numpy(), item["mask"][0].numpy(), name=item["name"])
            max_prob = max(max_prob, float((maps["bf16"] - maps["fp32"]).abs().max()))

    def max_diff(metric: str) -> float:
        pairs = zip(metrics["fp32"].per_image, metrics["bf16"].per_image)
        values = [abs(a[metric] - b[metric]) for a, b in pairs if a[metric] == a[metric] and b[metric] == b[metric]]
        return round(max(values), 5) if values else float("nan")

    result = {
        "max_f1_diff": max_diff("f1"),
        "max_auc_diff": max_diff("auc"),
        "max_prob_diff": round(max_prob, 5),
        "images": len(refs),
        "set": f"reloc synth, scikit-image photos, {args.accuracy_images} images of "
        f"{args.accuracy_size} px, seed 11, jpeg:75 (seed 0)",
        "weights": weights,
        "fp32_per_image": metrics["fp32"].summary()["per-image"],
        "bf16_per_image": metrics["bf16"].summary()["per-image"],
    }
    result["within_0.005"] = bool(result["max_f1_diff"] <= 0.005 and result["max_auc_diff"] <= 0.005)
    print(f"bf16 accuracy: {result}", flush=True)
    return result


def memory_section(args) -> dict:
    child = run_child(args, "predict", "--height", str(args.memory_height), "--width", str(args.memory_width))
    return {
        "image": f"3x{args.memory_height}x{args.memory_width}",
        "window": args.window,
        "peak_rss_gb": round(child["peak_rss_kib"] * 1024 / 1e9, 3),
        "seconds": round(child["seconds"], 1),
        "how": "prepared Pipeline.predict (scunet(paper) + dfcn, fp32) in a fresh child process; its peak "
        "resident set (VmHWM of /proc/self/status); GB = 1e9 bytes",
    }


def training_steps(args, device: torch.device, precision: str, paper_scale: bool = False, sync=lambda: None) -> dict:
    """Images per second of ``ReLocTask.restoration_step`` and ``localization_step``."""
    from reloc.config import load_config
    from reloc.engine.distributed import DistContext
    from reloc.engine.tasks import create_task

    restorer = "paper" if paper_scale else "small"
    overrides = [
        "data.dataset=unused",
        "train.task=reloc",
        "model.restorer=scunet",
        f"model.restorer_args={{preset: {restorer}}}",
        "model.localizer=dfcn",
        "model.localizer_args={}",
        "model.discriminator=dcgan",
        f"data.batch_size={args.train_batch}",
        f"data.crop={args.train_crop}",
        f"train.precision={precision}",
    ]
    torch.manual_seed(0)
    task = create_task(load_config(None, overrides), device, DistContext())
    generator = torch.Generator().manual_seed(3)
    b, c = args.train_batch, args.train_crop
    plain = torch.rand(b, 3, c, c, generator=generator)
    batch = {
        "plain": plain.to(device),
        "distorted": (plain + 0.05 * torch.randn(b, 3, c, c, generator=generator)).clamp(0, 1).to(device),
        "mask": (torch.rand(b, 1, c, c, generator=generator) > 0.8).float().to(device),
    }
    results: dict = {
        "batch": b,
        "crop": c,
        "networks": f"scunet({restorer}) + dfcn + dcgan",
        "precision": dtype_name(task.dtype),
    }
    for name, step in (("restoration", task.restoration_step), ("localization", task.localization_step)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = seconds(lambda step=step: step(batch), args.train_repeats, warmup=1, sync=sync)
        best = min(times)
        results[name] = {"step_seconds": round(best, 3), "img_per_s": round(b / best, 2)}
        if device.type == "cuda":
            results[name]["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    return results


def training_section(args) -> dict:
    out: dict = {}
    if not time_bf16(args):
        out["bf16"] = {"skipped": BF16_SKIPPED}
    for precision in ("fp32", "bf16") if time_bf16(args) else ("fp32",):
        child = run_child(args, "train", "--precision", precision)
        out[precision] = {
            key: child[key] for key in ("restoration", "localization", "precision", "batch", "crop", "networks")
        }
        print(f"train {precision}: {out[precision]}", flush=True)
    return out


# --- the GPU path -------------------------------------------------------------------------
def cuda_main(args) -> None:
    """Pipeline and paper-scale training on a CUDA device -> ``results/speed/speed-cuda.json``."""
    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here; the CPU benchmark runs without --device")
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize
    started = time.time()
    record: dict = {"peak": measure_peak(args, device, sync)}
    record["pipeline"] = pipeline_section(args, record["peak"], device, sync)
    record["localizers"] = localizer_section(args, device, sync)
    paper = argparse.Namespace(**{**vars(args), "train_batch": 56, "train_crop": 128})
    precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])  # fp16 with grad scaling
    record["training"] = {p: training_steps(paper, device, p, paper_scale=True, sync=sync) for p in precisions}
    record.update(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=round(time.time() - started, 1),
        command=" ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
    )
    out = args.out or RESULTS / "speed" / "speed-cuda.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development (and the GPU check)")
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="time bf16 (pipeline, accuracy, training): auto = only where the CPU has native bf16 "
        "(emulated bf16 is ~50x slower than fp32 and would take hours); the bf16 peak is always probed",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] for the GPU path")
    parser.add_argument("--onnx-networks", default=",".join(LOCALIZERS), help="localizers also run in ONNX Runtime")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the 4000x3000 memory run")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the eager baseline")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the pipeline (default on CUDA)")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None, help="windows per pass in predict (default: its own)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--peak-repeats", type=int, default=5)
    parser.add_argument("--localizer-repeats", type=int, default=3)
    parser.add_argument("--memory-height", type=int, default=3000)
    parser.add_argument("--memory-width", type=int, default=4000)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-crop", type=int, default=128)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--accuracy-weights", help="folder with localizer.safetensors (+ restorer.safetensors)")
    parser.add_argument("--accuracy-images", type=int, default=8)
    parser.add_argument("--accuracy-size", type=int, default=512)
    parser.add_argument("--note", default="", help="stored in the JSON (e.g. the machine was loaded)")
    parser.add_argument("--budget-s", type=float, default=0, help="skip the sections that would start after this")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", choices=["predict", "baseline", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--image-seed", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--map-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if args.quick:
        if args.device == "cpu":
            args.window, args.height, args.width = 256, 256, 512
        else:
            args.height, args.width = 2048, 2048
        args.memory_height, args.memory_width = 768, 1024
        args.peak_repeats, args.localizer_repeats, args.train_repeats, args.train_batch = 2, 1, 1, 4
        args.accuracy_images, args.accuracy_size = 2, 256
    if args.device != "cpu":
        args.compile = True
        cuda_main(args)
        return

    started = time.time()
    load_start = os.getloadavg()

    def no_sync() -> None:
        return None

    out = args.out or RESULTS / "speed" / "speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def section(name: str, function, *arguments):
        """Run one section unless ``--budget-s`` is used up; a failure is recorded, not fatal.
        What is measured so far is written to ``out`` after each section (``"partial": true``)."""
        if args.budget_s and time.time() - started > args.budget_s:
            skipped.append(name)
            return None
        try:
            return function(*arguments)
        except Exception as error:  # noqa: BLE001 - the other sections' figures are still worth writing
            errors[name] = f"{type(error).__name__}: {error}"
            print(f"section {name} failed: {errors[name]}", flush=True)
            return None
        finally:
            partial = {**record, "partial": True, "note": args.note, "failed_sections": errors}
            out.write_text(json.dumps(partial, indent=2, default=str) + "\n")

    skipped: list[str] = []
    errors: dict[str, str] = {}
    cpu = torch.device("cpu")
    retain_freed_memory()  # this process measures as reloc localize / eval run (children: see child_main)
    record: dict = {}
    record["peak"] = peak = section("peak", measure_peak, args, cpu, no_sync)
    record["pipeline"] = section("pipeline", pipeline_section, args, peak, cpu, no_sync)
    record["localizers"] = section("localizers", localizer_section, args, cpu, no_sync)
    record["bf16_accuracy"] = section("bf16_accuracy", accuracy_section, args)
    record["training"] = section("training", training_section, args)
    if args.memory:
        record["memory"] = section("memory", memory_section, args)
        print(f"memory: {record['memory']}", flush=True)
    if not (record["peak"] and record["pipeline"]):
        print(f"the peak or the pipeline is missing; {out} keeps the partial record", flush=True)
        return
    peak_end = measure_peak(argparse.Namespace(peak_repeats=args.peak_repeats), torch.device("cpu"), no_sync)
    pipeline = record["pipeline"]
    summary = {
        "pipeline_fp32_mpx_s": pipeline["fp32"]["mpx_s"],
        "pipeline_bf16_mpx_s": pipeline["bf16"].get("mpx_s"),
        "pipeline_bf16_over_fp32": round(pipeline["bf16"]["mpx_s"] / pipeline["fp32"]["mpx_s"], 3)
        if "mpx_s" in pipeline["bf16"]
        else None,
        "auto_precision_here": dtype_name(resolve_precision("auto", "cpu")),
        "localizer_speedups": {name: entry["speedup"] for name, entry in (record["localizers"] or {}).items()},
        "skipped_sections": skipped,
        "failed_sections": errors,
    }
    training = record["training"] or {}
    result = {
        "peak": {
            "fp32_gflops": peak["fp32_gflops"],
            "bf16_gflops": peak["bf16_gflops"],
            "cpu": peak["cpu"],
            "flags": peak["flags"],
            "native_bf16": peak["native_bf16"],
            "measurements_start": peak,
            "measurements_end": {k: v for k, v in peak_end.items() if k.endswith("measurements")},
        },
        "pipeline": {
            "fp32_mpx_s": pipeline["fp32"]["mpx_s"],
            "bf16_mpx_s": pipeline["bf16"].get("mpx_s"),
            "fp32_share_of_peak": pipeline["fp32"]["share_of_peak"],
            "bf16_share_of_peak": pipeline["bf16"].get("share_of_peak"),
            **pipeline,
        },
        "localizers": record["localizers"],
        "bf16_accuracy": record["bf16_accuracy"],
        "peak_rss_gb_4000x3000": record["memory"]["peak_rss_gb"] if record.get("memory") and not args.quick else None,
        "training": record["training"],
        **{
            f"train_{step}_img_per_s_{p}": training[p][step]["img_per_s"] if step in training.get(p, {}) else None
            for step in ("restoration", "localization")
            for p in ("fp32", "bf16")
        },
        "summary": summary,
        "memory": record.get("memory"),
        "flop_counting": FLOP_NOTE,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "note": args.note,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 1),
        "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
