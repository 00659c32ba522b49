"""Precision choice (fp32 / bf16 / fp16 / auto), autocast in inference and training, devices."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from conftest import build_cached, load_benchmark
from reloc import precision
from reloc.devices import pick_device
from reloc.engine.distributed import DistContext
from reloc.engine.inference import Pipeline
from reloc.models import segmentation_logits
from reloc.precision import resolve_precision

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_flags_come_from_proc_cpuinfo():
    precision.cpu_flags.cache_clear()
    flags = precision.cpu_flags()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    assert flags and all(flag in text for flag in list(flags)[:5])
    assert precision.cpu_has_bf16() == bool(flags & precision.CPU_BF16_FLAGS)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2", "fma"}, torch.float32), ({"avx512f", "avx512_bf16"}, torch.bfloat16), ({"amx_bf16"}, torch.bfloat16)],
)
def test_auto_on_cpu_follows_the_bf16_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == torch.float32
    assert resolve_precision("bf16", "cpu") == torch.bfloat16  # asked for: runs, emulated where not native


@pytest.mark.parametrize(("supported", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_cuda_is_bf16_where_supported_else_fp16(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: supported)
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("fp16", "cuda:0") == torch.float16
    if not supported:
        with pytest.raises(ValueError, match="bf16"):
            resolve_precision("bf16", "cuda")


def test_bad_precisions_are_errors():
    with pytest.raises(ValueError, match="one of"):
        resolve_precision("int8", "cpu")
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision"):
        Pipeline(None, build_cached("localizer", "dfcn", width=0.25, faithful=False), precision="half")


def test_pipeline_bf16_runs_under_autocast_and_returns_float32():
    restorer = build_cached("restorer", "scunet", preset="tiny").eval()
    localizer = build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()
    image = torch.rand(3, 64, 80)
    fp32 = Pipeline(restorer, localizer).predict(image, window=64, stride=64)
    pipeline = Pipeline(restorer, localizer, precision="bf16")
    assert pipeline.compute_dtype() == torch.bfloat16
    bf16, restored = pipeline.predict(image, window=64, stride=64, return_restored=True)
    assert bf16.dtype == restored.dtype == torch.float32
    difference = (bf16 - fp32).abs().max().item()
    assert 0 < difference < 0.05  # bf16 rounding is visible (autocast is on) and small


@pytest.mark.parametrize(
    ("kind", "name", "kwargs", "layer"),
    [
        ("localizer", "dfcn", {"width": 0.25, "faithful": False, "highpass": True}, "dense_block1"),
        ("restorer", "scunet", {"preset": "tiny"}, "m_head"),
        ("localizer", "mvssnet", {}, "constrain_conv"),
        ("localizer", "scse_unet", {"encoder": "resnet18"}, "encoder.conv1"),
    ],
)
def test_the_layers_that_see_pixels_run_in_float32_under_bf16_autocast(kind, name, kwargs, layer):
    # bf16 rounds an 8-bit image's k/255 to a 1/256 grid: the pixel-facing layers must not see that
    network = build_cached(kind, name, **kwargs).eval()
    image = torch.randint(0, 256, (1, 3, 64, 64)).float() / 255
    outputs = {}
    network.get_submodule(layer).register_forward_hook(lambda module, args, out: outputs.setdefault(len(outputs), out))
    with torch.inference_mode():
        full = segmentation_logits(network(image))  # a restorer's image, a localizer's logits
        with precision.autocast("cpu", torch.bfloat16):
            reduced = segmentation_logits(network(image))
    assert outputs[1].dtype == torch.float32
    assert torch.equal(outputs[0], outputs[1])  # the same float32 computation
    assert not torch.equal(full, reduced.float())  # while the layers after it ran in bf16


def _task(precision_name: str, amp: bool = True):
    from reloc.config import load_config
    from reloc.engine.tasks import create_task

    overrides = [
        "data.dataset=unused",
        "train.task=reloc",
        "model.restorer_args={preset: tiny}",
        "model.localizer_args={width: 0.25, faithful: false}",
        f"train.precision={precision_name}",
        f"train.amp={amp}",
    ]
    return create_task(load_config(None, overrides), torch.device("cpu"), DistContext())


@pytest.mark.parametrize(("name", "amp", "expected"), [("bf16", True, torch.bfloat16), ("bf16", False, torch.float32)])
def test_training_precision_sets_autocast_and_steps(name, amp, expected):
    task = _task(name, amp)
    assert task.dtype == expected
    assert not any(scaler.is_enabled() for scaler in task.scalers.values())  # scaling is for fp16 only
    generator = torch.Generator().manual_seed(0)
    plain = torch.rand(2, 3, 64, 64, generator=generator)
    batch = {
        "plain": plain,
        "distorted": plain.clone(),
        "mask": (torch.rand(2, 1, 64, 64, generator=generator) > 0.7).float(),
    }
    before = next(task.networks["restorer"].parameters()).clone()
    for step in (task.restoration_step, task.localization_step):
        losses = step(batch)
        assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert not torch.equal(before, next(task.networks["restorer"].parameters()))
    with task._autocast():
        assert torch.mm(torch.rand(4, 4), torch.rand(4, 4)).dtype == expected


def test_training_fp16_on_cpu_is_refused():
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        _task("fp16")


def test_device_selection_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    assert DistContext().local_device(torch.device("cpu")) == torch.device("cpu")


@needs_cuda
def test_cuda_pipeline_auto_precision_and_training_scaler():
    device = torch.device("cuda")
    localizer = copy.deepcopy(build_cached("localizer", "dfcn", width=0.25, faithful=False))
    pipeline = Pipeline(None, localizer.to(device), precision="auto").prepare()
    probabilities = pipeline.predict(torch.rand(3, 64, 64), window=64, stride=64)
    assert probabilities.dtype == torch.float32 and probabilities.device.type == "cpu"
    assert pipeline.compute_dtype() == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def test_the_precision_benchmark_switches_the_pixel_guard_off_and_back(monkeypatch):
    bench = load_benchmark("precision.py", "precision_bench", monkeypatch)
    network = build_cached("localizer", "dfcn", width=0.25, faithful=False, highpass=True).eval()
    dtypes = []
    network.dense_block1.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    image = torch.rand(1, 3, 32, 32)
    with torch.inference_mode(), precision.autocast("cpu", torch.bfloat16):
        with bench.pixel_layers_in_bf16():  # "bf16 everywhere": the mode measured as "before"
            network(image)
        network(image)
    assert dtypes == [torch.bfloat16, torch.float32]


def _precision_benchmark_on_fakes(monkeypatch, digests: dict[str, str]):
    """benchmarks/precision.py with what its main() imports faked: the weights' digests and
    the test set (two images)."""
    bench = load_benchmark("precision.py", "precision_bench", monkeypatch)
    monkeypatch.setattr(bench, "weights_digest", digests.get)
    monkeypatch.setattr(bench, "make_test_set", str)
    monkeypatch.setattr(bench, "git_commit", lambda: "commit")
    monkeypatch.setattr("reloc.data.catalog.load_dataset", lambda folder: ["image a", "image b"])
    return bench


def test_the_precision_benchmark_stops_on_a_damaged_results_file_and_keeps_it(tmp_path, monkeypatch):
    bench = _precision_benchmark_on_fakes(monkeypatch, {"plain": "a", "robust": "b", "reloc": "c"})
    monkeypatch.setattr(bench, "evaluate_row", lambda *args: pytest.fail("measured despite the damaged file"))
    out = tmp_path / "precision.json"
    out.write_text('{"images": 2, "rows": {"plain none fp32": {"auc": 0.9')  # cut off mid-row
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--work", str(tmp_path), "--out", str(out)])
    assert str(stopped.value).startswith(f"error: {out}: not a readable results file")
    assert out.read_text().endswith('{"auc": 0.9')  # left as it was


def test_the_precision_benchmark_measures_again_the_rows_of_other_weights(tmp_path, monkeypatch):
    digests = {"plain": "shipped now", "robust": "before", "reloc": "before"}
    bench = _precision_benchmark_on_fakes(monkeypatch, digests)
    measured = []

    def row(name, spec, mode, refs):
        measured.append((name, mode))
        return {"f1": 0.5, "iou": 0.4, "auc": 0.9, "auc_per_image": [0.8, 1.0], "images": len(refs), "seconds": 0.0}

    monkeypatch.setattr(bench, "evaluate_row", row)
    out = tmp_path / "precision.json"
    earlier = {"f1": 0.1, "iou": 0.1, "auc": 0.6, "auc_per_image": [0.5, 0.7], "images": 2, "weights_sha256": "before"}
    keys = [f"{name} {spec} {mode}" for name, spec in bench.ROWS for mode in bench.MODES]
    out.write_text(json.dumps({"images": 2, "rows": {key: earlier for key in keys}}))
    bench.main(["--work", str(tmp_path), "--out", str(out)])
    assert measured == [("plain", mode) for mode in bench.MODES]  # only the rows of new weights
    rows = json.loads(out.read_text())["rows"]
    assert {key: rows[key]["weights_sha256"] for key in keys} == {key: digests[key.split()[0]] for key in keys}
    assert rows["plain none fp32"]["auc"] == 0.9 and rows["robust jpeg:75 fp32"]["auc"] == 0.6
