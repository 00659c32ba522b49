"""``reloc data inspect``: what a dataset folder holds, as reloc will read it.

Every image and mask is decoded once, so truncated files, masks of another size than
their image and masks of the wrong polarity show up before a run, not in the middle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reloc.data.catalog import _MANIFEST, DatasetError, SampleRef, load_dataset
from reloc.data.io import ImageError, read_image, read_mask_values
from reloc.data.layouts import LAYOUTS, layout_by_name

POLARITY_SUSPECT = 0.5
"""A mean tampered share above this suggests the masks' polarity is the other way round."""


@dataclass
class Inspection:
    """The findings of :func:`inspect_dataset`.

    Attributes:
        path: the dataset.
        layout: the format or public layout detected (``tp-gt``, ``benco-json``,
            ``reloc-synth``, ``casia2``, ``coverage``, ...).
        mask_rules: the mask conventions met (descriptions, e.g. "luminance >= 128 is tampered").
        tampered, authentic: sample counts as listed.
        missing: tampered images the layout lists without a mask (left out).
        unreadable: ``(file, reason)`` for images or masks that cannot be decoded.
        missized: ``(mask, "HxW", image "HxW")`` for masks of another size than their image.
        histogram: 256 counts of the masks' 8-bit values (channel or luminance, before
            binarisation), over every readable mask.
        tampered_share: mean over readable masks of the share of pixels marked tampered.
        usable: the samples that read cleanly.
    """

    path: Path
    layout: str
    mask_rules: list[str]
    tampered: int = 0
    authentic: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    missized: list[tuple[str, str, str]] = field(default_factory=list)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    tampered_share: float = float("nan")
    usable: list[SampleRef] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready summary (the histogram as ``{value: count}`` of the values met)."""
        return {
            "path": str(self.path),
            "layout": self.layout,
            "mask_rules": self.mask_rules,
            "tampered": self.tampered,
            "authentic": self.authentic,
            "usable": len(self.usable),
            "missing": self.missing,
            "unreadable": [{"file": f, "reason": r} for f, r in self.unreadable],
            "missized": [{"mask": m, "mask_size": a, "image_size": b} for m, a, b in self.missized],
            "histogram": {int(v): int(c) for v, c in enumerate(self.histogram) if c},
            "tampered_share": None if np.isnan(self.tampered_share) else round(float(self.tampered_share), 6),
        }

    def report(self) -> str:
        """Human-readable lines for the command line."""
        lines = [
            f"dataset: {self.path}",
            f"layout: {self.layout}",
            f"masks: {'; '.join(self.mask_rules) or 'none (all authentic)'}",
            f"samples: {self.tampered} tampered, {self.authentic} authentic; {len(self.usable)} usable",
        ]
        total = int(self.histogram.sum())
        if total:
            values = np.flatnonzero(self.histogram)
            extremes = {0: "0", 255: "255"}
            parts = [f"{extremes[v]}: {self.histogram[v] / total:.1%}" for v in (0, 255) if self.histogram[v]]
            between = int(self.histogram[1:255].sum())
            parts.append(f"1-254: {between / total:.1%}")
            lines.append(f"mask values ({len(values)} distinct): " + ", ".join(parts))
            lines.append(f"tampered share per mask (mean): {self.tampered_share:.1%}")
            if self.tampered_share > POLARITY_SUSPECT:
                lines.append(
                    "  note: most mask pixels count as tampered; is the polarity inverted? (see the docs' public layouts)"
                )
        for title, items in (
            ("without a mask", self.missing),
            ("unreadable", [f"{f}: {r}" for f, r in self.unreadable]),
            ("mask of another size", [f"{m}: mask {a}, image {b}" for m, a, b in self.missized]),
        ):
            lines.append(f"{title}: {len(items)}")
            lines += [f"  {item}" for item in items[:20]]
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more")
        return "\n".join(lines)


def detect_format(path: Path) -> str:
    """The name of the format :func:`load_dataset` reads ``path`` as."""
    from reloc.data.catalog import _public_layout, _subfolders

    if path.is_file():
        return "benco-json"
    if (path / _MANIFEST).is_file():
        return "reloc-synth" if (path / "provenance.jsonl").is_file() else "benco-json"
    if path.is_dir() and {"tp", "gt"} <= set(_subfolders(path)):
        return "tp-gt"
    layout = _public_layout(path) if path.is_dir() else None
    return layout.name if layout else "unknown"


def inspect_dataset(path: str | os.PathLike, *, progress: bool = True) -> Inspection:
    """Detect a dataset's layout and decode every file once.

    Args:
        path: anything :func:`reloc.data.catalog.load_dataset` reads.
        progress: tqdm bar.

    Returns:
        the :class:`Inspection`.

    Raises:
        DatasetError: not a dataset, or an empty one.
    """
    path = Path(path)
    layout = detect_format(path)
    if layout in {known.name for known in LAYOUTS}:
        listing = layout_by_name(layout).read(path)
        refs, missing = listing.refs, listing.missing
        if not refs:
            raise DatasetError(f"{path}: the dataset is empty")
    else:
        refs, missing = load_dataset(path), []
    rules = sorted({ref.mask_rule for ref in refs if ref.mask is not None}, key=str)
    found = Inspection(path, layout, [rule.describe() for rule in rules], missing=missing)
    shares = []
    for ref in tqdm(refs, desc="inspect", disable=not progress, leave=False):
        found.tampered += ref.mask is not None
        found.authentic += ref.mask is None
        try:
            image = read_image(ref.image)
        except ImageError as exc:
            found.unreadable.append((exc.path, exc.reason))
            continue
        if ref.mask is None:
            found.usable.append(ref)
            continue
        try:
            values = read_mask_values(ref.mask, channel=ref.mask_rule.channel)
        except ImageError as exc:
            found.unreadable.append((exc.path, exc.reason))
            continue
        found.histogram += np.bincount(values.ravel(), minlength=256)
        shares.append(float(ref.mask_rule.binarise(values).mean()))
        if values.shape != image.shape[:2]:
            found.missized.append((str(ref.mask), _size(values.shape), _size(image.shape)))
        else:
            found.usable.append(ref)
    found.tampered_share = float(np.mean(shares)) if shares else float("nan")
    if not found.usable:
        raise DatasetError(f"{path}: none of the {len(refs)} samples reads cleanly")
    return found


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"
