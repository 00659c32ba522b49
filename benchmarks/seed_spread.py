"""How far apart two trainings land on the same test images: two that differ only by their
seed (the spread a retraining brings), or a model before and after a change.

    python benchmarks/seed_spread.py RUNS/seed0 RUNS/seed1 --label "seed 0" --label "seed 1" \\
        --out benchmarks/results/experiments/seed-spread-robust-mix.json

Each folder is a ``reloc eval --out`` folder (or its ``eval/``) of one training (the same
dataset, distortions and window for every training). A folder that holds several situations
(``reloc eval --plain`` writes P{P} and P{D}, both with a ``none`` record) needs
``--situation`` to say which one to compare: one name for every folder, or one per folder in
order, e.g. ``--situation "P{D}" --situation "ReLoc{D}"``. Per distortion the JSON has each
training's per-image mean F1 / IoU / AUC and, for every training after the first, the paired
difference from the first (the same images) with a 95% percentile bootstrap interval over
images (``reloc release cards``'s). The spread between seeds is what a difference
between two recipes has to exceed before it says anything about the recipes; the bootstrap
interval alone only says how sure the figures are about these test images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reloc.engine.evaluate import load_records
from reloc.errors import UsageError
from reloc.io_utils import write_json_atomic
from reloc.release.measure import bootstrap_interval
from reloc.release.provenance import git_commit

METRICS = ("f1", "iou", "auc")


def read_records(folder: Path, situation: str | None = None) -> dict[str, dict]:
    """``reloc eval`` records of ``folder`` (its ``eval/*.json``, or ``*.json``:
    :func:`reloc.engine.evaluate.load_records`) by distortion spec, only those of
    ``situation`` where one is given.

    Raises:
        SystemExit: no (such) record in ``folder``, a file there that is not JSON, or two
            records of one distortion.
    """
    try:
        found = load_records([folder])
    except UsageError as error:  # a file there that is not JSON
        raise SystemExit(f"error: {error}") from None
    records: dict[str, dict] = {}
    for record in found:
        if "per_image" not in record or "distortion" not in record:
            continue
        if situation is not None and record.get("situation") != situation:
            continue
        if record["distortion"] in records:
            situations = sorted({str(records[record["distortion"]].get("situation")), str(record.get("situation"))})
            raise SystemExit(
                f"error: {folder} holds two records of {record['distortion']} (situations {', '.join(situations)}); "
                "name the one to compare with --situation"
            )
        records[record["distortion"]] = record
    if not records:
        which = f" of situation {situation}" if situation is not None else ""
        raise SystemExit(f"error: no `reloc eval` record{which} (*.json with per_image) in {folder}")
    return records


def weights_of(records: dict[str, dict]) -> dict[str, str | None]:
    """The localizer (and restorer) of a training's records, with their SHA-256 where the
    records have them (``reloc eval`` writes them: a ``pretrained:NAME`` path is the same in
    every release)."""
    record = next(iter(records.values()))
    return {
        key: record.get(key)
        for key in ("localizer", "localizer_sha256", "restorer", "restorer_sha256")
        if record.get(key) is not None
    }


def paired_difference(first: list[dict], other: list[dict], metric: str, rng: np.random.Generator) -> dict:
    """Mean of ``other - first`` over the images both list (by name) with its 95% bootstrap
    interval; images where either value is missing (NaN: one class only) are left out."""
    base = {row["name"]: row.get(metric) for row in first}
    differences = []
    for row in other:
        a, b = base.get(row["name"]), row.get(metric)
        if a is None or b is None or np.isnan(a) or np.isnan(b):
            continue
        differences.append(b - a)
    return {
        "mean": round(float(np.mean(differences)), 4) if differences else None,
        "ci95": bootstrap_interval(differences, rng),
        "images": len(differences),
    }


def spread(trainings: dict[str, dict[str, dict]], seed: int = 0) -> dict:
    """Per distortion common to every training: each one's per-image means and the paired
    differences of every later training from the first."""
    labels = list(trainings)
    common = [spec for spec in trainings[labels[0]] if all(spec in records for records in trainings.values())]
    if not common:
        raise SystemExit("error: the folders share no distortion")
    rng = np.random.default_rng(seed)
    rows = {}
    for spec in common:
        first = trainings[labels[0]][spec]["per_image"]
        rows[spec] = {
            "means": {
                label: {m: round(records[spec]["metrics"]["per-image"][m], 4) for m in METRICS}
                for label, records in trainings.items()
            },
            "difference_from_first": {
                label: {m: paired_difference(first, records[spec]["per_image"], m, rng) for m in METRICS}
                for label, records in list(trainings.items())[1:]
            },
            "images": len(first),
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="one `reloc eval` records folder per training")
    parser.add_argument("--label", action="append", help="a name per folder, in order (default: the folder)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument(
        "--situation",
        action="append",
        help="compare only records of this situation, e.g. 'P{D}': one for every folder, or one per folder in order",
    )
    parser.add_argument("--note", default="", help="how the trainings were made (kept in the JSON)")
    args = parser.parse_args(argv)
    if len(args.folders) < 2:
        raise SystemExit("error: give at least two folders (trainings) to compare")
    labels = args.label or [str(folder) for folder in args.folders]
    if len(labels) != len(args.folders):
        raise SystemExit(f"error: {len(labels)} labels for {len(args.folders)} folders")
    situations = args.situation or [None]
    if len(situations) == 1:
        situations = situations * len(args.folders)
    if len(situations) != len(args.folders):
        raise SystemExit(
            f"error: {len(situations)} situations for {len(args.folders)} folders; give one, or one per folder"
        )
    trainings = {
        label: read_records(folder, situation) for label, folder, situation in zip(labels, args.folders, situations)
    }
    rows = spread(trainings)
    write_json_atomic(
        args.out,
        {
            "distortions": rows,
            "weights": {label: weights_of(records) for label, records in trainings.items()},
            "situations": {
                label: next(iter(records.values())).get("situation") for label, records in trainings.items()
            },
            "note": args.note,
            "command": " ".join(["python", "benchmarks/seed_spread.py", *(argv if argv is not None else sys.argv[1:])]),
            "commit": git_commit(),
        },
    )
    for spec, row in rows.items():
        means = " | ".join(f"{label} {values['auc']:.3f}" for label, values in row["means"].items())
        differences = " | ".join(
            f"{label} {d['auc']['mean']:+.3f} [{d['auc']['ci95'][0]:+.3f}, {d['auc']['ci95'][1]:+.3f}]"
            for label, d in row["difference_from_first"].items()
            if d["auc"]["ci95"]
        )
        print(f"{spec:<12} AUC {means}; paired difference {differences}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
