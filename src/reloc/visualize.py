"""Rendering probability maps for people: heat maps and overlays as uint8 RGB arrays."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps


def heatmap(probabilities: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """Colour a probability map.

    Args:
        probabilities: ``(H, W)`` floats in [0, 1].
        colormap: a matplotlib colormap name.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    rgba = colormaps[colormap](np.clip(probabilities, 0.0, 1.0))
    return np.rint(rgba[..., :3] * 255).astype(np.uint8)


def overlay(image: np.ndarray, probabilities: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Tint ``image`` red where the map is high.

    Args:
        image: ``(H, W, 3)`` floats in [0, 1].
        probabilities: ``(H, W)`` floats in [0, 1].
        strength: opacity of the red tint at probability 1.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    alpha = strength * np.clip(probabilities, 0.0, 1.0)[..., None]
    red = np.array([1.0, 0.0, 0.0])
    return np.rint((image * (1 - alpha) + red * alpha) * 255).astype(np.uint8)
