"""Copy-move matcher: finds a part of the image copied elsewhere in it, and which copy is which.

After Amerini et al., "A SIFT-based forensic method for copy-move attack detection and
transformation recovery" (2011): SIFT keypoints (OpenCV), generalized two-nearest-neighbour
matching of every descriptor against all others (exact, brute force) (g2NN: a run of neighbours is accepted while
each is clearly nearer than the next), an affine RANSAC over the matched pairs (taken in both
directions, so the pairs need no orientation) repeated for several clones, a single-linkage
clustering of each transform's inliers to keep one compact region, and a dense refinement: the
image warped by the transform is correlated with itself (zero-mean normalised
cross-correlation, 7x7), which gives the two region masks.

Which copy is the copy: a copy that was rotated or scaled was resampled, which smooths it, so
the copy with clearly less high-frequency energy (mean absolute Laplacian) is named the
target; a plain shift leaves the two copies alike and the direction undetermined.

It needs SciPy (the clustering and the hole filling), which the core install lacks: it comes
with the ``figures`` extra, and :func:`reloc.evidence.parse_methods` names that extra when
``clones`` is asked for without it.
"""

from __future__ import annotations

import importlib.util
import math
import os

import cv2
import numpy as np

from reloc.evidence.base import Evidence, not_applicable

MIN_SIDE = 64
"""Images with a shorter side (pixels) are too small to match."""

WORK_PIXELS = 2_500_000
"""Larger images are matched at this many pixels (the masks are scaled back)."""

MAX_KEYPOINTS = 8000
NEIGHBOURS = 10
RATIO = 0.5
"""g2NN: neighbour ``i`` is a match while ``d_i / d_(i+1) < RATIO`` for it and all nearer ones."""

MIN_SHIFT = 10.0
"""Pairs closer than this (working pixels) are the same spot, not a copy."""

MIN_INLIERS = 6
RANSAC_THRESHOLD = 3.0
MAX_CLONES = 4
SCALE_RANGE = (0.25, 4.0)
NCC_MIN = 0.8
SOURCE_SCORE = 0.5
"""Map value of a named source region (the target, or both copies when undetermined, are 1)."""

DIRECTION_MARGIN = 0.1
"""Relative high-frequency energy difference needed to tell the target from the source."""


def _ncc(first: np.ndarray, second: np.ndarray, size: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Local zero-mean normalised cross-correlation of two float32 ``(H, W)`` images, and ``first``'s local variance."""
    box = (size, size)
    mean_a, mean_b = cv2.blur(first, box), cv2.blur(second, box)
    var_a = cv2.blur(first * first, box) - mean_a * mean_a
    var_b = cv2.blur(second * second, box) - mean_b * mean_b
    cov = cv2.blur(first * second, box) - mean_a * mean_b
    return cov / np.sqrt(np.maximum(var_a * var_b, 1e-6)), var_a


def _g2nn_pairs(points: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
    """Index pairs ``(P, 2)`` (``i < j``) of g2NN matches at least :data:`MIN_SHIFT` apart."""
    count = len(points)
    k = min(NEIGHBOURS + 1, count)
    found = set()
    for matches in cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors, descriptors, k=k):  # exact, deterministic
        others = [m for m in matches if m.trainIdx != m.queryIdx]
        distances = np.array([m.distance for m in others], dtype=np.float64)
        if distances.size < 2:
            continue
        accepted = np.cumprod(distances[:-1] < RATIO * distances[1:])
        for match in others[: int(accepted.sum())]:
            found.add((min(match.queryIdx, match.trainIdx), max(match.queryIdx, match.trainIdx)))
    pairs = np.array(sorted(found), dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        pairs = pairs[np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1) >= MIN_SHIFT]
    return pairs


def _largest_cluster(points: np.ndarray, distance: float) -> np.ndarray:
    """Boolean ``(N,)``: the points of the largest single-linkage cluster at ``distance``."""
    if len(points) < 2:
        return np.ones(len(points), dtype=bool)
    from scipy.cluster.hierarchy import fcluster, linkage  # SciPy: the figures extra (see parse_methods)

    labels = fcluster(linkage(points, method="single"), t=distance, criterion="distance")
    return labels == np.bincount(labels).argmax()


def _transforms(
    sources: np.ndarray, targets: np.ndarray, diagonal: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Affine transforms (2x3, source -> target) with their inliers' start and end points ``(N, 2)``, strongest first."""
    both_from = np.concatenate([sources, targets]).astype(np.float32)
    both_to = np.concatenate([targets, sources]).astype(np.float32)
    pair_of = np.concatenate([np.arange(len(sources))] * 2)
    remaining = np.ones(len(both_from), dtype=bool)
    found = []
    for _ in range(MAX_CLONES):
        if remaining.sum() < MIN_INLIERS:
            break
        index = np.flatnonzero(remaining)
        matrix, inliers = cv2.estimateAffine2D(
            both_from[index], both_to[index], method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD,
            maxIters=4000, confidence=0.995,
        )  # fmt: skip
        if matrix is None or inliers is None or inliers.sum() < MIN_INLIERS:
            break
        chosen = index[inliers.ravel().astype(bool)]
        remaining[np.isin(pair_of, pair_of[chosen])] = False  # both directions of every inlier pair
        chosen = chosen[_largest_cluster(both_from[chosen], max(16.0, 0.1 * diagonal))]
        if len(chosen) < MIN_INLIERS:
            continue
        matrix, _ = cv2.estimateAffine2D(both_from[chosen], both_to[chosen], method=cv2.LMEDS)
        if matrix is None:
            continue
        singular = np.linalg.svd(matrix[:, :2], compute_uv=False)
        moved = np.linalg.norm(both_from[chosen] @ matrix[:, :2].T + matrix[:, 2] - both_from[chosen], axis=1)
        if singular.min() < SCALE_RANGE[0] or singular.max() > SCALE_RANGE[1] or np.median(moved) < MIN_SHIFT:
            continue
        found.append((matrix, both_from[chosen], both_to[chosen]))
    return found


def _region_masks(grey: np.ndarray, matrix: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source and target masks (bool ``(H, W)``) of one transform, from the dense correlation
    of the image with its warp, near the inlier keypoints."""
    height, width = grey.shape
    warped = cv2.warpAffine(grey, matrix, (width, height), flags=cv2.INTER_LINEAR)  # warped(A x) = grey(x)
    inside = cv2.warpAffine(np.ones_like(grey), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0.5
    ncc, variance = _ncc(grey, warped)
    close = cv2.blur(np.abs(grey - warped), (7, 7)) <= 2.0
    matched = inside & ((ncc >= NCC_MIN) | ((variance < 4.0) & close))
    near = np.zeros((height, width), dtype=np.uint8)
    cv2.fillConvexPoly(near, cv2.convexHull(end.astype(np.int32)), 1)
    spread = max(8, int(0.05 * math.hypot(height, width)))
    near = cv2.dilate(near, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * spread + 1,) * 2)) > 0
    target = (matched & near).astype(np.uint8)
    target = cv2.morphologyEx(target, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    target = cv2.morphologyEx(target, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, labels = cv2.connectedComponents(target)
    ends = np.clip(np.rint(end).astype(np.int64), 0, [width - 1, height - 1])
    keep = np.unique(labels[ends[:, 1], ends[:, 0]])
    from scipy.ndimage import binary_fill_holes

    target = binary_fill_holes(np.isin(labels, keep[keep > 0]))
    source = cv2.warpAffine(
        target.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return source > 0, target


def _box(mask: np.ndarray, scale: float) -> dict[str, object]:
    """``{"box": [x0, y0, x1, y1], "area"}`` of a mask, in full-resolution pixels."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return {"box": None, "area": 0}
    box = [
        int(xs.min() / scale),
        int(ys.min() / scale),
        int(math.ceil((xs.max() + 1) / scale)),
        int(math.ceil((ys.max() + 1) / scale)),
    ]
    return {"box": box, "area": int(round(xs.size / scale**2))}


def copy_move(image: np.ndarray, path: str | os.PathLike | None = None) -> Evidence:
    """Copy-move map: the copied regions, the target at 1 and its source at :data:`SOURCE_SCORE`.

    Args:
        image: uint8 ``(H, W, 3)`` RGB. path: unused.

    Returns:
        ``map``: float32 ``(H, W)``; both copies at 1 where the direction is undetermined; 0
        where nothing was matched. ``figures``: ``keypoints``, ``matches`` (g2NN pairs),
        ``scale`` (working size / full size), ``regions``: per clone the ``source`` and
        ``target`` boxes ``[x0, y0, x1, y1]`` and areas, the ``transform`` (2x3, source ->
        target pixel coordinates), ``rotation_degrees``, ``scale_factor``, ``inliers`` and
        ``direction`` (how the target was told from the source). Not applicable to images
        with a side under :data:`MIN_SIDE`, nor without SciPy (the ``figures`` extra: the
        default fused map of ``reloc localize`` then shows the learned map alone and says why).
    """
    height, width = image.shape[:2]
    if importlib.util.find_spec("scipy") is None:
        return not_applicable("clones", "the matcher needs scipy, which is not installed: pip install 'reloc[figures]'")
    cv2.setRNGSeed(0)  # RANSAC draws from OpenCV's generator: the same image gives the same regions
    if min(height, width) < MIN_SIDE:
        return not_applicable("clones", f"the image is {height}x{width}, under the matcher's {MIN_SIDE} pixels a side")
    scale = min(1.0, math.sqrt(WORK_PIXELS / (height * width)))
    grey8 = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey8 = cv2.resize(grey8, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS, contrastThreshold=0.02)
    keypoints, descriptors = sift.detectAndCompute(grey8, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
    pairs = _g2nn_pairs(points, descriptors) if len(keypoints) > NEIGHBOURS else np.zeros((0, 2), np.int64)
    diagonal = math.hypot(*grey8.shape)
    found = _transforms(points[pairs[:, 0]], points[pairs[:, 1]], diagonal) if len(pairs) >= MIN_INLIERS else []
    grey = grey8.astype(np.float32)
    laplacian = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    small = np.zeros(grey.shape, dtype=np.float32)
    regions = []
    for matrix, start, end in found:
        source, target = _region_masks(grey, matrix, end)
        if not target.any() or not source.any():
            continue
        energy_source, energy_target = float(laplacian[source].mean()), float(laplacian[target].mean())
        change = (energy_target - energy_source) / max(energy_source, energy_target, 1e-6)
        if change > DIRECTION_MARGIN:  # the warp's end is the sharper copy: it is the source
            source, target, matrix = target, source, cv2.invertAffineTransform(matrix)
        known = abs(change) > DIRECTION_MARGIN
        direction = (
            f"the target has {abs(change):.0%} less high-frequency energy (resampled when copied)"
            if known else f"undetermined: the copies' high-frequency energy differs by {abs(change):.0%}"
        )  # fmt: skip
        small = np.maximum(small, target.astype(np.float32))
        small = np.maximum(small, source.astype(np.float32) * (SOURCE_SCORE if known else 1.0))
        full = matrix.astype(np.float64).copy()
        full[:, 2] /= scale
        singular = np.linalg.svd(full[:, :2], compute_uv=False)
        regions.append({
            "source": _box(source, scale), "target": _box(target, scale), "transform": np.round(full, 4).tolist(),
            "rotation_degrees": round(math.degrees(math.atan2(full[1, 0], full[0, 0])), 2),
            "scale_factor": round(float(np.sqrt(singular.prod())), 4), "inliers": int(start.shape[0]),
            "direction": direction, "direction_known": known,
        })  # fmt: skip
    scores = small if scale == 1.0 else cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    figures = {"keypoints": len(keypoints), "matches": int(len(pairs)), "scale": round(scale, 4), "regions": regions}
    if not regions:
        note = f"no copied region found ({len(keypoints)} keypoints, {len(pairs)} g2NN matches)"
    else:
        named = "; ".join(
            f"{r['source']['box']} copied to {r['target']['box']}" + ("" if r["direction_known"] else " (or back)")
            for r in regions
        )
        note = f"{len(regions)} copied region(s), boxes [x0, y0, x1, y1]: {named}; target bright, source half"
    return Evidence("clones", scores.astype(np.float32), note, figures)
