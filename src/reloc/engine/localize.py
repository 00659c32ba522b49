"""Localize tampering in image files: the analyst's batch tool.

>>> from reloc.engine.inference import pipeline_from_weights
>>> pipeline = pipeline_from_weights("dfcn.safetensors", "scunet.safetensors")
>>> summary = localize_files(["case-12/", "extra/*.jpg"], pipeline, Path("results"))
>>> print(summary.report())

For each image the output folder gets ``<stem>_heatmap.png`` (probabilities coloured),
``<stem>_mask.png`` (probability > threshold, {0, 255}), ``<stem>_overlay.png`` (the
image tinted red where tampered), optionally ``<stem>_restored.png``,
``<stem>_probability.png`` (the raw probabilities as a 16-bit grey PNG,
:func:`reloc.data.io.read_probability_png` reads it back) and classical evidence maps
``<stem>_evidence-<method>.png`` (:mod:`reloc.evidence`), and ``<stem>.json``
(the numbers of :func:`image_report`, the protocol, and provenance: the input's absolute
path and SHA-256, the networks and their weights' SHA-256, whether a restorer ran, the
reloc / torch / Python versions, the UTC time). The batch gets ``summary.json``: every
input's status and reason, every skipped folder entry and why, the model, options,
versions and times. With a ``fusion`` (:func:`main_map`) the heat map, mask, overlay and
probabilities are the fused map's, ``<stem>_learned.png`` is the learned map's heat map
alone, and the JSON's ``map`` says which map they show.

Safety rules:

- **No evidence is overwritten.** Before anything is written, every output name of the
  batch is checked against the output folder: if any exists already (an input, an earlier
  run's result, anything this run did not create), the whole batch goes to a fresh
  sub-folder ``OUT/localize-<UTC time>`` and the summary says so. Every file is then
  published without replacing (a hard link of a complete temporary file), so not even a
  file appearing during the run is overwritten; a batch started while another writes to the
  same folder (:data:`LOCK_NAME`) takes a fresh sub-folder too. Two inputs with the same stem get
  ``stem``, ``stem-1``, ``stem-2`` ... in input order (``summary`` is reserved).
- **One bad file never stops the batch.** A file that cannot be read (missing, empty,
  truncated, not an image, over the pixel budget), runs out of memory or fails inside a
  network is recorded with its reason and the others go on; an unexpected error's
  traceback is appended to ``reloc-error-<time>.log`` in the output folder.
- **Nothing is skipped silently.** Folder entries that are not taken (other suffixes,
  sub-folders without ``recursive``, broken links, link loops, devices, pipes) are
  counted and listed with their reason.
- **Any size.** Windows under the networks' minimum side are padded (``padded`` and
  ``network_input`` in the JSON).

Memory: 8-bit images are decoded to uint8 and fed to the networks window by window; the
heat map and overlay are rendered in bands, so the peak is about
:data:`BYTES_PER_PIXEL` bytes per pixel plus the networks (``benchmarks/memory.py``);
:data:`DEFAULT_MAX_PIXELS` is the default budget.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import platform
import stat
import tempfile
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reloc import __version__
from reloc.data.io import (
    IMAGE_SUFFIXES,
    ImageError,
    float_to_uint8,
    frame_count,
    read_image,
    write_png,
    write_probability_png,
)
from reloc.engine.detection import assess, image_score, pretrained_label
from reloc.engine.distributed import DistContext
from reloc.engine.inference import Pipeline
from reloc.engine.model_choice import ModelChooser
from reloc.errors import UsageError, utc_now
from reloc.evidence import FUSION_METHODS, FUSIONS, Evidence, analyse, fuse, map_name, save_maps
from reloc.io_utils import write_json_atomic
from reloc.models.weights import WeightsError
from reloc.visualize import heatmap, overlay

"""Suffixes (lower case) of the files taken from a folder; files named directly are always tried."""

BYTES_PER_PIXEL = 21
"""Resident memory per image pixel of :func:`localize_files` without ``save_restored``:
2.99 GB for a 12000x12000 8-bit PNG (``benchmarks/memory.py``, tiny localizer, the peak seen
after every window was localized, through the heat map and mask PNGs; runtime included). A
restored image adds about 16 bytes per pixel (three more float32 sums, its uint8 copy);
that figure is an estimate from the arrays, not a measurement. The default fusion's evidence
runs one method after the other on images up to :data:`reloc.evidence.MAX_PIXELS` (none
above): on a 12-megapixel JPEG the double-quantisation model raised the process's peak
resident memory by 145 MB (about 12 bytes per pixel), the copy-move matcher (its first
call, imports included) by 560 MB (it works on a copy of at most 2.5 megapixels); the fused
map is one float32 copy more."""

DEFAULT_MAX_PIXELS = 400_000_000
"""Default pixel budget of ``reloc localize`` (20000x20000): at :data:`BYTES_PER_PIXEL`
about 8.4 GB, about 15 GB with ``--save-restored``, which fits a 24 GB machine with room."""

SUMMARY_NAME = "summary.json"
LOCK_NAME = ".reloc-localize.lock"
"""Held in the output folder while a batch writes there: a second batch started meanwhile
writes to a fresh sub-folder, so each folder's summary lists exactly its own files."""
ERROR_LOG_NAME = "reloc-error.log"
RESERVED_STEMS = frozenset({"summary"})
LEARNED_SUFFIX = "_learned.png"
"""With a fusion, the learned map's own heat map: ``<stem>_learned.png``."""
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass
class LocalizeSummary:
    """What :func:`localize_files` did.

    Attributes:
        processed: the image files localized, in order.
        failed: ``(input or file, reason)`` of every input or file that gave no result.
        skipped: ``(folder entry, reason)`` of every entry of an input folder not taken.
        out: the folder the outputs went to.
        note: why ``out`` differs from the folder asked for, if it does.
    """

    processed: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    out: Path | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing failed (skipped folder entries do not count as failures)."""
        return not self.failed

    def report(self, listed: int = 20) -> str:
        """A human-readable summary: every failure with its reason, skipped entries (the first ``listed``)."""
        lines = [f"localized {len(self.processed)} image(s), {len(self.failed)} failed, {len(self.skipped)} skipped"]
        lines += [f"  FAILED {path}: {reason}" for path, reason in self.failed]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped[:listed]]
        if len(self.skipped) > listed:
            lines.append(f"  ... {len(self.skipped) - listed} more skipped entries listed in {SUMMARY_NAME}")
        if self.note:
            lines.append(f"note: {self.note}")
        if self.out is not None:
            lines.append(f"outputs in {self.out} ({SUMMARY_NAME} lists every file)")
        return "\n".join(lines)


@dataclass
class Expansion:
    """Image files found in the inputs, with what could not be used and why."""

    files: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def versions() -> dict[str, str]:
    """The versions that produced a result: reloc, torch, Python."""
    return {"reloc": __version__, "torch": torch.__version__, "python": platform.python_version()}


def model_provenance(pipeline: Pipeline) -> dict[str, dict[str, object] | None]:
    """What localized: per role, the network's registry name and arguments, and the weights
    file it was loaded from with its SHA-256 (``pipeline.weights_files``, set by
    :func:`reloc.engine.inference.pipeline_from_weights`; ``None`` for networks built in memory)."""
    files = pipeline.weights_files

    def describe(role: str, network: torch.nn.Module | None) -> dict[str, object] | None:
        if network is None:
            return None
        spec, weights = getattr(network, "spec", None), files.get(role)
        return {
            "network": spec.name if spec else type(network).__name__,
            "arguments": spec.kwargs if spec else None,
            "weights": None if weights is None else str(Path(weights).absolute()),
            "weights_sha256": None if weights is None else sha256_file(weights),
        }

    return {"localizer": describe("localizer", pipeline.localizer), "restorer": describe("restorer", pipeline.restorer)}


def localize_files(
    inputs: list[str],
    pipeline: Pipeline | ModelChooser,
    out: Path,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    threshold: float = 0.5,
    save_restored: bool = False,
    save_probability: bool = False,
    progress: bool = True,
    recursive: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    dist: DistContext | None = None,
    max_expansion: float | None = None,
    evidence: Sequence[str] = (),
    fusion: str = "none",
) -> LocalizeSummary:
    """Localize every image of ``inputs`` and write the results under ``out``.

    Args:
        inputs: image files, folders (their image files, sorted; sub-folders too with
            ``recursive``) or glob patterns (``**`` recursive), expanded in order; a file
            reached twice runs once.
        pipeline: the restorer and localizer, in eval mode (see :func:`reloc.engine.inference.pipeline_from_weights`),
            or a :class:`~reloc.engine.model_choice.ModelChooser` that picks one per file
            (its ``model``, ``jpeg_quality`` and ``model_reason`` go into the JSON).
        out: output folder, created if needed; when it holds a file with one of the
            batch's output names, a fresh sub-folder of it is used (see the module doc).
        window: sliding-window side of :meth:`Pipeline.predict` (``None``: the pipeline's).
        stride: step between windows (``None``: the pipeline's).
        batch_size: windows per pass (``None``: the per-device default).
        threshold: probability above which a pixel counts as tampered (mask, fraction), in [0, 1].
        save_restored: also write ``<stem>_restored.png``.
        save_probability: also write ``<stem>_probability.png``, the probabilities as a
            16-bit PNG (``rint(p * 65535)``).
        progress: show a tqdm progress bar.
        recursive: descend into sub-folders of folder inputs.
        max_pixels: refuse images with more pixels (checked in the header, before decoding).
        max_expansion: refuse, before decoding, large images whose file is tiny for their
            pixels (:func:`reloc.limits.expansion_problem`); ``None``: no such bound.
        dist: under ``torchrun``, this process's place: it localizes its
            :meth:`DistContext.shard` of the files (output names are chosen over all of
            them) and every process returns the merged summary.
        evidence: classical evidence methods (:data:`reloc.evidence.METHODS`) to run beside
            the network: each map is written as ``<stem>_evidence-<method>.png`` and its
            note and figures go into the image's JSON under ``evidence``.
        fusion: one of :data:`reloc.evidence.FUSIONS` (:func:`main_map`): a fusion runs its
            evidence methods on every image (once, shared with ``evidence``) and makes the
            written map :func:`reloc.evidence.fuse`'s (``clones+dq``: the learned map averaged
            with the double-quantisation map where it applies, raised where the copy-move
            matcher matched regions); the learned map's heat map is then written as
            ``<stem>_learned.png``.

    Returns:
        The files processed, the failures with their reasons (unreadable images, missing
        paths, patterns matching nothing, folders without images, errors while
        localizing) and the skipped folder entries.

    Raises:
        UsageError: ``out`` is a file, cannot be created or is not writable.
        ValueError: ``threshold`` is not in [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    dist = dist or DistContext()
    started, clock = utc_now(), time.perf_counter()
    expansion = expand_inputs(inputs, recursive=recursive)
    stems = unique_stems(expansion.files, reserved=RESERVED_STEMS)
    names = [SUMMARY_NAME, ERROR_LOG_NAME] + [
        name for stem in stems for name in output_names(stem, save_restored, save_probability, evidence, fusion)
    ]
    # one process chooses (and creates) the output folder; the others use its choice
    chosen_folder = choose_output_folder(out, names, started) if dist.is_main else None
    started, (folder, note) = dist.gather((started, chosen_folder))[0]
    summary = LocalizeSummary(failed=list(expansion.failed), skipped=expansion.skipped, out=folder, note=note)
    statuses = [{"input": text, "status": "failed", "reason": reason} for text, reason in expansion.failed]
    models: dict[int, dict[str, object]] = {}  # provenance per pipeline, hashed once
    settings = {
        "window": window,
        "stride": stride,
        "batch_size": batch_size,
        "threshold": threshold,
        "max_pixels": max_pixels,
        "save_probability": save_probability,
        "max_expansion": max_expansion,
        "evidence": list(evidence),
        "fusion": fusion,
    }
    shard = dist.shard(list(zip(expansion.files, stems)))  # this process's files, with their positions
    done: list[tuple[int, dict[str, object]]] = []
    bar = tqdm(shard, disable=not progress or not dist.is_main, unit="image", desc="localize")
    for index, (path, stem) in bar:
        status = {"input": str(path.absolute()), "status": "ok", "reason": None, "json": f"{stem}.json"}
        try:
            chosen, facts = pipeline.choose(path) if hasattr(pipeline, "choose") else (pipeline, {})
            if id(chosen) not in models:
                models[id(chosen)] = model_provenance(chosen)
            note = _localize_one(
                path, stem, chosen, folder, settings, save_restored, {"networks": models[id(chosen)], **facts}
            )
            if note:
                status["note"] = note
        except ImageError as error:
            status.update(status="failed", reason=error.reason)
        except WeightsError:
            raise  # the model, not this file, is bad: the whole batch's error
        except (MemoryError, torch.cuda.OutOfMemoryError) as error:
            status.update(status="failed", reason=f"out of memory ({type(error).__name__}: {str(error)[:200]})")
        except FileExistsError as error:
            status.update(status="failed", reason=f"output {error.filename} appeared during the run; not overwritten")
        except Exception as error:  # noqa: BLE001 - one file's failure must not end the batch
            log = _append_log(folder, path, error)
            status.update(
                status="failed", reason=f"error while localizing ({type(error).__name__}: {error}; traceback in {log})"
            )
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if status["status"] != "ok":
            status["json"] = None
        done.append((index, status))
        bar.set_postfix(failed=len(summary.failed) + sum(item["status"] != "ok" for _, item in done))
    parts = dist.gather((done, list(models.values())))  # every process's share, merged in input order
    for _, status in sorted((item for part, _ in parts for item in part), key=lambda item: item[0]):
        if status["status"] == "ok":
            summary.processed.append(Path(status["input"]))
        else:
            summary.failed.append((status["input"], status["reason"]))
        statuses.append(status)
    networks = list({json.dumps(n, sort_keys=True): n for _, used in parts for n in used}.values())
    summary_record = {
        "command": "reloc localize",
        "versions": versions(),
        "started_utc": started.isoformat(),
        "finished_utc": utc_now().isoformat(),
        "seconds": round(time.perf_counter() - clock, 3),
        "requested_out": str(out.absolute()),
        "out": str(folder.absolute()),
        "note": note,
        "networks": networks,
        "processes": dist.world_size,
        "options": {**settings, "save_restored": save_restored, "recursive": recursive},
        "counts": {"processed": len(summary.processed), "failed": len(summary.failed), "skipped": len(summary.skipped)},
        "files": statuses,
        "skipped": [{"path": path, "reason": reason} for path, reason in summary.skipped],
    }  # fmt: skip
    if dist.is_main:
        write_json_atomic(folder / SUMMARY_NAME, summary_record, indent=2, overwrite=False, allow_nan=False)
        (folder / LOCK_NAME).unlink(missing_ok=True)
    return summary


def output_names(
    stem: str, save_restored: bool, save_probability: bool = False, evidence: Sequence[str] = (), fusion: str = "none"
) -> list[str]:
    """The files one image writes: heat map, mask, overlay, (restored,) (probability,) (the learned
    map alone, with a fusion,) (evidence maps,) JSON."""
    suffixes = ["_heatmap.png", "_mask.png", "_overlay.png"] + (["_restored.png"] if save_restored else [])
    suffixes += ["_probability.png"] if save_probability else []
    suffixes += [LEARNED_SUFFIX] if fusion != "none" else []
    return [stem + suffix for suffix in suffixes] + [map_name(stem, m) for m in evidence] + [f"{stem}.json"]


def choose_output_folder(out: Path, names: list[str], now: datetime) -> tuple[Path, str | None]:
    """``out`` if none of ``names`` exists in it (case-insensitively), else a fresh sub-folder.

    Returns:
        The folder (created, checked writable) and, for a sub-folder, the note saying why.

    Raises:
        UsageError: ``out`` is a file, cannot be created or is not writable.
    """
    what = f"output folder {out}"
    if out.exists() and not out.is_dir():
        raise UsageError(what, "is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        existing = {name.casefold() for name in os.listdir(out)}
    except OSError as error:
        raise UsageError(what, f"cannot create or list it ({error.strerror or error})") from None
    clashes = [name for name in names if name.casefold() in existing]
    folder, note = out, None
    busy = not clashes and not _claim(out)
    if clashes or busy:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        for number in range(1, 1000):
            folder = out / (f"localize-{stamp}" + (f"-{number}" if number > 1 else ""))
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as error:
                raise UsageError(what, f"cannot create a sub-folder ({error.strerror or error})") from None
        why = (
            f"another reloc localize is writing there ({out / LOCK_NAME}; remove it if none is)"
            if busy
            else f"it already holds {len(clashes)} file(s) with this run's output names (e.g. {clashes[0]})"
        )
        note = f"{out}: {why}; nothing there is overwritten: the outputs are written to the new sub-folder {folder}"
        _claim(folder)
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".reloc-write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UsageError(what, f"not writable ({error.strerror or error})") from None
    return folder, note


def _claim(folder: Path) -> bool:
    """Create ``folder``'s :data:`LOCK_NAME` (exclusively); ``False`` if another run holds it."""
    try:
        with open(folder / LOCK_NAME, "x", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
    except FileExistsError:
        return False
    except OSError:
        return True  # not writable: the write test below reports it
    return True


def expand_inputs(inputs: list[str], recursive: bool = False) -> Expansion:
    """Turn files, folders and glob patterns into image files.

    A path that exists is used as it is (a file, or a folder's image files); otherwise a
    text with ``*``, ``?`` or ``[`` is a glob pattern whose matches are used the same way.
    A symbolic link loop, a broken link, a device or a pipe is reported as such.

    Returns:
        The files in input order without repeats, ``(input, reason)`` for every input
        that gave none, and ``(entry, reason)`` for every folder entry not taken.
    """
    found: dict[Path, Path] = {}  # resolved -> as given
    result = Expansion()
    for text in inputs:
        path = Path(text)
        kind, reason = _probe(path)
        files: list[Path] = []
        if kind == "missing" and _GLOB_CHARACTERS & set(text):
            matches = [Path(match) for match in sorted(glob.glob(text, recursive=True))]
            for match in matches:
                match_kind, match_reason = _probe(match)
                if match_kind == "dir":
                    found_here, unreadable = _scan_folder(match, recursive, result, set())
                    files += found_here
                    if unreadable:
                        result.skipped.append((str(match), unreadable))
                elif match_kind == "file":
                    files.append(match)
                else:
                    result.skipped.append((str(match), match_reason))
            reason = "the pattern matches no file" if not matches else "the pattern matches no image file"
        elif kind == "dir":
            files, unreadable = _scan_folder(path, recursive, result, set())
            reason = unreadable or f"the folder holds no image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
        elif kind == "file":
            files = [path]
        if not files:
            result.failed.append((text, reason))
        for file in files:
            found.setdefault(file.resolve(), file)
    result.files = list(found.values())
    return result


def _probe(path: Path) -> tuple[str, str]:
    """``("file" | "dir" | "missing" | "bad", reason)`` for a path, following links."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return "bad", f"broken symbolic link (to {os.readlink(path)})"
        return "missing", "no such file or folder"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "bad", "symbolic link loop"
        return "bad", f"cannot access: {(error.strerror or str(error)).lower()}"
    if stat.S_ISDIR(info.st_mode):
        return "dir", ""
    if stat.S_ISREG(info.st_mode):
        return "file", ""
    return "bad", "not a regular file (a device, socket or named pipe)"


def _scan_folder(folder: Path, recursive: bool, result: Expansion, visited: set[str]) -> tuple[list[Path], str | None]:
    """A folder's image files, sorted by name (depth first with ``recursive``), and why
    the folder cannot be listed (``None`` if it can); entries not taken go to
    ``result.skipped``, with the reason (an unlistable sub-folder too)."""
    visited.add(os.path.realpath(folder))
    try:
        entries = sorted(os.listdir(folder))
    except OSError as error:
        return [], f"cannot list the folder: {(error.strerror or str(error)).lower()}"
    files = []
    for name in entries:
        entry = folder / name
        kind, reason = _probe(entry)
        if kind == "file":
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                files.append(entry)
            else:
                result.skipped.append((str(entry), f"not an image file name ({entry.suffix or 'no suffix'})"))
        elif kind == "dir":
            if not recursive:
                result.skipped.append((str(entry), "a sub-folder (pass --recursive to descend)"))
            elif os.path.realpath(entry) in visited:
                result.skipped.append((str(entry), "symbolic link loop (a folder already being scanned)"))
            else:
                found, unreadable = _scan_folder(entry, recursive, result, visited)
                files += found
                if unreadable:
                    result.skipped.append((str(entry), unreadable))
        else:
            result.skipped.append((str(entry), reason))
    visited.discard(os.path.realpath(folder))
    return files, None


def unique_stems(files: list[Path], reserved: frozenset[str] = frozenset()) -> list[str]:
    """Output stems for ``files``: the file stem, or ``stem-1``, ``stem-2`` ... when taken.

    Stems are compared case-insensitively, so outputs stay apart on case-insensitive
    file systems too; ``reserved`` stems are taken from the start.
    """
    taken: set[str] = {stem.casefold() for stem in reserved}
    stems = []
    for file in files:
        stem, number = file.stem, 0
        while stem.casefold() in taken:
            number += 1
            stem = f"{file.stem}-{number}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def _localize_one(
    path: Path,
    stem: str,
    pipeline: Pipeline,
    out: Path,
    settings: dict[str, object],
    save_restored: bool,
    facts: dict[str, object],
) -> str | None:
    """Read, localize and write the outputs of one image (see the module docstring);
    ``facts`` (which model ran, and why) go into its JSON. Returns a note for the summary
    (only the first frame of a multi-frame file analysed), or ``None``.

    Memory: the image stays uint8 ``(H, W, 3)`` (8-bit files); the probabilities are one
    float32 ``(H, W)`` map; the renderings are made in bands.
    """
    started = time.perf_counter()
    try:
        digest, size_bytes = sha256_file(path), path.stat().st_size
    except OSError as error:
        raise ImageError(path, f"cannot read: {(error.strerror or str(error)).lower()}") from None
    image = read_image(path, max_pixels=settings["max_pixels"], compact=True, max_expansion=settings["max_expansion"])  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only decoded buffer; it is never written
        tensor = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W) view, no copy
    height, width = image.shape[:2]
    window, stride, whole = pipeline.plan(height, width, settings["window"], settings["stride"])  # type: ignore[arg-type]
    prediction = pipeline.predict(tensor, window, stride, settings["batch_size"], return_restored=save_restored)  # type: ignore[arg-type]
    learned = (prediction[0] if save_restored else prediction).numpy()
    shown = evidence_to_run(settings["evidence"], settings["fusion"])  # type: ignore[arg-type]
    results = analyse(image, path, shown) if shown else []
    probabilities, facts["map"] = main_map(learned, results, settings["fusion"])  # type: ignore[arg-type]
    if probabilities is not learned:
        write_png(out / f"{stem}{LEARNED_SUFFIX}", heatmap(learned), overwrite=False)
        facts["map"]["learned"]["heatmap"] = f"{stem}{LEARNED_SUFFIX}"
    write_png(out / f"{stem}_heatmap.png", heatmap(probabilities), overwrite=False)
    write_png(out / f"{stem}_mask.png", probabilities > settings["threshold"], overwrite=False)
    write_png(out / f"{stem}_overlay.png", overlay(image, probabilities), overwrite=False)
    if save_restored:
        write_png(out / f"{stem}_restored.png", chw_to_uint8(prediction[1]), overwrite=False)
    if settings["save_probability"]:
        write_probability_png(out / f"{stem}_probability.png", probabilities, overwrite=False)
    frames = frame_count(path)
    if frames > 1:
        facts = {**facts, "frames": frames, "note": f"only the first of {frames} frames (or pages) was analysed"}
    if settings["evidence"]:
        asked = [result for result in results if result.method in settings["evidence"]]  # type: ignore[operator]
        facts = {**facts, "evidence": save_maps(asked, out, stem)}
    network_input = pipeline.network_input(height, width, window)
    numbers = image_report(
        probabilities,
        float(settings["threshold"]),
        pipeline.weights_files,
        score=image_score(learned),  # type: ignore[arg-type]
    )
    numbers.update(
        file=str(path.absolute()),
        input={"path": str(path.absolute()), "sha256": digest, "bytes": size_bytes},
        window=window,
        stride=stride,
        inference=inference_facts(pipeline, whole, window, stride),
        network_input=list(network_input),
        padded=network_input != (min(window, height), min(window, width)),
        restored=pipeline.restorer is not None,
        restore_window=None if pipeline.restore_window is None else list(pipeline.restore_window),
        **facts,
        versions=versions(),
        time_utc=utc_now().isoformat(),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_json_atomic(out / f"{stem}.json", numbers, indent=2, overwrite=False, allow_nan=False)
    return facts.get("note")  # type: ignore[return-value]


def evidence_to_run(evidence: Sequence[str], fusion: str) -> list[str]:
    """The evidence methods to run on an image: those asked for, and those the fusion needs."""
    return list(dict.fromkeys([*evidence, *FUSION_METHODS[fusion]]))


EVIDENCE_NAMES = {"clones": "the copy-move matcher", "dq": "the double-quantisation model"}


def main_map(learned: np.ndarray, results: Sequence[Evidence], fusion: str) -> tuple[np.ndarray, dict[str, object]]:
    """The map ``reloc localize`` and ``reloc serve`` show (heat map, mask, overlay), and what it shows.

    Args:
        learned: float32 ``(H, W)``, the network's probabilities.
        results: the evidence run on the same image (:func:`reloc.evidence.analyse`): it
            holds the result of each method the fusion needs (:data:`reloc.evidence.FUSION_METHODS`).
        fusion: one of :data:`reloc.evidence.FUSIONS`.

    Returns:
        ``(map, facts)``: ``map`` is ``learned`` itself (no fusion, or no method of it applied)
        or :func:`reloc.evidence.fuse`'s float32 ``(H, W)``; ``facts`` (the JSON's ``map``):
        ``fusion``, ``shows`` (one line: what the map is on this image, naming the methods that
        did not apply and why), and with a fusion ``matcher`` (the copy-move matcher's note and
        the regions it found) and/or ``dq`` (the double-quantisation model's note and whether
        it applied), and ``learned``, the learned map's own ``max_probability`` and
        ``mean_probability``.
    """
    facts: dict[str, object] = {"fusion": fusion, "shows": FUSIONS[fusion]}
    if fusion == "none":
        return learned, facts
    found = {result.method: result for result in results}
    if "clones" in FUSION_METHODS[fusion]:
        clones = found["clones"]
        regions = clones.figures.get("regions", []) if clones.applicable else []
        facts["matcher"] = {"note": clones.note, "regions": len(regions)}
    if "dq" in FUSION_METHODS[fusion]:
        facts["dq"] = {"note": found["dq"].note, "applied": found["dq"].applicable}
    idle = [method for method in FUSION_METHODS[fusion] if not found[method].applicable]
    if idle:
        applied = [method for method in FUSION_METHODS[fusion] if method not in idle]
        base = next(FUSIONS[name] for name, methods in FUSION_METHODS.items() if set(methods) == set(applied))
        reasons = "; ".join(
            f"{EVIDENCE_NAMES[method]} does not apply: {found[method].note.removeprefix('not applicable: ')}"
            for method in idle
        )
        facts["shows"] = f"{base} ({reasons})"
    facts["learned"] = {
        "max_probability": float(learned.max()),
        "mean_probability": float(learned.mean(dtype=np.float64)),
    }
    return fuse(learned, results, fusion), facts


def inference_facts(pipeline: Pipeline, whole: bool, window: int, stride: int) -> dict[str, object]:
    """How an image was run, for its JSON: ``mode`` (``whole``: one pass; ``tiles``), the
    window and stride, the blend of overlapping windows, and the whole-image budget."""
    return {
        "mode": "whole" if whole else "tiles",
        "window": window,
        "stride": stride,
        "blend": pipeline.blend,
        "whole_image_pixels": pipeline.whole_image_pixels,
    }


def chw_to_uint8(image: torch.Tensor, band_rows: int = 512) -> np.ndarray:
    """float ``(3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)`` by rounding, a band of rows at a time."""
    channels, height, width = image.shape
    pixels = np.empty((height, width, channels), dtype=np.uint8)
    for top in range(0, height, band_rows):
        pixels[top : top + band_rows] = float_to_uint8(image[:, top : top + band_rows].permute(1, 2, 0).numpy())
    return pixels


def image_report(
    probabilities: np.ndarray,
    threshold: float,
    weights: dict[str, str | None] | None = None,
    score: float | None = None,
) -> dict[str, object]:
    """The numbers of one probability map ``(H, W)``.

    Args:
        probabilities: the map. threshold: the pixel threshold.
        weights: the weights files that made the map (``Pipeline.weights_files``), which say
            whether the detection band of a pretrained model applies.
        score: the image score to judge (``None``: the map's own); a fused map's is the
            learned map's, on which the detection bands were calibrated.

    Returns:
        ``size`` ``[H, W]``; ``tampered_fraction``, the share of pixels above
        ``threshold``; ``max_probability``; ``mean_probability``; ``image_score``, the
        image-level score (:func:`reloc.engine.detection.image_score`); ``detection``, its
        band and the false-alarm rate it was measured with (:func:`reloc.engine.detection.assess`);
        ``threshold``.
    """
    flat = probabilities.ravel()
    score = image_score(probabilities) if score is None else score
    return {
        "size": list(probabilities.shape),
        "tampered_fraction": float(np.count_nonzero(flat > threshold) / flat.size),
        "max_probability": float(flat.max()),
        "mean_probability": float(flat.mean(dtype=np.float64)),
        "image_score": score,
        "detection": assess(score, pretrained_label(**(weights or {}))),
        "threshold": threshold,
    }


def _append_log(folder: Path, path: Path, error: BaseException) -> Path:
    """Append ``error``'s traceback for input ``path`` to the batch's error log; its path."""
    log = folder / ERROR_LOG_NAME
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"--- {utc_now().isoformat()} {path}\n")
        handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    return log
