"""Error level analysis (Krawetz, "A Picture's Worth", 2007): re-save the image as JPEG and
look at how much each part changes.

A part that has already been through JPEG at the re-save's quality changes little; a part
with another history (pasted from an uncompressed or differently compressed source,
retouched after the last save) changes more. The re-save quality is the file's own
(estimated from its quantisation tables) when it is a JPEG, else :data:`DEFAULT_QUALITY`.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from reloc.data.distortions import jpeg_quality_from_file
from reloc.data.io import ImageError
from reloc.evidence.base import Evidence

DEFAULT_QUALITY = 90
"""Re-save quality for files that are not JPEGs (FotoForensics' and Forensically's default)."""

SATURATION = 8.0
"""Mean absolute error (8-bit levels, the largest channel, over an 8x8 neighbourhood) shown as 1."""

BAND_ROWS = 1024
"""Rows re-saved at a time (a multiple of 16, JPEG's largest block with 4:2:0 chroma, so the
bands keep the whole image's block grid)."""


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB or ``(H, W)`` grey through OpenCV's libjpeg at ``quality`` and back (same shape)."""
    colour = image.ndim == 3
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if colour else image
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a JPEG at quality {quality}")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB) if colour else decoded


def file_quality(path: str | os.PathLike | None) -> int | None:
    """The IJG quality of a JPEG file (from its luminance table), ``None`` for other files or no file."""
    if path is None:
        return None
    try:
        return jpeg_quality_from_file(path)
    except ImageError:
        return None


def error_levels(image: np.ndarray, path: str | os.PathLike | None = None, quality: int | None = None) -> Evidence:
    """Error level analysis map.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        path: its file; a JPEG's own quality is the re-save quality.
        quality: the re-save quality, overriding the file's.

    Returns:
        ``map``: float32 ``(H, W)``, the largest channel's absolute change, averaged over
        8x8 pixels, divided by :data:`SATURATION` and clipped to [0, 1]. ``figures``:
        ``quality``, ``quality_from`` (``"file"``, ``"default"`` or ``"argument"``), and
        ``mean_error`` / ``p99_error`` in 8-bit levels.
    """
    own = file_quality(path)
    source = "argument" if quality is not None else "file" if own is not None else "default"
    quality = quality if quality is not None else own if own is not None else DEFAULT_QUALITY
    height, width = image.shape[:2]
    levels = np.empty((height, width), dtype=np.uint8)  # the largest channel's absolute change
    for top in range(0, height, BAND_ROWS):
        band = image[top : top + BAND_ROWS]
        red, green, blue = cv2.split(cv2.absdiff(band, jpeg_roundtrip(band, quality)))
        levels[top : top + BAND_ROWS] = cv2.max(cv2.max(red, green), blue)
    scores = cv2.boxFilter(levels, cv2.CV_32F, (8, 8), normalize=True, borderType=cv2.BORDER_REFLECT)
    sample = scores[:: max(1, height // 512)]
    mean_error, p99_error = float(scores.mean()), float(np.percentile(sample, 99))
    scores *= np.float32(1 / SATURATION)
    np.minimum(scores, np.float32(1.0), out=scores)
    note = (
        f"change after re-saving at JPEG quality {quality} ({source}); bright = more change than "
        f"{SATURATION:g} levels: a different compression history or an edit after the last save"
    )
    figures = {"quality": int(quality), "quality_from": source, "mean_error": round(mean_error, 3),
               "p99_error": round(p99_error, 3)}  # fmt: skip
    return Evidence("ela", scores, note, figures)
