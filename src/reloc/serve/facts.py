"""What an analyst checks first about an uploaded file, before any network runs.

>>> import io
>>> from PIL import Image
>>> upload = io.BytesIO()
>>> Image.new("RGB", (32, 16), "white").save(upload, "JPEG", quality=90)
>>> facts = file_facts(upload.getvalue())
>>> facts["format"], facts["width"], facts["height"], facts["jpeg_quality"], facts["jpeg_standard_tables"]
('JPEG', 32, 16, 90, True)

Everything is read with Pillow from the bytes as uploaded (the SHA-256 is of those exact
bytes); nothing is decoded beyond the header, the quantisation tables and the EXIF block.
Multi-frame files (animated GIF / PNG / WebP, multi-page TIFF) are marked: only their
first frame is analysed.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from reloc.data.distortions import jpeg_quality_from_file
from reloc.data.io import ImageError, frame_count

EXIF_TAGS = ("Make", "Model", "Software", "DateTime", "DateTimeOriginal", "DateTimeDigitized", "Orientation")
"""The EXIF tags summarised, in display order (``Software`` is the one editors leave)."""

_ORIENTATIONS = {
    1: "normal",
    2: "mirrored",
    3: "rotated 180",
    4: "mirrored vertically",
    5: "mirrored, rotated 90 CCW",
    6: "rotated 90 CW",
    7: "mirrored, rotated 90 CW",
    8: "rotated 90 CCW",
}


class UnreadableFile(ValueError):
    """Pillow cannot identify the bytes as an image (an empty file, text, an unknown format)."""


def file_facts(data: bytes | str | os.PathLike) -> dict[str, Any]:
    """The facts of one uploaded file.

    Args:
        data: the file's bytes, or the file.

    Returns:
        ``sha256`` (hex of the bytes), ``bytes``, ``format`` (Pillow's name, e.g. ``JPEG``),
        ``mode``, ``width``, ``height`` (as stored, before the EXIF orientation), ``frames``
        (1, or the frames / pages of an animated or multi-page file, of which only the first
        is analysed), ``jpeg_quality`` (estimated from the luminance quantisation table;
        ``None`` for other formats), ``jpeg_standard_tables`` (whether every quantisation
        table is exactly libjpeg's at that quality; ``None`` for other formats),
        ``jpeg_tables`` (how many) and ``exif``, ``{tag: text}`` for the tags of
        :data:`EXIF_TAGS` present in the file.

    Raises:
        UnreadableFile: the bytes are empty or not an image Pillow can identify.
        PIL.Image.DecompressionBombError: the header claims more pixels than Pillow's hard limit.
    """
    if isinstance(data, bytes):
        facts: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        source: Any = io.BytesIO(data)
    else:
        source = Path(data)
        with open(source, "rb") as handle:
            facts = {"sha256": hashlib.file_digest(handle, "sha256").hexdigest(), "bytes": source.stat().st_size}
    if not facts["bytes"]:
        raise UnreadableFile("empty file")
    try:
        with warnings.catch_warnings():  # the caller applies its own pixel limit to width x height
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError:
        raise
    except Exception as exc:
        raise UnreadableFile("not an image in a known format (unidentified or corrupt header)") from exc
    with image:
        facts.update(format=image.format, mode=image.mode, width=image.width, height=image.height)
        facts["frames"] = frame_count(image)
        tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
        facts["exif"] = _exif_summary(image)
    facts.update(jpeg_quality=None, jpeg_standard_tables=None, jpeg_tables=None)
    if tables:
        try:
            quality = jpeg_quality_from_file(data if isinstance(data, bytes) else source)
        except ImageError:
            quality = None
        facts.update(
            jpeg_quality=quality,
            jpeg_tables=len(tables),
            jpeg_standard_tables=None if quality is None else _is_libjpeg(tables, quality),
        )
    return facts


def _exif_summary(image: Image.Image) -> dict[str, str]:
    """``{tag: text}`` of the :data:`EXIF_TAGS` present (main IFD and the Exif sub-IFD).

    A PNG's EXIF stored after its pixel data is not read: Pillow would decode every pixel to
    reach it (a one-colour 7000x7000 PNG of 150 KB would cost 200 MB per upload)."""
    if image.format == "PNG" and "exif" not in image.info:
        return {}
    try:
        exif = image.getexif()
        values = dict(exif)
        values.update(exif.get_ifd(ExifTags.IFD.Exif))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block is no reason to refuse the file
        return {}
    summary = {}
    for tag in EXIF_TAGS:
        value = values.get(ExifTags.Base[tag].value)
        if value is None:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        text = str(value).strip("\x00 ").strip()
        if tag == "Orientation":
            text = f"{text} ({_ORIENTATIONS.get(value, 'unknown')})"
        if text:
            summary[tag] = text[:200]
    return summary


def _is_libjpeg(tables: dict[int, Any], quality: int) -> bool:
    """Whether ``tables`` equal, table for table, those libjpeg writes at ``quality``."""
    reference = _libjpeg_tables(quality)
    return all(index in reference and list(table) == reference[index] for index, table in tables.items())


@lru_cache(maxsize=100)
def _libjpeg_tables(quality: int) -> dict[int, list[int]]:
    """The quantisation tables Pillow's libjpeg writes at ``quality`` (luminance 0, chrominance 1)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as image:
        return {index: list(table) for index, table in image.quantization.items()}
