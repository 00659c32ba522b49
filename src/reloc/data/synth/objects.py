"""Object-shaped regions: a connected region that follows the boundaries in a photo.

The photo is segmented with what scikit-image and OpenCV ship, then one region of about
the wanted area is taken:

``slic``
    SLIC superpixels (``skimage.segmentation.slic``), merged into one connected region;
``felzenszwalb``
    graph-based segments (``skimage.segmentation.felzenszwalb``), merged the same way;
``watershed``
    watershed of the Sobel edge map from a grid of compact markers
    (``skimage.segmentation.watershed``): regions bounded by edges, merged the same way;
``grabcut``
    ``cv2.grabCut`` initialised with a random rectangle: the foreground it separates
    (largest connected part, holes filled).

Merging starts from the segment under a random pixel and adds, one at a time, the
adjacent segment whose mean Lab colour is closest to the region's, until the region
reaches the wanted area; a union of adjacent connected segments is connected, and its
border runs along the segments' borders, that is along edges of the photo.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from reloc.data.synth.settings import OBJECT_METHODS, _Redraw

__all__ = ["OBJECT_METHODS", "object_region"]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: the largest 8-connected part of ``mask``, holes filled."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(sizes.argmax()))


def _labels(rng: np.random.Generator, image: np.ndarray, method: str, area: float) -> np.ndarray:
    """Int label map ``(H, W)`` of uint8 RGB ``image``, segments smaller than ``area`` pixels."""
    from skimage import segmentation
    from skimage.filters import sobel

    pixels = image.shape[0] * image.shape[1]
    segments = int(np.clip(4.0 * pixels / max(area, 1.0), 8, 2000))  # a few segments per region
    if method == "slic":
        compactness = float(rng.uniform(5.0, 20.0))
        return segmentation.slic(image, n_segments=segments, compactness=compactness, start_label=0)
    if method == "felzenszwalb":
        scale = float(rng.uniform(50.0, 400.0))
        return segmentation.felzenszwalb(image, scale=scale, sigma=0.8, min_size=max(16, int(area / 16)))
    if method == "watershed":
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        step = max(4, int(math.sqrt(pixels / segments)))
        markers = np.zeros(gray.shape, np.int32)
        offset = int(rng.integers(0, step))
        grid = np.mgrid[offset : gray.shape[0] : step, offset : gray.shape[1] : step].reshape(2, -1)
        markers[grid[0], grid[1]] = np.arange(1, grid.shape[1] + 1)
        return segmentation.watershed(sobel(gray), markers, compactness=1e-4)
    raise ValueError(f"unknown segmentation method {method!r}")


def _merge(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, area: float) -> np.ndarray:
    """Bool region: segments merged from a random seed by colour, up to ``area`` pixels."""
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    n = int(labels.max()) + 1
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)
    sums = np.stack([np.bincount(labels.ravel(), lab[:, c], minlength=n) for c in range(3)], axis=1)
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], axis=1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    y, x = int(rng.integers(labels.shape[0])), int(rng.integers(labels.shape[1]))
    chosen = {int(labels[y, x])}
    total, colour = counts[labels[y, x]], sums[labels[y, x]].copy()
    frontier = set(neighbours[labels[y, x]])
    while total < area and frontier:
        candidates = np.array(sorted(frontier))
        means = sums[candidates] / counts[candidates, None]
        best = int(candidates[np.argmin(((means - colour / total) ** 2).sum(axis=1))])
        if total + counts[best] > 1.5 * area and total >= 0.5 * area:
            break
        chosen.add(best)
        total += counts[best]
        colour += sums[best]
        frontier |= neighbours[best]
        frontier -= chosen
    return np.isin(labels, np.fromiter(chosen, np.int64))


def _grabcut(rng: np.random.Generator, image: np.ndarray, area: float) -> np.ndarray:
    """Bool foreground of ``cv2.grabCut`` in a random rectangle of about ``1.6 * area`` pixels.

    The ellipse inscribed in the rectangle's central part is sure foreground, the rest of
    the rectangle probable foreground, outside it background: the cut keeps the core and
    follows the photo's edges between core and rectangle. A photo larger than 200 x 200
    pixels is segmented shrunk by an integer factor (area interpolation) and the
    foreground enlarged back (nearest): GrabCut's cost grows with the pixels, its boundary
    keeps to within that factor."""
    height, width = image.shape[:2]
    factor = max(1, math.ceil(math.sqrt(height * width) / 200.0))
    small = cv2.resize(image, (max(16, width // factor), max(16, height // factor)), interpolation=cv2.INTER_AREA)
    s_h, s_w = small.shape[:2]
    s_area = area * s_h * s_w / (height * width)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    rect_w = int(np.clip(math.sqrt(1.6 * s_area * aspect), 6, s_w - 4))
    rect_h = int(np.clip(1.6 * s_area / max(rect_w, 1), 6, s_h - 4))
    x0, y0 = int(rng.integers(2, max(3, s_w - rect_w - 1))), int(rng.integers(2, max(3, s_h - rect_h - 1)))
    mask = np.full((s_h, s_w), cv2.GC_BGD, np.uint8)
    mask[y0 : y0 + rect_h, x0 : x0 + rect_w] = cv2.GC_PR_FGD
    centre = (x0 + rect_w // 2, y0 + rect_h // 2)
    cv2.ellipse(mask, centre, (max(1, int(0.3 * rect_w)), max(1, int(0.3 * rect_h))), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # grabCut's k-means initialisation draws from OpenCV's generator
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    cv2.grabCut(bgr, mask, None, background, foreground, 3, cv2.GC_INIT_WITH_MASK)
    found = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(found, (width, height), interpolation=cv2.INTER_NEAREST) > 0


def object_region(rng: np.random.Generator, image: np.ndarray, area: float, method: str) -> tuple[np.ndarray, dict]:
    """A connected region following the boundaries of uint8 RGB ``image`` ``(H, W, 3)``.

    The photo is segmented in a random window of about ``3.5 * sqrt(area)`` pixels a
    side (the whole photo when smaller), so small regions cost little.

    Args:
        rng: the sample's generator (every draw comes from it).
        image: the photo to segment.
        area: the wanted area in pixels; the region has a third to three times it (else
            redrawn; the sample's own area check follows).
        method: one of :data:`OBJECT_METHODS`.

    Returns:
        uint8 0/1 ``(H, W)`` region and a record (``method``, ``area_px``).

    Raises:
        _Redraw: the segmentation gave no region of a usable size.
    """
    height, width = image.shape[:2]
    side = max(96, int(3.5 * math.sqrt(area)))
    win_h, win_w = min(height, side), min(width, side)
    y0, x0 = int(rng.integers(0, height - win_h + 1)), int(rng.integers(0, width - win_w + 1))
    window = np.ascontiguousarray(image[y0 : y0 + win_h, x0 : x0 + win_w])
    if method == "grabcut":
        found = _grabcut(rng, window, area)
    else:
        found = _merge(rng, window, _labels(rng, window, method, area), area)
    found = _largest_component(found)
    got = float(found.sum())
    if not area / 3.0 <= got <= 3.0 * area:
        raise _Redraw(f"{method} region of {got:.0f} px for a target of {area:.0f} px")
    region = np.zeros((height, width), np.uint8)
    region[y0 : y0 + win_h, x0 : x0 + win_w] = found
    return region, {"method": method, "area_px": int(got)}
