"""Local noise level and where it disagrees with the rest of the image.

The noise of each block is estimated with Immerkaer's operator ("Fast noise variance
estimation", 1996: the Laplacian difference ``[[1,-2,1],[-2,4,-2],[1,-2,1]]``, which cancels
smooth content), taking the median absolute response per block so that edges do not count.
A region pasted from another camera, resampled, blurred or denoised has another noise level
than its surroundings; the map is how far each block's level is from the image's median.
Texture also raises the estimate, so strongly textured genuine areas light up too.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from reloc.evidence.base import Evidence, not_applicable

LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)

SATURATION = math.log(4.0)
"""Log ratio of a block's noise level to the image's median shown as 1 (four times more or less noise)."""

CLIPPED_SHARE = 0.5
"""Blocks with more than this share of pixels at 0-2 or 253-255 (clipped, hence noiseless) score 0."""


def block_size(height: int, width: int) -> int:
    """16 pixels for images up to 2048 pixels on the longer side, else 32."""
    return 16 if max(height, width) <= 2048 else 32


def noise_levels(image: np.ndarray, path: str | os.PathLike | None = None) -> Evidence:
    """Local noise level inconsistency map.

    Args:
        image: uint8 ``(H, W, 3)`` RGB. path: unused (the same for every format).

    Returns:
        ``map``: float32 ``(H, W)``, ``|log(sigma_block / median sigma)| / log 4`` clipped
        to [0, 1], constant over each block (the last partial blocks take their
        neighbour's). ``figures``: ``block``, ``median_sigma`` (8-bit levels), ``blocks``.
        Not applicable under two blocks each way.
    """
    height, width = image.shape[:2]
    size = block_size(height, width)
    rows, columns = height // size, width // size
    if rows < 2 or columns < 2:
        return not_applicable("noise", f"the image is under {2 * size}x{2 * size} pixels", block=size)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    response = np.abs(cv2.filter2D(grey.astype(np.float32), -1, LAPLACIAN_DIFFERENCE, borderType=cv2.BORDER_REFLECT))
    blocks = response[: rows * size, : columns * size].reshape(rows, size, columns, size).transpose(0, 2, 1, 3)
    sigma = np.median(blocks.reshape(rows, columns, -1), axis=2) * np.float32(math.sqrt(math.pi / 2) / 6)
    clipped = ((grey <= 2) | (grey >= 253))[: rows * size, : columns * size]
    clipped_share = clipped.reshape(rows, size, columns, size).mean(axis=(1, 3))
    usable = clipped_share <= CLIPPED_SHARE
    if not usable.any():
        return not_applicable("noise", "the image is clipped (black or white) almost everywhere", block=size)
    floor = np.float32(0.05)  # levels; keeps the log finite in perfectly flat blocks
    median = float(np.median(sigma[usable]))
    deviation = np.abs(np.log((sigma + floor) / (median + floor))) / np.float32(SATURATION)
    deviation = np.where(usable, np.clip(deviation, 0.0, 1.0), 0.0).astype(np.float32)
    scores = cv2.resize(deviation, (columns * size, rows * size), interpolation=cv2.INTER_NEAREST)
    scores = cv2.copyMakeBorder(scores, 0, height - rows * size, 0, width - columns * size, cv2.BORDER_REPLICATE)
    note = (
        f"noise level per {size}x{size} block against the image's median ({median:.2f} levels); bright = four "
        "times more or less noise: another source, resampling, blur or denoising (texture also raises it)"
    )
    return Evidence("noise", scores, note, {"block": size, "median_sigma": round(median, 4), "blocks": rows * columns})
