"""Planning, splitting, rendering in worker processes, and writing the output folder."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reloc.data.catalog import NEGATIVE, SPLITS
from reloc.data.io import write_png
from reloc.data.photos import list_photos, photo_ids, usable_photos
from reloc.data.synth.edits import (
    _copymove,
    _r,
    _removal,
    _splice,
    jpeg_roundtrip,
    jpeg_shifted,
    load_host,
    unsharp,
)
from reloc.data.synth.settings import SAMPLE_KINDS, TAMPER_TYPES, Sample, SynthSettings, SynthSummary, _Redraw
from reloc.data.synth.text import _text
from reloc.io_utils import write_json_atomic, write_text_atomic
from reloc.limits import MAX_SIDE

_NAME_RE = re.compile(r"^\d{6,}_(?:" + "|".join(SAMPLE_KINDS) + r")\.png$")

# Seed-sequence "salts": which stream a generator feeds.
_SALT_SPLIT_HOSTS, _SALT_SPLIT_DONORS, _SALT_HOST_ORDER, _SALT_DONOR, _SALT_SAMPLE = range(5)


# ---------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------


def _whole_image_after(
    rng: np.random.Generator, image: np.ndarray, host: np.ndarray, settings: SynthSettings, whole: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Sharpening and the final JPEG save, applied alike to the image and the host (each
    draws from the stream only when enabled)."""
    if settings.p_post_sharpen > 0 and rng.random() < settings.p_post_sharpen:
        amount = float(rng.uniform(*settings.post_sharpen_amount_range))
        sigma = float(rng.uniform(*settings.post_sharpen_sigma_range))
        image, host = unsharp(image, amount, sigma), unsharp(host, amount, sigma)
        whole["post_sharpen"] = {"amount": _r(amount, 3), "sigma": _r(sigma, 3)}
    if settings.p_final_jpeg > 0 and rng.random() < settings.p_final_jpeg:
        quality = int(settings.final_jpeg_qualities[int(rng.integers(len(settings.final_jpeg_qualities)))])
        image = np.rint(jpeg_roundtrip(image, quality) * 255.0).astype(np.uint8)
        host = np.rint(jpeg_roundtrip(host, quality) * 255.0).astype(np.uint8)
        whole["final_jpeg_quality"] = quality
    return image, host


def render_sample(
    kind: str,
    host_path: str | os.PathLike[str],
    rng: np.random.Generator,
    size: int = 512,
    settings: SynthSettings | None = None,
    donor_path: str | os.PathLike[str] | None = None,
) -> Sample:
    """Make one sample in memory (no file written).

    ``kind`` is one of :data:`SAMPLE_KINDS`: an edit of :data:`TAMPER_TYPES` or
    ``authentic`` (the crop untouched but for the whole-image traces; all-zero mask). A
    splice takes its region from ``donor_path`` (the host photo itself when None).
    Regions are redrawn until the mask area is inside ``settings.area_range``;
    ``RuntimeError`` after ``settings.max_attempts`` failures. The record holds ``crop``,
    ``area``, ``attempts`` and what was done (``region`` / ``text``, ``traces``)."""
    settings = settings or SynthSettings()
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"unknown sample kind {kind!r}; expected one of {SAMPLE_KINDS}")
    requested = size
    full = load_host(host_path, size, settings.enlarge_hosts, settings.host_resize)
    size = min(size, *full.shape[:2])  # smaller than requested for a photo kept at its size
    y = int(rng.integers(0, full.shape[0] - size + 1))
    x = int(rng.integers(0, full.shape[1] - size + 1))
    host = full[y : y + size, x : x + size].copy()
    whole: dict[str, Any] = {}
    # Whole-image traces and the traits draw from the stream only when enabled, so default
    # settings give the same samples as before they existed.
    if settings.p_host_jpeg > 0 and rng.random() < settings.p_host_jpeg:
        whole["host_jpeg_quality"] = int(rng.integers(*settings.host_jpeg_quality_range, endpoint=True))
        shift = (0, 0)
        if settings.p_host_grid_shift > 0 and rng.random() < settings.p_host_grid_shift:
            offset = int(rng.integers(1, 64))  # (dy, dx) in 0-7, not both 0
            shift = (offset // 8, offset % 8)
            whole["host_jpeg_grid_shift"] = list(shift)
        host = jpeg_shifted(host, whole["host_jpeg_quality"], shift)
    head = {
        "crop": [y, x],
        "resized": [int(full.shape[0]), int(full.shape[1])],
        **({"side": size} if size != requested else {}),
    }
    if kind == "authentic":
        image, host = _whole_image_after(rng, host.copy(), host, settings, whole)
        record = {**head, "area": 0.0, **whole}
        return Sample(image=image, mask=np.zeros(host.shape[:2], bool), host=host, record=record)
    donor = None
    if kind == "splice":
        donor = full if donor_path is None else load_host(donor_path, size, True, settings.host_resize)
        if settings.p_donor_jpeg > 0 and rng.random() < settings.p_donor_jpeg:
            whole["donor_jpeg_quality"] = int(rng.integers(*settings.donor_jpeg_quality_range, endpoint=True))
            donor = np.rint(jpeg_roundtrip(donor, whole["donor_jpeg_quality"]) * 255.0).astype(np.uint8)
    low, high = settings.area_range
    last = "no attempt"
    for attempt in range(1, settings.max_attempts + 1):
        info: dict[str, Any] = {}
        try:
            if kind == "splice":
                image, mask = _splice(rng, host, donor, size, settings, info)
            elif kind == "copymove":
                image, mask = _copymove(rng, host, size, settings, info)
            elif kind == "removal":
                image, mask = _removal(rng, host, size, settings, info)
            else:
                image, mask = _text(rng, host, size, settings, info)
        except _Redraw as why:
            last = str(why)
            continue
        area = float(mask.mean())
        if low <= area <= high:
            if settings.no_edit:
                image = host.copy()
                whole["no_edit"] = True
            image, host = _whole_image_after(rng, image, host, settings, whole)
            record = {**head, "area": _r(area, 5), "attempts": attempt, **info, **whole}
            return Sample(image=image, mask=mask, host=host, record=record)
        last = f"mask area {area:.4f} outside {settings.area_range}"
    raise RuntimeError(
        f"could not make a {kind} sample from {host_path} in {settings.max_attempts} attempts (last: {last})"
    )


# ---------------------------------------------------------------------------------------
# Planning: splits, hosts, donors
# ---------------------------------------------------------------------------------------


def _split_counts(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    n_test = int(math.floor(n * test_fraction + 0.5))
    if test_fraction > 0 and n >= 2:
        n_test = max(1, n_test)
    n_val = int(math.floor(n * val_fraction + 0.5))
    if val_fraction > 0 and n - n_test >= 2:
        n_val = max(1, n_val)
    n_test = min(n_test, max(0, n - 1))
    n_val = min(n_val, max(0, n - n_test - 1))
    return n_test, n_val


def assign_splits(
    ids: Sequence[str],
    seed: int,
    test_fraction: float = 0.25,
    val_fraction: float = 0.10,
    salt: int = _SALT_SPLIT_HOSTS,
) -> dict[str, str]:
    """Split photo ids into ``train`` / ``val`` / ``test`` (by photo) with the seed.

    ``round(n * test_fraction)`` photos (at least one when n >= 2) go to test,
    ``round(n * val_fraction)`` (at least one when two or more are left) to val, and the
    rest (at least one) to train."""
    ordered = sorted(ids)
    n_test, n_val = _split_counts(len(ordered), test_fraction, val_fraction)
    order = np.random.default_rng([seed, salt]).permutation(len(ordered))
    splits = {}
    for rank, index in enumerate(order):
        splits[ordered[index]] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
    return splits


@dataclass(frozen=True)
class _Job:
    index: int
    name: str
    kind: str
    split: str
    host: str
    host_id: str
    donor: str | None
    donor_id: str | None
    donor_note: str | None


def _resolve(photos) -> list[Path]:
    if isinstance(photos, (str, os.PathLike)):
        return list_photos(photos)
    found: dict[str, Path] = {}
    for item in photos:
        for path in list_photos(item):
            found.setdefault(str(Path(path).resolve()), Path(path))
    if not found:
        raise ValueError("no photos given")
    return sorted(found.values(), key=lambda p: str(p))


def _plan(
    hosts: list[Path], donors: list[Path] | None, count: int, seed: int, types: Sequence[str], settings: SynthSettings
) -> tuple[list[_Job], dict[str, int]]:
    host_ids = photo_ids(hosts)
    host_split_by_id = assign_splits(host_ids, seed, settings.test_fraction, settings.val_fraction)
    host_split = [host_split_by_id[i] for i in host_ids]
    split_of_file = {str(p.resolve()): s for p, s in zip(hosts, host_split)}
    if donors is not None:
        donor_ids = photo_ids(donors)
        fresh = [i for i, p in zip(donor_ids, donors) if str(p.resolve()) not in split_of_file]
        fresh_split = assign_splits(fresh, seed, settings.test_fraction, settings.val_fraction, _SALT_SPLIT_DONORS)
        donor_split = [split_of_file.get(str(p.resolve())) or fresh_split[i] for i, p in zip(donor_ids, donors)]
        pool = list(zip(donors, donor_ids, donor_split))
    else:
        pool = list(zip(hosts, host_ids, host_split))
    jobs = []
    n = len(hosts)
    orders: dict[int, np.ndarray] = {}
    edits = 0
    for index in range(count):
        # an exact share of authentic samples, spread evenly; the edits cycle through types
        share = settings.authentic_fraction
        if math.floor((index + 1) * share) > math.floor(index * share):
            kind = "authentic"
        else:
            kind = types[edits % len(types)]
            edits += 1
        epoch = index // n
        if epoch not in orders:  # every photo once per epoch, in a fresh order each epoch
            orders = {epoch: np.random.default_rng([seed, _SALT_HOST_ORDER, epoch]).permutation(n)}
        h = int(orders[epoch][index % n])
        donor = donor_id = note = None
        if kind == "splice":
            resolved_host = str(hosts[h].resolve())
            candidates = [(p, i) for p, i, s in pool if s == host_split[h] and str(p.resolve()) != resolved_host]
            if not candidates and donors is not None:  # donor set has nothing in this split
                candidates = [
                    (p, i) for p, i, s in zip(hosts, host_ids, host_split) if s == host_split[h] and p is not hosts[h]
                ]
                note = "no donor photo in this split: donor taken from the host photos"
            if candidates:
                pick = np.random.default_rng([seed, _SALT_DONOR, index]).integers(len(candidates))
                donor, donor_id = candidates[int(pick)]
                donor = str(donor)
            else:
                donor, donor_id = str(hosts[h]), host_ids[h]
                note = "only photo of its split: donor region taken from the host photo itself"
        jobs.append(
            _Job(index, f"{index:06d}_{kind}", kind, host_split[h], str(hosts[h]), host_ids[h], donor, donor_id, note)
        )
    photos_per_split = dict(Counter(host_split))
    return jobs, {s: photos_per_split.get(s, 0) for s in SPLITS}


def _make(job: _Job, seed: int, size: int, settings: SynthSettings) -> tuple[Sample, dict]:
    rng = np.random.default_rng([seed, _SALT_SAMPLE, job.index])
    sample = render_sample(job.kind, job.host, rng, size, settings, job.donor)
    record: dict[str, Any] = {"name": job.name, "type": job.kind, "split": job.split, "source": job.host_id}
    if job.kind == "splice":
        record["donor"] = job.donor_id
        if job.donor_note:
            record["donor_note"] = job.donor_note
    record.update(sample.record)
    return sample, record


def _pair(record: dict) -> list[str]:
    """The manifest entry of a sample: ``[Tp, Gt]``, or ``[Au, "Negative"]`` for an authentic one."""
    if record["type"] == "authentic":
        return [f"Au/{record['name']}.png", NEGATIVE]
    return [f"Tp/{record['name']}.png", f"Gt/{record['name']}.png"]


def _work(args: tuple[_Job, str, int, int, SynthSettings]) -> dict:
    job, out, seed, size, settings = args
    sample, record = _make(job, seed, size, settings)
    if job.kind == "authentic":
        write_png(Path(out) / "Au" / f"{job.name}.png", sample.image)
    else:
        write_png(Path(out) / "Tp" / f"{job.name}.png", sample.image)
        write_png(Path(out) / "Gt" / f"{job.name}.png", sample.mask)
    return record


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _prepare_out(out: Path, overwrite: bool) -> None:
    previous = [p for p in (out / "manifest.json", out / "provenance.jsonl", out / "synth_config.json") if p.exists()]
    for sub in ("Tp", "Gt", "Au"):
        if (out / sub).is_dir():
            previous += [p for p in (out / sub).iterdir() if _NAME_RE.match(p.name)]
    previous += list(out.glob("manifest_*.json")) if out.is_dir() else []
    if previous and not overwrite:
        raise FileExistsError(
            f"{out} already holds generated samples ({len(previous)} files); pass overwrite=True "
            "to replace them or choose an empty folder"
        )
    for path in previous:
        path.unlink()
    (out / "Tp").mkdir(parents=True, exist_ok=True)
    (out / "Gt").mkdir(parents=True, exist_ok=True)


def synthesize(
    photos: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    count: int,
    seed: int,
    types: Sequence[str] = TAMPER_TYPES,
    size: int = 512,
    settings: SynthSettings | None = None,
    donors: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    *,
    workers: int | None = None,
    overwrite: bool = False,
) -> SynthSummary:
    """Generate ``count`` tampered images with exact masks into ``out``.

    Args:
        photos: host photo source(s): ``"default"``, a folder, an image file, or a list
            of them (see :func:`reloc.data.photos.list_photos`).
        out: output folder (created): ``Tp/``, ``Gt/``, ``manifest.json`` (IMDL-BenCo
            list of ``[Tp, Gt]`` pairs relative to ``out``), ``manifest_{split}.json``,
            ``provenance.jsonl``.
        count: number of samples; sample ``i`` has type ``types[i % len(types)]``.
        seed: the seed of everything (splits, hosts, donors, edits).
        types: tampering types to cycle through (subset of :data:`TAMPER_TYPES`).
        size: side of the square output images.
        settings: the generator's knobs (:class:`SynthSettings` defaults when None).
        donors: a second photo source for splice donors (split by photo like the hosts);
            None takes donors from the host photos.
        progress: show a tqdm progress bar.
        workers: worker processes (default: up to 2, serial for small counts); the files
            are identical whatever the number.
        overwrite: replace the generated files of a previous run in ``out`` (else a
            ``FileExistsError`` when there are some).

    Returns:
        a :class:`SynthSummary` (counts per type and split, seconds, folder).
    """
    started = time.perf_counter()
    settings = settings or SynthSettings()
    types = tuple(types)
    if not types or any(t not in TAMPER_TYPES for t in types):
        raise ValueError(f"types must be a non-empty subset of {TAMPER_TYPES}, got {types!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 32 <= size <= MAX_SIDE:
        raise ValueError(f"size must be from 32 to {MAX_SIDE}, got {size}")
    hosts, skipped = usable_photos(_resolve(photos), settings.min_photo_side)
    donor_list = None
    if donors is not None:
        donor_list, skipped_donors = usable_photos(_resolve(donors), settings.min_photo_side)
        skipped += [item for item in skipped_donors if item not in skipped]
    jobs, photos_per_split = _plan(hosts, donor_list, count, int(seed), types, settings)
    out = Path(out)
    _prepare_out(out, overwrite)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if count >= 24 else 1
    workers = max(1, min(int(workers), max(1, count)))
    tasks = [(job, str(out), int(seed), int(size), settings) for job in jobs]
    from tqdm.auto import tqdm

    records: list[dict] = []
    with tqdm(total=count, disable=not progress, desc="synth", unit="img") as bar:
        if workers == 1:
            for task in tasks:
                records.append(_work(task))
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
                for record in pool.map(_work, tasks, chunksize=2):
                    records.append(record)
                    bar.update(1)
    pairs = {s: [] for s in SPLITS}
    for record in records:
        pairs[record["split"]].append(_pair(record))
    everything = [_pair(r) for r in records]
    write_json_atomic(out / "manifest.json", everything)
    for split in SPLITS:
        write_json_atomic(out / f"manifest_{split}.json", pairs[split])
    config = {
        "photos": [str(p) for p in photos] if not isinstance(photos, (str, os.PathLike)) else str(photos),
        "donors": None
        if donors is None
        else ([str(p) for p in donors] if not isinstance(donors, (str, os.PathLike)) else str(donors)),
        "count": count,
        "seed": int(seed),
        "types": list(types),
        "size": int(size),
        "photos_per_split": photos_per_split,
        "skipped_photos": [[str(path), reason] for path, reason in skipped],
        "settings": settings.to_dict(),
    }
    write_json_atomic(out / "synth_config.json", config)
    write_text_atomic(out / "provenance.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    per_type = Counter(r["type"] for r in records)
    per_split = Counter(r["split"] for r in records)
    kinds = (*types, "authentic") if per_type.get("authentic") else types
    return SynthSummary(
        out=out,
        count=len(records),
        seconds=round(time.perf_counter() - started, 3),
        per_type={t: per_type.get(t, 0) for t in kinds},
        per_split={s: per_split.get(s, 0) for s in SPLITS},
        photos_per_split=photos_per_split,
        workers=workers,
        skipped=[(str(path), reason) for path, reason in skipped],
    )
