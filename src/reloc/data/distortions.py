"""Seeded, composable distortions described by short spec strings.

A spec is a comma-separated chain of ``kind:value`` or ``kind:low-high`` steps, applied
left to right; ``"none"`` or ``""`` is the identity. A range draws the value per call from
the caller's ``numpy.random.Generator`` (integers inclusive for ``jpeg``/``webp``, uniform
floats otherwise). Kinds:

``jpeg:Q``
    JPEG at IJG quality ``Q`` (1-100) with Pillow/libjpeg, chroma subsampling 4:2:0 given
    explicitly (it is Pillow's default, so the bytes equal
    ``Image.save(buf, "JPEG", quality=Q)``). ``jpeg:90,jpeg:75`` is a double JPEG.
``webp:Q``
    lossy WebP at quality ``Q`` (0-100) with Pillow.
``resize:F``
    resample by the factor ``F`` (0 < F <= 4) and back to the original size, so the output
    stays aligned with the mask. Each shrink uses ``cv2.INTER_AREA`` and each
    enlargement ``cv2.INTER_LINEAR``; the intermediate size is ``max(1, round(F * side))``.
``blur:S``
    Gaussian blur with sigma ``S`` pixels (``cv2.GaussianBlur``, reflected borders).
``noise:S``
    additive Gaussian noise with sigma ``S`` on the 0-255 scale, then clipped to [0, 1].
``gaussblur:K``
    Gaussian blur with a ``K x K`` kernel (odd ``K``; 0 is the identity) and OpenCV's
    sigma for that size, ``0.3 ((K - 1) / 2 - 1) + 0.8``: albumentations'
    ``GaussianBlur(blur_limit=(K, K))``, IMDL-BenCo's robustness blur.
``gaussnoise:V``
    additive Gaussian noise of variance ``V`` on the 0-255 scale (sigma ``sqrt(V)``), then
    clipped: albumentations' ``GaussNoise(var_limit=(V, V))``, IMDL-BenCo's robustness noise.
``jpegshift:Q``
    JPEG at quality ``Q`` on a grid shifted by ``(dy, dx)``, each drawn from 1..7 per call:
    the image is padded by replication on the top/left, compressed and cropped back, so
    after an earlier ``jpeg:Q1`` it is a non-aligned double JPEG.
``social:L``
    an approximation of a social-network upload: the long side is reduced to ``L`` pixels
    when longer (``cv2.INTER_AREA``; smaller images keep their size), JPEG at a quality
    drawn from :data:`SOCIAL_QUALITY` (70..85), then back to the original size
    (``cv2.INTER_LINEAR``) so it stays aligned with the mask.

Alternatives separated by ``|`` make a mix: each call draws one of them uniformly
(repeat one to make it likelier) and applies its chain, e.g.
``jpeg:50-100 | resize:0.5-0.9,jpeg:60-100 | none`` (how ``pretrained:robust`` meets
resized and uncompressed images as well as JPEGs).

Images are float32 ``(H, W, 3)`` in [0, 1]; codecs get 8-bit pixels made by rounding,
``rint(x * 255)``, not truncation.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image

from reloc.data.io import ImageError, float_to_uint8, to_numpy, to_tensor

JPEG_SUBSAMPLING = "4:2:0"

# IJG standard luminance quantisation table (ITU-T T.81, Annex K), natural order.
_IJG_LUMINANCE = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=np.int64,
)  # fmt: skip

_VALUE = r"((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"  # non-negative, as repr(float)
_PARAMETER = re.compile(rf"^{_VALUE}(?:\s*-\s*{_VALUE})?$")


class _Kind(NamedTuple):
    integer: bool
    low: float
    high: float
    usage: str


SOCIAL_QUALITY = (70, 85)
"""Inclusive range of the JPEG quality of ``social:L``."""
JPEG_SHIFT = (1, 7)
"""Inclusive range of each grid offset of ``jpegshift:Q``."""

_KINDS = {
    "jpeg": _Kind(True, 1, 100, "jpeg:Q or jpeg:Q1-Q2 (JPEG quality 1-100)"),
    "webp": _Kind(True, 0, 100, "webp:Q or webp:Q1-Q2 (WebP quality 0-100)"),
    "resize": _Kind(False, 0, 4, "resize:F (rescale factor, 0 < F <= 4, then back)"),
    "blur": _Kind(False, 0, math.inf, "blur:S (Gaussian sigma in pixels, >= 0)"),
    "noise": _Kind(False, 0, 255, "noise:S (noise sigma on the 0-255 scale, 0-255)"),
    "gaussblur": _Kind(True, 0, 255, "gaussblur:K (Gaussian blur kernel size, 0 or odd, up to 255)"),
    "gaussnoise": _Kind(False, 0, 65025, "gaussnoise:V (noise variance on the 0-255 scale)"),
    "jpegshift": _Kind(True, 1, 100, "jpegshift:Q (JPEG quality 1-100 on a grid shifted by 1-7 px)"),
    "social": _Kind(True, 16, 100_000, "social:L (long side capped at L px, JPEG 70-85, back)"),
}

_USAGE = (
    "valid kinds: "
    + "; ".join(kind.usage for kind in _KINDS.values())
    + "; chain steps with commas (e.g. 'resize:0.75,jpeg:80'), 'none' for no distortion,"
    + " ' | ' between chains for one of them drawn per image (e.g. 'jpeg:50-100 | none')"
)


@dataclass(frozen=True)
class Step:
    """One distortion with a fixed value or an inclusive range of values.

    Attributes:
        kind: one of the kinds of the module docstring (``jpeg``, ``webp``, ``resize``, ...).
        low: the value, or the lower end of the range.
        high: equal to ``low``, or the upper end of the range.
    """

    kind: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown distortion kind {self.kind!r}; {_USAGE}")

    def draw(self, rng: np.random.Generator) -> int | float:
        """Draw the value for one application (no draw when ``low == high``).

        Args:
            rng: random generator; advanced only for a range.

        Returns:
            an ``int`` for ``jpeg``/``webp`` (uniform, inclusive), else a ``float``.
        """
        integer = _KINDS[self.kind].integer
        if self.low == self.high:
            return int(self.low) if integer else float(self.low)
        if integer:
            return int(rng.integers(int(self.low), int(self.high), endpoint=True))
        return float(rng.uniform(self.low, self.high))

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Distort one image.

        Args:
            image: float32 ``(H, W, 3)`` in [0, 1].
            rng: random generator for the value and the noise.

        Returns:
            float32 ``(H, W, 3)`` in [0, 1].
        """
        value = self.draw(rng)
        return _APPLY[self.kind](image, value, rng)

    def __str__(self) -> str:
        integer = _KINDS[self.kind].integer
        low, high = (str(int(v)) if integer else repr(float(v)) for v in (self.low, self.high))
        return f"{self.kind}:{low}" if low == high else f"{self.kind}:{low}-{high}"


@dataclass(frozen=True)
class Distortion:
    """A chain of :class:`Step` applied left to right; no steps is the identity.

    ``str(distortion)`` gives a spec that :func:`parse_distortion` turns back into an
    equal object.
    """

    steps: tuple[Step, ...] = ()

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Distort one image.

        Args:
            image: float32 ``(H, W, 3)`` RGB in [0, 1].
            rng: random generator; the same generator state gives the same output.

        Returns:
            a new float32 ``(H, W, 3)`` array in [0, 1].

        Raises:
            ValueError: ``image`` is not a float32 ``(H, W, 3)`` array.
        """
        if image.dtype != np.float32 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a float32 (H, W, 3) image, got {image.dtype} {image.shape}")
        result = image.copy()
        for step in self.steps:
            result = step.apply(result, rng)
        return result

    def __str__(self) -> str:
        return ",".join(str(step) for step in self.steps) or "none"


@dataclass(frozen=True)
class DistortionMix:
    """One of several :class:`Distortion` chains, drawn uniformly per call.

    ``str(mix)`` gives a spec (alternatives joined by ``" | "``) that
    :func:`parse_distortion` turns back into an equal object.
    """

    alternatives: tuple[Distortion, ...]

    def __post_init__(self) -> None:
        if len(self.alternatives) < 2:
            raise ValueError(f"a distortion mix needs at least two alternatives, got {len(self.alternatives)}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Distort one image with an alternative drawn from ``rng``.

        Args:
            image: float32 ``(H, W, 3)`` RGB in [0, 1].
            rng: random generator for the choice, then for the chosen chain.

        Returns:
            a new float32 ``(H, W, 3)`` array in [0, 1].
        """
        chosen = self.alternatives[int(rng.integers(len(self.alternatives)))]
        return chosen(image, rng)

    def __str__(self) -> str:
        return " | ".join(str(alternative) for alternative in self.alternatives)


AnyDistortion = Distortion | DistortionMix
"""What :func:`parse_distortion` returns: a chain or a mix of chains."""


def parse_distortion(spec: str) -> AnyDistortion:
    """Parse a distortion spec such as ``"jpeg:75"``, ``"jpeg:70-100"``,
    ``"resize:0.75,jpeg:80"`` or ``"jpeg:50-100 | none"`` (see the module docstring).

    Args:
        spec: the spec; kinds are case-insensitive, spaces around tokens are ignored.

    Returns:
        the :class:`Distortion`, or a :class:`DistortionMix` when ``spec`` has ``|``.

    Raises:
        ValueError: naming the bad token or the empty alternative, and listing the valid kinds.
    """
    if "|" in spec:
        alternatives = [text.strip() for text in spec.split("|")]
        if not all(alternatives):
            raise ValueError(f"empty alternative in distortion mix {spec!r}; write 'none' for no distortion")
        return DistortionMix(tuple(_parse_chain(text) for text in alternatives))
    return _parse_chain(spec)


def _parse_chain(spec: str) -> Distortion:
    """Parse one chain of comma-separated steps (no ``|``)."""
    if spec.strip().lower() in ("", "none"):
        return Distortion()
    steps = []
    for token in spec.split(","):
        steps.append(_parse_step(token.strip(), spec))
    return Distortion(tuple(steps))


def distort_tensor(plain: torch.Tensor, distortion: AnyDistortion | str, rng: np.random.Generator) -> torch.Tensor:
    """Distort a tensor image or batch (values are detached from the graph).

    Args:
        plain: ``(3, H, W)`` or ``(B, 3, H, W)`` tensor in [0, 1], any device and float dtype.
        distortion: a :class:`Distortion`, a :class:`DistortionMix` or a spec string.
        rng: random generator, used by the batch items in order.

    Returns:
        tensor of the same shape, dtype and device.
    """
    if isinstance(distortion, str):
        distortion = parse_distortion(distortion)
    if plain.ndim == 3:
        return distort_tensor(plain[None], distortion, rng)[0]
    if plain.ndim != 4 or plain.shape[1] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(plain.shape)}")
    outputs = [to_tensor(distortion(to_numpy(item), rng)) for item in plain]
    return torch.stack(outputs).to(device=plain.device, dtype=plain.dtype)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Encode an 8-bit RGB image as baseline JPEG with 4:2:0 chroma subsampling.

    Args:
        image: uint8 ``(H, W, 3)``.
        quality: IJG quality 1-100.

    Returns:
        the JPEG file bytes, identical to Pillow's ``save(buf, "JPEG", quality=quality)``.
    """
    buffer = io.BytesIO()
    Image.fromarray(_check_uint8_rgb(image)).save(
        buffer, format="JPEG", quality=int(quality), subsampling=JPEG_SUBSAMPLING
    )
    return buffer.getvalue()


def encode_webp(image: np.ndarray, quality: int) -> bytes:
    """Encode an 8-bit RGB image as lossy WebP.

    Args:
        image: uint8 ``(H, W, 3)``.
        quality: WebP quality 0-100.

    Returns:
        the WebP file bytes.
    """
    buffer = io.BytesIO()
    Image.fromarray(_check_uint8_rgb(image)).save(buffer, format="WEBP", quality=int(quality), lossless=False)
    return buffer.getvalue()


def jpeg_quality_from_file(source: str | os.PathLike | bytes) -> int:
    """Estimate the IJG quality of a JPEG from its luminance quantisation table.

    The table of every quality 1-100 is rebuilt with libjpeg's scaling
    (``scale = 5000 / q`` below 50, else ``200 - 2 q``; entries
    ``(standard * scale + 50) // 100`` clamped to 1..255) and the closest one (sum of
    absolute differences) wins: exact for files written by libjpeg at quality ``q``, a
    nearest guess for other encoders.

    Args:
        source: a JPEG file path or its bytes.

    Returns:
        the quality, 1-100.

    Raises:
        ImageError: not a readable JPEG or no luminance table.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():  # only the header is read: no pixel is decoded here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with image:
            fmt, tables = image.format, getattr(image, "quantization", None)
    except Exception as exc:
        raise ImageError(name, f"cannot open as JPEG: {exc}") from exc
    if fmt != "JPEG" or not tables or 0 not in tables:
        raise ImageError(name, f"no JPEG luminance quantisation table (format {fmt})")
    table = np.asarray(tables[0], dtype=np.int64)
    qualities = np.arange(1, 101)
    scales = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    candidates = (_IJG_LUMINANCE[None, :] * scales[:, None] + 50) // 100
    candidates = np.clip(candidates, 1, 255 if table.max() <= 255 else 32767)
    errors = np.abs(candidates - table[None, :]).sum(axis=1)
    return int(qualities[np.argmin(errors)])


def _parse_step(token: str, spec: str) -> Step:
    """Parse one ``kind:value`` or ``kind:low-high`` token."""

    def fail(reason: str) -> ValueError:
        return ValueError(f"bad distortion {token!r} in spec {spec!r}: {reason}; {_USAGE}")

    if not token:
        raise fail("empty step")
    kind_text, colon, parameter = token.partition(":")
    kind_name = kind_text.strip().lower()
    if kind_name not in _KINDS:
        raise fail(f"unknown kind {kind_text.strip()!r}")
    kind = _KINDS[kind_name]
    match = _PARAMETER.match(parameter.strip())
    if not colon or match is None:
        raise fail("expected a non-negative number or a range low-high after ':'")
    texts = [text for text in match.groups() if text is not None]
    if kind.integer and any(not text.isdigit() for text in texts):
        raise fail(f"{kind_name} takes whole numbers")
    values = [int(text) if kind.integer else float(text) for text in texts]
    low, high = values[0], values[-1]
    if low > high:
        raise fail(f"range {low}-{high} is decreasing")
    for value in values:
        if value < kind.low or value > kind.high or (kind_name == "resize" and value == 0):
            raise fail(f"{kind_name} value {value} is out of range")
        if kind_name == "gaussblur" and value != 0 and value % 2 == 0:
            raise fail(f"gaussblur kernel {value} is even (OpenCV kernels are odd)")
    return Step(kind_name, low, high)


def _check_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous uint8 ``(H, W, 3)`` array or raise ValueError."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _decode_rgb(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to float32 ``(H, W, 3)`` RGB in [0, 1]."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _jpeg(image: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    return _decode_rgb(encode_jpeg(float_to_uint8(image), quality))


def _webp(image: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    return _decode_rgb(encode_webp(float_to_uint8(image), quality))


def _resize(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    inward = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    outward = cv2.INTER_LINEAR if factor < 1 else cv2.INTER_AREA
    resized = cv2.resize(image, small, interpolation=inward)
    restored = cv2.resize(resized, (width, height), interpolation=outward)
    return np.clip(restored.reshape(image.shape), 0.0, 1.0)


def _blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma == 0:
        return image
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return blurred.reshape(image.shape)


def _noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, sigma / 255.0, size=image.shape).astype(np.float32)
    return np.clip(image + noise, 0.0, 1.0)


def _gaussblur(image: np.ndarray, kernel: int, rng: np.random.Generator) -> np.ndarray:
    if kernel <= 1:
        return image
    blurred = cv2.GaussianBlur(image, (kernel, kernel), sigmaX=0, borderType=cv2.BORDER_REFLECT_101)
    return blurred.reshape(image.shape)


def _gaussnoise(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    return _noise(image, math.sqrt(variance), rng)


def _jpegshift(image: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    dy, dx = (int(rng.integers(JPEG_SHIFT[0], JPEG_SHIFT[1], endpoint=True)) for _ in range(2))
    padded = np.pad(float_to_uint8(image), ((dy, 0), (dx, 0), (0, 0)), mode="edge")
    return np.ascontiguousarray(_decode_rgb(encode_jpeg(padded, quality))[dy:, dx:])


def _social(image: np.ndarray, long_side: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    quality = int(rng.integers(SOCIAL_QUALITY[0], SOCIAL_QUALITY[1], endpoint=True))
    scale = long_side / max(height, width)
    if scale >= 1:
        return _jpeg(image, quality, rng)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA).reshape(small[1], small[0], 3)
    compressed = _jpeg(np.ascontiguousarray(reduced), quality, rng)
    restored = cv2.resize(compressed, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(restored.reshape(image.shape), 0.0, 1.0)


_APPLY: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "jpeg": _jpeg,
    "webp": _webp,
    "resize": _resize,
    "blur": _blur,
    "noise": _noise,
    "gaussblur": _gaussblur,
    "gaussnoise": _gaussnoise,
    "jpegshift": _jpegshift,
    "social": _social,
}
