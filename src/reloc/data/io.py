"""Image and mask reading and writing.

Every reader returns float32 arrays and turns every failure (missing file, a directory,
empty, truncated or corrupt data, an unknown format, an image over the pixel cap) into an
:class:`ImageError` that names the file and the reason, never a raw library traceback.

Decoding uses Pillow, except 16-bit-per-channel colour PNGs (RGB, RGBA, gray+alpha),
which Pillow would cut to 8 bits: those are checked by Pillow and decoded by OpenCV.
Truncated files are errors because Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at
its default ``False`` (this module never changes it; code that sets it to ``True`` makes
Pillow pad truncated files silently).

Pixel cap: the size in the file header is checked against ``max_pixels`` before any pixel
is decoded. Pillow's own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is
superseded by that cap while our readers open a file (a caller who sets the cap means
it); with ``max_pixels=None`` Pillow's hard ``DecompressionBombError`` (images over
``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels by default) becomes an
:class:`ImageError`.

Memory: ``read_image(..., compact=True)`` returns 8-bit files as uint8 (a quarter of the
float32 array) and converts Pillow's buffer without intermediate copies; ``reloc
localize`` reads that way.
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

DEFAULT_MAX_PIXELS = 150_000_000
"""Default pixel cap of the readers (150 megapixels, below Pillow's own hard limit)."""

ALPHA_MODES = ("composite-white", "drop")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES_WITH_CHANNELS = (2, 4, 6)  # RGB, gray+alpha, RGBA
_EXIF_ORIENTATION = 0x0112
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

    Returns:
        float32 array ``(H, W, 3)``, RGB in [0, 1]; with ``compact`` uint8 ``(H, W, 3)`` in
        [0, 255] for 8-bit files.

    Raises:
        ImageError: the file is missing, unreadable, corrupt, truncated or over the cap.
        ValueError: ``alpha`` is not one of ``ALPHA_MODES``.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    pixels = _decode(path, max_pixels, compact)
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


def read_mask(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a tamper mask and binarise it.

    Any mode is reduced to 8-bit luminance (ITU-R BT.601 weights, as Pillow's ``"L"``;
    16-bit masks are scaled to 8 bits by rounding) and pixels with a value above 127.5,
    i.e. 128..255, are tampered (1). Masks with an alpha channel are composited over
    black first, so fully transparent pixels count as authentic whatever colour they
    store.

    Args:
        path: the mask file.
        size: the expected ``(height, width)``, normally that of the image it labels.
        max_pixels: pixel cap as in :func:`read_image`.

    Returns:
        float32 array ``(H, W)`` with values in {0, 1}.

    Raises:
        ImageError: the file cannot be read (as :func:`read_image`) or its size differs
            from ``size``.
    """
    pixels = _decode(path, max_pixels)
    if pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1] * pixels[..., -1:]
    if pixels.shape[2] == 3:
        luminance = pixels @ _LUMA_WEIGHTS
    else:
        luminance = pixels[..., 0]
    if size is not None and luminance.shape != tuple(size):
        raise ImageError(
            path,
            f"mask is {luminance.shape[0]}x{luminance.shape[1]} (HxW) but its image is "
            f"{size[0]}x{size[1]}",
        )
    return (np.rint(luminance * 255.0) >= 128).astype(np.float32)


def write_png(path: str | os.PathLike, array: np.ndarray, *, overwrite: bool = True) -> None:
    """Write an image or mask as a lossless 8-bit PNG, atomically.

    The file is written to a temporary name in the same folder and then published as
    ``path`` by :func:`publish`, so readers never see a half-written file.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as handle:
            Image.fromarray(np.ascontiguousarray(pixels)).save(handle, format="PNG")
        publish(temporary, path, overwrite=overwrite)
    finally:
        temporary.unlink(missing_ok=True)


def publish(temporary: Path, path: Path, *, overwrite: bool = True) -> None:
    """Give the complete file ``temporary`` its final name ``path`` (same folder), atomically.

    With ``overwrite`` it is renamed over ``path``; without, it is hard-linked to ``path``,
    which fails if ``path`` exists, so no existing file is ever replaced (on file systems
    without hard links the bytes are copied to a file created exclusively). ``temporary``
    may be left behind for the caller to remove.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is ``False``.
    """
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise FileExistsError(17, "exists and is not overwritten", str(path)) from None
    except OSError:  # no hard links here (e.g. FAT, some network file systems)
        with open(temporary, "rb") as source, open(path, "xb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)


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
    return np.ascontiguousarray(
        tensor.detach().to("cpu", torch.float32).numpy().transpose(1, 2, 0)
    )


def _decode(path: str | os.PathLike, max_pixels: int | None, compact: bool = False) -> np.ndarray:
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
            if max_pixels is not None and default_limit is not None:
                Image.MAX_IMAGE_PIXELS = max(default_limit, max_pixels)  # our cap is checked below
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = default_limit
    except FileNotFoundError as exc:
        raise ImageError(path, "file not found") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(
            path, f"{exc} (raise PIL.Image.MAX_IMAGE_PIXELS to read it)"
        ) from exc
    except Exception as exc:
        raise ImageError(path, _describe_open_failure(path, exc)) from exc
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageError(
                path,
                f"image is {width}x{height} = {width * height:,} pixels, over the cap of "
                f"{max_pixels:,} pixels (max_pixels; `reloc localize --max-pixels`)",
            )
        try:
            image.load()
            if _is_wide_colour_png(path, image):
                return _decode_wide_png(path, image.getexif().get(_EXIF_ORIENTATION, 1))
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            return _orient(_pil_to_array(image, compact), orientation)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(path, f"cannot decode: {exc}") from exc


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
    return _orient(pixels.astype(np.float32) / scale, orientation)


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
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
