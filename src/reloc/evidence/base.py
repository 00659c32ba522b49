"""What every evidence method returns, and the input checks they share.

A method is a function ``method(image, path=None) -> Evidence``: ``image`` is the picture as
:func:`reloc.data.io.read_image` gives it (uint8 ``(H, W, 3)`` RGB; other layouts are
converted by :func:`as_rgb8`), ``path`` its file, which the JPEG methods read for the
quantisation tables. A case a method cannot judge (no JPEG file, an image too small, no
block grid) gives an :class:`Evidence` with ``map=None`` and the reason as its note, never
an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reloc.data.io import float_to_uint8


@dataclass
class Evidence:
    """One method's result on one image.

    Attributes:
        method: the registry name (``"ela"``, ``"noise"``, ...).
        map: float32 ``(H, W)`` in [0, 1], high where the method sees tampering; ``None``
            when the method does not apply to this image.
        note: one sentence: what the map shows here, or why it does not apply.
        figures: JSON-ready numbers behind the map (the quality used, regions found, ...).
    """

    method: str
    map: np.ndarray | None
    note: str
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def applicable(self) -> bool:
        """Whether the method gave a map."""
        return self.map is not None

    def record(self) -> dict[str, object]:
        """The JSON record: method, applicable, note, figures."""
        return {"method": self.method, "applicable": self.applicable, "note": self.note, "figures": self.figures}


def not_applicable(method: str, reason: str, **figures: object) -> Evidence:
    """An :class:`Evidence` without a map: ``reason`` says why (e.g. "not a JPEG file")."""
    return Evidence(method, None, f"not applicable: {reason}", dict(figures))


def as_rgb8(image: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Any decoded image as uint8 ``(H, W, 3)`` RGB, and what was converted.

    Accepts grey ``(H, W)`` / ``(H, W, 1)``, RGB and RGBA (alpha dropped), as uint8, uint16
    (scaled to 8 bits by rounding, ``x / 257``) or floats in [0, 1].

    Returns:
        ``(pixels, note)``: ``note`` is ``""`` for uint8 RGB, else the conversion; ``pixels``
        is ``None`` (and ``note`` the reason) for an array that is no image (empty, other
        shapes or dtypes, NaN).
    """
    image = np.asarray(image)
    notes = []
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image, notes = np.repeat(image[..., None], 3, axis=2), ["grey converted to RGB"]
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        return None, f"not an image array (shape {image.shape})"
    if image.shape[2] == 4:
        image, notes = image[..., :3], notes + ["alpha channel dropped"]
    if image.dtype == np.uint16:
        image, notes = np.rint(image / 257.0).astype(np.uint8), notes + ["16-bit reduced to 8 bits"]
    elif np.issubdtype(image.dtype, np.floating):
        if np.isnan(image).any():
            return None, "the image holds NaN values"
        image, notes = float_to_uint8(image), notes + ["float image quantised to 8 bits"]
    elif image.dtype != np.uint8:
        return None, f"unsupported pixel type {image.dtype}"
    return np.ascontiguousarray(image), "; ".join(notes)
