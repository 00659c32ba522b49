"""Replication of the paper's Tables III, IV and V at CPU scale on real photos.

    python benchmarks/replicate.py --seed 0                   # every part of seed 0, in order
    python benchmarks/replicate.py --seed 0 --part plain      # one part (resumable)
    python benchmarks/replicate.py --aggregate                # seeds -> replicate.json / replicate.md

On a shared machine run one part per lock, so heavy jobs never overlap::

    for part in $(python benchmarks/replicate.py --list-parts); do
        flock /tmp/reloc-cpu.lock .venv/bin/python benchmarks/replicate.py --seed 0 --part $part || break
    done

The experiment is defined once: every training run's settings are in
``configs/replicate/`` (``base.yaml`` shared, one file per training part merged over it),
and :data:`PARTS` is the registry of parts, in run order. What one seed does (work files
under ``--work``, default ``runs/replicate/seed-N/``):

- ``data``: ``reloc.data.synth.synthesize`` makes ``COUNT`` tampered 256-px images of all
  four types from ``--photos`` (default ``../shared/photos`` beside the checkout), split by photo 75% train /
  25% test, validation taken out of train. The generator's traces are set stronger than
  its defaults (:data:`SYNTH_OVERRIDES`): every spliced / copy-moved region resampled
  x0.5-2 with mixed interpolation, Gaussian noise (sigma 4-10) in half the samples, blur
  (sigma 0.6-1.2) in a quarter. With the defaults, CPU-scale localizers learned content
  cues that survive JPEG, which leaves nothing for restoration to recover.
- ``plain`` (M^P), ``finetune`` (M^{D|P}, JPEG QF 75), ``reloc`` (Algorithm 1, QF 75,
  after an MAE-only restorer warm-up), ``equal-updates`` (M^{D|P} given exactly as many
  localizer updates as ReLoc's localizer got in its run), ``finetune-mixed`` and
  ``reloc-mixed`` (QF drawn from 70-100, Table IV), ``plain-b`` (a quarter-width DFCN,
  the second localizer of Table V): training runs from ``configs/replicate/`` (half-width
  DFCN with the fixed SRM front end, small SCUNet started at the identity, 64-px crops
  centred on tampered pixels 70% of the time, batch 8, Adam 1e-3 with cosine decay).
  Every run keeps its best weights by validation localization loss (checkpoint choice on
  validation data, never test; validation F1 on the tamper-biased crops rewarded flagging
  everything). ReLoc's restorer uses the published code's loss weights and rate
  (``reloc.yaml``).
- ``val-gap``: the learnability check, on the **validation** split: P{P} against P{D}.
- ``val-t3``: Table III's situations on the validation split (and the restorer's PSNR
  on whole validation images next to the JPEG input's).
- ``eval-t3``, ``eval-t4``, ``eval-t5``: the tables on the **test** split (whole
  256-px images, per-image means; ``reloc.engine.evaluate``).

Results go to ``benchmarks/results/replicate/seed-N.json`` after every part, each part's
record with the git commit, torch version and (training parts) the configuration it ran.
A training part whose run folder holds a finished checkpoint is skipped, an unfinished
one resumes; an evaluation part whose result is in the JSON is skipped (``--force``
redoes a part). Nothing here is tuned on the test split.

``--aggregate`` combines the seeds: mean and standard deviation over seeds per table cell,
and for the paired ReLoc comparisons two 95% intervals, one over test images (bootstrap,
the trained models fixed) and one over training seeds (Student t on the per-seed mean
differences), since the second is the variance a new training run would meet.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from reloc.release.provenance import read_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEED_RESULTS = RESULTS / "replicate"
CONFIGS = ROOT / "configs" / "replicate"

COUNT = 800
SIZE = 256
DISTORTION = "jpeg:75"
TABLE4_TESTS = ["jpeg:60", "jpeg:70", "jpeg:80"]
#: SynthSettings changed from the generator's defaults (see module doc).
SYNTH_OVERRIDES = {"p_resample": 1.0, "p_noise": 0.5, "p_blur": 0.25}
SECOND_LABEL = "DFCN x0.25"

METRICS = ("f1", "iou", "auc")
#: per-image values kept for Table III, for the paired comparisons of the aggregate
PAIRED_METRICS = ("f1", "auc")
#: (situation, baseline) pairs compared image by image on the test split
PAIRED = [("ReLoc{D}", "D|P{D}"), ("ReLoc{D}", "D|P{D} equal-updates")]
BOOTSTRAP = 10_000


# --- bookkeeping -----------------------------------------------------------------------
def result_path(seed: int) -> Path:
    return SEED_RESULTS / f"seed-{seed}.json"


def load_results(seed: int) -> dict:
    path = result_path(seed)
    return read_results(path, {"seed": seed, "parts": {}, "seconds": {}})


def save_results(seed: int, results: dict) -> None:
    from reloc.io_utils import write_json_atomic

    write_json_atomic(result_path(seed), results)


def merge_results(seed: int, before: dict, after: dict) -> dict:
    """Write what one part changed (``before`` -> ``after``) into the seed's file as it is
    now, under a lock, so parts of one seed may run in parallel processes; returns it."""
    import fcntl

    path = result_path(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = load_results(seed)
        for key, value in after.items():
            old = before.get(key)
            if isinstance(value, dict) and isinstance(current.get(key), dict):
                old = old if isinstance(old, dict) else {}
                current[key].update({k: v for k, v in value.items() if old.get(k) != v})
            elif value != old:
                current[key] = value
        save_results(seed, current)
    return current


def provenance() -> dict:
    """What produced a part's numbers: git commit (and whether the code differed from it),
    torch, reloc and Python versions, torch threads."""
    import torch

    import reloc

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "src", "configs", "benchmarks/replicate.py")
    return {
        "git_commit": commit,
        "git_dirty": None if commit is None or changed is None else bool(changed),
        "torch_version": torch.__version__,
        "reloc_version": reloc.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def means(record: dict) -> dict[str, float | None]:
    """Per-image means of an evaluation record, rounded."""
    per_image = record["metrics"]["per-image"]
    return {
        m: (None if per_image.get(m) is None or per_image[m] != per_image[m] else round(float(per_image[m]), 4))
        for m in METRICS
    }


# --- configurations --------------------------------------------------------------------
def deep_merge(below: dict, above: dict) -> dict:
    """``above`` over ``below``; mappings present in both are merged key by key."""
    merged = dict(below)
    for key, value in above.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def part_settings(name: str) -> dict:
    """``configs/replicate/base.yaml`` with the chain of ``extends:`` files down to ``NAME.yaml``
    merged over it (``extends`` removed; ``start_from`` kept, see :func:`run_config`)."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no such replication config")
    values = yaml.safe_load(path.read_text()) or {}
    parent = values.pop("extends", None)
    below = part_settings(parent) if parent else (yaml.safe_load((CONFIGS / "base.yaml").read_text()) or {})
    return deep_merge(below, values)


def run_config(name: str, seed: int, work: Path, **train: object) -> Path:
    """Write the resolved settings of training part ``name`` for one seed to
    ``WORK/configs/NAME.yaml`` (dataset, seed and starting weights filled in, ``train``
    overriding ``train.*``) and return the file."""
    settings = part_settings(name)
    start_from = settings.pop("start_from", None)
    per_seed = {"data": {"dataset": str(work / "data"), "split_seed": seed}, "train": {"seed": seed, **train}}
    if start_from:
        per_seed["model"] = {"localizer_weights": str(work / start_from)}
    path = work / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(deep_merge(settings, per_seed), sort_keys=False))
    return path


# --- training --------------------------------------------------------------------------
def run_state(run: Path) -> tuple[int, int, dict]:
    """(epochs done, epochs configured, update counts) of a run folder; (0, 0, {}) if none."""
    from reloc import runs
    from reloc.config import load_config

    done = runs.epochs_done(run)  # checkpoints load with weights_only=True (reloc.runs)
    if not done:
        return 0, 0, {}
    return done, load_config(run / runs.CONFIG).train.epochs, runs.update_counts(run)


def metrics_rows(run: Path) -> list[dict]:
    import csv

    from reloc.runs import METRICS

    with (run / METRICS).open() as handle:
        return list(csv.DictReader(handle))


def train_run(run: Path, config_file: Path) -> dict:
    """Train (or resume, or skip when finished) one run; returns its summary, with the
    configuration the run holds (``RUN/config.yaml``, what was actually trained)."""
    from reloc.config import load_config
    from reloc.engine.trainer import selection_score, train

    done, total, _ = run_state(run)
    if total and done >= total:
        print(f"{run.name}: finished before ({done} epochs), skipped")
    elif total:
        print(f"{run.name}: resuming at epoch {done + 1}/{total}")
        train(None, run, resume=True, progress=False)
    else:
        if run.exists():
            shutil.rmtree(run)  # started but no epoch finished: start over
        train(load_config(config_file), run, progress=False)
    done, total, updates = run_state(run)
    rows = metrics_rows(run)
    select_by = load_config(run / "config.yaml").train.select_by
    best = max(rows, key=lambda r: selection_score({k: _float(v) for k, v in r.items()}, select_by))
    keep = (
        "epoch",
        "phase",
        "val_localization",
        "val_f1",
        "val_iou",
        "val_auc",
        "val_psnr_restored",
        "val_psnr_distorted",
    )
    summary = {
        "config": yaml.safe_load((run / "config.yaml").read_text()),
        "epochs": total,
        "updates": updates,
        "select_by": select_by,
        "best_epoch_validation": {k: _number(best[k]) for k in keep if k in best},
        "last_epoch_validation": {k: _number(rows[-1][k]) for k in keep if k in rows[-1]},
        "train_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
    }
    if "val_psnr_restored" in rows[0]:
        summary["validation_psnr_per_epoch"] = [
            {
                "epoch": int(r["epoch"]),
                "phase": r["phase"],
                "restored": _number(r["val_psnr_restored"]),
                "distorted": _number(r["val_psnr_distorted"]),
            }
            for r in rows
        ]
    return summary


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def _number(value: str) -> float | int | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else round(number, 4)


# --- evaluation ------------------------------------------------------------------------
def split(work: Path, seed: int) -> dict:
    """The split the seed's runs were trained with (the plain run's ``split.json``); before
    that run exists, the same split derived with ``data.split_seed=seed``."""
    from reloc import runs
    from reloc.data.catalog import SPLITS, load_dataset, split_by_source
    from reloc.engine.evaluate import evaluation_samples

    if runs.read_split(work / "plain") is not None:
        return {name: evaluation_samples(work / "data", name, [work / "plain"]) for name in SPLITS}
    return split_by_source(load_dataset(work / "data"), seed)


def evaluate(
    situations, refs, distortions: list[str], out: Path, seed: int, per_image: dict | None = None
) -> dict[str, dict]:
    """``{distortion or "none": {situation: {f1, iou, auc}}}`` and the records on disk.

    ``per_image``, if given, receives ``{situation: {image name: [f1, auc]}}`` (one
    distortion per situation name is assumed)."""
    import torch

    from reloc.engine.evaluate import run_evaluation

    with torch.inference_mode():
        records = run_evaluation(
            situations,
            refs,
            distortions,
            out,
            device=torch.device("cpu"),
            window=SIZE,
            stride=SIZE,
            batch_size=1,
            seed=seed,
            keep_maps=4,
            progress=False,
        )
    table: dict[str, dict] = {}
    for record in records:
        table.setdefault(record["distortion"], {})[record["situation"]] = {
            **means(record),
            "images": record["images"],
            "auc_single_class": record["single_class"],
            "undefined_f1": record["undefined_f1"],
        }
        if per_image is not None:
            per_image[record["situation"]] = {
                r["name"]: [_rounded(r.get(m)) for m in PAIRED_METRICS] for r in record["per_image"]
            }
    return table


def _rounded(value: float | None) -> float | None:
    return None if value is None or value != value else round(float(value), 5)


def restorer_psnr(restorer_file: str, refs, distortion: str, seed: int) -> dict[str, float]:
    """Mean PSNR of the distorted and the restored whole images against the plain ones."""
    import torch

    from reloc.data.datasets import WholeImages
    from reloc.metrics import psnr
    from reloc.models.weights import load_network

    restorer = load_network(restorer_file, torch.device("cpu")).eval()
    images = WholeImages(refs, distortion, seed=seed)
    restored, distorted = [], []
    with torch.inference_mode():
        for index in range(len(images)):
            item = images[index]
            plain, jpeg = item["plain"][None], item["distorted"][None]
            restored.append(psnr(restorer(jpeg).clamp(0, 1), plain).item())
            distorted.append(psnr(jpeg, plain).item())
    return {
        "restored": round(statistics.mean(restored), 3),
        "distorted": round(statistics.mean(distorted), 3),
        "images": len(images),
    }


# --- the parts -------------------------------------------------------------------------
@dataclass
class SeedWork:
    """What a part works on: one seed's work folder and result file."""

    seed: int
    work: Path
    photos: str
    results: dict
    force: bool

    def run(self, name: str) -> Path:
        """The run folder of training part ``name``."""
        return self.work / name

    def weights(self, name: str, role: str) -> str:
        """The best ``role`` weights of training part ``name``."""
        from reloc.runs import resolve_weights

        return resolve_weights(self.run(name), role)

    def refs(self, which: str) -> list:
        return split(self.work, self.seed)[which]


@dataclass(frozen=True)
class Part:
    """One step of a seed: ``run`` does it and returns the details kept in the seed's file.

    Attributes:
        description: one line, for ``--list-parts`` readers and the results.
        run: the step; it may also write tables into ``SeedWork.results``.
        trains: a training part, re-entered even when finished (its run folder tells
            whether to resume or skip, and its summary is refreshed).
    """

    description: str
    run: Callable[[SeedWork], dict]
    trains: bool = False


def make_data(ctx: SeedWork) -> dict:
    from reloc.data.synth import SynthSettings, synthesize

    data, details = ctx.work / "data", {}
    if (data / "manifest.json").is_file() and not ctx.force:
        print("data: present, skipped")
    else:
        summary = synthesize(
            ctx.photos,
            data,
            count=COUNT,
            seed=ctx.seed,
            size=SIZE,
            settings=SynthSettings(**SYNTH_OVERRIDES),
            progress=False,
            overwrite=True,
        )
        details = {
            "per_split": summary.per_split,
            "per_type": summary.per_type,
            "photos_per_split": summary.photos_per_split,
        }
    ctx.results["dataset"] = {
        "photos": ctx.photos,
        "count": COUNT,
        "size": SIZE,
        "synth_overrides": SYNTH_OVERRIDES,
        **{k: len(v) for k, v in split(ctx.work, ctx.seed).items()},
    }
    return details


def training(name: str) -> Callable[[SeedWork], dict]:
    """The part that trains ``configs/replicate/NAME.yaml`` into ``WORK/NAME``."""

    def run(ctx: SeedWork) -> dict:
        if ctx.force and ctx.run(name).exists():
            shutil.rmtree(ctx.run(name))
        return train_run(ctx.run(name), run_config(name, ctx.seed, ctx.work))

    return run


def equal_updates(ctx: SeedWork) -> dict:
    """M^{D|P} for exactly as many localizer updates as the finished ReLoc run's localizer got."""
    done, total, updates = run_state(ctx.run("reloc"))
    if not total or done < total:
        raise SystemExit("equal-updates needs the finished reloc part first")
    warmup_epochs = part_settings("reloc")["train"]["restorer_warmup_epochs"]
    steps = updates["warmup"] // warmup_epochs  # steps per epoch, the same for every task of a seed
    target = updates["localizer"]
    if target % steps:
        raise SystemExit(f"ReLoc's {target} localizer updates are not a whole number of {steps}-step epochs")
    if ctx.force and ctx.run("equal-updates").exists():
        shutil.rmtree(ctx.run("equal-updates"))
    config = run_config("equal-updates", ctx.seed, ctx.work, epochs=target // steps)
    return {**train_run(ctx.run("equal-updates"), config), "reloc_localizer_updates": target}


def val_gap(ctx: SeedWork) -> dict:
    from reloc.engine.evaluate import standard_situations

    table = evaluate(
        standard_situations(ctx.run("plain")), ctx.refs("val"), [DISTORTION], ctx.work / "eval-val-gap", ctx.seed
    )
    details = {"P{P}": table["none"]["P{P}"], "P{D}": table[DISTORTION]["P{D}"]}
    ctx.results.setdefault("validation", {}).update(details)
    return details


def table3_situations(ctx: SeedWork) -> list:
    from reloc.engine.evaluate import Situation, standard_situations

    situations = standard_situations(ctx.run("plain"), ctx.run("finetune"), {"ReLoc": ctx.run("reloc")})
    situations.append(Situation("D|P{D} equal-updates", ctx.weights("equal-updates", "localizer")))
    return situations


def val_t3(ctx: SeedWork) -> dict:
    """Table III's situations on validation, plus each run's last epoch next to its best
    (the checkpoint choice) and the restorer's PSNR on whole validation images."""
    from reloc.engine.evaluate import Situation

    refs = ctx.refs("val")
    from reloc.runs import weights_path

    def last(name: str, role: str = "localizer") -> str:
        return str(weights_path(ctx.run(name), role, "last"))

    situations = table3_situations(ctx) + [
        Situation("D|P{D} last", last("finetune")),
        Situation("ReLoc{D} last", last("reloc"), last("reloc", "restorer")),
        Situation("D|P{D} equal-updates last", last("equal-updates")),
    ]
    table = evaluate(situations, refs, [DISTORTION], ctx.work / "val-t3", ctx.seed)
    flat = {**table["none"], **table[DISTORTION]}
    details = {
        "situations": flat,
        "restorer_psnr_whole_images": restorer_psnr(ctx.weights("reloc", "restorer"), refs, DISTORTION, ctx.seed),
        "restorer_psnr_whole_images_last": restorer_psnr(last("reloc", "restorer"), refs, DISTORTION, ctx.seed),
    }
    ctx.results.setdefault("validation", {}).update(flat)
    ctx.results["validation"]["restorer_psnr_whole_images"] = details["restorer_psnr_whole_images"]
    return details


def eval_t3(ctx: SeedWork) -> dict:
    per_image: dict = {}
    table = evaluate(table3_situations(ctx), ctx.refs("test"), [DISTORTION], ctx.work / "eval-t3", ctx.seed, per_image)
    flat = {**table["none"], **table[DISTORTION]}
    ctx.results["table3"] = flat
    ctx.results["per_image_t3"] = {name: per_image[name] for pair in PAIRED for name in pair if name in per_image}
    return {"situations": flat}


def eval_t4(ctx: SeedWork) -> dict:
    from reloc.engine.evaluate import standard_situations

    situations = standard_situations(ctx.run("plain"), ctx.run("finetune-mixed"), {"ReLoc": ctx.run("reloc-mixed")})
    table = evaluate(situations, ctx.refs("test"), TABLE4_TESTS, ctx.work / "eval-t4", ctx.seed)
    ctx.results["table4"] = {d: table[d] for d in TABLE4_TESTS}
    ctx.results["table4"]["P{P}"] = table["none"]["P{P}"]
    return {"tests": TABLE4_TESTS}


def eval_t5(ctx: SeedWork) -> dict:
    from reloc.engine.evaluate import Situation

    localizer = ctx.weights("plain-b", "localizer")
    situations = [
        Situation(f"{SECOND_LABEL} P{{P}}", localizer, distorted=False),
        Situation(f"{SECOND_LABEL} P{{D}}", localizer),
        Situation(f"R(ReLoc DFCN x0.5)+{SECOND_LABEL} P{{D}}", localizer, ctx.weights("reloc", "restorer")),
    ]
    table = evaluate(situations, ctx.refs("test"), [DISTORTION], ctx.work / "eval-t5", ctx.seed)
    ctx.results["table5"] = {**table["none"], **table[DISTORTION]}
    return {}


#: The registry of parts, in run order.
PARTS: dict[str, Part] = {
    "data": Part("synthesise the benchmark", make_data),
    "plain": Part("train M^P", training("plain"), trains=True),
    "val-gap": Part("P{P} vs P{D} on validation (learnability check)", val_gap),
    "finetune": Part("train M^{D|P} at QF 75", training("finetune"), trains=True),
    "reloc": Part("train ReLoc at QF 75", training("reloc"), trains=True),
    "equal-updates": Part("train M^{D|P} with ReLoc's localizer update count", equal_updates, trains=True),
    "val-t3": Part("Table III situations on validation", val_t3),
    "eval-t3": Part("Table III on test", eval_t3),
    "finetune-mixed": Part("train M^{D|P} at QF 70-100", training("finetune-mixed"), trains=True),
    "reloc-mixed": Part("train ReLoc at QF 70-100", training("reloc-mixed"), trains=True),
    "eval-t4": Part("Table IV on test", eval_t4),
    "plain-b": Part("train the second localizer (M^P)", training("plain-b"), trains=True),
    "eval-t5": Part("Table V on test", eval_t5),
}


def run_part(name: str, seed: int, work: Path, photos: str, results: dict, force: bool) -> None:
    """Run part ``name`` of ``seed`` and merge what it changed into the seed's result file."""
    if name not in PARTS:
        raise SystemExit(f"unknown part {name!r}; parts: {', '.join(PARTS)}")
    part = PARTS[name]
    before = json.loads(json.dumps(results))
    if results["parts"].get(name, {}).get("finished") and not force and not part.trains:
        print(f"{name}: in {result_path(seed)} already, skipped")
        return
    started, cpu_started = time.perf_counter(), time.process_time()
    details = part.run(SeedWork(seed, work, photos, results, force))
    seconds = details.get("train_seconds", round(time.perf_counter() - started, 1))
    if name == "data" and not details and "data" in results["seconds"]:
        seconds = results["seconds"]["data"]
    # wall seconds are what the tables report (sum of epoch rows for training parts, so a
    # resumed run counts each epoch once); CPU seconds of this invocation show contention
    details["cpu_seconds_this_invocation"] = round(time.process_time() - cpu_started, 1)
    details["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    results["parts"][name] = {"finished": True, **details, **provenance()}
    results["seconds"][name] = seconds
    merge_results(seed, before, results)
    print(f"{name}: done in {seconds:.0f} s -> {result_path(seed)}")


# --- aggregation -----------------------------------------------------------------------
def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": round(statistics.mean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def _table(seeds: list[dict], key: str) -> dict:
    rows: dict[str, list[dict]] = {}
    for result in seeds:
        for name, row in result.get(key, {}).items():
            if isinstance(row, dict) and "f1" in row:  # skips e.g. the restorer PSNR entry
                rows.setdefault(name, []).append(row)
    return {name: {m: _stats([r.get(m) for r in found]) for m in METRICS} for name, found in rows.items()}


def seed_interval(per_seed: list[float], level: float = 0.95) -> list[float] | None:
    """Student-t interval of the mean of per-seed values (``None`` with fewer than 2 seeds).

    Each seed is one training run of every network, so this interval carries the variance
    between training runs, which resampling test images with the models fixed does not."""
    from scipy import stats

    if len(per_seed) < 2:
        return None
    mean, sem = statistics.mean(per_seed), statistics.stdev(per_seed) / len(per_seed) ** 0.5
    half = float(stats.t.ppf(0.5 + level / 2, len(per_seed) - 1)) * sem
    return [round(mean - half, 4), round(mean + half, 4)]


def paired_differences(seeds: list[dict]) -> dict:
    """Per-image differences of each :data:`PAIRED` comparison on the test split, pooled
    over seeds: mean, 95% bootstrap interval over images (resampled within each seed,
    :data:`BOOTSTRAP` times, fixed seed; the trained models fixed), each seed's own mean,
    and the 95% Student-t interval over those seed means (:func:`seed_interval`)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for name, baseline in PAIRED:
        entry = {}
        for index, metric in enumerate(PAIRED_METRICS):
            per_seed = []
            for result in seeds:
                rows = result.get("per_image_t3", {})
                if name not in rows or baseline not in rows:
                    continue
                a, b = rows[name], rows[baseline]
                values = [
                    a[k][index] - b[k][index]
                    for k in sorted(a.keys() & b.keys())
                    if a[k][index] is not None and b[k][index] is not None
                ]
                if values:
                    per_seed.append(np.asarray(values))
            if not per_seed:
                continue
            pooled = np.concatenate(per_seed)
            draws = np.zeros(BOOTSTRAP)
            for values in per_seed:  # resample within each seed, keep each seed's weight
                picks = rng.integers(0, len(values), (BOOTSTRAP, len(values)))
                draws += values[picks].sum(axis=1)
            draws /= len(pooled)
            low, high = np.percentile(draws, [2.5, 97.5])
            seed_means = [round(float(v.mean()), 4) for v in per_seed]
            entry[metric] = {
                "mean": round(float(pooled.mean()), 4),
                "ci95_images": [round(float(low), 4), round(float(high), 4)],
                "per_seed": seed_means,
                "ci95_seeds": seed_interval([float(v.mean()) for v in per_seed]),
                "images": int(len(pooled)),
            }
        if entry:
            out[f"{name} - {baseline}"] = entry
    return out


def aggregate() -> dict:
    from reloc.data.catalog import SPLITS

    seeds = [read_results(p) for p in sorted(SEED_RESULTS.glob("seed-*.json"))]
    if not seeds:
        raise SystemExit(f"no seed results in {SEED_RESULTS}")
    table4: dict[str, list] = {}
    for result in seeds:
        for test, rows in result.get("table4", {}).items():
            table4.setdefault(test, []).append(rows)
    summary = {
        "seeds": [r["seed"] for r in seeds],
        "protocol": "per-image means over the test split of each seed; mean and sample std over seeds",
        "table3": _table(seeds, "table3"),
        "table4": {
            test: (
                {m: _stats([r.get(m) for r in rows]) for m in METRICS}
                if test == "P{P}"
                else _table([{"t": r} for r in rows], "t")
            )
            for test, rows in table4.items()
        },
        "table5": _table(seeds, "table5"),
        "paired_t3": paired_differences(seeds),
        "validation": _table(seeds, "validation"),
        "dataset": {k: _stats([r.get("dataset", {}).get(k) for r in seeds]) for k in SPLITS},
        "seconds": {part: _stats([r.get("seconds", {}).get(part) for r in seeds]) for part in PARTS},
        "torch_threads": sorted(
            {p["torch_threads"] for r in seeds for p in r.get("parts", {}).values() if "torch_threads" in p}
        ),
        "torch_versions": sorted(
            {p["torch_version"] for r in seeds for p in r.get("parts", {}).values() if "torch_version" in p}
        ),
        "restorer_psnr_validation": {
            **{
                k: _stats([r.get("validation", {}).get("restorer_psnr_whole_images", {}).get(k) for r in seeds])
                for k in ("restored", "distorted")
            },
            "restored_last": _stats(
                [
                    r.get("parts", {}).get("val-t3", {}).get("restorer_psnr_whole_images_last", {}).get("restored")
                    for r in seeds
                ]
            ),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replicate" / "replicate.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "replicate" / "replicate.md").write_text(markdown(summary))
    return summary


def _cell(stat: dict, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    mean, std = f"{stat['mean']:.{digits}f}", f"{stat['std']:.{digits}f}"
    return f"{mean} ± {std}" if stat["n"] > 1 else mean


def _interval(bounds: list[float] | None) -> str:
    return "-" if bounds is None else f"({bounds[0]:+.3f}, {bounds[1]:+.3f})"


def markdown(summary: dict) -> str:
    from reloc.data.catalog import SPLITS

    lines = [
        "# ReLoc at CPU scale: replication of Tables III-V",
        "",
        f"Seeds: {summary['seeds']} (mean ± sample std over seeds when more than one). Per-image means of "
        "F1 / IoU (threshold 0.5) and AUC on the held-out test photos; made by `benchmarks/replicate.py`.",
        "",
    ]

    def block(title: str, table: dict) -> None:
        lines.extend([f"## {title}", "", "| situation | F1 | IoU | AUC |", "| --- | ---: | ---: | ---: |"])
        lines.extend(
            f"| {name.replace('|', chr(92) + '|')} | {_cell(row['f1'])} | {_cell(row['iou'])} | {_cell(row['auc'])} |"
            for name, row in table.items()
        )
        lines.append("")

    if summary["table3"]:
        block("Table III: JPEG QF 75", summary["table3"])
    if summary.get("paired_t3"):
        lines += [
            "Paired per-image differences on the test split, pooled over seeds, with two 95% intervals: over "
            "test images (bootstrap, images resampled within each seed, the trained models fixed) and over "
            "training seeds (Student t on the per-seed means, which carries the variance between training "
            "runs).",
            "",
            "| comparison | metric | mean | 95% interval, images | per-seed means | 95% interval, seeds |",
            "| --- | --- | ---: | --- | --- | --- |",
        ]
        for comparison, entry in summary["paired_t3"].items():
            for metric in PAIRED_METRICS:
                if (e := entry.get(metric)) is None:
                    continue
                lines.append(
                    f"| {comparison.replace('|', chr(92) + '|')} | {metric.upper()} | {e['mean']:+.3f} | "
                    f"{_interval(e['ci95_images'])} | {', '.join(f'{v:+.3f}' for v in e['per_seed'])} | "
                    f"{_interval(e['ci95_seeds'])} |"
                )
        lines.append("")
    for test, table in summary["table4"].items():
        if test == "P{P}":
            continue
        block(f"Table IV: trained at QF 70-100, tested at {test}", table)
    if summary["table5"]:
        block(
            "Table V: ReLoc's restorer (trained with DFCN x0.5) in front of another plain localizer, QF 75",
            summary["table5"],
        )
    if summary["validation"]:
        block("Validation split (the numbers choices were made on)", summary["validation"])
    psnr = summary["restorer_psnr_validation"]
    if psnr["restored"]["n"]:
        lines += [
            "Restorer PSNR on whole validation images (the checkpoint evaluated above, best validation loss): "
            "restored " + _cell(psnr["restored"], 2) + " dB, JPEG input " + _cell(psnr["distorted"], 2) + " dB; "
            "the last epoch's restorer: " + _cell(psnr["restored_last"], 2) + " dB.",
            "",
        ]
    sizes = summary.get("dataset", {})
    if sizes.get("test", {}).get("n"):
        lines += ["Split sizes (images per seed): " + ", ".join(f"{k} {_cell(sizes[k], 0)}" for k in SPLITS) + ".", ""]
    threads = summary.get("torch_threads") or ["torch's default"]
    lines += [
        "## Seconds per part",
        "",
        f"Wall seconds on the 2-core CPU, torch threads per part: {', '.join(map(str, threads))} "
        "(training parts: the sum of their epochs).",
        "",
        "| part | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| {part} | {_cell(stat, 0)} |" for part, stat in summary["seconds"].items() if stat["n"]]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", nargs="+", choices=list(PARTS), help="parts to run (default: all, in order)")
    parser.add_argument("--aggregate", action="store_true", help="combine seed results into replicate.json/.md")
    parser.add_argument("--list-parts", action="store_true", help="print the parts in run order and exit")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default runs/replicate/seed-N)")
    parser.add_argument(
        "--photos",
        default=str(ROOT.parent / "shared" / "photos"),
        help="folder of real photos (default: ../shared/photos beside the checkout)",
    )
    parser.add_argument("--force", action="store_true", help="redo the given parts")
    args = parser.parse_args(argv)
    if args.list_parts:
        print(" ".join(PARTS))
        return
    if args.aggregate:
        summary = aggregate()
        print(json.dumps({k: summary[k] for k in ("seeds", "table3", "paired_t3")}, indent=1))
        return
    work = args.work or ROOT / "runs" / "replicate" / f"seed-{args.seed}"
    results = load_results(args.seed)
    for part in args.part or list(PARTS):
        run_part(part, args.seed, work, args.photos, results, args.force)
        results = load_results(args.seed)


if __name__ == "__main__":
    sys.exit(main())
