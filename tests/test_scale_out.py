"""Scale-out inference: inputs split across processes (torchrun, gloo on the CPU), results merged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from test_localize import _png_bytes

from conftest import build_cached
from reloc.engine.distributed import DistContext
from reloc.engine.localize import localize_files
from reloc.engine.model_choice import ModelChooser
from reloc.metrics import LocalizationMetrics
from reloc.models.weights import save_network

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_shards_take_every_item_exactly_once():
    items = [f"file{i}" for i in range(11)]
    shards = [DistContext(rank, 3, rank).shard(items) for rank in range(3)]
    taken = sorted(index for shard in shards for index, _ in shard)
    assert taken == list(range(11))
    assert all(items[index] == item for shard in shards for index, item in shard)
    assert DistContext().shard(items) == list(enumerate(items))


def test_merged_metrics_equal_one_accumulator():
    rng = np.random.default_rng(0)
    maps = [(rng.random((8, 9)).astype(np.float32), rng.random((8, 9)) > (0.6 if i < 5 else 2)) for i in range(7)]
    single = LocalizationMetrics()
    parts = [LocalizationMetrics(), LocalizationMetrics()]
    for index, (probabilities, mask) in enumerate(maps):
        single.update(probabilities, mask, name=str(index))
        parts[index % 2].update(probabilities, mask, name=str(index))
    merged = LocalizationMetrics.merged(parts, [[0, 2, 4, 6], [1, 3, 5]])
    assert json.dumps(merged.per_image) == json.dumps(single.per_image)  # dataset order restored (NaN too)
    assert single.summary()["authentic"]["images"] == 2  # the last two masks are all authentic
    assert json.dumps(merged.summary(), sort_keys=True) == json.dumps(single.summary(), sort_keys=True)  # NaN too


def test_torchrun_localize_two_processes_equals_one(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    for seed in range(5):
        (folder / f"img{seed}.png").write_bytes(_png_bytes(seed))
    (folder / "cut.png").write_bytes(_png_bytes(9)[:50])
    weights = tmp_path / "dfcn.safetensors"
    save_network(build_cached("localizer", "dfcn", width=0.25, faithful=False), weights)
    inputs = [str(folder), str(tmp_path / "missing.png")]
    environment = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "reloc",
        "localize",
        *inputs,
        "--localizer",
        str(weights),
        "--out",
        str(tmp_path / "two"),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--window",
        "64",
        "--stride",
        "64",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode != 0, result.stdout + result.stderr  # the bad file and the missing path
    assert result.stdout.count("localized 5 image(s), 2 failed") == 1, result.stdout + result.stderr
    assert "cut.png" in result.stdout and "missing.png" in result.stdout

    chooser = ModelChooser.from_option(weights, "cpu", precision="fp32")  # what the CLI builds from --localizer
    summary = localize_files(
        inputs, chooser, tmp_path / "one", window=64, stride=64, progress=False, fusion="clones+dq"
    )
    assert len(summary.processed) == 5 and len(summary.failed) == 2
    merged = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert merged["processes"] == 2 and merged["counts"] == {"processed": 5, "failed": 2, "skipped": 0}
    assert [item["status"] for item in merged["files"]].count("ok") == 5  # each file exactly once
    assert len({item["input"] for item in merged["files"]}) == len(merged["files"]) == 7

    def outputs(folder):
        return sorted(path for path in folder.iterdir() if path.name != "summary.json")

    one, two = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 5 * 5  # the command line fuses: + learned
    for a, b in zip(one, two):
        if a.suffix == ".json":
            left, right = json.loads(a.read_text()), json.loads(b.read_text())
            for varying in ("seconds", "time_utc"):
                left.pop(varying), right.pop(varying)
            assert left == right, a.name
        else:
            assert a.read_bytes() == b.read_bytes(), a.name


def _eval_worker(rank: int, world: int, port: int, dataset: str, weights: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from reloc.data.catalog import load_dataset
    from reloc.engine.evaluate import Situation, evaluate_situation

    dist = DistContext.from_environment("cpu")
    record = evaluate_situation(
        Situation("P{D}", weights),
        load_dataset(dataset),
        "jpeg:75",
        device=torch.device("cpu"),
        window=64,
        stride=64,
        progress=False,
        dist=dist,
    )
    record.pop("seconds")
    Path(out, f"rank{rank}.json").write_text(json.dumps(record, default=str))
    dist.close()


def test_two_process_eval_equals_one(tmp_path):
    from reloc.data.catalog import load_dataset
    from reloc.data.synth import synthesize
    from reloc.engine.evaluate import Situation, evaluate_situation

    synthesize("default", tmp_path / "synth", count=5, seed=0, size=80, progress=False, workers=1)
    weights = tmp_path / "dfcn.safetensors"
    save_network(build_cached("localizer", "dfcn", width=0.25, faithful=False), weights)
    args = (2, _free_port(), str(tmp_path / "synth"), str(weights), str(tmp_path))
    mp.start_processes(_eval_worker, args=args, nprocs=2, start_method="spawn")
    single = evaluate_situation(
        Situation("P{D}", str(weights)),
        load_dataset(tmp_path / "synth"),
        "jpeg:75",
        device=torch.device("cpu"),
        window=64,
        stride=64,
        progress=False,
    )
    single.pop("seconds")
    expected = json.loads(json.dumps(single, default=str))
    for rank in (0, 1):  # every process returns the merged record
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
    assert expected["images"] == 5
