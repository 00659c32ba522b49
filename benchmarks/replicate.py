"""Replication of the paper's Tables III, IV and V at CPU scale on real photos.

    python benchmarks/replicate.py --seed 0                   # every part of seed 0, in order
    python benchmarks/replicate.py --seed 0 --part plain      # one part (resumable)
    python benchmarks/replicate.py --aggregate                # seeds -> replicate.json / replicate.md

On a shared machine run one part per lock, so heavy jobs never overlap::

    for part in $(python benchmarks/replicate.py --list-parts); do
        flock /tmp/reloc-cpu.lock .venv/bin/python benchmarks/replicate.py --seed 0 --part $part || break
    done

What one seed does (work files under ``--work``, default ``runs/replicate/seed-N/``):

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
  the second localizer of Table V): training runs from :data:`BASE` (half-width DFCN with
  the fixed SRM front end, small SCUNet started at the identity, 64-px crops centred on
  tampered pixels 70% of the time, batch 8, Adam 1e-3 with cosine decay). Every run keeps
  its best weights by validation localization loss (checkpoint choice on validation data,
  never test; validation F1 on the tamper-biased crops rewarded flagging everything).
  ReLoc's restorer uses the published code's loss weights and rate (:data:`RELOC_RESTORER`).
- ``val-gap``: the learnability check, on the **validation** split: P{P} against P{D}.
- ``val-t3``: Table III's situations on the validation split (and the restorer's PSNR
  on whole validation images next to the JPEG input's).
- ``eval-t3``, ``eval-t4``, ``eval-t5``: the tables on the **test** split (whole
  256-px images, per-image means; ``reloc.engine.evaluate``).

Results go to ``benchmarks/results/replicate/seed-N.json`` after every part. A training
part whose run folder holds a finished checkpoint is skipped, an unfinished one resumes;
an evaluation part whose result is in the JSON is skipped (``--force`` redoes a part).
Nothing here is tuned on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEED_RESULTS = RESULTS / "replicate"
#: the real photos, relative to the checkout: ``../shared/photos``
PHOTOS = ROOT.parent / "shared" / "photos"

COUNT = 800
SIZE = 256
DISTORTION = "jpeg:75"
MIXED = "jpeg:70-100"
TABLE4_TESTS = ["jpeg:60", "jpeg:70", "jpeg:80"]
#: SynthSettings changed from the generator's defaults (see module doc).
SYNTH_OVERRIDES = {"p_resample": 1.0, "p_noise": 0.5, "p_blur": 0.25}
#: Overrides shared by every training run (seed and dataset added per seed).
BASE = [
    "data.crop=64",
    "data.batch_size=8",
    "data.tamper_bias=0.7",
    "data.steps_per_epoch=null",  # one pass: 528 training images / batch 8 = 66 steps (seed 0)
    f"data.distortion={DISTORTION}",
    "model.localizer=dfcn",
    "model.localizer_args={width: 0.5, faithful: false, highpass: true}",
    "model.restorer=scunet",
    "model.restorer_args={preset: small, residual: true}",
    "optim.lr=0.001",
    "optim.schedule=cosine",
    "optim.cosine_min_factor=0.02",
    "train.loss=paper",
    "train.select_by=loss",  # best epoch by validation localization loss (see module doc)
    "train.device=cpu",
]
#: ReLoc's restorer settings. Loss weights: the published code's (MAE 100, GAN 0.1,
#: localization 1); under the paper's (GAN 1, localization 0.1) the localization term was
#: ~1% of the restoration loss. Restorer rate: the published 1e-4. At the localizer's
#: 1e-3 the first restoration epoch wrecked the restorer on validation (22 dB with the
#: paper's weights, 6 dB with the code's, against 31 dB for the JPEG input).
RELOC_RESTORER = ["train.loss=official", "optim.restorer_lr=0.0001"]
PLAIN_EPOCHS = 45  # ~3000 steps: the second pilot's budget, at which plain F1 reached ~0.78
FINETUNE_EPOCHS = 30
RELOC_WARMUP = 6
RELOC_EPOCHS = RELOC_WARMUP + 30  # 6 MAE-only epochs, then 15 restoration + 15 localization
SECOND_LOCALIZER = "model.localizer_args={width: 0.25, faithful: false, highpass: true}"
SECOND_LABEL = "DFCN x0.25"

#: part -> (kind, description); run order.
PARTS = {
    "data": "synthesise the benchmark",
    "plain": "train M^P",
    "val-gap": "P{P} vs P{D} on validation (learnability check)",
    "finetune": "train M^{D|P} at QF 75",
    "reloc": "train ReLoc at QF 75",
    "equal-updates": "train M^{D|P} with ReLoc's localizer update count",
    "val-t3": "Table III situations on validation",
    "eval-t3": "Table III on test",
    "finetune-mixed": "train M^{D|P} at QF 70-100",
    "reloc-mixed": "train ReLoc at QF 70-100",
    "eval-t4": "Table IV on test",
    "plain-b": "train the second localizer (M^P)",
    "eval-t5": "Table V on test",
}
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
    if path.is_file():
        return json.loads(path.read_text())
    return {"seed": seed, "parts": {}, "seconds": {}}


def save_results(seed: int, results: dict) -> None:
    path = result_path(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".json.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(temporary, path)


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


def means(record: dict) -> dict[str, float | None]:
    """Per-image means of an evaluation record, rounded."""
    per_image = record["metrics"]["per-image"]
    return {m: (None if per_image.get(m) is None or per_image[m] != per_image[m] else round(float(per_image[m]), 4)) for m in METRICS}


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


def train_part(run: Path, overrides: list[str]) -> dict:
    """Train (or resume, or skip when finished) one run; returns its summary."""
    from reloc import runs
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
        config = load_config(None, overrides)
        train(config, run, progress=False)
    done, total, updates = run_state(run)
    rows = metrics_rows(run)
    select_by = load_config(run / runs.CONFIG).train.select_by
    best = max(rows, key=lambda r: selection_score({k: _float(v) for k, v in r.items()}, select_by))
    keep = ("epoch", "phase", "val_localization", "val_f1", "val_iou", "val_auc", "val_psnr_restored", "val_psnr_distorted")
    summary = {
        "epochs": total,
        "updates": updates,
        "select_by": select_by,
        "best_epoch_validation": {k: _number(best[k]) for k in keep if k in best},
        "last_epoch_validation": {k: _number(rows[-1][k]) for k in keep if k in rows[-1]},
        "train_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
    }
    if "val_psnr_restored" in rows[0]:
        summary["validation_psnr_per_epoch"] = [
            {"epoch": int(r["epoch"]), "phase": r["phase"], "restored": _number(r["val_psnr_restored"]),
             "distorted": _number(r["val_psnr_distorted"])} for r in rows
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


def evaluate(situations, refs, distortions: list[str], out: Path, seed: int, per_image: dict | None = None) -> dict[str, dict]:
    """``{distortion or "none": {situation: {f1, iou, auc}}}`` and the records on disk.

    ``per_image``, if given, receives ``{situation: {image name: [f1, auc]}}`` (one
    distortion per situation name is assumed)."""
    import torch

    from reloc.engine.evaluate import run_evaluation

    with torch.inference_mode():
        records = run_evaluation(
            situations, refs, distortions, out, device=torch.device("cpu"), window=SIZE, stride=SIZE,
            batch_size=1, seed=seed, keep_maps=4, progress=False,
        )
    table: dict[str, dict] = {}
    for record in records:
        table.setdefault(record["distortion"], {})[record["situation"]] = {
            **means(record), "images": record["images"], "auc_single_class": record["single_class"],
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
    from reloc.engine.tasks import psnr
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
    return {"restored": round(statistics.mean(restored), 3), "distorted": round(statistics.mean(distorted), 3),
            "images": len(images)}


# --- the parts -------------------------------------------------------------------------
def run_part(part: str, seed: int, work: Path, photos: str, results: dict, force: bool) -> None:
    from reloc.engine.evaluate import Situation, standard_situations
    from reloc.runs import resolve_weights, weights_path

    data = work / "data"
    base = [*BASE, f"data.dataset={data}", f"train.seed={seed}", f"data.split_seed={seed}"]
    runs = {name: work / name for name in ("plain", "finetune", "reloc", "equal-updates", "finetune-mixed", "reloc-mixed", "plain-b")}
    start_plain = f"model.localizer_weights={runs['plain']}"
    training = {
        "plain": [*base, "train.task=plain", f"train.epochs={PLAIN_EPOCHS}"],
        "finetune": [*base, "train.task=finetune", start_plain, f"train.epochs={FINETUNE_EPOCHS}"],
        "reloc": [*base, "train.task=reloc", start_plain, f"train.epochs={RELOC_EPOCHS}",
                  f"train.restorer_warmup_epochs={RELOC_WARMUP}", *RELOC_RESTORER],
        "finetune-mixed": [*base, "train.task=finetune", start_plain, f"train.epochs={FINETUNE_EPOCHS}",
                           f"data.distortion={MIXED}"],
        "reloc-mixed": [*base, "train.task=reloc", start_plain, f"train.epochs={RELOC_EPOCHS}",
                        f"train.restorer_warmup_epochs={RELOC_WARMUP}", f"data.distortion={MIXED}", *RELOC_RESTORER],
        "plain-b": [*base, "train.task=plain", f"train.epochs={PLAIN_EPOCHS}", SECOND_LOCALIZER],
    }
    before = json.loads(json.dumps(results))
    done = results["parts"].get(part, {}).get("finished") and not force
    if done and part not in training and part != "equal-updates":
        print(f"{part}: in {result_path(seed)} already, skipped")
        return
    started, cpu_started = time.perf_counter(), time.process_time()
    details: dict = {}
    if part == "data":
        from reloc.data.synth import SynthSettings, synthesize

        if (data / "manifest.json").is_file() and not force:
            print("data: present, skipped")
        else:
            summary = synthesize(photos, data, count=COUNT, seed=seed, size=SIZE,
                                 settings=SynthSettings(**SYNTH_OVERRIDES), progress=False, overwrite=True)
            details = {"per_split": summary.per_split, "per_type": summary.per_type,
                       "photos_per_split": summary.photos_per_split}
        results["dataset"] = {"photos": photos, "count": COUNT, "size": SIZE, "synth_overrides": SYNTH_OVERRIDES,
                              **{k: len(v) for k, v in split(work, seed).items()}}
    elif part in training:
        if force and runs[part].exists():
            shutil.rmtree(runs[part])
        details = train_part(runs[part], training[part])
    elif part == "equal-updates":
        done_reloc, reloc_total, updates = run_state(runs["reloc"])
        if not reloc_total or done_reloc < reloc_total:
            raise SystemExit("equal-updates needs the finished reloc part first")
        steps = updates["warmup"] // RELOC_WARMUP  # steps per epoch, the same for every task of a seed
        target = updates["localizer"]
        if target % steps:
            raise SystemExit(f"ReLoc's {target} localizer updates are not a whole number of {steps}-step epochs")
        if force and runs[part].exists():
            shutil.rmtree(runs[part])
        details = train_part(runs[part], [*training["finetune"], f"train.epochs={target // steps}"])
        details["reloc_localizer_updates"] = target
    elif part == "val-gap":
        refs = split(work, seed)["val"]
        table = evaluate(standard_situations(runs["plain"]), refs, [DISTORTION], work / "eval-val-gap", seed)
        details = {"P{P}": table["none"]["P{P}"], "P{D}": table[DISTORTION]["P{D}"]}
        results.setdefault("validation", {}).update(details)
    elif part in ("val-t3", "eval-t3"):
        refs = split(work, seed)["val" if part == "val-t3" else "test"]
        situations = standard_situations(runs["plain"], runs["finetune"], {"ReLoc": runs["reloc"]})
        situations.append(Situation("D|P{D} equal-updates", resolve_weights(runs["equal-updates"], "localizer")))
        if part == "val-t3":  # checkpoint choice: the last epoch's weights next to the best-F1 ones
            def last(name: str, role: str = "localizer") -> str:
                return str(weights_path(runs[name], role, "last"))

            situations += [
                Situation("D|P{D} last", last("finetune")),
                Situation("ReLoc{D} last", last("reloc"), last("reloc", "restorer")),
                Situation("D|P{D} equal-updates last", last("equal-updates")),
            ]
        per_image: dict = {}
        table = evaluate(situations, refs, [DISTORTION], work / part, seed, per_image)
        flat = {**table["none"], **table[DISTORTION]}
        details = {"situations": flat}
        if part == "val-t3":
            details["restorer_psnr_whole_images"] = restorer_psnr(resolve_weights(runs["reloc"], "restorer"), refs, DISTORTION, seed)
            details["restorer_psnr_whole_images_last"] = restorer_psnr(last("reloc", "restorer"), refs, DISTORTION, seed)
            results.setdefault("validation", {}).update(flat)
            results["validation"]["restorer_psnr_whole_images"] = details["restorer_psnr_whole_images"]
        else:
            results["table3"] = flat
            results["per_image_t3"] = {name: per_image[name] for pair in PAIRED for name in pair if name in per_image}
    elif part == "eval-t4":
        refs = split(work, seed)["test"]
        situations = standard_situations(runs["plain"], runs["finetune-mixed"], {"ReLoc": runs["reloc-mixed"]})
        table = evaluate(situations, refs, TABLE4_TESTS, work / part, seed)
        results["table4"] = {d: table[d] for d in TABLE4_TESTS}
        results["table4"]["P{P}"] = table["none"]["P{P}"]
        details = {"tests": TABLE4_TESTS}
    elif part == "eval-t5":
        refs = split(work, seed)["test"]
        localizer = resolve_weights(runs["plain-b"], "localizer")
        situations = [
            Situation(f"{SECOND_LABEL} P{{P}}", localizer, distorted=False),
            Situation(f"{SECOND_LABEL} P{{D}}", localizer),
            Situation(f"R(ReLoc DFCN x0.5)+{SECOND_LABEL} P{{D}}", localizer, resolve_weights(runs["reloc"], "restorer")),
        ]
        table = evaluate(situations, refs, [DISTORTION], work / part, seed)
        results["table5"] = {**table["none"], **table[DISTORTION]}
    else:
        raise SystemExit(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
    seconds = details.get("train_seconds", round(time.perf_counter() - started, 1))
    if part == "data" and not details and "data" in results["seconds"]:
        seconds = results["seconds"]["data"]
    # wall seconds are what the tables report (sum of epoch rows for training parts, so a
    # resumed run counts each epoch once); CPU seconds of this invocation show contention
    details["cpu_seconds_this_invocation"] = round(time.process_time() - cpu_started, 1)
    details["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    details["torch_threads"] = __import__("torch").get_num_threads()
    results["parts"][part] = {"finished": True, **details}
    results["seconds"][part] = seconds
    results["config"] = {"base": BASE, "reloc_restorer": RELOC_RESTORER, "plain_epochs": PLAIN_EPOCHS, "finetune_epochs": FINETUNE_EPOCHS,
                         "reloc_epochs": RELOC_EPOCHS, "reloc_warmup_epochs": RELOC_WARMUP,
                         "second_localizer": SECOND_LOCALIZER, "distortion": DISTORTION, "mixed": MIXED}
    merge_results(seed, before, results)
    print(f"{part}: done in {seconds:.0f} s -> {result_path(seed)}")


# --- aggregation -----------------------------------------------------------------------
def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "n": len(values)}


def _table(seeds: list[dict], key: str) -> dict:
    rows: dict[str, list[dict]] = {}
    for result in seeds:
        for name, row in result.get(key, {}).items():
            if isinstance(row, dict) and "f1" in row:  # skips e.g. the restorer PSNR entry
                rows.setdefault(name, []).append(row)
    return {name: {m: _stats([r.get(m) for r in found]) for m in METRICS} for name, found in rows.items()}


def paired_differences(seeds: list[dict]) -> dict:
    """Per-image differences of each :data:`PAIRED` comparison on the test split, pooled
    over seeds: mean, 95% bootstrap interval (images resampled within each seed,
    :data:`BOOTSTRAP` times, fixed seed), and each seed's own mean."""
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
                values = [a[k][index] - b[k][index] for k in sorted(a.keys() & b.keys())
                          if a[k][index] is not None and b[k][index] is not None]
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
            entry[metric] = {"mean": round(float(pooled.mean()), 4), "ci95": [round(float(low), 4), round(float(high), 4)],
                             "per_seed": [round(float(v.mean()), 4) for v in per_seed], "images": int(len(pooled))}
        if entry:
            out[f"{name} - {baseline}"] = entry
    return out


def aggregate() -> dict:
    seeds = [json.loads(p.read_text()) for p in sorted(SEED_RESULTS.glob("seed-*.json"))]
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
            test: ({m: _stats([r.get(m) for r in rows]) for m in METRICS} if test == "P{P}"
                   else _table([{"t": r} for r in rows], "t"))
            for test, rows in table4.items()
        },
        "table5": _table(seeds, "table5"),
        "paired_t3": paired_differences(seeds),
        "validation": _table(seeds, "validation"),
        "seconds": {part: _stats([r.get("seconds", {}).get(part) for r in seeds]) for part in PARTS},
        "torch_threads": sorted({p["torch_threads"] for r in seeds for p in r.get("parts", {}).values() if "torch_threads" in p}),
        "restorer_psnr_validation": {
            **{k: _stats([r.get("validation", {}).get("restorer_psnr_whole_images", {}).get(k) for r in seeds])
               for k in ("restored", "distorted")},
            "restored_last": _stats([r.get("parts", {}).get("val-t3", {}).get("restorer_psnr_whole_images_last", {})
                                     .get("restored") for r in seeds]),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replicate.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "replicate.md").write_text(markdown(summary))
    return summary


def _cell(stat: dict, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    mean, std = f"{stat['mean']:.{digits}f}", f"{stat['std']:.{digits}f}"
    return f"{mean} ± {std}" if stat["n"] > 1 else mean


def markdown(summary: dict) -> str:
    lines = [
        "# ReLoc at CPU scale: replication of Tables III-V",
        "",
        f"Seeds: {summary['seeds']} (mean ± sample std over seeds when more than one). Per-image means of "
        "F1 / IoU (threshold 0.5) and AUC on the held-out test photos; made by `benchmarks/replicate.py`.",
        "",
    ]

    def block(title: str, table: dict) -> None:
        lines.extend([f"## {title}", "", "| situation | F1 | IoU | AUC |", "| --- | ---: | ---: | ---: |"])
        lines.extend(f"| {name.replace('|', chr(92) + '|')} | {_cell(row['f1'])} | {_cell(row['iou'])} | {_cell(row['auc'])} |" for name, row in table.items())
        lines.append("")

    if summary["table3"]:
        block("Table III: JPEG QF 75", summary["table3"])
    if summary.get("paired_t3"):
        lines += ["Paired per-image differences on the test split, pooled over seeds (95% bootstrap interval; "
                  "per-seed means in brackets):", "", "| comparison | F1 | AUC |", "| --- | --- | --- |"]
        for comparison, entry in summary["paired_t3"].items():
            cells = [f"{e['mean']:+.3f} ({e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}) [{', '.join(f'{v:+.3f}' for v in e['per_seed'])}]"
                     if (e := entry.get(m)) else "-" for m in PAIRED_METRICS]
            lines.append(f"| {comparison.replace('|', chr(92) + '|')} | {cells[0]} | {cells[1]} |")
        lines.append("")
    for test, table in summary["table4"].items():
        if test == "P{P}":
            continue
        block(f"Table IV: trained at QF 70-100, tested at {test}", table)
    if summary["table5"]:
        block("Table V: ReLoc's restorer (trained with DFCN x0.5) in front of another plain localizer, QF 75", summary["table5"])
    if summary["validation"]:
        block("Validation split (the numbers choices were made on)", summary["validation"])
    psnr = summary["restorer_psnr_validation"]
    if psnr["restored"]["n"]:
        lines += ["Restorer PSNR on whole validation images (the checkpoint evaluated above, best validation loss): "
                  "restored " + _cell(psnr["restored"], 2) + " dB, JPEG input " + _cell(psnr["distorted"], 2) + " dB; "
                  "the last epoch's restorer: " + _cell(psnr["restored_last"], 2) + " dB.", ""]
    threads = summary.get("torch_threads") or ["torch's default"]
    lines += ["## Seconds per part", "", f"Wall seconds on the 2-core CPU, torch threads per part: {', '.join(map(str, threads))} "
              "(training parts: the sum of their epochs).", "", "| part | seconds |", "| --- | ---: |"]
    lines += [f"| {part} | {_cell(stat, 0)} |" for part, stat in summary["seconds"].items() if stat["n"]]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", nargs="+", choices=list(PARTS), help="parts to run (default: all, in order)")
    parser.add_argument("--aggregate", action="store_true", help="combine seed results into replicate.json/.md")
    parser.add_argument("--list-parts", action="store_true", help="print the parts in run order and exit")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default runs/replicate/seed-N)")
    parser.add_argument("--photos", default=str(PHOTOS), help="folder of real photos (default: ../shared/photos beside the checkout)")
    parser.add_argument("--force", action="store_true", help="redo the given parts")
    args = parser.parse_args(argv)
    if args.list_parts:
        print(" ".join(PARTS))
        return
    if args.aggregate:
        summary = aggregate()
        print(json.dumps({k: summary[k] for k in ("seeds", "table3")}, indent=1))
        return
    work = args.work or ROOT / "runs" / "replicate" / f"seed-{args.seed}"
    results = load_results(args.seed)
    for part in args.part or list(PARTS):
        run_part(part, args.seed, work, args.photos, results, args.force)
        results = load_results(args.seed)


if __name__ == "__main__":
    sys.exit(main())
