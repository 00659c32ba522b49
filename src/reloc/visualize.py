"""Rendering probability maps for people: heat maps and overlays as uint8 RGB arrays.

Both work a band of rows at a time in float32 (and the heat map through a 256-entry
colour table), so their temporary memory is a few bytes per pixel of one band, whatever
the image size; the result is the only full-size array.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import colormaps

BAND_ROWS = 512
"""Rows rendered at a time."""


@lru_cache(maxsize=8)
def colour_table(colormap: str) -> np.ndarray:
    """The colormap's 256 entries as uint8 ``(256, 3)`` (``rint(rgb * 255)``)."""
    rgba = colormaps[colormap].resampled(256)(np.arange(256))
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def heatmap(probabilities: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """Colour a probability map.

    A probability ``p`` takes entry ``min(floor(256 p), 255)`` of the 256-entry colormap,
    which is what matplotlib's colormap call does for floats.

    Args:
        probabilities: ``(H, W)`` floats in [0, 1] (clipped).
        colormap: a matplotlib colormap name.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    table = colour_table(colormap)
    coloured = np.empty(probabilities.shape + (3,), dtype=np.uint8)
    for top in range(0, probabilities.shape[0], BAND_ROWS):
        band = np.clip(probabilities[top : top + BAND_ROWS], 0.0, 1.0).astype(np.float32, copy=False) * 256
        coloured[top : top + BAND_ROWS] = table[np.minimum(band.astype(np.intp), 255)]
    return coloured


def overlay(image: np.ndarray, probabilities: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Tint ``image`` red where the map is high.

    Args:
        image: ``(H, W, 3)``, floats in [0, 1] or uint8 in [0, 255].
        probabilities: ``(H, W)`` floats in [0, 1] (clipped).
        strength: opacity of the red tint at probability 1.

    Returns:
        uint8 ``(H, W, 3)``: ``rint(255 * (image * (1 - a) + red * a))``, ``a = strength * p``.
    """
    scale = np.float32(1 / 255) if image.dtype == np.uint8 else np.float32(1)
    red = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    tinted = np.empty(image.shape, dtype=np.uint8)
    for top in range(0, image.shape[0], BAND_ROWS):
        rows = slice(top, top + BAND_ROWS)
        alpha = np.float32(strength) * np.clip(probabilities[rows], 0.0, 1.0).astype(np.float32, copy=False)[..., None]
        mixed = image[rows].astype(np.float32) * scale * (1 - alpha) + red * alpha
        tinted[rows] = np.rint(np.clip(mixed, 0.0, 1.0) * 255)
    return tinted
