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

# ---------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------
from reloc.data.synth.settings import _INPAINT, _SHAPES, INTERPOLATIONS, SynthSettings, _Redraw


@functools.lru_cache(maxsize=128)  # about 1.2 MB per photo at size 512
def _load_host_cached(path: str, size: int, enlarge: bool) -> np.ndarray:
    image = read_image(path)
    height, width = image.shape[:2]
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


def load_host(path: str | os.PathLike[str], size: int, enlarge: bool = True) -> np.ndarray:
    """A photo resized so that its short side is ``size`` (area interpolation when
    shrinking, cubic when enlarging), as read-only uint8 RGB ``(H, W, 3)``. Cached.
    With ``enlarge`` False a photo whose short side is below ``size`` keeps its own size
    (:attr:`SynthSettings.enlarge_hosts`)."""
    return _load_host_cached(str(Path(path)), int(size), bool(enlarge))


def host_crop(path: str | os.PathLike[str], size: int, crop: Sequence[int]) -> np.ndarray:
    """The ``size x size`` host a sample was made from: :func:`load_host` cropped at
    ``crop = (y, x)`` (the provenance's ``crop``). uint8 RGB, a copy."""
    full = load_host(path, size)
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
    alpha = _feather(rng, hard, settings, shape_info)
    box = _bbox(alpha > 0)
    if box is None:
        raise _Redraw("empty region")
    return hard, alpha, box


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
    rad = math.radians(angle)
    a = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])  # acts on (x, y)
    if flip:
        a = a @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    corners = np.array([[x0 - cx, y0 - cy], [x1 - 1 - cx, y0 - cy], [x0 - cx, y1 - 1 - cy], [x1 - 1 - cx, y1 - 1 - cy]])
    ext = np.abs(corners @ a.T).max(axis=0) + 1.0  # half-extent (x, y) in the source frame
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
    hard, alpha, box = _region(rng, size, settings, info)
    traces: dict[str, Any] = {}
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
    return _composite(host, patch, alpha, box)


def _copymove(rng, host, size, settings, info):
    _, alpha, box = _region(rng, size, settings, info)
    traces: dict[str, Any] = {}
    patch = _geometric_patch(rng, host, box, settings, traces, allow_flip=True, copymove=True)
    patch = _photometric(rng, patch, settings, traces)
    info["traces"] = traces
    return _composite(host, patch, alpha, box)


def _removal(rng, host, size, settings, info):
    _, alpha, box = _region(rng, size, settings, info)
    method = settings.inpaint_methods[int(rng.integers(len(settings.inpaint_methods)))]
    low, high = settings.inpaint_radius_range
    radius = int(rng.integers(low, high + 1))
    support = (alpha > 0).astype(np.uint8) * 255
    cy0, cy1, cx0, cx1 = _pad_bbox(box, radius + 4, size)  # context the inpainting reads
    filled = cv2.inpaint(
        np.ascontiguousarray(host[cy0:cy1, cx0:cx1]),
        np.ascontiguousarray(support[cy0:cy1, cx0:cx1]),
        radius,
        _INPAINT[method],
    )
    y0, y1, x0, x1 = box
    patch = filled[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0].astype(np.float32) / 255.0
    traces: dict[str, Any] = {"inpaint": method, "inpaint_radius": radius}
    patch = _photometric(rng, patch, settings, traces, gamma=False, jpeg=False, smooth=False)
    info["traces"] = traces
    return _composite(host, patch, alpha, box)
