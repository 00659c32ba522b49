"""Image and mask reading and writing.

Every reader returns float32 arrays and turns every failure (missing file, a directory,
empty, truncated or corrupt data, an unknown format, an image over the pixel cap) into an
:class:`ImageError` that names the file and the reason, never a raw library traceback.

Decoding uses Pillow, except 16-bit-per-channel colour PNGs (RGB, RGBA, gray+alpha),
which Pillow would cut to 8 bits: those are checked by Pillow and decoded by OpenCV.
Truncated files are errors because Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at
its default ``False`` (this module never changes it; code that sets it to ``True`` makes
Pillow pad truncated files silently).

Pixel cap: the size in the file header is checked against ``max_pixels`` (and, with
``max_expansion``, against the file's own size: :func:`reloc.limits.expansion_problem`)
before any pixel is decoded. Pillow's own decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``) is replaced by that cap while our readers open a file (a
caller who sets the cap means it), so a refusal names the cap, never Pillow's advice; with
``max_pixels=None`` Pillow's hard ``DecompressionBombError`` (images over
``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels by default) becomes an
:class:`ImageError`.

Memory: ``read_image(..., compact=True)`` returns 8-bit files as uint8 (a quarter of the
float32 array) and converts Pillow's buffer without intermediate copies; ``reloc
localize`` reads that way.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from reloc.io_utils import atomic_path
from reloc.limits import expansion_problem

DEFAULT_MAX_PIXELS = 150_000_000
"""Default pixel cap of the readers (150 megapixels, below Pillow's own hard limit)."""

ALPHA_MODES = ("composite-white", "drop")

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)
"""File extensions (lower case) taken as images wherever a folder is scanned (datasets,
photo sources, ``reloc localize`` inputs); a file named directly is read whatever its name."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES_WITH_CHANNELS = (2, 4, 6)  # RGB, gray+alpha, RGBA
EXIF_ORIENTATION = 0x0112  # the EXIF tag of the orientation (1-8)
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow
_BOMB_LIMIT_LOCK = threading.Lock()  # guards the temporary change of PIL.Image.MAX_IMAGE_PIXELS
_BAND_ROWS = 512  # rows per band when compositing alpha in compact mode


class ImageError(ValueError):
    """An image or mask file that cannot be used.

    Attributes:
        path: the offending file.
        reason: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    alpha: str = "composite-white",
    compact: bool = False,
    max_expansion: float | None = None,
) -> np.ndarray:
    """Read an image file as RGB.

    Handles 1/8/16-bit gray, palette (with or without transparency), RGB(A) at 8 or 16
    bits, LA, CMYK (converted by Pillow, no ICC colour management), 32-bit integer ``I``
    (taken as 16-bit, values clipped to [0, 65535]) and float ``F`` (taken as [0, 1],
    clipped) images. The EXIF orientation is applied, so the array is upright.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (read from the header, before
            decoding); ``None`` for no cap of ours (Pillow's hard limit still applies).
        alpha: how transparent images become RGB: ``"composite-white"`` (default) blends
            them over a white background, ``"drop"`` discards the alpha channel and keeps
            the stored colour of transparent pixels.
        compact: return a file of 8 bits per channel as uint8 (the float32 result would
            be exactly ``uint8 / 255``, except that composited alpha is rounded to 8 bits);
            16-bit and float files stay float32.
        max_expansion: refuse, before decoding, a large image whose decoded RGB pixels
            would be more than this many times its file's bytes
            (:func:`reloc.limits.expansion_problem`); ``None``: no such bound.

    Returns:
        float32 array ``(H, W, 3)``, RGB in [0, 1]; with ``compact`` uint8 ``(H, W, 3)`` in
        [0, 255] for 8-bit files.

    Raises:
        ImageError: the file is missing, unreadable, corrupt, truncated or over the cap.
        ValueError: ``alpha`` is not one of ``ALPHA_MODES``.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    pixels = _decode(path, max_pixels, compact, max_expansion)
    if pixels.shape[2] in (2, 4):
        if pixels.dtype == np.uint8:
            pixels = _composite_uint8(pixels, alpha == "composite-white")
        else:
            colour, opacity = pixels[..., :-1], pixels[..., -1:]
            if alpha == "composite-white":
                colour = colour * opacity + (1.0 - opacity)
            pixels = colour
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=pixels.dtype if pixels.dtype == np.uint8 else np.float32)


def _composite_uint8(pixels: np.ndarray, over_white: bool) -> np.ndarray:
    """uint8 ``(H, W, C + 1)`` with alpha last -> uint8 ``(H, W, C)``, composited over white (or alpha dropped), in bands."""
    colour = np.empty(pixels.shape[:2] + (pixels.shape[2] - 1,), dtype=np.uint8)
    for top in range(0, pixels.shape[0], _BAND_ROWS):
        band = pixels[top : top + _BAND_ROWS].astype(np.float32) / 255.0
        values = band[..., :-1]
        if over_white:
            values = values * band[..., -1:] + (1.0 - band[..., -1:])
        colour[top : top + _BAND_ROWS] = float_to_uint8(values)
    return colour


def frame_count(source: str | os.PathLike | Image.Image) -> int:
    """Frames or pages of an image file (an animated GIF / PNG / WebP, a multi-page TIFF) as
    its header says; 1 for a still image or one that cannot be opened. Readers decode the
    first frame only."""
    try:
        if isinstance(source, Image.Image):
            return max(1, int(getattr(source, "n_frames", 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                return max(1, int(getattr(image, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - a file that does not open is the reader's error to report
        return 1


MASK_RESIZE = ("nearest",)
"""How :func:`read_mask` may resize a mask whose size differs from its image's (off by default)."""


@dataclass(frozen=True)
class MaskRule:
    """How a mask file's pixels become tampered (1) or authentic (0).

    The mask is reduced to one 8-bit value per pixel (the BT.601 luminance, or one
    colour channel), then compared with ``threshold``; ``invert`` swaps the classes for
    datasets where black marks the tampering.

    Attributes:
        channel: ``None`` for the luminance, else 0 (red), 1 (green) or 2 (blue).
        threshold: a value >= ``threshold`` (0-255) is "white".
        invert: ``False``: white is tampered (the common convention); ``True``: black is.
    """

    channel: int | None = None
    threshold: int = 128
    invert: bool = False

    def __post_init__(self) -> None:
        if self.channel not in (None, 0, 1, 2):
            raise ValueError(f"mask channel must be None, 0, 1 or 2, got {self.channel!r}")
        if not 1 <= self.threshold <= 255:
            raise ValueError(f"mask threshold must be within 1..255, got {self.threshold}")

    def describe(self) -> str:
        """E.g. ``"luminance >= 128 is tampered"`` or ``"green < 128 is tampered"``."""
        source = "luminance" if self.channel is None else ("red", "green", "blue")[self.channel]
        return f"{source} {'<' if self.invert else '>='} {self.threshold} is tampered"

    def binarise(self, values: np.ndarray) -> np.ndarray:
        """uint8 values ``(H, W)`` -> float32 ``(H, W)`` in {0, 1} (1 = tampered)."""
        white = values >= self.threshold
        return (~white if self.invert else white).astype(np.float32)


def read_mask_values(
    path: str | os.PathLike,
    *,
    channel: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a mask as one 8-bit value per pixel, before binarisation.

    Any mode is reduced to 8 bits (16-bit masks are scaled by rounding). Masks with an
    alpha channel are composited over black first, so fully transparent pixels read 0.

    Args:
        path: the mask file.
        channel: ``None`` for the ITU-R BT.601 luminance (as Pillow's ``"L"``), else the
            colour channel 0, 1 or 2 (a gray mask gives its gray value for every channel).
        max_pixels: pixel cap as in :func:`read_image`.

    Returns:
        uint8 array ``(H, W)``.

    Raises:
        ImageError: the file cannot be read (as :func:`read_image`).
    """
    pixels = _decode(path, max_pixels)
    if pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1] * pixels[..., -1:]
    if pixels.shape[2] == 1:
        values = pixels[..., 0]
    elif channel is None:
        values = pixels @ _LUMA_WEIGHTS
    else:
        values = pixels[..., channel]
    return np.rint(values * 255.0).astype(np.uint8)


def read_mask(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    rule: MaskRule = MaskRule(),
    resize: str | None = None,
) -> np.ndarray:
    """Read a tamper mask and binarise it.

    By default (``MaskRule()``) any mode is reduced to 8-bit luminance (ITU-R BT.601
    weights, as Pillow's ``"L"``; 16-bit masks are scaled to 8 bits by rounding) and
    pixels with a value above 127.5, i.e. 128..255, are tampered (1). Masks with an alpha
    channel are composited over black first, so fully transparent pixels count as
    authentic whatever colour they store (see :func:`read_mask_values`).

    Args:
        path: the mask file.
        size: the expected ``(height, width)``, normally that of the image it labels.
        max_pixels: pixel cap as in :func:`read_image`.
        rule: which value, channel and polarity mark tampering (a dataset's convention).
        resize: ``None`` (default): a mask of another ``size`` is an error;
            ``"nearest"``: it is resized to ``size`` by nearest-neighbour interpolation.

    Returns:
        float32 array ``(H, W)`` with values in {0, 1}.

    Raises:
        ImageError: the file cannot be read (as :func:`read_image`) or its size differs
            from ``size`` (without ``resize``).
        ValueError: an unknown ``resize``.
    """
    if resize is not None and resize not in MASK_RESIZE:
        raise ValueError(f"mask resize must be one of {MASK_RESIZE} or None, got {resize!r}")
    values = read_mask_values(path, channel=rule.channel, max_pixels=max_pixels)
    if size is not None and values.shape != tuple(size):
        if resize is None:
            raise ImageError(
                path,
                f"mask is {values.shape[0]}x{values.shape[1]} (HxW) but its image is {size[0]}x{size[1]}",
            )
        values = cv2.resize(values, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return rule.binarise(values)


def write_png(path: str | os.PathLike, array: np.ndarray, *, overwrite: bool = True) -> None:
    """Write an image or mask as a lossless 8-bit PNG, atomically.

    The file is written to a temporary name in the same folder and then published as
    ``path`` by :func:`reloc.io_utils.atomic_path`, so readers never see a half-written file.

    Args:
        path: destination file; missing parent folders are created.
        overwrite: replace an existing ``path``; with ``False`` an existing file is never
            touched (:class:`FileExistsError`), even if it appears while writing.
        array: one of
            float ``(H, W, 3)`` or ``(H, W)`` in [0, 1] (clipped, then ``rint(x * 255)``);
            uint8 ``(H, W, 3)`` or ``(H, W)``, written as is;
            bool ``(H, W)`` mask, written as {0, 255}.

    Raises:
        ValueError: unsupported shape or dtype, or NaN values.
        FileExistsError: ``path`` exists and ``overwrite`` is ``False``.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) array, got shape {array.shape}")
    if array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if np.isnan(array).any():
            raise ValueError("cannot write an image containing NaN")
        pixels = float_to_uint8(array)
    else:
        raise ValueError(f"expected a float, uint8 or bool array, got {array.dtype}")
    with atomic_path(path, overwrite=overwrite) as temporary:
        Image.fromarray(np.ascontiguousarray(pixels)).save(temporary, format="PNG")


PROBABILITY_SCALE = 65535
"""A probability ``p`` is stored in a 16-bit PNG as ``rint(p * PROBABILITY_SCALE)``."""


def write_probability_png(path: str | os.PathLike, probabilities: np.ndarray, *, overwrite: bool = True) -> None:
    """Write a probability map ``(H, W)`` in [0, 1] as a 16-bit grey PNG, atomically
    (``rint(p * 65535)``: at most 7.7e-6 from the float32 value; :func:`read_probability_png`
    reads it back).

    Raises:
        ValueError: not an ``(H, W)`` float array, or NaN values.
        FileExistsError: ``path`` exists and ``overwrite`` is ``False``.
    """
    array = np.asarray(probabilities)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected a float (H, W) probability map, got {array.dtype} {array.shape}")
    pixels = np.empty(array.shape, dtype=np.uint16)
    for top in range(0, array.shape[0], _BAND_ROWS):  # a band at a time: no full-size float temporaries
        band = array[top : top + _BAND_ROWS]
        if np.isnan(band).any():
            raise ValueError("cannot write a probability map containing NaN")
        pixels[top : top + _BAND_ROWS] = np.rint(np.clip(band, 0.0, 1.0) * PROBABILITY_SCALE)
    encoded, data = cv2.imencode(".png", pixels)
    if not encoded:
        raise ValueError(f"{path}: OpenCV could not encode the probability map")
    with atomic_path(Path(path), overwrite=overwrite) as temporary:
        Path(temporary).write_bytes(data.tobytes())


def read_probability_png(path: str | os.PathLike) -> np.ndarray:
    """A probability map written by :func:`write_probability_png`: float32 ``(H, W)`` in [0, 1].

    Raises:
        ImageError: the file is missing, unreadable, or not a 16-bit grey PNG.
    """
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageError(path, "not a readable PNG")
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ImageError(path, f"not a 16-bit grey probability PNG ({pixels.dtype}, shape {pixels.shape})")
    return pixels.astype(np.float32) / PROBABILITY_SCALE


def float_to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise a float image in [0, 1] to 8 bits by rounding (``rint(x * 255)``).

    Args:
        image: float array of any shape; values outside [0, 1] are clipped.

    Returns:
        uint8 array of the same shape.
    """
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """Convert a channel-last array to a channel-first float32 tensor.

    Args:
        image: ``(H, W, C)`` image or ``(H, W)`` mask.

    Returns:
        float32 tensor ``(C, H, W)``, or ``(1, H, W)`` for a 2-D input.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Convert a channel-first tensor back to a channel-last float32 array.

    Args:
        tensor: ``(C, H, W)`` tensor on any device.

    Returns:
        float32 array ``(H, W, C)``.
    """
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy().transpose(1, 2, 0))


def _decode(
    path: str | os.PathLike, max_pixels: int | None, compact: bool = False, max_expansion: float | None = None
) -> np.ndarray:
    """Decode a file to channels at full precision, upright.

    Returns:
        float32 array ``(H, W, C)`` in [0, 1] (with ``compact``, uint8 in [0, 255] for
        8-bit files); channels are L (C=1), LA (2), RGB (3) or RGBA (4).
    """
    path = Path(path)
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    try:
        with warnings.catch_warnings(), _BOMB_LIMIT_LOCK:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            default_limit = Image.MAX_IMAGE_PIXELS
            if max_pixels is not None:
                Image.MAX_IMAGE_PIXELS = None  # our cap replaces Pillow's; it is checked below, before decoding
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = default_limit
    except FileNotFoundError as exc:
        raise ImageError(path, "file not found") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"image is over the reader's hard limit of {2 * (default_limit or 0):,} pixels; "
                               "give a pixel cap to read it (`reloc localize --max-pixels N`)") from exc  # fmt: skip
    except Exception as exc:
        raise ImageError(path, _describe_open_failure(path, exc)) from exc
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageError(
                path,
                f"image is {width}x{height} = {width * height:,} pixels, over the cap of "
                f"{max_pixels:,} pixels (`reloc localize --max-pixels`)",
            )
        if max_expansion is not None:
            problem = expansion_problem(width, height, _file_size(path), max_expansion)
            if problem:
                raise ImageError(path, f"{problem} (`reloc localize --max-pixels N` reads it anyway)")
        try:
            image.load()
            if _is_wide_colour_png(path, image):
                return _decode_wide_png(path, image.getexif().get(EXIF_ORIENTATION, 1))
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            return orient(_pil_to_array(image, compact), orientation)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(path, f"cannot decode: {exc}") from exc


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _describe_open_failure(path: Path, exc: Exception) -> str:
    """A short reason for a file Pillow could not even identify."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, Image.UnidentifiedImageError):
        if path.stat().st_size == 0:
            return "empty file"
        return "not an image in a known format (unidentified or corrupt header)"
    return f"cannot open: {exc}"


def _is_wide_colour_png(path: Path, image: Image.Image) -> bool:
    """Whether ``image`` is a PNG with 16-bit colour or gray+alpha channels."""
    if image.format != "PNG":
        return False
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or not header.startswith(_PNG_SIGNATURE):
        return False
    bit_depth, colour_type = header[24], header[25]
    return bit_depth == 16 and colour_type in _PNG_COLOUR_TYPES_WITH_CHANNELS


def _decode_wide_png(path: Path, orientation: int) -> np.ndarray:
    """Decode a 16-bit colour PNG with OpenCV (Pillow keeps only 8 bits)."""
    data = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageError(path, "OpenCV could not decode this 16-bit PNG")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return orient(pixels.astype(np.float32) / scale, orientation)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an ``(H, W, C)`` array, as ``exif_transpose``."""
    operations = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }
    operation = operations.get(orientation)
    return pixels if operation is None else np.ascontiguousarray(operation(pixels))


def _pil_to_array(image: Image.Image, compact: bool = False) -> np.ndarray:
    """Convert a loaded Pillow image to float channels (L, LA, RGB or RGBA) in [0, 1]
    (with ``compact``, 8-bit modes as uint8 channels in [0, 255])."""
    mode = image.mode
    if mode.startswith("I;16"):
        pixels = np.asarray(image).astype(np.float32) / 65535.0
    elif mode == "I":
        pixels = np.clip(np.asarray(image), 0, 65535).astype(np.float32) / 65535.0
    elif mode == "F":
        pixels = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    else:
        if mode in ("LA", "La"):
            target = "LA"
        elif mode in ("RGBA", "RGBa", "PA") or "transparency" in image.info:
            target = "RGBA"  # also palette, gray or RGB with a transparent colour (tRNS)
        elif mode in ("1", "L"):
            target = "L"
        else:
            target = "RGB"
        converted = image if image.mode == target else image.convert(target)
        pixels = np.asarray(converted)
        del converted
        if not compact:
            pixels = pixels.astype(np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels
