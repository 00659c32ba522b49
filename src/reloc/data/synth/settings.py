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
#: Sample kinds a generated set holds: the edits, and untouched crops (``authentic_fraction``).
SAMPLE_KINDS: tuple[str, ...] = (*TAMPER_TYPES, "authentic")
#: Segmentation methods of object-shaped regions (:mod:`reloc.data.synth.objects`).
OBJECT_METHODS: tuple[str, ...] = ("slic", "felzenszwalb", "watershed", "grabcut")
#: ``cv2.seamlessClone`` modes of Poisson blending.
POISSON_MODES: dict[str, int] = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}
#: How a photo larger than the sample is brought to it: ``area`` resizes its short side to
#: the sample size, ``box`` shrinks it only by an integer factor (block means).
HOST_RESIZE: tuple[str, ...] = ("area", "box")
_SHAPES = ("blob", "polygon", "ellipse", "rect")
_INPAINT = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
#: Removal fills: ``cv2.inpaint``'s algorithms and ``patch`` (the best-matching patch copied in).
_REMOVALS = (*_INPAINT, "patch")


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
    """Fills a removal picks from (uniformly): ``cv2.inpaint``'s ``telea`` and ``ns``, and
    ``patch``: the hole filled with the patch of the same shape elsewhere in the image whose
    surroundings best match the hole's (sum of squared differences on a 3-px ring)."""
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
    # --- traits of hand-made edits (all off by default: docs/guide/generator.md) -----------
    p_object_region: float = 0.0
    """Probability that a splice, copy-move or removal region follows object boundaries:
    a segment of the donor (splice), or of the host (copy-move, removal), made by one of
    ``object_methods``, instead of a random shape."""
    object_methods: tuple[str, ...] = OBJECT_METHODS
    """Segmentation methods an object region picks from (uniformly)."""
    p_poisson: float = 0.0
    """Probability that a splice or copy-move is blended by Poisson (seamless) cloning
    (``cv2.seamlessClone``) instead of pasted with its (hard or feathered) alpha; the mask
    is the pixels of the region the cloning changed."""
    poisson_modes: tuple[str, ...] = ("normal", "mixed")
    """``cv2.seamlessClone`` modes a Poisson blend picks from (uniformly)."""
    p_donor_jpeg: float = 0.0
    """Probability that a splice's donor photo was a JPEG (whole photo, its own grid)
    before the region was cut, scaled and rotated: a second compression history."""
    donor_jpeg_quality_range: tuple[int, int] = (60, 98)
    """Quality range of the donor photo's JPEG."""
    p_host_grid_shift: float = 0.0
    """Probability that a host JPEG (``p_host_jpeg``) had its 8x8 grid not aligned with the
    crop (the photo was cropped after it was saved): shifted by (dy, dx) in 0-7, not both 0."""
    p_final_jpeg: float = 0.0
    """Probability that the finished image (edit or authentic) is saved as a JPEG at one of
    ``final_jpeg_qualities``; the returned host is saved alike, so pixels in 8x8 blocks
    away from the edit still equal it. Files stay PNGs of the decoded pixels."""
    final_jpeg_qualities: tuple[int, ...] = (75, 93, 99)
    """Qualities a final save picks from (uniformly): CASIA v1's files carry 75, 93 and 99."""
    host_resize: str = "area"
    """How a photo larger than the sample is brought to it: ``area`` resizes its short side
    to the sample size (area interpolation); ``box`` shrinks it only by the largest integer
    factor that keeps the short side at least the sample size (block means, no
    interpolation pattern) and crops. Donors are resized alike."""
    authentic_fraction: float = 0.0
    """Share of the samples that are untouched crops of the photos (``Au/``, listed as
    ``"Negative"``: all-zero masks), with the same whole-image traces as the edits."""
    no_edit: bool = False
    """Shortcut check: every sample's mask is made as usual but its image is the host
    without the edit (whole-image traces still applied). A model trained on such a set
    must score chance; more means the masks can be told from the photos alone."""
    min_photo_side: int = 32
    """Photos whose short side is below this are skipped (named in the summary)."""
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
            "p_object_region",
            "p_poisson",
            "p_donor_jpeg",
            "p_host_grid_shift",
            "p_final_jpeg",
            "authentic_fraction",
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
        _check_range("donor_jpeg_quality_range", self.donor_jpeg_quality_range, 1, 100)
        for name, allowed in (
            ("inpaint_methods", _REMOVALS),
            ("object_methods", OBJECT_METHODS),
            ("poisson_modes", tuple(POISSON_MODES)),
        ):
            value = getattr(self, name)
            if isinstance(value, str) or not value or any(m not in allowed for m in value):
                raise ValueError(f"SynthSettings.{name} must be a non-empty subset of {allowed}, got {value!r}")
        if (
            isinstance(self.final_jpeg_qualities, str)
            or not self.final_jpeg_qualities
            or any(not 1 <= int(q) <= 100 for q in self.final_jpeg_qualities)
        ):
            raise ValueError(
                f"SynthSettings.final_jpeg_qualities must be qualities 1-100, got {self.final_jpeg_qualities!r}"
            )
        if self.host_resize not in HOST_RESIZE:
            raise ValueError(f"SynthSettings.host_resize must be one of {HOST_RESIZE}, got {self.host_resize!r}")
        if self.authentic_fraction >= 1.0:
            raise ValueError("SynthSettings.authentic_fraction must be below 1 (some samples are edits)")
        if self.min_photo_side < 1:
            raise ValueError("SynthSettings.min_photo_side must be at least 1")
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

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SynthSettings:
        """Settings from a plain mapping (YAML / JSON: lists become tuples).

        Raises:
            ValueError: a key that is not a setting, or a value out of range.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"synth settings must be a mapping of setting: value, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown synth setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as exc:
            raise ValueError(f"bad synth setting value: {exc}") from exc

    @classmethod
    def from_yaml(cls, *paths: str | Path) -> SynthSettings:
        """Settings from YAML files, each a mapping of setting: value (``configs/synth/``);
        a later file's keys replace an earlier one's.

        Raises:
            ValueError: unreadable file, malformed YAML, unknown key or bad value (naming the file).
        """
        import yaml

        values: dict[str, Any] = {}
        for path in paths:
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
                if loaded is None:
                    loaded = {}
                if not isinstance(loaded, Mapping):
                    raise ValueError(f"expected a mapping of setting: value, got {type(loaded).__name__}")
                cls.from_mapping(loaded)  # names the file that brings a bad key or value
            except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
                raise ValueError(f"{path}: {exc}") from exc
            values.update(loaded)
        return cls.from_mapping(values)

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
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Photos left out: ``(path, reason)`` (unreadable, too small)."""

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
            "skipped_photos": [list(item) for item in self.skipped],
        }

    def __str__(self) -> str:
        types = ", ".join(f"{k} {v}" for k, v in self.per_type.items())
        splits = ", ".join(f"{k} {self.per_split.get(k, 0)} ({self.photos_per_split.get(k, 0)} photos)" for k in SPLITS)
        skipped = "".join(f"\n  skipped {path}: {reason}" for path, reason in self.skipped)
        return (
            f"{self.count} samples in {self.seconds:.1f} s ({self.workers} worker(s)) -> {self.out}\n"
            f"  types: {types}\n  splits: {splits}{skipped}"
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
