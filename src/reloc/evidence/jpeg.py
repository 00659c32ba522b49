"""JPEG traces: ghosts of an earlier compression, and the 8x8 block-artifact grid.

JPEG ghosts (Farid, "Exposing digital forgeries from JPEG ghosts", 2009): a region that was
compressed at quality ``q1`` before the whole image was saved at a higher ``q2`` changes
unusually little when the image is re-saved at ``q1``. Each pixel's change over a range of
qualities is compared with the image's median change at the same quality; a part whose
history differs from the rest's reacts differently: less (it carries a ghost the rest lacks)
or more (the rest carries a ghost it lacks, as in casia1-dev, where the doubly compressed
background shows the ghost and the pasted region does not).

Block-artifact grid (after Li, Yuan and Yu, "Passive detection of doctored JPEG image via
block artifact grid extraction", 2009): JPEG leaves a step at every 8th column and row. A
region pasted without aligning that grid, or one from an uncompressed source, lacks the
step where the rest of the image has it.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from reloc.evidence.base import Evidence, not_applicable
from reloc.evidence.ela import BAND_ROWS, file_quality, jpeg_roundtrip

GHOST_QUALITIES = tuple(range(50, 100, 5))
"""Qualities tried for ghosts (those below the file's own quality are used)."""

GHOST_WINDOW = 16
"""Side of the square over which the squared change is averaged (Farid's ``b``; a multiple of 8:
the change is summed per 8x8 JPEG block, then over windows of blocks)."""

GHOST_MIN_CHANGE = 0.5
"""Mean squared change (8-bit levels squared) below which a pixel's neighbourhood is too flat to judge."""

GRID_WINDOW = 32
"""Side of the windows whose block grid is measured."""

GRID_MIN_STRENGTH = 0.1
"""Relative step at the grid's columns and rows below which the image is taken to have no grid."""


def ghosts(image: np.ndarray, path: str | os.PathLike | None = None) -> Evidence:
    """JPEG ghost map of a JPEG file.

    Args:
        image: uint8 ``(H, W, 3)`` RGB, decoded from ``path``.
        path: the JPEG file (its quality bounds the qualities tried).

    Returns:
        ``map``: float32 ``(H, W)``, per pixel ``mean_q |d_q / median d_q - 1|`` clipped to
        [0, 1], constant over each 8x8 block (``d_q``: squared luminance change after
        re-saving at ``q``, averaged over :data:`GHOST_WINDOW` pixels and divided by the
        pixel's largest ``d``; the median is over the image): how much more or less the
        part changes than the rest. 0 where the image is too flat to judge.
        ``figures``: ``file_quality``, ``qualities``, ``median_change`` per quality,
        ``ghost_quality`` (the quality most ghost pixels point to: pixels whose change at
        some quality is under half the median, voting for that quality; ``None`` if
        none), ``ghost_fraction`` (their share) and ``flagged_fraction`` (map > 0.5). Not
        applicable to files that are not JPEGs, or JPEGs at quality 55 or below.
    """
    own = file_quality(path)
    if own is None:
        return not_applicable("ghost", "not a JPEG file (ghosts need the file's own compression)")
    qualities = [quality for quality in GHOST_QUALITIES if quality < own]
    if len(qualities) < 2:
        return not_applicable(
            "ghost", f"the file's JPEG quality {own} leaves no lower qualities to try", file_quality=own
        )
    height, width = image.shape[:2]
    rows, columns = -(-height // 8), -(-width // 8)
    grey = cv2.copyMakeBorder(
        cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 0, rows * 8 - height, 0, columns * 8 - width, cv2.BORDER_REPLICATE
    )
    changes = np.empty((len(qualities), rows, columns), dtype=np.float32)  # (Q, H / 8, W / 8) per 8x8 block
    for index, quality in enumerate(qualities):
        for top in range(0, grey.shape[0], BAND_ROWS):
            band = grey[top : top + BAND_ROWS]
            difference = cv2.absdiff(band, jpeg_roundtrip(band, quality))
            squared = cv2.multiply(difference, difference, dtype=cv2.CV_32F)
            block_rows = band.shape[0] // 8
            means = cv2.resize(squared, (columns, block_rows), interpolation=cv2.INTER_AREA)  # exact 8x8 means
            changes[index, top // 8 : top // 8 + block_rows] = means
        changes[index] = cv2.blur(changes[index], (GHOST_WINDOW // 8,) * 2, borderType=cv2.BORDER_REFLECT)
    largest = changes.max(axis=0)
    judged = largest >= GHOST_MIN_CHANGE
    changes /= np.maximum(largest, np.float32(1e-6))
    medians = [float(np.median(plane[judged])) if judged.any() else 0.0 for plane in changes]
    ratios = changes / np.maximum(np.array(medians, dtype=np.float32), 1e-6)[:, None, None]  # (Q, h, w)
    blocks = np.clip(np.abs(ratios - 1.0).mean(axis=0), 0.0, 1.0) * judged
    shortfall = 1.0 - ratios
    scores = cv2.resize(blocks.astype(np.float32), (columns * 8, rows * 8), interpolation=cv2.INTER_NEAREST)
    if scores.shape != (height, width):
        scores = np.ascontiguousarray(scores[:height, :width])
    picked = np.asarray(qualities)[shortfall.argmax(axis=0)[(shortfall.max(axis=0) > 0.5) & judged]]
    values, counts = np.unique(picked, return_counts=True)
    ghost_quality = int(values[np.argmax(counts)]) if values.size else None
    figures = {
        "file_quality": own,
        "qualities": qualities,
        "median_change": [round(m, 4) for m in medians],
        "ghost_quality": ghost_quality,
        "ghost_fraction": round(float(np.mean((shortfall.max(axis=0) > 0.5) & judged)), 5),
        "flagged_fraction": round(float(np.mean(blocks > 0.5)), 5),
    }
    found = f"a ghost of quality {ghost_quality} in {figures['ghost_fraction']:.0%}" if ghost_quality else "no ghost"
    note = (
        f"change after re-saving at qualities {qualities[0]}-{qualities[-1]} (file {own}; {found} of the image); "
        "bright = changes much more or less than the rest: another compression history"
    )
    return Evidence("ghost", scores, note, figures)


def _phase_profile(steps: np.ndarray, axis: int, window: int) -> np.ndarray:
    """Sums of ``steps`` ``(H, W)`` per window and per position modulo 8 along ``axis``: ``(h, w, 8)``."""
    rows, columns = steps.shape[0] // window, steps.shape[1] // window
    cut = steps[: rows * window, : columns * window]
    if axis == 1:
        return cut.reshape(rows, window, columns, window // 8, 8).sum(axis=(1, 3))
    return cut.reshape(rows, window // 8, 8, columns, window).sum(axis=(1, 4)).transpose(0, 2, 1)


def block_grid(image: np.ndarray, path: str | os.PathLike | None = None) -> Evidence:
    """Block-artifact grid map: where the image's 8x8 JPEG grid is missing or shifted.

    Args:
        image: uint8 ``(H, W, 3)`` RGB. path: unused (a PNG saved from a JPEG keeps its grid).

    Returns:
        ``map``: float32 ``(H, W)``, per :data:`GRID_WINDOW` window (3x3 windows pooled)
        ``1 - local step / image step`` at the image's grid phase, the larger of columns and
        rows, clipped to [0, 1]. ``figures``: ``phase`` ``[row, column]`` of the grid
        (0-7), ``strength`` ``[rows, columns]``. Not applicable when the image shows no grid
        (never compressed, or resized since) or is under two windows each way.
    """
    height, width = image.shape[:2]
    if height < 2 * GRID_WINDOW or width < 2 * GRID_WINDOW:
        return not_applicable("blocks", f"the image is under {2 * GRID_WINDOW}x{2 * GRID_WINDOW} pixels")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    kernel = np.ones((3, 3), dtype=np.float32)
    shortfalls, phases, strengths = [], [], []
    for axis in (0, 1):
        steps = np.abs(np.diff(grey, axis=axis))  # step between position i and i + 1
        steps = np.pad(steps, ((0, 1), (0, 0)) if axis == 0 else ((0, 0), (0, 1)))
        profile = _phase_profile(steps, axis, GRID_WINDOW)  # (h, w, 8)
        overall = profile.sum(axis=(0, 1))
        phase = int(np.argmax(overall))
        strength = float(overall[phase] / max(np.median(overall), 1e-6) - 1.0)
        phases.append(phase)
        strengths.append(round(strength, 4))
        pooled = np.stack([cv2.filter2D(profile[..., k], -1, kernel) for k in range(8)], axis=2)
        local = pooled[..., phase] / np.maximum(np.median(pooled, axis=2), 1e-6) - 1.0
        textured = np.median(pooled, axis=2) > 9 * GRID_WINDOW * GRID_WINDOW / 8 * 0.5  # mean step over half a level
        shortfalls.append(np.where(textured, np.clip(1.0 - local / max(strength, 1e-6), 0.0, 1.0), 0.0))
    if max(strengths) < GRID_MIN_STRENGTH:
        return not_applicable(
            "blocks", "no 8x8 JPEG block grid in the pixels (never compressed, or resized since)", strength=strengths
        )
    windows = np.maximum(*shortfalls).astype(np.float32)
    rows, columns = windows.shape
    scores = cv2.resize(windows, (columns * GRID_WINDOW, rows * GRID_WINDOW), interpolation=cv2.INTER_NEAREST)
    scores = cv2.copyMakeBorder(
        scores, 0, height - rows * GRID_WINDOW, 0, width - columns * GRID_WINDOW, cv2.BORDER_REPLICATE
    )
    note = (
        f"8x8 JPEG grid at row/column phase {phases[0]}/{phases[1]}; bright = the grid's step is missing or "
        "shifted there: pasted without aligning the grid, or never compressed with the rest"
    )
    return Evidence("blocks", scores, note, {"phase": phases, "strength": strengths})
