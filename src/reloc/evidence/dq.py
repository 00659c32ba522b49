"""Aligned double quantisation: where the DCT coefficients do not carry the first compression.

A JPEG saved twice on the same 8x8 grid, first with quantisation step ``q1`` and then with
``q2``, has coefficient histograms with a periodic pattern (bins that no ``q1`` multiple
rounds to are empty or thin, others doubly full). A part pasted in after the first
compression (resampled, shifted off the grid, or from an uncompressed source) was quantised
once, by ``q2`` only, and lacks the pattern.

The model (Bianchi, De Rosa and Piva, "Improved DCT coefficient analysis for forgery
localization in JPEG images", ICASSP 2011; after Lin et al., "Fast, automatic and
fine-grained tampered JPEG image detection via DCT coefficient analysis", 2009), per AC
frequency of the first :data:`FREQUENCIES` in zigzag order:

- ``x``: each block's quantised coefficient, the DCT of the decoded luminance divided by the
  file's step ``q2`` and rounded;
- ``p1(x)``: the distribution of a singly compressed image, from the DCT on a grid shifted by
  4 pixels (which the compressions did not quantise) quantised by ``q2``;
- ``p0(x; q1) = P(round(round(u / q1) q1 / q2) = x)`` with ``u`` from the same shifted-grid
  coefficients: the doubly compressed distribution;
- ``q1`` and the share ``a`` of doubly compressed blocks by maximum likelihood over the
  candidate steps (EM on the mixture ``a p0 + (1 - a) p1`` of the histogram of ``x``); a
  frequency counts when the best fit has ``a >= MIN_SHARE`` (the original part is the larger)
  and gains :data:`MIN_GAIN` per block over ``p1`` alone;
- each block's log-likelihood ratio ``log p1(x) - log p0(x)`` (tampered against original),
  summed over the frequencies that count and averaged over :data:`POOL` x :data:`POOL`
  blocks; the map is its logistic (a posterior with even prior odds). Fewer than
  :data:`MIN_FREQUENCIES` frequencies that count: no map (compressed once, or a chance fit).

The constants were chosen on casia1-dev (every third image; ``benchmarks/evidence.py``
measures the whole set). Aligned double quantisation shows when the first compression was
the coarser (``q1 > q2``); a finer first compression leaves little trace.
"""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
from PIL import Image

from reloc.data.io import EXIF_ORIENTATION, orient
from reloc.evidence.base import Evidence, not_applicable
from reloc.evidence.ela import file_quality

FREQUENCIES = 20
"""AC frequencies used: the first in zigzag order (low frequencies, small steps, full histograms)."""

LARGEST_FIRST_STEP = 64
"""Candidate first-compression steps ``q1``: 2 to this (a step of 1 leaves no trace to fit)."""

LOG_RATIO_CLIP = 4.0
"""Each frequency's log-likelihood ratio is clipped to +/- this (an empty bin of ``p0`` is not proof)."""

POOL = 5
"""Side, in blocks, of the square over which the summed log-likelihood ratio is averaged."""

MIN_GAIN = 0.01
"""Log-likelihood gain per block of the double-compression mixture over a single compression
below which a frequency shows no double compression and is left out."""

MIN_SHARE = 0.5
"""Fitted share of doubly compressed blocks below which a frequency is left out (the original part
is taken to be the larger; a small share fits the shifted grid's misjudgement, not a compression)."""

MIN_FREQUENCIES = 3
"""Frequencies that must show double compression for a map (fewer: a chance fit, not applicable)."""

FINE = 4
"""Shifted-grid coefficients are histogrammed in steps of ``1 / FINE``."""

_LARGEST_COEFFICIENT = 1100
"""Above any 8x8 DCT coefficient of 8-bit pixels (at most 1024 in size)."""

_EM_ROUNDS = 30
_EPSILON = 1e-6


def _zigzag(count: int) -> list[tuple[int, int]]:
    """The first ``count`` AC positions ``(row, column)`` of the 8x8 block in JPEG's zigzag order."""
    cells = sorted(
        ((r, c) for r in range(8) for c in range(8)), key=lambda rc: (sum(rc), rc[0] if sum(rc) % 2 else -rc[0])
    )
    return cells[1 : count + 1]


def _dct_matrix() -> np.ndarray:
    """JPEG's orthonormal 8-point DCT-II as a float64 ``(8, 8)`` matrix (rows: frequencies)."""
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    matrix = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2 / 8)
    matrix[0] /= np.sqrt(2)
    return matrix


def block_dct(luminance: np.ndarray, cells: list[tuple[int, int]]) -> np.ndarray:
    """Some DCT coefficients of each 8x8 block of ``luminance - 128`` (JPEG's forward DCT,
    the orthonormal DCT-II).

    Args:
        luminance: ``(H, W)`` numbers; rows and columns past the last whole block are ignored.
        cells: the ``(row, column)`` frequencies wanted, 0-7 each.

    Returns:
        float32 ``(H // 8, W // 8, len(cells))``.
    """
    rows, columns = luminance.shape[0] // 8, luminance.shape[1] // 8
    pixels = np.asarray(luminance[: rows * 8, : columns * 8], dtype=np.float32) - np.float32(128)
    blocks = pixels.reshape(rows, 8, columns, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
    basis = _dct_matrix().astype(np.float32)
    products = np.stack([np.outer(basis[row], basis[column]).ravel() for row, column in cells], axis=1)  # (64, F)
    return (blocks @ products).reshape(rows, columns, len(cells))


def _histogram(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """float64 counts of the integers ``low..high`` in ``values`` (those outside clipped to the ends)."""
    return np.bincount(np.clip(values, low, high) - low, minlength=high - low + 1).astype(np.float64)


def _mixture(counts: np.ndarray, double: np.ndarray, single: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EM for each candidate's share ``a`` in ``a double + (1 - a) single`` fitted to ``counts``.

    Args:
        counts: ``(B,)`` observed counts. double: ``(C, B)`` each candidate's distribution.
        single: ``(B,)``.

    Returns:
        ``(a (C,), log-likelihood (C,))``.
    """
    share = np.full((double.shape[0], 1), 0.5)
    for _ in range(_EM_ROUNDS):
        mixed = share * double + (1 - share) * single
        share = np.sum(counts * share * double / np.maximum(mixed, _EPSILON), axis=1, keepdims=True) / counts.sum()
    mixed = share * double + (1 - share) * single
    return share[:, 0], np.sum(counts * np.log(np.maximum(mixed, _EPSILON)), axis=1)


def _frequency_model(aligned: np.ndarray, shifted: np.ndarray, step: int) -> tuple[np.ndarray, int, float] | None:
    """One frequency's log-likelihood ratio per block, or ``None`` when it shows no double compression.

    Args:
        aligned: the file grid's coefficients ``(h, w)``. shifted: the shifted grid's, any
            shape. step: the file's quantisation step ``q2``.

    Returns:
        ``(log p1(x) - log p0(x) per block, float32 (h, w), clipped to +/-
        LOG_RATIO_CLIP; q1; the fitted share of doubly compressed blocks)``.
    """
    x = np.rint(aligned / step).astype(np.int64)
    reach, span = -(-_LARGEST_COEFFICIENT // step), _LARGEST_COEFFICIENT * FINE
    counts = _histogram(x.ravel(), -reach, reach)
    fine = _histogram(np.rint(shifted.ravel() * FINE).astype(np.int64), -span, span)
    centres = np.arange(-span, span + 1)[fine > 0] / FINE
    fine = fine[fine > 0]
    firsts = np.array([first for first in range(2, LARGEST_FIRST_STEP + 1) if first != step])
    # row 0: quantised by q2 only; row i: by firsts[i - 1], then by q2
    requantised = np.vstack([centres, np.rint(centres / firsts[:, None]) * firsts[:, None]])
    bins = np.clip(np.rint(requantised / step).astype(np.int64), -reach, reach) + reach
    rows = np.arange(bins.shape[0])[:, None] * counts.size
    mass = np.bincount((bins + rows).ravel(), weights=np.broadcast_to(fine, bins.shape).ravel(),
                       minlength=bins.size // fine.size * counts.size).reshape(-1, counts.size)  # fmt: skip
    distributions = (mass + _EPSILON) / (mass.sum(axis=1, keepdims=True) + _EPSILON * counts.size)
    seen = counts > 0  # only the bins that hold coefficients enter the likelihood
    single = distributions[0]
    shares, likelihoods = _mixture(counts[seen], distributions[1:, seen], single[seen])
    gains = (likelihoods - np.sum(counts[seen] * np.log(single[seen]))) / x.size
    gains[shares < MIN_SHARE] = -np.inf
    best = int(np.argmax(gains))
    if gains[best] < MIN_GAIN:
        return None
    ratio = np.clip(np.log(single) - np.log(distributions[best + 1]), -LOG_RATIO_CLIP, LOG_RATIO_CLIP)
    return ratio[x + reach].astype(np.float32), int(firsts[best]), float(shares[best])


def _file_luminance(path: str | os.PathLike) -> tuple[np.ndarray, int, np.ndarray] | str:
    """A JPEG file's decoded luminance (uint8 ``(H, W)`` in the file's orientation, without
    colour conversion), its EXIF orientation and its luminance quantisation table (int64
    ``(8, 8)``); or why there is none (a CMYK JPEG, a file that does not decode)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                table = np.asarray(image.quantization[0], dtype=np.int64).reshape(8, 8)
                image.draft("L", image.size)
                image.load()
                if image.mode != "L":
                    return f"a {image.mode} JPEG without a luminance plane"
                return np.asarray(image), image.getexif().get(EXIF_ORIENTATION, 1), table
    except (OSError, ValueError, SyntaxError) as error:
        return f"the file does not decode again ({error})"


def double_quantisation(image: np.ndarray, path: str | os.PathLike | None = None) -> Evidence:
    """Aligned double-quantisation likelihood map of a JPEG file.

    Args:
        image: uint8 ``(H, W, 3)`` RGB, decoded from ``path`` (gives the size the map must have).
        path: the JPEG file, whose luminance table and coefficients are read.

    Returns:
        ``map``: float32 ``(H, W)``, per 8x8 block of the file's grid the posterior that the
        block was quantised once (see the module docstring), constant over each block; 0 on
        the partial blocks at the right and bottom edges. ``figures``: ``file_quality``,
        ``frequencies`` (how many showed double compression), ``first_steps`` and ``steps``
        (``q1`` and ``q2`` of each of them), ``double_share`` (the fitted share of doubly
        compressed blocks, their mean) and ``flagged_fraction`` (map > 0.5). Not applicable
        to files that are not JPEGs, CMYK JPEGs, images under 2x2 blocks, pixels that are not
        the file's (another size), and files where fewer than :data:`MIN_FREQUENCIES`
        frequencies show double compression.
    """
    own = file_quality(path)
    if own is None:
        return not_applicable("dq", "not a JPEG file (double quantisation is read from the file's coefficients)")
    decoded = _file_luminance(path)
    if isinstance(decoded, str):
        return not_applicable("dq", decoded, file_quality=own)
    luminance, orientation, table = decoded
    height, width = image.shape[:2]
    if orient(luminance[..., None], orientation).shape[:2] != (height, width):
        return not_applicable("dq", "the pixels are not the file's (another size)", file_quality=own)
    rows, columns = luminance.shape[0] // 8, luminance.shape[1] // 8
    if rows < 2 or columns < 2:
        return not_applicable("dq", "the image is under 16x16 pixels (2x2 JPEG blocks)", file_quality=own)
    cells = _zigzag(FREQUENCIES)
    aligned = block_dct(luminance, cells)
    shifted = block_dct(luminance[4:, 4:], cells)
    total = np.zeros((rows, columns), dtype=np.float32)
    first_steps, steps, shares = [], [], []
    for index, (row, column) in enumerate(cells):
        model = _frequency_model(aligned[..., index], shifted[..., index], int(table[row, column]))
        if model is None:
            continue
        ratio, first, share = model
        total += ratio
        first_steps.append(first)
        steps.append(int(table[row, column]))
        shares.append(share)
    if len(steps) < MIN_FREQUENCIES:
        return not_applicable(
            "dq", f"{len(steps)} of {FREQUENCIES} DCT frequencies show an earlier aligned compression (under "
            f"{MIN_FREQUENCIES}: compressed once, or twice with the same steps)", file_quality=own, frequencies=len(steps),
        )  # fmt: skip
    pooled = cv2.blur(total, (POOL, POOL), borderType=cv2.BORDER_REFLECT)
    blocks = (1.0 / (1.0 + np.exp(-pooled))).astype(np.float32)
    scores = np.zeros(luminance.shape, dtype=np.float32)
    scores[: rows * 8, : columns * 8] = cv2.resize(blocks, (columns * 8, rows * 8), interpolation=cv2.INTER_NEAREST)
    scores = np.ascontiguousarray(orient(scores[..., None], orientation)[..., 0])
    figures = {
        "file_quality": own,
        "frequencies": len(steps),
        "first_steps": first_steps,
        "steps": steps,
        "double_share": round(float(np.mean(shares)), 4),
        "flagged_fraction": round(float(np.mean(blocks > 0.5)), 5),
    }
    note = (
        f"aligned double quantisation in {len(steps)} of {FREQUENCIES} DCT frequencies (file quality {own}, "
        f"{figures['double_share']:.0%} of the blocks fitted as compressed twice); bright = the block's "
        "coefficients lack the first compression: pasted, resampled or shifted after it"
    )
    return Evidence("dq", scores, note, figures)
