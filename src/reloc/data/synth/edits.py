"""Host photos and the region edits: shapes, traces, splice, copy-move and removal."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reloc.data.io import read_image
from reloc.data.synth.objects import object_region
from reloc.data.synth.settings import _INPAINT, _SHAPES, INTERPOLATIONS, POISSON_MODES, SynthSettings, _Redraw

# ---------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)  # about 1.2 MB per photo at size 512 (up to 4x that with box hosts)
def _load_host_cached(path: str, size: int, enlarge: bool, resize: str) -> np.ndarray:
    image = read_image(path)
    height, width = image.shape[:2]
    if resize == "box" and min(height, width) >= size:
        factor = min(height, width) // size
        if factor > 1:  # block means over factor x factor pixels: no interpolation pattern
            height, width = height // factor * factor, width // factor * factor
            blocks = image[:height, :width].reshape(height // factor, factor, width // factor, factor, 3)
            image = blocks.mean(axis=(1, 3), dtype=np.float64)
        pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        pixels.setflags(write=False)
        return pixels
    if not enlarge:
        size = min(size, height, width)
    factor = size / min(height, width)
    if height <= width:
        new_h, new_w = size, max(size, int(round(width * factor)))
    else:
        new_h, new_w = max(size, int(round(height * factor))), size
    if (new_h, new_w) != (height, width):
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    pixels.setflags(write=False)
    return pixels


def load_host(path: str | os.PathLike[str], size: int, enlarge: bool = True, resize: str = "area") -> np.ndarray:
    """A photo brought to the sample size, as read-only uint8 RGB ``(H, W, 3)``. Cached.

    ``resize="area"`` resizes it so that its short side is ``size`` (area interpolation
    when shrinking, cubic when enlarging); ``"box"`` shrinks a photo whose short side is at
    least ``size`` only by the integer factor ``short // size`` (block means; the short side
    stays >= ``size``). A photo whose short side is below ``size`` is enlarged (cubic) to
    it, or with ``enlarge`` False keeps its own size (:attr:`SynthSettings.enlarge_hosts`)."""
    return _load_host_cached(str(Path(path)), int(size), bool(enlarge), str(resize))


def host_crop(
    path: str | os.PathLike[str], size: int, crop: Sequence[int], *, enlarge: bool = True, resize: str = "area"
) -> np.ndarray:
    """The ``size x size`` host a sample was made from: :func:`load_host` cropped at
    ``crop = (y, x)`` (the provenance's ``crop``). uint8 RGB, a copy."""
    full = load_host(path, size, enlarge, resize)
    y, x = int(crop[0]), int(crop[1])
    if not (0 <= y <= full.shape[0] - size and 0 <= x <= full.shape[1] - size):
        raise ValueError(f"crop {tuple(crop)} outside the {full.shape[0]}x{full.shape[1]} resized photo {path}")
    return full[y : y + size, x : x + size].copy()


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def _r(value: float, digits: int = 4) -> float:
    return float(round(float(value), digits))


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[1] > bounds[0] else float(bounds[0])


def _log_uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    if bounds[1] <= bounds[0]:
        return float(bounds[0])
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), half-open, of the non-zero pixels, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _pad_bbox(box: tuple[int, int, int, int], pad: int, size: int) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = box
    return max(0, y0 - pad), min(size, y1 + pad), max(0, x0 - pad), min(size, x1 + pad)


def _feather(rng: np.random.Generator, hard: np.ndarray, settings: SynthSettings, info: dict) -> np.ndarray:
    """Float32 alpha in [0, 1] from a hard 0/1 mask, feathered with some probability."""
    alpha = hard.astype(np.float32)
    if rng.random() < settings.p_feather:
        sigma = _uniform(rng, settings.feather_sigma_range)
        if sigma > 0:
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
            alpha[alpha < 1e-3] = 0.0  # Gaussian tails: keep the support compact
            info["feather_sigma"] = _r(sigma, 3)
    return np.clip(alpha, 0.0, 1.0)


def _feathered(
    rng: np.random.Generator, hard: np.ndarray, settings: SynthSettings, region: dict
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """``(hard, feathered alpha, bounding box of the alpha's support)`` of a drawn region;
    :class:`_Redraw` when it came out empty."""
    alpha = _feather(rng, hard, settings, region)
    box = _bbox(alpha > 0)
    if box is None:
        raise _Redraw("empty region")
    return hard, alpha, box


def _turned(box: tuple[int, int, int, int], angle: float, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(a, half_extent)``: the 2x2 matrix acting on ``(x, y)`` that mirrors (``flip``) then
    rotates by ``angle`` degrees, and the half-extent ``(x, y)`` (plus one pixel) of the box
    ``(y0, y1, x0, x1)`` turned by it about the box's centre."""
    y0, y1, x0, x1 = box
    cx, cy = (x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0
    rad = math.radians(angle)
    a = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    if flip:
        a = a @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    corners = np.array([[x0 - cx, y0 - cy], [x1 - 1 - cx, y0 - cy], [x0 - cx, y1 - 1 - cy], [x1 - 1 - cx, y1 - 1 - cy]])
    return a, np.abs(corners @ a.T).max(axis=0) + 1.0


def _random_shape(rng: np.random.Generator, size: int, area: float, settings: SynthSettings) -> tuple[np.ndarray, dict]:
    """A hard region (uint8 0/1 ``(size, size)``) of about ``area * size**2`` pixels."""
    kinds = [k for k in _SHAPES if settings.shape_weights.get(k, 0) > 0]
    weights = np.array([settings.shape_weights[k] for k in kinds], dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    if kind == "blob":
        theta = np.linspace(0.0, 2.0 * np.pi, 160, endpoint=False)
        radius = np.ones_like(theta)
        for k in range(2, 2 + int(rng.integers(2, 6))):
            radius += rng.uniform(0.0, 0.35) / (k - 1) ** 0.7 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        radius = np.maximum(radius, 0.3)
        points = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        theta = np.sort(rng.uniform(0.0, 2.0 * np.pi, n))
        radius = rng.uniform(0.45, 1.0, n)
        points = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    elif kind == "ellipse":
        theta = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
        points = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    else:  # rect
        points = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    aspect = _log_uniform(rng, settings.aspect_range)
    points = points * np.array([math.sqrt(aspect), 1.0 / math.sqrt(aspect)])
    angle = rng.uniform(0.0, np.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = points @ rotation.T
    x, y = points[:, 0], points[:, 1]
    polygon_area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    points = points * math.sqrt(area * size * size / max(polygon_area, 1e-9))
    low, high = points.min(axis=0), points.max(axis=0)
    centre = np.empty(2)
    for axis in range(2):
        lo, hi = -low[axis], size - 1 - high[axis]
        centre[axis] = rng.uniform(lo, hi) if hi > lo else (size - 1) / 2.0
    points = points + centre
    hard = np.zeros((size, size), np.uint8)
    cv2.fillPoly(hard, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    info = {"shape": kind, "center": [_r(centre[1], 1), _r(centre[0], 1)]}
    return hard, info


# ---------------------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------------------


def _match_colour(
    patch: np.ndarray, inside: np.ndarray, host_region: np.ndarray, ring: np.ndarray, strength: float
) -> np.ndarray | None:
    """Reinhard colour transfer in Lab: move the statistics of ``patch[inside]`` towards
    those of ``host_region[ring]`` by ``strength``. None when either set is too small."""
    if inside.sum() < 16 or ring.sum() < 16:
        return None
    lab_p = cv2.cvtColor(patch, cv2.COLOR_RGB2Lab)
    lab_h = cv2.cvtColor(host_region, cv2.COLOR_RGB2Lab)
    mu_p, sd_p = lab_p[inside].mean(axis=0), lab_p[inside].std(axis=0) + 1e-3
    mu_h, sd_h = lab_h[ring].mean(axis=0), lab_h[ring].std(axis=0) + 1e-3
    mu_t = mu_p + strength * (mu_h - mu_p)
    sd_t = sd_p + strength * (sd_h - sd_p)
    lab = ((lab_p - mu_p) / sd_p * sd_t + mu_t).astype(np.float32)
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0).astype(np.float32)


def jpeg_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` through JPEG at ``quality`` (OpenCV's libjpeg) and back; float32 in [0, 1]."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a JPEG at quality {quality}")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def unsharp(pixels: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Unsharp mask of uint8 RGB ``(H, W, 3)``: ``x + amount * (x - blur(x))``, rounded back to uint8."""
    image = pixels.astype(np.float32)
    blurred = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.rint(np.clip(image + amount * (image - blurred), 0.0, 255.0)).astype(np.uint8)


def jpeg_shifted(pixels: np.ndarray, quality: int, shift: Sequence[int]) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` through JPEG with its 8x8 grid starting ``shift = (dy, dx)``
    pixels before the image (reflected border), back as uint8 ``(H, W, 3)``."""
    dy, dx = int(shift[0]), int(shift[1])
    padded = cv2.copyMakeBorder(pixels, dy, 0, dx, 0, cv2.BORDER_REFLECT_101)
    decoded = np.rint(jpeg_roundtrip(padded, quality) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(decoded[dy:, dx:])


def _photometric(
    rng: np.random.Generator,
    patch: np.ndarray,
    settings: SynthSettings,
    traces: dict,
    *,
    gamma: bool = True,
    jpeg: bool = True,
    smooth: bool = True,
) -> np.ndarray:
    """Gamma / gain, region JPEG, blur or else denoise, noise: each with its probability,
    in that order. The five coin flips are always drawn, whatever is enabled."""
    flips = rng.random(5)
    draw_gamma, draw_jpeg, draw_blur, draw_denoise, draw_noise = flips < np.array(
        [settings.p_gamma, settings.p_region_jpeg, settings.p_blur, settings.p_denoise, settings.p_noise]
    )
    if gamma and draw_gamma:
        g = _log_uniform(rng, settings.gamma_range)
        gains = [_uniform(rng, settings.gain_range) for _ in range(3)]
        patch = np.clip(np.power(np.clip(patch, 0.0, 1.0), g) * np.array(gains, np.float32), 0.0, 1.0)
        traces["gamma"] = _r(g, 3)
        traces["gain"] = [_r(v, 3) for v in gains]
    if jpeg and draw_jpeg:
        low, high = settings.region_jpeg_quality_range
        quality = int(rng.integers(low, high + 1))
        patch = jpeg_roundtrip(np.rint(np.clip(patch, 0.0, 1.0) * 255.0).astype(np.uint8), quality)
        traces["region_jpeg_quality"] = quality
    if smooth and draw_blur:
        sigma = _uniform(rng, settings.blur_sigma_range)
        patch = cv2.GaussianBlur(patch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        traces["blur_sigma"] = _r(sigma, 3)
    elif smooth and draw_denoise:
        h = _uniform(rng, settings.denoise_strength_range)
        pixels = np.rint(np.clip(patch, 0.0, 1.0) * 255.0).astype(np.uint8)
        pixels = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(pixels), None, h, h, 5, 11)
        patch = pixels.astype(np.float32) / 255.0
        traces["denoise_h"] = _r(h, 2)
    if draw_noise:
        sigma = _uniform(rng, settings.noise_sigma_range)
        noise = rng.standard_normal(patch.shape, dtype=np.float32) * np.float32(sigma / 255.0)
        patch = np.clip(patch + noise, 0.0, 1.0)
        traces["noise_sigma"] = _r(sigma, 2)
    return np.ascontiguousarray(patch, dtype=np.float32)


def _composite(
    host: np.ndarray, patch: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``patch`` (float, box-sized) over the uint8 ``host`` inside ``box`` with
    ``alpha`` (full-size float), quantise to 8 bits.

    Returns the final uint8 image and the exact bool mask: pixels of the alpha support
    whose quantised value differs from the host's. Everything else is the host's."""
    y0, y1, x0, x1 = box
    region = host[y0:y1, x0:x1]
    a = alpha[y0:y1, x0:x1, None]
    blended = a * patch + (1.0 - a) * (region.astype(np.float32) / 255.0)
    quantised = np.rint(np.clip(blended, 0.0, 1.0) * 255.0).astype(np.uint8)
    changed = (quantised != region).any(axis=2) & (alpha[y0:y1, x0:x1] > 0)
    image = host.copy()
    image[y0:y1, x0:x1][changed] = quantised[changed]
    mask = np.zeros(host.shape[:2], bool)
    mask[y0:y1, x0:x1] = changed
    return image, mask


def _clone(
    rng: np.random.Generator,
    host: np.ndarray,
    patch: np.ndarray,
    hard: np.ndarray,
    box: tuple[int, int, int, int],
    settings: SynthSettings,
    traces: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-blend ``patch`` (float, box-sized) into the uint8 ``host`` over the hard 0/1
    region with ``cv2.seamlessClone`` (a mode of ``settings.poisson_modes``).

    Returns the uint8 image and the exact bool mask: the pixels of the region the cloning
    changed (OpenCV also alters some pixels of the region's bounding box outside it: they
    are kept from the host)."""
    mode = settings.poisson_modes[int(rng.integers(len(settings.poisson_modes)))]
    y0, y1, x0, x1 = box
    canvas = host.copy()
    canvas[y0:y1, x0:x1] = np.rint(np.clip(patch, 0.0, 1.0) * 255.0).astype(np.uint8)
    pad = 8  # seamlessClone refuses a region touching the image border
    source = cv2.copyMakeBorder(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    target = cv2.copyMakeBorder(cv2.cvtColor(host, cv2.COLOR_RGB2BGR), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    region = cv2.copyMakeBorder((hard > 0).astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    ry0, ry1, rx0, rx1 = _bbox(region)
    centre = ((rx0 + rx1) // 2, (ry0 + ry1) // 2)  # the region's place in the source is kept
    cloned = cv2.seamlessClone(source, target, region.copy(), centre, POISSON_MODES[mode])  # it writes into its mask
    cloned = cv2.cvtColor(cloned[pad:-pad, pad:-pad], cv2.COLOR_BGR2RGB)
    mask = (cloned != host).any(axis=2) & (hard > 0)
    image = host.copy()
    image[mask] = cloned[mask]
    traces["poisson"] = mode
    return image, mask


def _blend(rng, host, patch, hard, alpha, box, settings, traces):
    """Paste ``patch`` with its alpha (:func:`_composite`) or, with ``p_poisson``, by Poisson cloning."""
    if settings.p_poisson > 0 and rng.random() < settings.p_poisson:
        return _clone(rng, host, patch, hard, box, settings, traces)
    return _composite(host, patch, alpha, box)


# ---------------------------------------------------------------------------------------
# Object-shaped regions
# ---------------------------------------------------------------------------------------


def _object_drawn(rng: np.random.Generator, settings: SynthSettings) -> bool:
    """Whether this region follows object boundaries (no draw when the trait is off)."""
    return settings.p_object_region > 0 and rng.random() < settings.p_object_region


def _object_here(
    rng: np.random.Generator, image: np.ndarray, size: int, settings: SynthSettings, info: dict
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """An object region of ``image`` (the host crop) in place: hard 0/1, feathered alpha, box."""
    area = _log_uniform(rng, settings.area_range)
    method = settings.object_methods[int(rng.integers(len(settings.object_methods)))]
    hard, found = object_region(rng, image, area * size * size, method)
    info["region"] = {"shape": "object", **found, "target_area": _r(area)}
    return _feathered(rng, hard, settings, info["region"])


def _object_patch(
    rng: np.random.Generator,
    source: np.ndarray,
    size: int,
    settings: SynthSettings,
    info: dict,
    traces: dict,
    *,
    copymove: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], np.ndarray]:
    """An object of ``source`` (the donor photo, or the host crop for copy-move) moved into
    the ``size x size`` frame after an optional rescaling, rotation and mirroring.

    The object is segmented in a ``size x size`` window of ``source`` at the area it will
    have after scaling; it is placed at a random position where it fits whole (copy-move:
    at least half its size from where it came from). Without rotation or mirroring the
    pixels are copied at an integer offset (no interpolation).

    Returns:
        hard 0/1 region ``(size, size)``, feathered alpha, box of its support, and the
        box-sized float patch."""
    area = _log_uniform(rng, settings.area_range)
    flips = rng.random(3)
    resample, rotate = flips[0] < settings.p_resample, flips[1] < settings.p_rotate
    flip = flips[2] < settings.p_flip
    scale = _log_uniform(rng, settings.scale_range) if resample else 1.0
    angle = _uniform(rng, settings.rotate_range) if rotate else 0.0
    method = settings.object_methods[int(rng.integers(len(settings.object_methods)))]
    wy = int(rng.integers(0, source.shape[0] - size + 1))
    wx = int(rng.integers(0, source.shape[1] - size + 1))
    window = np.ascontiguousarray(source[wy : wy + size, wx : wx + size])
    region, found = object_region(rng, window, area * size * size / scale**2, method)
    info["region"] = {"shape": "object", **found, "target_area": _r(area)}
    src = window
    if resample:
        interp_name = settings.interpolations[int(rng.integers(len(settings.interpolations)))]
        new_size = (max(1, int(round(size * scale))), max(1, int(round(size * scale))))
        src = cv2.resize(window, new_size, interpolation=INTERPOLATIONS[interp_name])
        region = cv2.resize(region, new_size, interpolation=cv2.INTER_NEAREST)
        traces["resample"] = {"scale": _r(scale), "interp": interp_name}
    box = _bbox(region)
    if box is None:
        raise _Redraw("the object vanished when rescaled")
    y0, y1, x0, x1 = box
    cx, cy = (x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0
    a, ext = _turned(box, angle, flip)  # ext: half-extent (x, y) in the target frame
    if 2 * ext.max() >= size - 2:
        raise _Redraw("object too large for the image")
    home = np.array([cx + wx * scale, cy + wy * scale]) / scale  # where it came from, in the source frame
    for _ in range(24):
        target = np.array([rng.uniform(ext[0], size - 1 - ext[0]), rng.uniform(ext[1], size - 1 - ext[1])])
        if not copymove or float(np.hypot(*(target - home))) >= ext.max():
            break
    else:
        raise _Redraw("no copy-move target far enough from the object")
    matrix = np.zeros((2, 3), np.float64)
    matrix[:, :2] = a
    matrix[:, 2] = np.round(target - a @ np.array([cx, cy]))  # integer offset: a plain copy when a is I
    if angle == 0.0 and not flip:
        interp = cv2.INTER_NEAREST
    else:
        warp = traces.get("resample", {}).get("interp")
        warp = (
            warp if warp in ("nearest", "linear", "cubic", "lanczos") else ("linear" if rng.random() < 0.5 else "cubic")
        )
        interp = INTERPOLATIONS[warp]
        traces["affine"] = {"angle": _r(angle, 2), "flip": bool(flip), "interp": warp}
    canvas = cv2.warpAffine(
        src.astype(np.float32) / 255.0, matrix, (size, size), flags=interp, borderMode=cv2.BORDER_REFLECT_101
    )
    hard = cv2.warpAffine(region, matrix, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    traces["source_center"] = [_r(home[1], 1), _r(home[0], 1)]
    alpha = _feather(rng, hard, settings, info["region"])
    box = _bbox(alpha > 0)
    if box is None:
        raise _Redraw("empty region")
    y0, y1, x0, x1 = box
    return hard, alpha, box, np.clip(canvas[y0:y1, x0:x1], 0.0, 1.0)


def _patch_fill(
    rng: np.random.Generator, host: np.ndarray, hole: np.ndarray, box: tuple[int, int, int, int], traces: dict
) -> np.ndarray:
    """Box-sized float fill of the bool ``hole``: the same box elsewhere in ``host`` whose
    3-px ring around the hole best matches the hole's own ring (sum of squared
    differences), among 64 random offsets that keep it clear of the hole."""
    size_y, size_x = hole.shape
    y0, y1, x0, x1 = box
    py0, py1, px0, px1 = _pad_bbox(box, 4, max(size_y, size_x))
    py1, px1 = min(py1, size_y), min(px1, size_x)
    near = hole[py0:py1, px0:px1].astype(np.uint8)
    ring = (cv2.dilate(near, np.ones((7, 7), np.uint8)) > 0) & (near == 0)
    own = host[py0:py1, px0:px1].astype(np.float32)[ring]
    best, best_score = None, np.inf
    for _ in range(64):
        dy = int(rng.integers(-py0, size_y - py1 + 1))
        dx = int(rng.integers(-px0, size_x - px1 + 1))
        if abs(dy) < py1 - py0 and abs(dx) < px1 - px0:
            continue  # overlaps the hole's neighbourhood
        other = host[py0 + dy : py1 + dy, px0 + dx : px1 + dx].astype(np.float32)[ring]
        score = float(((other - own) ** 2).sum()) if own.size else 0.0
        if score < best_score:
            best, best_score = (dy, dx), score
    if best is None:
        raise _Redraw("no room for a patch outside the hole")
    dy, dx = best
    traces["patch_offset"] = [dy, dx]
    return host[y0 + dy : y1 + dy, x0 + dx : x1 + dx].astype(np.float32) / 255.0


# ---------------------------------------------------------------------------------------
# Region edits: splice, copy-move, removal
# ---------------------------------------------------------------------------------------


def _region(
    rng: np.random.Generator, size: int, settings: SynthSettings, info: dict
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Draw a region: hard 0/1 mask, feathered alpha, bounding box of the alpha support."""
    area = _log_uniform(rng, settings.area_range)
    hard, shape_info = _random_shape(rng, size, area, settings)
    info["region"] = shape_info
    shape_info["target_area"] = _r(area)
    return _feathered(rng, hard, settings, shape_info)


def _geometric_patch(
    rng: np.random.Generator,
    source: np.ndarray,
    box: tuple[int, int, int, int],
    settings: SynthSettings,
    traces: dict,
    *,
    allow_flip: bool,
    copymove: bool,
) -> np.ndarray:
    """A ``box``-sized float patch taken from the uint8 ``source`` after an optional
    rescaling (``cv2.resize`` with the drawn interpolation), rotation and mirroring.

    Without rotation or mirroring the patch is a plain pixel copy from the (rescaled)
    source at an integer offset. For copy-move the source centre is kept at least half
    the region size away from the target's."""
    flips = rng.random(3)
    resample = flips[0] < settings.p_resample
    rotate = flips[1] < settings.p_rotate
    flip = allow_flip and flips[2] < settings.p_flip
    scale, interp_name = 1.0, None
    src = source
    if resample:
        scale = _log_uniform(rng, settings.scale_range)
        interp_name = settings.interpolations[int(rng.integers(len(settings.interpolations)))]
        new_w = max(1, int(round(source.shape[1] * scale)))
        new_h = max(1, int(round(source.shape[0] * scale)))
        src = cv2.resize(source, (new_w, new_h), interpolation=INTERPOLATIONS[interp_name])
        traces["resample"] = {"scale": _r(scale), "interp": interp_name}
    angle = _uniform(rng, settings.rotate_range) if rotate else 0.0
    y0, y1, x0, x1 = box
    height, width = y1 - y0, x1 - x0
    min_shift = 0.5 * max(height, width) if copymove else 0.0
    src_h, src_w = src.shape[:2]
    cy, cx = (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0
    if angle == 0.0 and not flip:  # integer translation: a pixel copy, no interpolation
        if height > src_h or width > src_w:
            raise _Redraw("region does not fit in the source")
        for _ in range(24):
            sy0, sx0 = int(rng.integers(0, src_h - height + 1)), int(rng.integers(0, src_w - width + 1))
            centre_y, centre_x = (sy0 + (height - 1) / 2.0) / scale, (sx0 + (width - 1) / 2.0) / scale
            if math.hypot(centre_y - cy, centre_x - cx) >= min_shift:
                break
        else:
            raise _Redraw("no copy-move source far enough from the target")
        patch = src[sy0 : sy0 + height, sx0 : sx0 + width].astype(np.float32) / 255.0
        traces["source_center"] = [_r(centre_y, 1), _r(centre_x, 1)]
        return patch
    a, ext = _turned(box, angle, flip)  # ext: half-extent (x, y) in the source frame
    lo_x, hi_x, lo_y, hi_y = ext[0], src_w - 1 - ext[0], ext[1], src_h - 1 - ext[1]
    if hi_x < lo_x or hi_y < lo_y:
        raise _Redraw("region does not fit in the source")
    for _ in range(24):
        qx, qy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        if math.hypot(qy / scale - cy, qx / scale - cx) >= min_shift:
            break
    else:
        raise _Redraw("no copy-move source far enough from the target")
    if interp_name in ("nearest", "linear", "cubic", "lanczos"):
        warp_interp = interp_name
    else:
        warp_interp = "linear" if rng.random() < 0.5 else "cubic"
    matrix = np.zeros((2, 3), np.float64)
    matrix[:, :2] = a
    matrix[:, 2] = np.array([qx, qy]) + a @ np.array([x0 - cx, y0 - cy])
    patch = cv2.warpAffine(
        src.astype(np.float32) / 255.0,
        matrix,
        (width, height),
        flags=INTERPOLATIONS[warp_interp] | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    traces["affine"] = {"angle": _r(angle, 2), "flip": bool(flip), "interp": warp_interp}
    traces["source_center"] = [_r(qy / scale, 1), _r(qx / scale, 1)]
    return np.clip(patch, 0.0, 1.0)


def _splice(rng, host, donor, size, settings, info):
    traces: dict[str, Any] = {}
    if _object_drawn(rng, settings):
        hard, alpha, box, patch = _object_patch(rng, donor, size, settings, info, traces, copymove=False)
    else:
        hard, alpha, box = _region(rng, size, settings, info)
        patch = _geometric_patch(rng, donor, box, settings, traces, allow_flip=True, copymove=False)
    if rng.random() < settings.p_color_match:
        strength = _uniform(rng, settings.color_match_strength_range)
        ring_box = _pad_bbox(box, 16, size)
        ry0, ry1, rx0, rx1 = ring_box
        y0, y1, x0, x1 = box
        ring = (cv2.dilate(hard, np.ones((15, 15), np.uint8)) > hard)[ry0:ry1, rx0:rx1]
        matched = _match_colour(
            patch, hard[y0:y1, x0:x1] > 0, host[ry0:ry1, rx0:rx1].astype(np.float32) / 255.0, ring, strength
        )
        if matched is not None:
            patch = matched
            traces["color_match"] = _r(strength, 3)
    patch = _photometric(rng, patch, settings, traces)
    info["traces"] = traces
    return _blend(rng, host, patch, hard, alpha, box, settings, traces)


def _copymove(rng, host, size, settings, info):
    traces: dict[str, Any] = {}
    if _object_drawn(rng, settings):
        hard, alpha, box, patch = _object_patch(rng, host, size, settings, info, traces, copymove=True)
    else:
        hard, alpha, box = _region(rng, size, settings, info)
        patch = _geometric_patch(rng, host, box, settings, traces, allow_flip=True, copymove=True)
    patch = _photometric(rng, patch, settings, traces)
    info["traces"] = traces
    return _blend(rng, host, patch, hard, alpha, box, settings, traces)


def _removal(rng, host, size, settings, info):
    if _object_drawn(rng, settings):
        _, alpha, box = _object_here(rng, host, size, settings, info)
    else:
        _, alpha, box = _region(rng, size, settings, info)
    method = settings.inpaint_methods[int(rng.integers(len(settings.inpaint_methods)))]
    low, high = settings.inpaint_radius_range
    radius = int(rng.integers(low, high + 1))
    support = (alpha > 0).astype(np.uint8) * 255
    traces: dict[str, Any] = {"inpaint": method}
    if method == "patch":
        patch = _patch_fill(rng, host, support > 0, box, traces)
    else:
        traces["inpaint_radius"] = radius
        cy0, cy1, cx0, cx1 = _pad_bbox(box, radius + 4, size)  # context the inpainting reads
        filled = cv2.inpaint(
            np.ascontiguousarray(host[cy0:cy1, cx0:cx1]),
            np.ascontiguousarray(support[cy0:cy1, cx0:cx1]),
            radius,
            _INPAINT[method],
        )
        y0, y1, x0, x1 = box
        patch = filled[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0].astype(np.float32) / 255.0
    patch = _photometric(rng, patch, settings, traces, gamma=False, jpeg=False, smooth=False)
    info["traces"] = traces
    return _composite(host, patch, alpha, box)
