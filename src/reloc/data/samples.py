"""One sample of a dataset on disk (:class:`SampleRef`) and the error of a dataset that cannot be used.

The record every dataset reader returns: :mod:`reloc.data.catalog` (our formats) and
:mod:`reloc.data.layouts` (the public benchmarks as distributed) both build it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reloc.data.io import MaskRule

MASK_SUFFIXES = ("_gt", "-gt", "_mask", "-mask", "_edgemask", "_groundtruth")
"""Mask stem endings recognised in ``Gt/`` folders, compared case-insensitively."""
SOURCE_SEPARATOR = "+"
SPLITS = ("train", "val", "test")
"""Split names, as :func:`reloc.data.catalog.split_by_source` returns them and ``reloc synth`` records them."""


class DatasetError(ValueError):
    """A dataset that cannot be used: missing, empty, malformed or wholly unreadable."""


@dataclass(frozen=True)
class SampleRef:
    """Where one sample lives.

    Attributes:
        image: the image file.
        mask: the mask file, or ``None`` for an authentic image (all-zero mask).
        source: id of the source photo, used to keep splits disjoint; defaults to the
            image stem. A sample made from several photos names them all joined by
            :data:`SOURCE_SEPARATOR` (``"a+b"``), and :func:`reloc.data.catalog.split_by_source` keeps
            every photo named together in one split.
        split: a recorded split (``"train"``, ``"val"``, ``"test"``) or ``None``.
        mask_rule: how the mask's pixels mark tampering (channel, threshold, polarity);
            the default is white (luminance >= 128) = tampered.
    """

    image: Path
    mask: Path | None = None
    source: str = ""
    split: str | None = None
    mask_rule: MaskRule = MaskRule()  # noqa: RUF009 (frozen, immutable)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", Path(self.image))
        if self.mask is not None:
            object.__setattr__(self, "mask", Path(self.mask))
        if not self.source:
            object.__setattr__(self, "source", self.image.stem)
        if self.split is not None and self.split not in SPLITS:
            raise DatasetError(f"{self.image}: split must be one of {SPLITS}, got {self.split!r}")

    @property
    def name(self) -> str:
        """The sample name used in records: the image file stem."""
        return self.image.stem

    @property
    def sources(self) -> tuple[str, ...]:
        """The source photo ids named by :attr:`source`."""
        return tuple(self.source.split(SOURCE_SEPARATOR))
