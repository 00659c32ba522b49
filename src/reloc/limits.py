"""Bounds on what one input may cost: pixels that fit the machine, decompression bombs, option sizes.

One home for the limits that keep a hostile or mistaken input from exhausting memory:

- :func:`fitting_pixels`: a default pixel cap from the machine's physical memory.
- :func:`check_expansion`: refuse, from the header alone, a large image whose file is tiny
  for its pixel count (a decompression bomb: a one-colour 7000x7000 PNG is 143 KB).
- :func:`check_side`: an upper bound on a size option (``synth --size``, ``export --height``).
"""

from __future__ import annotations

import math
import os

MAX_EXPANSION = 400.0
"""Bytes of decoded RGB pixels per byte of file above which a large image is refused before
decoding. Photographs decode to 3-20 bytes per file byte, flat screenshots to about 100;
deflate (PNG) cannot exceed about 1030, so one-colour bombs sit far above."""

EXPANSION_MIN_PIXELS = 16_000_000
"""Images up to this many pixels are never refused for their expansion (they fit in memory anyway)."""

MAX_SIDE = 4096
"""Largest side accepted by size options that make, crop or trace whole images (``synth
--size``, ``data.crop``, ``export --height/--width``): a network's activations on one
4096^2 image already take several GB."""

MAX_PARAMETERS = 1_000_000_000
"""Largest network ``reloc convert`` builds (4 GB of float32 weights); the published ones
have at most about 150 M."""


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def fitting_pixels(ceiling: int, bytes_per_pixel: float, share: float = 0.5) -> int:
    """The pixel cap that fits this machine: ``ceiling``, lowered so that ``bytes_per_pixel``
    times the cap stays within ``share`` of the physical memory (``ceiling`` where unknown)."""
    memory = physical_memory()
    if memory is None:
        return ceiling
    return max(1_000_000, min(ceiling, int(memory * share / bytes_per_pixel)))


def expansion_problem(width: int, height: int, file_bytes: int, bound: float = MAX_EXPANSION) -> str | None:
    """Why a ``width x height`` image stored in ``file_bytes`` is refused before decoding, or ``None``.

    An image over :data:`EXPANSION_MIN_PIXELS` whose decoded RGB pixels (3 bytes each) would
    be more than ``bound`` times its file is refused.
    """
    pixels = width * height
    if pixels <= EXPANSION_MIN_PIXELS:
        return None
    ratio = 3 * pixels / max(1, file_bytes)
    if ratio <= bound:
        return None
    return (
        f"a {file_bytes:,}-byte file declares {width}x{height} = {pixels:,} pixels ({ratio:,.0f} bytes of "
        f"pixels per byte of file, over the bound of {bound:g}): refused before decoding as a likely "
        "decompression bomb"
    )


def check_side(value: int, what: str, *, low: int = 1, high: int = MAX_SIDE) -> int:
    """``value`` if ``low <= value <= high``, else :class:`ValueError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return value


def finite_positive(value: float, what: str, *, high: float = math.inf) -> float:
    """``value`` if it is a finite number above 0 and at most ``high``, else :class:`ValueError`."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= high):
        raise ValueError(
            f"{what} must be a finite number above 0{'' if math.isinf(high) else f' and at most {high:g}'}, got {value!r}"
        )
    return float(value)
