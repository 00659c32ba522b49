"""The recipe's bookkeeping: its results file (provenance of every part), the machine, the commit,
the progress and summary of a training run, and the recipe's wall time.

:func:`read_results` is the one reader of result files the recipe, the card writer and the
scripts of ``benchmarks/`` share: a file damaged by hand, by a merge or by a full disk ends the
run with one line naming it and how to recover, never a traceback, and nothing is overwritten.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from reloc.io_utils import write_json_atomic
from reloc.release.recipe import ROOT

RESULTS = ROOT / "benchmarks" / "results" / "release" / "pretrain.json"
_MISSING = object()


def read_results(path: Path, default: Any = _MISSING) -> Any:
    """The JSON in ``path``; ``default`` where there is no such file (without one, the file
    must exist).

    Raises:
        SystemExit: ``error: PATH: ...`` (exit status 1) for a missing file without a
            default, an unreadable file, or one that is not valid UTF-8 JSON.
    """
    path = Path(path)
    if not path.is_file():
        if default is _MISSING:
            raise SystemExit(f"error: {path}: no such results file")
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        message = (
            f"error: {path}: not a readable results file ({error}); restore it (`git checkout -- {path}` "
            "if it is committed) or move it away to measure again"
        )
        raise SystemExit(message) from None


def load_results(path: Path) -> dict:
    """The recipe's results file (``{"parts": {}}`` before the first part)."""
    return read_results(path, {"parts": {}})


def save_results(results: dict, path: Path) -> None:
    """Write the recipe's results file atomically (after every part)."""
    write_json_atomic(path, results)


def machine_summary() -> dict:
    """The processor the parts run on, the GPU where there is one, and the precision
    ``train.precision=auto`` trains in there: the recipe's wall time depends on them (bf16
    autocast only with native bf16)."""
    import torch

    from reloc.precision import CPU_BF16_FLAGS, cpu_flags, cpu_model, dtype_name, resolve_precision

    summary = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "bf16_flags": sorted(cpu_flags() & CPU_BF16_FLAGS),
        "training_precision": dtype_name(resolve_precision("auto", "cpu")),
    }
    if torch.cuda.is_available():
        summary["gpu"] = torch.cuda.get_device_name()
        summary["gpu_training_precision"] = dtype_name(resolve_precision("auto", "cuda"))
    return summary


def git_commit() -> str:
    """The checkout's commit; ``RELOC_COMMIT`` where the checkout travelled without its
    ``.git`` (a GPU machine given a copy of the working tree)."""
    if os.environ.get("RELOC_COMMIT"):
        return os.environ["RELOC_COMMIT"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_progress(run: Path) -> tuple[int, int]:
    """``(epochs finished, epochs configured)`` of a run folder (0, 0 when it has none)."""
    from reloc import runs

    config, metrics = run / runs.CONFIG, run / runs.METRICS
    if not config.is_file():
        return 0, 0
    total = int(yaml.safe_load(config.read_text())["train"]["epochs"])
    if not metrics.is_file():
        return 0, total
    with metrics.open() as handle:
        return sum(1 for _ in csv.DictReader(handle)), total


def train_summary(run: Path) -> dict:
    """A finished training run's epochs, seconds, seed, starts, resolved config and last metrics row."""
    from reloc import runs

    with (run / runs.METRICS).open() as handle:
        rows = list(csv.DictReader(handle))
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    return {
        "epochs": len(rows),
        "train_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
        "seed": config["train"]["seed"],
        "started_from": config["model"].get("localizer_weights"),
        "restorer_started_from": config["model"].get("restorer_weights"),
        "config": config,
        "last_epoch": rows[-1],
    }


def recipe_wall_seconds(results: dict) -> float:
    """The recipe's wall time: the data and inference parts' walls plus the training parts'
    (``training_wall_seconds``: the time spent training, over every invocation; parts that
    ran side by side count once)."""
    parts = results.get("parts", {})

    def wall(name: str) -> float:
        return parts.get(name, {}).get("wall_seconds") or 0.0

    data = sum(wall(name) for name in parts if name == "data" or name.startswith("data-"))
    return round(data + (results.get("training_wall_seconds") or 0.0) + wall("inference"), 1)
