"""Settings, constants and result types of the synthetic tampering generator."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reloc.data.catalog import SPLITS

#: The kinds of tampering, in the order they cycle through the samples.
TAMPER_TYPES: tuple[str, ...] = ("splice", "copymove", "removal", "text")
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
    # --- whole-image traces (off by default: the defaults keep every pixel outside the
    # mask equal to the host photo; the release recipe turns them on) --------------------
    p_host_jpeg: float = 0.0
    """Probability that the host crop was a JPEG before the edit (a camera or web photo):
    it is compressed whole, grid aligned with the crop, before the region is edited, so
    the edited region lacks (or misaligns) the host's compression traces."""
    host_jpeg_quality_range: tuple[int, int] = (70, 95)
    """Quality range of that host JPEG."""
    p_post_sharpen: float = 0.0
    """Probability that the whole image is sharpened after the edit (unsharp mask), as
    editors often do before saving. The returned host is sharpened the same way, so
    pixels further than a few sigma from the edited region still equal it."""
    post_sharpen_amount_range: tuple[float, float] = (0.3, 1.2)
    """Unsharp-mask amount range (``out = x + amount * (x - blur(x))``)."""
    post_sharpen_sigma_range: tuple[float, float] = (0.6, 1.6)
    """Unsharp-mask Gaussian sigma range (px)."""
    enlarge_hosts: bool = True
    """Enlarge (cubic) a photo whose short side is below ``size`` to it. False leaves such a
    photo at its own size, so its samples are smaller squares (their side is the photo's
    short side): an enlarged host carries an interpolation pattern over the whole image
    that every edit breaks, a trace of the generator that real photos rarely have and a
    localizer learns to rely on (docs/results/experiments.md)."""
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
            "p_feather",
            "p_resample",
            "p_rotate",
            "p_flip",
            "p_color_match",
            "p_gamma",
            "p_region_jpeg",
            "p_blur",
            "p_denoise",
            "p_noise",
            "p_host_jpeg",
            "p_post_sharpen",
            "p_text_replace",
            "p_text_stroke",
            "test_fraction",
            "val_fraction",
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
        _check_range("host_jpeg_quality_range", self.host_jpeg_quality_range, 1, 100)
        _check_range("post_sharpen_amount_range", self.post_sharpen_amount_range, 0.0, 10.0)
        _check_range("post_sharpen_sigma_range", self.post_sharpen_sigma_range, 0.1, 20.0)
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
        if (
            not weights
            or any(k not in _SHAPES for k in weights)
            or any(v < 0 for v in weights.values())
            or sum(weights.values()) <= 0
        ):
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
        return {
            "out": str(self.out),
            "count": self.count,
            "seconds": self.seconds,
            "per_type": dict(self.per_type),
            "per_split": dict(self.per_split),
            "photos_per_split": dict(self.photos_per_split),
            "workers": self.workers,
        }

    def __str__(self) -> str:
        types = ", ".join(f"{k} {v}" for k, v in self.per_type.items())
        splits = ", ".join(f"{k} {self.per_split.get(k, 0)} ({self.photos_per_split.get(k, 0)} photos)" for k in SPLITS)
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
