"""Synthetic tampering: realistic tampered images with exact masks, made from real photos.

No public tampering dataset can be downloaded here, so the benchmark is generated from
pristine, lossless photos (see :mod:`reloc.data.photos`). Each sample starts from a *host*:
a photo resized so that its short side is ``size`` (area interpolation when shrinking,
cubic when enlarging), quantised to 8 bits and randomly cropped to ``size x size``. The
host therefore carries no resampling trace except the global one, and every trace inside
the tampered region comes from the edit. One of four edits is then applied:

``splice``
    a region of *another* photo (a donor from the same split, from ``donors=`` when given)
    pasted in. Shapes: smooth random blobs, random polygons, ellipses, rectangles.
``copymove``
    a region of the host crop itself moved elsewhere in it, by integer translation or an
    affine transform (scale, rotation, mirror).
``removal``
    a region erased by inpainting (``cv2.inpaint``, Telea or Navier-Stokes).
``text``
    text drawn on the photo (addition), or a box filled with the local background colour
    and new text drawn in it (replacement); DejaVu fonts from matplotlib's data folder
    (Pillow's built-in scalable font when matplotlib is absent), nothing downloaded.

On top of the edit, *traces* like those real forgeries carry, each with a probability in
:class:`SynthSettings` and recorded in the provenance: the region resampled (scale
0.5-2 with nearest / linear / cubic / area / Lanczos interpolation), rotated or mirrored,
colour-matched to its surroundings, given a small gamma / colour shift, previously
JPEG-compressed (a grid not aligned with the host's), Gaussian-blurred or denoised (a
sharpness / noise-level mismatch) or given Gaussian noise; edges feathered.

**Mask definition.** The region's (feathered) alpha defines the *intended* region, the
support ``alpha > 0``. The mask is exactly the pixels of that support whose final 8-bit
RGB value differs from the host's in at least one channel; every pixel outside the mask
is copied from the host unchanged. So the mask never marks an unchanged pixel, and
``Tp == host`` outside it, bit for bit. (Inside a pasted region a pixel whose value
happens to equal the host's is left out: it carries no evidence of the edit.) Masks are
written as {0, 255}. A sample whose mask area falls outside ``area_range`` is redrawn.

**Splits.** Photos, not crops, are split: ``test_fraction`` (25%) of the host photos go to
``test``, ``val_fraction`` (10%) to ``val``, the rest to ``train``; every sample of a
host goes to its photo's split, and a splice donor always comes from the host's split
(donor photos given by ``donors=`` are split in the same way), so no source photo is
shared between splits.

**Determinism.** Sample ``i`` draws everything from ``np.random.default_rng([seed, 4, i])``
and its host / donor from generators keyed by ``seed`` only, so samples are independent
of each other, the result is the same serially or with worker processes, and the same
arguments give byte-identical files (PNGs without metadata, fixed compression; JSON with
fixed key order).

Output folder layout::

    OUT/Tp/000000_splice.png      tampered image, lossless 8-bit RGB
    OUT/Gt/000000_splice.png      mask, 8-bit grey {0, 255}
    OUT/manifest.json             [["Tp/000000_splice.png", "Gt/000000_splice.png"], ...]
    OUT/manifest_{train,val,test}.json   the same, one split each
    OUT/provenance.jsonl          one JSON object per sample (what was done, and split)
    OUT/synth_config.json         the arguments and settings of the run
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reloc.data.io import read_image, write_png
from reloc.data.photos import list_photos, photo_ids

__all__ = [
    "INTERPOLATIONS",
    "SPLITS",
    "TAMPER_TYPES",
    "Sample",
    "SynthSettings",
    "SynthSummary",
    "assign_splits",
    "host_crop",
    "load_host",
    "render_sample",
    "synthesize",
]

#: The kinds of tampering, in the order they cycle through the samples.
TAMPER_TYPES: tuple[str, ...] = ("splice", "copymove", "removal", "text")
#: Split names, as recorded in the provenance.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Interpolation names usable in ``SynthSettings.interpolations`` -> OpenCV flags.
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
_SHAPES = ("blob", "polygon", "ellipse", "rect")
_INPAINT = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
_NAME_RE = re.compile(r"^\d{6,}_(?:" + "|".join(TAMPER_TYPES) + r")\.png$")

# Seed-sequence "salts": which stream a generator feeds.
_SALT_SPLIT_HOSTS, _SALT_SPLIT_DONORS, _SALT_HOST_ORDER, _SALT_DONOR, _SALT_SAMPLE = range(5)


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(f"SynthSettings.{name} must be (a, b) with {low} <= a <= b <= {high}, got {value!r}")


@dataclass(frozen=True)
class SynthSettings:
    """Knobs of the generator. Probabilities are per sample, independent of each other.

    Sizes in pixels are given for ``size=512`` and scaled with the output size.
    """

    # --- region -----------------------------------------------------------------------
    area_range: tuple[float, float] = (0.02, 0.30)
    """Allowed fraction of the image the final mask covers; targets are drawn
    log-uniformly inside it (small edits are more frequent) and a sample whose
    binarised mask falls outside is redrawn."""
    shape_weights: Mapping[str, float] = field(
        default_factory=lambda: {"blob": 0.45, "polygon": 0.30, "ellipse": 0.15, "rect": 0.10}
    )
    """Relative frequency of region shapes (splice, copymove, removal)."""
    aspect_range: tuple[float, float] = (0.5, 2.0)
    """Elongation (width / height before rotation) of a region shape."""
    p_feather: float = 0.7
    """Probability of feathered (soft) region edges; otherwise hard edges."""
    feather_sigma_range: tuple[float, float] = (0.5, 3.0)
    """Gaussian sigma (px) of the alpha feathering."""
    # --- geometric traces (splice, copymove) -------------------------------------------
    p_resample: float = 0.6
    """Probability that the pasted / moved region is rescaled."""
    scale_range: tuple[float, float] = (0.5, 2.0)
    """Scale factor range (drawn log-uniformly) of a rescaled region."""
    interpolations: tuple[str, ...] = ("nearest", "linear", "cubic", "area", "lanczos")
    """Interpolations a rescaling picks from (uniformly)."""
    p_rotate: float = 0.3
    """Probability that the region is rotated (splice, copymove; text: small angles)."""
    rotate_range: tuple[float, float] = (-30.0, 30.0)
    """Rotation angle range in degrees (text uses a third of it)."""
    p_flip: float = 0.1
    """Probability that a copy-moved region is mirrored left-right."""
    # --- photometric traces -------------------------------------------------------------
    p_color_match: float = 0.5
    """Probability that a spliced region's colour statistics (Lab mean / std) are moved
    towards those of the host around it."""
    color_match_strength_range: tuple[float, float] = (0.5, 1.0)
    """How far (0 = not, 1 = fully) colour matching moves the statistics."""
    p_gamma: float = 0.3
    """Probability of a small gamma / per-channel gain change of the region."""
    gamma_range: tuple[float, float] = (0.8, 1.25)
    """Gamma exponent range."""
    gain_range: tuple[float, float] = (0.95, 1.05)
    """Per-channel gain range (a small colour cast)."""
    p_region_jpeg: float = 0.15
    """Probability that the region was JPEG-compressed before pasting (its 8x8 grid is
    not aligned with the image's)."""
    region_jpeg_quality_range: tuple[int, int] = (60, 92)
    """Quality range of that region JPEG."""
    p_blur: float = 0.25
    """Probability that the region (or the drawn text) is Gaussian-blurred."""
    blur_sigma_range: tuple[float, float] = (0.6, 1.2)
    """Gaussian blur sigma (px)."""
    p_denoise: float = 0.15
    """Probability that a region that was not blurred is denoised (non-local means)."""
    denoise_strength_range: tuple[float, float] = (3.0, 8.0)
    """Non-local means filter strength ``h`` (0-255 scale)."""
    p_noise: float = 0.25
    """Probability that Gaussian noise is added to the region (all types)."""
    noise_sigma_range: tuple[float, float] = (4.0, 10.0)
    """Gaussian noise sigma on the 0-255 scale."""
    # --- removal --------------------------------------------------------------------------
    inpaint_methods: tuple[str, ...] = ("telea", "ns")
    """``cv2.inpaint`` algorithms a removal picks from (uniformly)."""
    inpaint_radius_range: tuple[int, int] = (2, 6)
    """Inpainting neighbourhood radius (px)."""
    # --- text -------------------------------------------------------------------------------
    p_text_replace: float = 0.5
    """Probability that a text edit replaces (box filled with the local background colour,
    then new text) rather than adds text."""
    text_size_range: tuple[float, float] = (14.0, 110.0)
    """Font size range (px at size 512); the size is chosen to reach the drawn area."""
    p_text_stroke: float = 0.25
    """Probability of an outline around added text."""
    # --- splits and retries ----------------------------------------------------------------
    test_fraction: float = 0.25
    """Share of the host photos (not samples) in the test split."""
    val_fraction: float = 0.10
    """Share of the host photos in the validation split (taken out of train)."""
    max_attempts: int = 60
    """Redraws allowed per sample before giving up with an error."""

    def __post_init__(self) -> None:
        for name in (
            "p_feather", "p_resample", "p_rotate", "p_flip", "p_color_match", "p_gamma",
            "p_region_jpeg", "p_blur", "p_denoise", "p_noise", "p_text_replace",
            "p_text_stroke", "test_fraction", "val_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SynthSettings.{name} must be in [0, 1], got {value!r}")
        if self.test_fraction + self.val_fraction >= 1.0:
            raise ValueError("SynthSettings.test_fraction + val_fraction must be below 1")
        _check_range("area_range", self.area_range, 1e-6, 1.0)
        if self.area_range[0] <= 0:
            raise ValueError("SynthSettings.area_range must start above 0")
        _check_range("aspect_range", self.aspect_range, 1e-3, 1e3)
        _check_range("feather_sigma_range", self.feather_sigma_range, 0.0, 50.0)
        _check_range("scale_range", self.scale_range, 0.05, 20.0)
        _check_range("rotate_range", self.rotate_range, -180.0, 180.0)
        _check_range("color_match_strength_range", self.color_match_strength_range, 0.0, 1.0)
        _check_range("gamma_range", self.gamma_range, 0.05, 20.0)
        _check_range("gain_range", self.gain_range, 0.0, 10.0)
        _check_range("region_jpeg_quality_range", self.region_jpeg_quality_range, 1, 100)
        _check_range("blur_sigma_range", self.blur_sigma_range, 0.01, 50.0)
        _check_range("denoise_strength_range", self.denoise_strength_range, 0.1, 100.0)
        _check_range("noise_sigma_range", self.noise_sigma_range, 0.0, 255.0)
        _check_range("inpaint_radius_range", self.inpaint_radius_range, 1, 100)
        _check_range("text_size_range", self.text_size_range, 4.0, 2000.0)
        if not self.interpolations or any(i not in INTERPOLATIONS for i in self.interpolations):
            raise ValueError(f"SynthSettings.interpolations must be a non-empty subset of {tuple(INTERPOLATIONS)}")
        if not self.inpaint_methods or any(m not in _INPAINT for m in self.inpaint_methods):
            raise ValueError(f"SynthSettings.inpaint_methods must be a non-empty subset of {tuple(_INPAINT)}")
        weights = dict(self.shape_weights)
        if not weights or any(k not in _SHAPES for k in weights) or any(v < 0 for v in weights.values()) \
                or sum(weights.values()) <= 0:
            raise ValueError(f"SynthSettings.shape_weights must map some of {_SHAPES} to weights >= 0 (not all 0)")
        if self.max_attempts < 1:
            raise ValueError("SynthSettings.max_attempts must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the settings."""
        out = dataclasses.asdict(self)
        out["shape_weights"] = dict(self.shape_weights)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


@dataclass
class SynthSummary:
    """What :func:`synthesize` produced."""

    out: Path
    count: int
    seconds: float
    per_type: dict[str, int]
    per_split: dict[str, int]
    photos_per_split: dict[str, int]
    workers: int

    @property
    def manifest(self) -> Path:
        return self.out / "manifest.json"

    @property
    def provenance(self) -> Path:
        return self.out / "provenance.jsonl"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (``out`` as a string)."""
        return {"out": str(self.out), "count": self.count, "seconds": self.seconds, "per_type": dict(self.per_type),
                "per_split": dict(self.per_split), "photos_per_split": dict(self.photos_per_split),
                "workers": self.workers}

    def __str__(self) -> str:
        types = ", ".join(f"{k} {v}" for k, v in self.per_type.items())
        splits = ", ".join(
            f"{k} {self.per_split.get(k, 0)} ({self.photos_per_split.get(k, 0)} photos)" for k in SPLITS
        )
        return (
            f"{self.count} samples in {self.seconds:.1f} s ({self.workers} worker(s)) -> {self.out}\n"
            f"  types: {types}\n  splits: {splits}"
        )


@dataclass
class Sample:
    """One generated sample in memory: uint8 ``(S, S, 3)`` image, bool ``(S, S)`` mask,
    the uint8 host crop it was made from, and its provenance record."""

    image: np.ndarray
    mask: np.ndarray
    host: np.ndarray
    record: dict[str, Any]


class _Redraw(Exception):
    """This attempt cannot be completed (region does not fit, ...): draw again."""


# ---------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)  # about 1.2 MB per photo at size 512
def _load_host_cached(path: str, size: int) -> np.ndarray:
    image = read_image(path)
    height, width = image.shape[:2]
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


def load_host(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """A photo resized so that its short side is ``size`` (area interpolation when
    shrinking, cubic when enlarging), as read-only uint8 RGB ``(H, W, 3)``. Cached."""
    return _load_host_cached(str(Path(path)), int(size))


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
    draw_gamma, draw_jpeg, draw_blur, draw_denoise, draw_noise = (
        flips < np.array([settings.p_gamma, settings.p_region_jpeg, settings.p_blur,
                          settings.p_denoise, settings.p_noise])
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
        pixels = cv2.cvtColor(np.rint(np.clip(patch, 0.0, 1.0) * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
            patch = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
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
        src.astype(np.float32) / 255.0, matrix, (width, height),
        flags=INTERPOLATIONS[warp_interp] | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101,
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
        np.ascontiguousarray(host[cy0:cy1, cx0:cx1]), np.ascontiguousarray(support[cy0:cy1, cx0:cx1]),
        radius, _INPAINT[method],
    )
    y0, y1, x0, x1 = box
    patch = filled[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0].astype(np.float32) / 255.0
    traces: dict[str, Any] = {"inpaint": method, "inpaint_radius": radius}
    patch = _photometric(rng, patch, settings, traces, gamma=False, jpeg=False, smooth=False)
    info["traces"] = traces
    return _composite(host, patch, alpha, box)


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------

_WORDS = (
    "SALE", "OPEN", "CLOSED", "EXIT", "STOP", "HOTEL", "CAFE", "BANK", "POLICE", "TAXI",
    "PHARMACY", "PARKING", "MARKET", "STATION", "MUSEUM", "PRIVATE", "DANGER", "NO ENTRY",
    "Total", "Invoice", "Date", "Amount", "Paid", "Receipt", "Name", "Signature", "Approved",
    "Confidential", "Original", "Certified", "Page", "Ref", "Account", "Balance", "Due",
    "Welcome", "Hello", "Summer", "Winter", "Festival", "Concert", "Tickets", "Entrance",
    "Street", "Avenue", "Road", "North", "South", "Central", "Airport", "Harbor", "Garden",
    "Photo", "Press", "News", "Breaking", "Live", "Report", "Official", "Notice", "Warning",
    "Lorem", "ipsum", "dolor", "sit", "amet", "alpha", "delta", "omega", "Zurich", "Paris",
)


def _random_text(rng: np.random.Generator) -> list[str]:
    """One to three short lines: words, numbers, dates, prices, codes."""

    def token() -> str:
        kind = int(rng.integers(8))
        if kind == 0:
            return f"{int(rng.integers(1, 10000)):d}"
        if kind == 1:
            return f"{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/{int(rng.integers(1950, 2031))}"
        if kind == 2:
            currency = ("$", "EUR ", "\u00a3", "CHF ")[int(rng.integers(4))]
            return f"{currency}{rng.uniform(1, 5000):.2f}"
        if kind == 3:
            letters = "".join(chr(65 + int(c)) for c in rng.integers(0, 26, int(rng.integers(2, 4))))
            return f"{letters}-{int(rng.integers(100, 100000))}"
        if kind == 4:
            return f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
        return _WORDS[int(rng.integers(len(_WORDS)))]

    lines = []
    for _ in range(int(rng.choice(3, p=[0.55, 0.3, 0.15])) + 1):
        lines.append(" ".join(token() for _ in range(int(rng.integers(1, 4)))))
    return lines


@functools.lru_cache(maxsize=1)
def _font_files() -> tuple[tuple[str, str | None], ...]:
    """(name, TTF path) of the fonts used for text edits: DejaVu faces from matplotlib's
    data folder (found without importing matplotlib); Pillow's built-in scalable font
    (``path None``) when matplotlib is absent."""
    import importlib.util

    fonts: list[tuple[str, str | None]] = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"
        for name in ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSerif",
                     "DejaVuSerif-Bold", "DejaVuSansMono", "DejaVuSansMono-Bold"):
            if (folder / f"{name}.ttf").is_file():
                fonts.append((name, str(folder / f"{name}.ttf")))
    if not fonts:
        fonts.append(("pillow-default", None))
    return tuple(fonts)


@functools.lru_cache(maxsize=256)
def _font(path: str | None, px: int):
    from PIL import ImageFont

    if path is None:
        return ImageFont.load_default(size=px)  # scalable since Pillow 10.1 (needs FreeType)
    return ImageFont.truetype(path, px)


def _render_text(lines: list[str], font_path: str | None, px: int, stroke: int, box_pad: int):
    """Alpha layers (float32, same shape) of the text fill, of the text with its outline,
    and of the replacement box (zeros when ``box_pad`` < 0)."""
    from PIL import Image, ImageDraw

    font = _font(font_path, px)
    ascent, descent = font.getmetrics()
    line_h = int(round((ascent + descent) * 1.15))
    margin = stroke + max(box_pad, 0) + 2
    width = int(max(font.getlength(line) for line in lines)) + 2 * margin + 2
    height = line_h * len(lines) + 2 * margin
    layers = []
    for sw in (0, stroke):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for i, line in enumerate(lines):
            draw.text((margin, margin + i * line_h), line, font=font, fill=255, stroke_width=sw, stroke_fill=255)
        layers.append(np.asarray(canvas, dtype=np.float32) / 255.0)
    fill, full = layers
    box = np.zeros_like(fill)
    ink = _bbox(full > 0)
    if ink is None:
        raise _Redraw("text rendered empty")
    if box_pad >= 0:
        y0, y1, x0, x1 = ink
        box[max(0, y0 - box_pad) : y1 + box_pad, max(0, x0 - box_pad) : x1 + box_pad] = 1.0
    return fill, full, box


def _contrasting(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour (float) contrasting in lightness with ``background``."""
    import colorsys

    light = float(background @ np.array([0.299, 0.587, 0.114]))
    value = rng.uniform(0.0, 0.3) if light > 0.5 else rng.uniform(0.75, 1.0)
    saturation = rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0
    return np.array(colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), saturation, value), np.float32)


def _text(rng, host, size, settings, info):
    replace = bool(rng.random() < settings.p_text_replace)
    fonts = _font_files()
    font_name, font_path = fonts[int(rng.integers(len(fonts)))]
    lines = _random_text(rng)
    target = _log_uniform(rng, settings.area_range) * size * size
    scale = size / 512.0
    px_lo = max(6, int(round(settings.text_size_range[0] * scale)))
    px_hi = max(px_lo, int(round(settings.text_size_range[1] * scale)))
    stroke_on = (not replace) and rng.random() < settings.p_text_stroke
    rotate = rng.random() < settings.p_rotate
    angle = _uniform(rng, [v / 3.0 for v in settings.rotate_range]) if rotate else 0.0

    pad_fraction = rng.uniform(0.15, 0.4)

    def layers_at(px: int):
        stroke = max(1, int(round(px / 14))) if stroke_on else 0
        box_pad = max(2, int(round(px * pad_fraction))) if replace else -1
        return _render_text(lines, font_path, px, stroke, box_pad), stroke

    px = int(np.clip(round(40 * scale), px_lo, px_hi))
    for _ in range(3):  # font size so that the edited area reaches the target
        (fill, full, box), stroke = layers_at(px)
        covered = float((box if replace else (full > 0.05)).sum())
        wanted = int(np.clip(round(px * math.sqrt(target / max(covered, 1.0))), px_lo, px_hi))
        limit = max(fill.shape[1] / (size - 4), fill.shape[0] / (size - 4))
        if limit > 1.0:  # too large for the image: shrink
            wanted = min(wanted, int(px / limit))
        if wanted == px or wanted < px_lo:
            break
        px = wanted
    (fill, full, box), stroke = layers_at(px)
    if angle != 0.0:
        h, w = fill.shape
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = int(math.ceil(h * sin + w * cos)) + 2, int(math.ceil(h * cos + w * sin)) + 2
        matrix[0, 2] += new_w / 2.0 - w / 2.0
        matrix[1, 2] += new_h / 2.0 - h / 2.0
        fill, full, box = (
            cv2.warpAffine(layer, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=0.0)
            for layer in (fill, full, box)
        )
    h, w = fill.shape
    if h > size or w > size:
        raise _Redraw("text does not fit")
    y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    region = host[y0 : y0 + h, x0 : x0 + w].astype(np.float32) / 255.0
    traces: dict[str, Any] = {}
    base = region.copy()
    if replace:
        ring = cv2.dilate((box > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > (box > 0.5)
        edge = region[ring] if ring.any() else region.reshape(-1, 3)
        background = np.median(edge, axis=0).astype(np.float32)
        base = box[..., None] * background + (1.0 - box[..., None]) * base
        traces["box_color"] = [_r(v, 3) for v in background]
        reference = background
    else:
        ink = full > 0.05
        reference = region[ink].mean(axis=0) if ink.any() else region.reshape(-1, 3).mean(axis=0)
    colour = _contrasting(rng, reference)
    if rng.random() < settings.p_blur:  # soft rendering: blurred glyph edges
        sigma = _uniform(rng, settings.blur_sigma_range)
        fill = cv2.GaussianBlur(fill, (0, 0), sigma)
        full = cv2.GaussianBlur(full, (0, 0), sigma)
        traces["blur_sigma"] = _r(sigma, 3)
    if stroke:
        outline = _contrasting(rng, colour)
        base = full[..., None] * outline + (1.0 - full[..., None]) * base
        traces["stroke"] = {"width": stroke, "color": [_r(v, 3) for v in outline]}
    base = fill[..., None] * colour + (1.0 - fill[..., None]) * base
    base = _photometric(rng, base.astype(np.float32), settings, traces, gamma=False, jpeg=True, smooth=False)
    support = np.zeros((size, size), np.float32)
    support[y0 : y0 + h, x0 : x0 + w] = (np.maximum(np.maximum(fill, full), box) > 0).astype(np.float32)
    info["text"] = {
        "mode": "replace" if replace else "add",
        "lines": lines,
        "font": font_name,
        "px": px,
        "angle": _r(angle, 2),
        "position": [y0, x0],
        "color": [_r(v, 3) for v in colour],
    }
    info["traces"] = traces
    return _composite(host, base, support, (y0, y0 + h, x0, x0 + w))


# ---------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------


def render_sample(
    kind: str,
    host_path: str | os.PathLike[str],
    rng: np.random.Generator,
    size: int = 512,
    settings: SynthSettings | None = None,
    donor_path: str | os.PathLike[str] | None = None,
) -> Sample:
    """Make one tampered sample in memory (no file written).

    ``kind`` is one of :data:`TAMPER_TYPES`; a splice takes its region from
    ``donor_path`` (the host photo itself when None). Regions are redrawn until the
    mask area is inside ``settings.area_range``; ``RuntimeError`` after
    ``settings.max_attempts`` failures. The record holds ``crop``, ``area``,
    ``attempts`` and what was done (``region`` / ``text``, ``traces``)."""
    settings = settings or SynthSettings()
    if kind not in TAMPER_TYPES:
        raise ValueError(f"unknown tampering type {kind!r}; expected one of {TAMPER_TYPES}")
    full = load_host(host_path, size)
    y = int(rng.integers(0, full.shape[0] - size + 1))
    x = int(rng.integers(0, full.shape[1] - size + 1))
    host = full[y : y + size, x : x + size].copy()
    donor = load_host(donor_path, size) if (kind == "splice" and donor_path is not None) else None
    if kind == "splice" and donor is None:
        donor = full
    low, high = settings.area_range
    last = "no attempt"
    for attempt in range(1, settings.max_attempts + 1):
        info: dict[str, Any] = {}
        try:
            if kind == "splice":
                image, mask = _splice(rng, host, donor, size, settings, info)
            elif kind == "copymove":
                image, mask = _copymove(rng, host, size, settings, info)
            elif kind == "removal":
                image, mask = _removal(rng, host, size, settings, info)
            else:
                image, mask = _text(rng, host, size, settings, info)
        except _Redraw as why:
            last = str(why)
            continue
        area = float(mask.mean())
        if low <= area <= high:
            record = {"crop": [y, x], "resized": [int(full.shape[0]), int(full.shape[1])],
                      "area": _r(area, 5), "attempts": attempt, **info}
            return Sample(image=image, mask=mask, host=host, record=record)
        last = f"mask area {area:.4f} outside {settings.area_range}"
    raise RuntimeError(
        f"could not make a {kind} sample from {host_path} in {settings.max_attempts} attempts (last: {last})"
    )


# ---------------------------------------------------------------------------------------
# Planning: splits, hosts, donors
# ---------------------------------------------------------------------------------------


def _split_counts(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    n_test = int(math.floor(n * test_fraction + 0.5))
    if test_fraction > 0 and n >= 2:
        n_test = max(1, n_test)
    n_val = int(math.floor(n * val_fraction + 0.5))
    if val_fraction > 0 and n - n_test >= 2:
        n_val = max(1, n_val)
    n_test = min(n_test, max(0, n - 1))
    n_val = min(n_val, max(0, n - n_test - 1))
    return n_test, n_val


def assign_splits(ids: Sequence[str], seed: int, test_fraction: float = 0.25, val_fraction: float = 0.10,
                  salt: int = _SALT_SPLIT_HOSTS) -> dict[str, str]:
    """Split photo ids into ``train`` / ``val`` / ``test`` (by photo) with the seed.

    ``round(n * test_fraction)`` photos (at least one when n >= 2) go to test,
    ``round(n * val_fraction)`` (at least one when two or more are left) to val, and the
    rest (at least one) to train."""
    ordered = sorted(ids)
    n_test, n_val = _split_counts(len(ordered), test_fraction, val_fraction)
    order = np.random.default_rng([seed, salt]).permutation(len(ordered))
    splits = {}
    for rank, index in enumerate(order):
        splits[ordered[index]] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
    return splits


@dataclass(frozen=True)
class _Job:
    index: int
    name: str
    kind: str
    split: str
    host: str
    host_id: str
    donor: str | None
    donor_id: str | None
    donor_note: str | None


def _resolve(photos) -> list[Path]:
    if isinstance(photos, (str, os.PathLike)):
        return list_photos(photos)
    found: dict[str, Path] = {}
    for item in photos:
        for path in list_photos(item):
            found.setdefault(str(Path(path).resolve()), Path(path))
    if not found:
        raise ValueError("no photos given")
    return sorted(found.values(), key=lambda p: str(p))


def _plan(hosts: list[Path], donors: list[Path] | None, count: int, seed: int, types: Sequence[str],
          settings: SynthSettings) -> tuple[list[_Job], dict[str, int]]:
    host_ids = photo_ids(hosts)
    host_split_by_id = assign_splits(host_ids, seed, settings.test_fraction, settings.val_fraction)
    host_split = [host_split_by_id[i] for i in host_ids]
    split_of_file = {str(p.resolve()): s for p, s in zip(hosts, host_split)}
    if donors is not None:
        donor_ids = photo_ids(donors)
        fresh = [i for i, p in zip(donor_ids, donors) if str(p.resolve()) not in split_of_file]
        fresh_split = assign_splits(fresh, seed, settings.test_fraction, settings.val_fraction, _SALT_SPLIT_DONORS)
        donor_split = [split_of_file.get(str(p.resolve())) or fresh_split[i] for i, p in zip(donor_ids, donors)]
        pool = list(zip(donors, donor_ids, donor_split))
    else:
        pool = list(zip(hosts, host_ids, host_split))
    jobs = []
    n = len(hosts)
    orders: dict[int, np.ndarray] = {}
    for index in range(count):
        kind = types[index % len(types)]
        epoch = index // n
        if epoch not in orders:  # every photo once per epoch, in a fresh order each epoch
            orders = {epoch: np.random.default_rng([seed, _SALT_HOST_ORDER, epoch]).permutation(n)}
        h = int(orders[epoch][index % n])
        donor = donor_id = note = None
        if kind == "splice":
            resolved_host = str(hosts[h].resolve())
            candidates = [(p, i) for p, i, s in pool if s == host_split[h] and str(p.resolve()) != resolved_host]
            if not candidates and donors is not None:  # donor set has nothing in this split
                candidates = [(p, i) for p, i, s in zip(hosts, host_ids, host_split)
                              if s == host_split[h] and p is not hosts[h]]
                note = "no donor photo in this split: donor taken from the host photos"
            if candidates:
                pick = np.random.default_rng([seed, _SALT_DONOR, index]).integers(len(candidates))
                donor, donor_id = candidates[int(pick)]
                donor = str(donor)
            else:
                donor, donor_id = str(hosts[h]), host_ids[h]
                note = "only photo of its split: donor region taken from the host photo itself"
        jobs.append(_Job(index, f"{index:06d}_{kind}", kind, host_split[h], str(hosts[h]), host_ids[h],
                         donor, donor_id, note))
    photos_per_split = dict(Counter(host_split))
    return jobs, {s: photos_per_split.get(s, 0) for s in SPLITS}


def _make(job: _Job, seed: int, size: int, settings: SynthSettings) -> tuple[Sample, dict]:
    rng = np.random.default_rng([seed, _SALT_SAMPLE, job.index])
    sample = render_sample(job.kind, job.host, rng, size, settings, job.donor)
    record: dict[str, Any] = {"name": job.name, "type": job.kind, "split": job.split, "source": job.host_id}
    if job.kind == "splice":
        record["donor"] = job.donor_id
        if job.donor_note:
            record["donor_note"] = job.donor_note
    record.update(sample.record)
    return sample, record


def _work(args: tuple[_Job, str, int, int, SynthSettings]) -> dict:
    job, out, seed, size, settings = args
    sample, record = _make(job, seed, size, settings)
    write_png(Path(out) / "Tp" / f"{job.name}.png", sample.image)
    write_png(Path(out) / "Gt" / f"{job.name}.png", sample.mask)
    return record


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _prepare_out(out: Path, overwrite: bool) -> None:
    previous = [p for p in (out / "manifest.json", out / "provenance.jsonl", out / "synth_config.json") if p.exists()]
    for sub in ("Tp", "Gt"):
        if (out / sub).is_dir():
            previous += [p for p in (out / sub).iterdir() if _NAME_RE.match(p.name)]
    previous += list(out.glob("manifest_*.json")) if out.is_dir() else []
    if previous and not overwrite:
        raise FileExistsError(
            f"{out} already holds generated samples ({len(previous)} files); pass overwrite=True "
            "to replace them or choose an empty folder"
        )
    for path in previous:
        path.unlink()
    (out / "Tp").mkdir(parents=True, exist_ok=True)
    (out / "Gt").mkdir(parents=True, exist_ok=True)


def synthesize(
    photos: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    count: int,
    seed: int,
    types: Sequence[str] = TAMPER_TYPES,
    size: int = 512,
    settings: SynthSettings | None = None,
    donors: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    *,
    workers: int | None = None,
    overwrite: bool = False,
) -> SynthSummary:
    """Generate ``count`` tampered images with exact masks into ``out``.

    Args:
        photos: host photo source(s): ``"default"``, a folder, an image file, or a list
            of them (see :func:`reloc.data.photos.list_photos`).
        out: output folder (created): ``Tp/``, ``Gt/``, ``manifest.json`` (IMDL-BenCo
            list of ``[Tp, Gt]`` pairs relative to ``out``), ``manifest_{split}.json``,
            ``provenance.jsonl``.
        count: number of samples; sample ``i`` has type ``types[i % len(types)]``.
        seed: the seed of everything (splits, hosts, donors, edits).
        types: tampering types to cycle through (subset of :data:`TAMPER_TYPES`).
        size: side of the square output images.
        settings: the generator's knobs (:class:`SynthSettings` defaults when None).
        donors: a second photo source for splice donors (split by photo like the hosts);
            None takes donors from the host photos.
        progress: show a tqdm progress bar.
        workers: worker processes (default: up to 2, serial for small counts); the files
            are identical whatever the number.
        overwrite: replace the generated files of a previous run in ``out`` (else a
            ``FileExistsError`` when there are some).

    Returns:
        a :class:`SynthSummary` (counts per type and split, seconds, folder).
    """
    started = time.perf_counter()
    settings = settings or SynthSettings()
    types = tuple(types)
    if not types or any(t not in TAMPER_TYPES for t in types):
        raise ValueError(f"types must be a non-empty subset of {TAMPER_TYPES}, got {types!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    hosts = _resolve(photos)
    donor_list = _resolve(donors) if donors is not None else None
    jobs, photos_per_split = _plan(hosts, donor_list, count, int(seed), types, settings)
    out = Path(out)
    _prepare_out(out, overwrite)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if count >= 24 else 1
    workers = max(1, min(int(workers), max(1, count)))
    tasks = [(job, str(out), int(seed), int(size), settings) for job in jobs]
    from tqdm.auto import tqdm

    records: list[dict] = []
    with tqdm(total=count, disable=not progress, desc="synth", unit="img") as bar:
        if workers == 1:
            for task in tasks:
                records.append(_work(task))
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
                for record in pool.map(_work, tasks, chunksize=2):
                    records.append(record)
                    bar.update(1)
    pairs = {s: [] for s in SPLITS}
    for record in records:
        pairs[record["split"]].append([f"Tp/{record['name']}.png", f"Gt/{record['name']}.png"])
    everything = [[f"Tp/{r['name']}.png", f"Gt/{r['name']}.png"] for r in records]
    _write_text(out / "manifest.json", json.dumps(everything, indent=1) + "\n")
    for split in SPLITS:
        _write_text(out / f"manifest_{split}.json", json.dumps(pairs[split], indent=1) + "\n")
    config = {
        "photos": [str(p) for p in photos] if not isinstance(photos, (str, os.PathLike)) else str(photos),
        "donors": None if donors is None else (
            [str(p) for p in donors] if not isinstance(donors, (str, os.PathLike)) else str(donors)),
        "count": count, "seed": int(seed), "types": list(types), "size": int(size),
        "photos_per_split": photos_per_split, "settings": settings.to_dict(),
    }
    _write_text(out / "synth_config.json", json.dumps(config, indent=1) + "\n")
    _write_text(out / "provenance.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    per_type = Counter(r["type"] for r in records)
    per_split = Counter(r["split"] for r in records)
    return SynthSummary(
        out=out,
        count=len(records),
        seconds=round(time.perf_counter() - started, 3),
        per_type={t: per_type.get(t, 0) for t in types},
        per_split={s: per_split.get(s, 0) for s in SPLITS},
        photos_per_split=photos_per_split,
        workers=workers,
    )
