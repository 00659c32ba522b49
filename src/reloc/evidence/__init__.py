"""Classical evidence beside the learned map: maps that need no training data.

>>> from reloc.evidence import analyse
>>> for result in analyse(read_image(path, compact=True), path, ["ela", "clones"]):
...     print(result.method, result.note)

Each method (:data:`METHODS`) maps an image to an :class:`Evidence`: a float32 ``(H, W)`` map
in [0, 1] (high = suspicious), a one-sentence note and the figures behind it, or no map and
the reason when it does not apply (a JPEG method on a PNG, an image too small).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from reloc.data.io import write_png
from reloc.evidence.base import Evidence, as_rgb8, not_applicable
from reloc.evidence.clones import copy_move
from reloc.evidence.dq import double_quantisation
from reloc.evidence.ela import error_levels
from reloc.evidence.jpeg import block_grid, ghosts
from reloc.evidence.noise import noise_levels

Method = Callable[..., Evidence]

METHODS: dict[str, Method] = {
    "ela": error_levels,
    "noise": noise_levels,
    "ghost": ghosts,
    "dq": double_quantisation,
    "blocks": block_grid,
    "clones": copy_move,
}
"""The evidence methods by name: ``method(image uint8 (H, W, 3), path=None) -> Evidence``."""

NEEDS: dict[str, tuple[str, str]] = {"clones": ("scipy", "figures")}
"""The optional package (and the extra of ``pyproject.toml`` that installs it) a method needs."""

DQ_WEIGHT = 0.75
"""The double-quantisation map's weight where it applies: ``(1 - w) learned + w dq``
(chosen on casia1-dev among 0.25 / 0.5 / 0.75 / 0.9 and a maximum by ``benchmarks/fusion.py``)."""

FUSIONS = {
    "none": "the learned map",
    "clones": "learned map raised where the copy-move matcher matched regions",
    "dq": f"learned map averaged with the double-quantisation map (weight {DQ_WEIGHT}) where it applies",
    "clones+dq": f"learned map averaged with the double-quantisation map (weight {DQ_WEIGHT}) where it applies, "
    "raised where the copy-move matcher matched regions",
}
"""How a learned map may be fused with evidence (:func:`fuse`), and what the result shows."""

FUSION_METHODS: dict[str, tuple[str, ...]] = {
    "none": (),
    "clones": ("clones",),
    "dq": ("dq",),
    "clones+dq": ("dq", "clones"),
}
"""The evidence methods each fusion runs."""

MAX_PIXELS = 100_000_000
"""Images over this many pixels get no evidence (the JPEG methods hold several float32 copies)."""


def parse_methods(text: str) -> list[str]:
    """``"ela,clones"`` -> ``["ela", "clones"]`` (spaces ignored, repeats dropped, ``""`` -> ``[]``).

    Raises:
        ValueError: an unknown name (the message lists the known ones), or a method whose
            optional package is not installed (the message names the extra that installs it).
    """
    names = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown evidence method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    for name in names:
        package, extra = NEEDS.get(name, (None, None))
        if package is not None and importlib.util.find_spec(package) is None:
            raise ValueError(f"{name} needs {package}, which is not installed: pip install 'reloc[{extra}]'")
    return names


def analyse(image: np.ndarray, path: str | os.PathLike | None, methods: Sequence[str]) -> list[Evidence]:
    """Run ``methods`` on one image.

    Args:
        image: the decoded image: uint8 ``(H, W, 3)`` RGB as :func:`reloc.data.io.read_image`
            gives with ``compact=True``; grey, RGBA, 16-bit and float images are converted
            to it (the note says so).
        path: its file (the JPEG methods read its quantisation tables), or ``None``.
        methods: names from :data:`METHODS`.

    Returns:
        One :class:`Evidence` per method, in order, each with ``figures["seconds"]``.
    """
    pixels, converted = as_rgb8(image)
    results = []
    for name in methods:
        started = time.perf_counter()
        if pixels is None:
            result = not_applicable(name, converted)
        elif pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
            result = not_applicable(name, f"the image is over {MAX_PIXELS / 1e6:g} megapixels; crop the region")
        else:
            result = METHODS[name](pixels, path)
            if converted:
                result.note += f" ({converted})"
        result.figures["seconds"] = round(time.perf_counter() - started, 3)
        results.append(result)
    return results


def fuse(learned: np.ndarray, results: Sequence[Evidence], fusion: str, dq_weight: float = DQ_WEIGHT) -> np.ndarray:
    """The map a fusion shows: the learned map, averaged with the double-quantisation map where
    that applies (``dq``: ``(1 - w) learned + w dq``), then raised to
    the copy-move matcher's map where it matched regions (``clones``: the maximum).

    Args:
        learned: float32 ``(H, W)`` probabilities.
        results: the evidence run on the same pixels (:func:`analyse`): it holds the result of
            each method of ``FUSION_METHODS[fusion]``; one that gave no map is left out of the
            fusion (the learned map stands there).
        fusion: a key of :data:`FUSIONS`.
        dq_weight: ``w`` (``benchmarks/fusion.py`` tries others).

    Returns:
        float32 ``(H, W)``; ``learned`` itself when no method of the fusion gave a map.

    Raises:
        ValueError: an unknown fusion, a method of the fusion missing from ``results``, or a
            map of another size.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    found = {result.method: result for result in results}
    missing = [method for method in FUSION_METHODS[fusion] if method not in found]
    if missing:
        raise ValueError(f"fusion {fusion!r} needs the result of {', '.join(missing)}")
    shown = learned
    for method in FUSION_METHODS[fusion]:
        evidence = found[method].map
        if evidence is None:
            continue
        if evidence.shape != np.shape(learned):
            raise ValueError(f"the {method} map is {evidence.shape}, the learned map {np.shape(learned)}")
        if method == "dq":
            shown = ((1 - dq_weight) * shown + dq_weight * evidence).astype(np.float32)
        else:
            shown = np.maximum(shown, evidence)
    return shown


def map_name(stem: str, method: str) -> str:
    """The PNG file name of a method's map for the image ``stem``: ``<stem>_evidence-<method>.png``."""
    return f"{stem}_evidence-{method}.png"


def save_maps(
    results: Sequence[Evidence],
    folder: Path,
    stem: str,
    render: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, dict[str, object]]:
    """Write each applicable map as a PNG, never replacing a file.

    Args:
        results: what :func:`analyse` returned. folder: where to write. stem: the image's output stem.
        render: map float32 ``(H, W)`` -> the pixels to write (e.g. :func:`reloc.visualize.heatmap`);
            ``None``: the map itself as 8-bit grey, ``rint(255 * map)``.

    Returns:
        The JSON records by method: :meth:`Evidence.record` plus ``map``, the PNG's name (``None``
        without a map), and ``reliability`` (:func:`reliability_line`).
    """
    records = {}
    for result in results:
        name = map_name(stem, result.method) if result.applicable else None
        if name is not None:
            write_png(folder / name, result.map if render is None else render(result.map), overwrite=False)
        records[result.method] = {**result.record(), "map": name, "reliability": reliability_line(result.method)}
    return records


RELIABILITY_FILE = "reliability.json"
"""The package file with each method's measured reliability (written by ``benchmarks/evidence.py``)."""


@lru_cache(maxsize=1)
def reliability() -> dict[str, dict[str, object]]:
    """Each method's figures on casia1-dev as ``benchmarks/evidence.py`` measured them (``{}`` if never measured)."""
    file = resources.files(__name__) / RELIABILITY_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def reliability_line(method: str) -> str:
    """One line on how reliable ``method`` measured, e.g. ``"casia1-dev, per image: splices F1 0.23 ..."``."""
    figures = reliability().get(method)
    if not figures:
        return "not measured"
    parts = [
        f"{kind}s F1 {row['f1']:.2f} at 0.5 ({row['f1_best']:.2f} at the best cut), AUC {row['auc']:.2f}"
        for kind, row in figures["tampered"].items()
    ]
    alarms = figures["false_alarm_share"]
    return f"{figures['dataset']}, per image: {'; '.join(parts)}; {alarms:.0%} of authentic images flagged"


__all__ = [
    "DQ_WEIGHT",
    "FUSIONS",
    "FUSION_METHODS",
    "METHODS",
    "Evidence",
    "analyse",
    "fuse",
    "map_name",
    "parse_methods",
    "reliability_line",
    "save_maps",
]
