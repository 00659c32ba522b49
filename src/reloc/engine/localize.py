"""Localize tampering in image files: the analyst's batch tool.

>>> pipeline = pipeline_from_weights("dfcn.safetensors", "scunet.safetensors")
>>> summary = localize_files(["case-12/", "extra/*.jpg"], pipeline, Path("results"))
>>> print(summary.report())

For each image ``OUT/<stem>`` gets ``_heatmap.png`` (probabilities coloured),
``_mask.png`` (probability > threshold, {0, 255}), ``_overlay.png`` (the image tinted red
where tampered), optionally ``_restored.png``, and ``<stem>.json`` with the numbers of
:func:`image_report` plus ``file``, ``window``, ``stride`` and ``seconds`` (reading,
localizing and writing the images). Two inputs with the same stem get ``stem``, ``stem-1``,
``stem-2`` ... in input order, so no output overwrites another's. A file that cannot be
read, a missing path, a pattern matching nothing or a folder without images is recorded
as a failure with its reason and the others go on.
"""

from __future__ import annotations

import glob
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reloc.data.io import IMAGE_SUFFIXES, ImageError, read_image, to_numpy, to_tensor, write_png
from reloc.engine.distributed import DistContext
from reloc.engine.inference import Pipeline
from reloc.engine.model_choice import ModelChooser
from reloc.io_utils import write_json_atomic
from reloc.models.weights import WeightsError, load_network, read_spec
from reloc.visualize import heatmap, overlay

"""Suffixes (lower case) of the files taken from a folder; files named directly are always tried."""

TOP_FRACTION = 0.01
"""Share of the most suspicious pixels whose mean probability is the image score."""

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass
class LocalizeSummary:
    """What :func:`localize_files` did.

    Attributes:
        processed: the image files localized, in order.
        failed: ``(input or file, reason)`` of every input or file that gave no result.
    """

    processed: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.failed

    def report(self) -> str:
        """A human-readable summary listing every failed file with its reason."""
        lines = [f"localized {len(self.processed)} image(s), {len(self.failed)} failed"]
        lines += [f"  FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def pipeline_from_weights(
    localizer_path: str | os.PathLike,
    restorer_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> Pipeline:
    """Rebuild a pipeline from weights files written by :func:`reloc.models.weights.save_network`.

    Each file alone rebuilds its network (the spec is in its metadata).

    Args:
        localizer_path: the localizer's safetensors file.
        restorer_path: the restorer's, or ``None`` to localize the images as they are.
        device: where the pipeline runs.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :mod:`reloc.precision`).

    Returns:
        The pipeline on ``device``, prepared for inference (:meth:`Pipeline.prepare`).

    Raises:
        WeightsError: a file is unreadable, has no spec, or holds a network of the wrong role.
    """
    restorer = None if restorer_path is None else _load_role(restorer_path, "restorer", device)
    localizer = _load_role(localizer_path, "localizer", device)
    return Pipeline(restorer, localizer, precision=precision).prepare()


def _load_role(path: str | os.PathLike, role: str, device: str | torch.device) -> torch.nn.Module:
    """The network stored in ``path``, checked to be a ``role`` network."""
    spec = read_spec(path)
    if spec.kind != role:
        raise WeightsError(f"{path}: holds the {spec.kind} {spec.name!r}, not a {role}")
    return load_network(path, map_location=device)


def localize_files(
    inputs: list[str],
    pipeline: Pipeline | ModelChooser,
    out: Path,
    *,
    window: int = 512,
    stride: int = 512,
    batch_size: int | None = None,
    threshold: float = 0.5,
    save_restored: bool = False,
    progress: bool = True,
    dist: DistContext | None = None,
) -> LocalizeSummary:
    """Localize every image of ``inputs`` and write the results to ``out``.

    Args:
        inputs: image files, folders (their image files, sorted, not recursive) or glob
            patterns (``**`` recursive), expanded in order; a file reached twice runs once.
        pipeline: the restorer and localizer, in eval mode (see :func:`pipeline_from_weights`),
            or a :class:`~reloc.engine.model_choice.ModelChooser` that picks one per file
            (its ``model``, ``jpeg_quality`` and ``model_reason`` go into the JSON).
        out: output folder, created if needed.
        window, stride, batch_size: the sliding windows of :meth:`Pipeline.predict`
            (``batch_size=None``: its per-device default).
        threshold: probability above which a pixel counts as tampered (mask, fraction).
        save_restored: also write ``<stem>_restored.png``.
        progress: show a tqdm progress bar.
        dist: under ``torchrun``, this process's place: it localizes its
            :meth:`DistContext.shard` of the files (output names are chosen over all of
            them) and every process returns the merged summary.

    Returns:
        The files processed and the failures with their reasons (unreadable images,
        missing paths, patterns matching nothing, folders without images).
    """
    dist = dist or DistContext()
    files, failed = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    shard = dist.shard(list(zip(files, unique_stems(files))))
    processed: list[tuple[int, Path]] = []
    file_failures: list[tuple[int, tuple[str, str]]] = []
    bar = tqdm(shard, disable=not progress or not dist.is_main, unit="image", desc="localize")
    for index, (path, stem) in bar:
        try:
            chosen, facts = pipeline.choose(path) if isinstance(pipeline, ModelChooser) else (pipeline, {})
            _localize_one(path, stem, chosen, out, window, stride, batch_size, threshold, save_restored, facts)
        except ImageError as error:
            file_failures.append((index, (str(path), error.reason)))
        else:
            processed.append((index, path))
        bar.set_postfix(failed=len(failed) + len(file_failures))
    parts = dist.gather((processed, file_failures))  # every process's share, merged in input order
    return LocalizeSummary(
        processed=[path for _, path in sorted(item for part in parts for item in part[0])],
        failed=failed + [failure for _, failure in sorted(item for part in parts for item in part[1])],
    )


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Turn files, folders and glob patterns into image files.

    A path that exists is used as it is (a file, or a folder's image files); otherwise a
    text with ``*``, ``?`` or ``[`` is a glob pattern whose matches are used the same way.

    Returns:
        The files in input order without repeats, and ``(input, reason)`` for every input
        that gave none.
    """
    files: dict[Path, Path] = {}  # resolved -> as given
    failed: list[tuple[str, str]] = []
    for text in inputs:
        path = Path(text)
        if path.exists():
            found, reason = _expand_path(path)
        elif _GLOB_CHARACTERS & set(text):
            matches = [Path(match) for match in sorted(glob.glob(text, recursive=True))]
            found = [file for match in matches for file in _expand_path(match)[0]]
            reason = "the pattern matches no file" if not matches else "the pattern matches no image file"
        else:
            found, reason = [], "no such file or folder"
        if not found:
            failed.append((text, reason))
        for file in found:
            files.setdefault(file.resolve(), file)
    return list(files.values()), failed


def _expand_path(path: Path) -> tuple[list[Path], str]:
    """A file as itself, a folder as its image files; with the reason when there are none."""
    if not path.is_dir():
        return [path], ""
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return images, f"the folder holds no image file ({', '.join(sorted(IMAGE_SUFFIXES))})"


def unique_stems(files: list[Path]) -> list[str]:
    """Output stems for ``files``: the file stem, or ``stem-1``, ``stem-2`` ... when taken.

    Stems are compared case-insensitively, so outputs stay apart on case-insensitive
    file systems too.
    """
    taken: set[str] = set()
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
    window: int,
    stride: int,
    batch_size: int | None,
    threshold: float,
    save_restored: bool,
    facts: dict[str, object],
) -> None:
    """Read, localize and write the outputs of one image (see the module docstring);
    ``facts`` (which model ran and why) are added to its JSON."""
    started = time.perf_counter()
    image = read_image(path)
    prediction = pipeline.predict(to_tensor(image), window, stride, batch_size, return_restored=save_restored)
    probabilities = (prediction[0] if save_restored else prediction).numpy()
    write_png(out / f"{stem}_heatmap.png", heatmap(probabilities))
    write_png(out / f"{stem}_mask.png", probabilities > threshold)
    write_png(out / f"{stem}_overlay.png", overlay(image, probabilities))
    if save_restored:
        write_png(out / f"{stem}_restored.png", to_numpy(prediction[1]))
    numbers = image_report(probabilities, threshold)
    numbers.update(
        file=str(path), **facts, window=window, stride=stride, seconds=round(time.perf_counter() - started, 3)
    )
    write_json_atomic(out / f"{stem}.json", numbers, indent=2)


def image_report(probabilities: np.ndarray, threshold: float) -> dict[str, object]:
    """The numbers of one probability map ``(H, W)``.

    Returns:
        ``size`` ``[H, W]``; ``tampered_fraction``, the share of pixels above
        ``threshold``; ``max_probability``; ``mean_probability``; ``image_score``, the mean
        probability of the top 1% of pixels (at least one pixel), high when some region
        is confidently tampered however small; ``threshold``.
    """
    flat = probabilities.ravel()
    top = max(1, math.ceil(TOP_FRACTION * flat.size))
    return {
        "size": list(probabilities.shape),
        "tampered_fraction": float(np.count_nonzero(flat > threshold) / flat.size),
        "max_probability": float(flat.max()),
        "mean_probability": float(flat.mean(dtype=np.float64)),
        "image_score": float(np.partition(flat, flat.size - top)[flat.size - top :].mean(dtype=np.float64)),
        "threshold": threshold,
    }
