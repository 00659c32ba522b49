"""Named robustness grids: lists of distortion specs (:mod:`reloc.data.distortions`) with strengths.

A grid is one more use of the distortion specs, not a second mechanism: ``reloc eval
--grid NAME`` evaluates every situation at every spec of the grid (one record each,
stamped with the grid, its family and the strength), and ``reloc report`` draws a
severity curve per family (F1 and AUC against strength, one line per situation).
"""

from __future__ import annotations

from dataclasses import dataclass

from reloc.data.distortions import parse_distortion


@dataclass(frozen=True)
class GridPoint:
    """One distortion of a grid.

    Attributes:
        family: the curve it belongs to (``jpeg``, ``blur``, ``shifted``, ...).
        strength: the x value of the curve (a quality, kernel size, variance, factor, side).
        spec: the distortion spec evaluated (``"none"`` for the undistorted point).
    """

    family: str
    strength: float
    spec: str


@dataclass(frozen=True)
class Grid:
    """A named list of :class:`GridPoint`.

    Attributes:
        name: e.g. ``benco``.
        description: what it reproduces (for the docs and the report).
        axis: x-axis label of each family.
        points: the distortions, in evaluation order.
    """

    name: str
    description: str
    axis: dict[str, str]
    points: tuple[GridPoint, ...]

    @property
    def specs(self) -> list[str]:
        """The distinct specs, in order."""
        return list(dict.fromkeys(point.spec for point in self.points))

    def families(self) -> list[str]:
        return list(dict.fromkeys(point.family for point in self.points))


def _points(family: str, spec: str, strengths) -> tuple[GridPoint, ...]:
    """``spec`` is a format string with ``{}`` for the strength; specs are kept in canonical form."""
    return tuple(GridPoint(family, float(value), str(parse_distortion(spec.format(value)))) for value in strengths)


_QUALITIES = range(50, 101, 10)
_BENCO_SIZES = range(3, 24, 4)  # 3, 7, ..., 23

GRIDS: dict[str, Grid] = {
    grid.name: grid
    for grid in (
        Grid("jpeg", "JPEG quality 50-100, step 10", {"jpeg": "JPEG quality"}, _points("jpeg", "jpeg:{}", _QUALITIES)),
        Grid(
            "benco",
            "IMDL-BenCo's test_robust.py: Gaussian blur kernel 0 (none) and 3-23, Gaussian noise variance 3-23, JPEG 50-100",
            {"blur": "Gaussian blur kernel (px)", "noise": "Gaussian noise variance", "jpeg": "JPEG quality"},
            (GridPoint("blur", 0.0, "none"),)
            + _points("blur", "gaussblur:{}", _BENCO_SIZES)
            + _points("noise", "gaussnoise:{}", _BENCO_SIZES)
            + _points("jpeg", "jpeg:{}", _QUALITIES),
        ),
        Grid("resize", "resize by 0.25-1.0 and back", {"resize": "scale factor"},
             _points("resize", "resize:{}", (0.25, 0.5, 0.75, 1.0))),
        Grid("webp", "lossy WebP quality 50-100, step 10", {"webp": "WebP quality"}, _points("webp", "webp:{}", _QUALITIES)),
        Grid(
            "double-jpeg",
            "JPEG at quality 90, then a second JPEG at 50-100 on the same 8x8 grid (aligned) or a grid shifted by 1-7 px",
            {"aligned": "second JPEG quality", "shifted": "second JPEG quality"},
            _points("aligned", "jpeg:90,jpeg:{}", _QUALITIES) + _points("shifted", "jpeg:90,jpegshift:{}", _QUALITIES),
        ),
        Grid(
            "social",
            "social-network upload approximation: long side capped at 2048 (and, harsher, 1024, 512) px, JPEG 70-85",
            {"social": "long side cap (px)"},
            _points("social", "social:{}", (2048, 1024, 512)),
        ),
    )
}  # fmt: skip
"""The built-in grids by name."""


def get_grid(name: str) -> Grid:
    """The grid called ``name``; ValueError listing the grids otherwise."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; built-in grids: {', '.join(GRIDS)}")
    return GRIDS[name]
