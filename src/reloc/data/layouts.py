"""The public tampering benchmarks as they are distributed, recognised by their file names.

Each :class:`Layout` knows one benchmark's folder structure and naming signature, and
lists its samples as :class:`~reloc.data.samples.SampleRef` (image, mask or ``None`` for
an authentic image, the source photo when the names reveal it, and the mask's
:class:`~reloc.data.io.MaskRule`: which channel, threshold and polarity mark tampering).
:func:`reloc.data.catalog.load_dataset` tries them in :data:`LAYOUTS` order, so
``--dataset PATH`` works on the unpacked folder without renaming anything.

The conventions (folder names, mask names and mask polarity) follow the datasets' own
distributions and the readers of photoholmes (``src/photoholmes/datasets``) and
IMDL-BenCo; the "Public layouts" table of docs/research/datasets.md names the source of each.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reloc.data.io import IMAGE_SUFFIXES, MaskRule
from reloc.data.samples import MASK_SUFFIXES, DatasetError, SampleRef


@dataclass
class Listing:
    """What a layout reader found.

    Attributes:
        refs: tampered samples (sorted by file name), then authentic ones.
        missing: tampered image files (relative to the dataset folder) without a mask.
    """

    refs: list[SampleRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """One public benchmark's folder structure.

    Attributes:
        name: short id (``casia2``, ``coverage``, ...).
        title: the dataset's name.
        signature: the file-naming signature recognised, for messages and the docs.
        mask_rule: how its masks mark tampering.
        detect: ``folder -> bool``, cheap (lists a few folders, opens no image).
        read: ``folder -> Listing``.
    """

    name: str
    title: str
    signature: str
    mask_rule: MaskRule
    detect: Callable[[Path], bool]
    read: Callable[[Path], Listing]


def detect_layout(folder: str | Path) -> Layout | None:
    """The first layout of :data:`LAYOUTS` whose signature ``folder`` shows, else ``None``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return next((layout for layout in LAYOUTS if layout.detect(folder)), None)


def layout_by_name(name: str) -> Layout:
    """The layout called ``name``; ValueError listing the names otherwise."""
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise ValueError(f"unknown layout {name!r}; known: {', '.join(layout.name for layout in LAYOUTS)}")


# --- helpers -------------------------------------------------------------------------


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` (case-insensitive), or ``None``."""
    direct = folder / name
    if direct.is_dir():
        return direct
    lowered = name.lower()
    return next((c for c in sorted(folder.iterdir()) if c.is_dir() and c.name.lower() == lowered), None)


def _images(folder: Path | None, recursive: bool = False) -> list[Path]:
    """Visible image files of ``folder`` (optionally of all its sub-folders), sorted by path."""
    if folder is None or not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in candidates
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def _by_stem(files: list[Path], strip: tuple[str, ...] = ()) -> dict[str, Path]:
    """``{lower-case stem without one of the ``strip`` endings: file}`` (first file wins)."""
    found: dict[str, Path] = {}
    for path in files:
        stem = path.stem.lower()
        for ending in strip:
            if stem.endswith(ending) and len(stem) > len(ending):
                stem = stem[: -len(ending)]
                break
        found.setdefault(stem, path)
    return found


def _pair(
    root: Path,
    tampered: list[Path],
    masks: dict[str, Path],
    rule: MaskRule,
    key: Callable[[Path], str] = lambda path: path.stem.lower(),
    source: Callable[[Path], str] = lambda path: "",
) -> Listing:
    """Tampered images matched with ``masks[key(image)]``; unmatched ones are ``missing``."""
    listing = Listing()
    for image in tampered:
        mask = masks.get(key(image))
        if mask is None:
            listing.missing.append(_relative(image, root))
        else:
            listing.refs.append(SampleRef(image, mask, source(image), mask_rule=rule))
    return listing


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


# --- CASIA v1 and v2 -------------------------------------------------------------------

# Source-photo ids in CASIA names: v1 "pla0005" (Au_pla_0005), v2 "cha00063" (Au_cha_00063).
_CASIA_SOURCE = re.compile(r"^([a-z]{3})(\d{4,5})$")
CASIA_RULE = MaskRule()


def _casia_folders(root: Path) -> tuple[Path | None, Path | None]:
    return _child(root, "Tp"), _child(root, "Au")


def _detect_casia1(root: Path) -> bool:
    tp, _ = _casia_folders(root)
    return tp is not None and (_child(tp, "Sp") is not None or _child(tp, "CM") is not None)


def _detect_casia2(root: Path) -> bool:
    tp, au = _casia_folders(root)
    if tp is None or au is None or _detect_casia1(root):
        return False
    return any(path.name.startswith("Tp_") for path in _images(tp))


def _casia_sources(image: Path) -> str:
    """The Au photos a CASIA name cites (``Sp_D_CND_A_pla0005_pla0023_0281`` -> both)."""
    photos = []
    for token in image.stem.split("_"):
        match = _CASIA_SOURCE.match(token)
        if match:
            photos.append(f"{match.group(1)}{int(match.group(2))}")
    return "+".join(sorted(set(photos))) or image.stem


def _casia_authentic_source(image: Path) -> str:
    """``Au_pla_0005`` / ``Au_cha_00063`` -> ``pla5`` / ``cha63``, the key used by tampered names."""
    parts = image.stem.split("_")
    if len(parts) >= 3 and parts[1].isalpha() and parts[2].isdigit():
        return f"{parts[1].lower()}{int(parts[2])}"
    return image.stem


def _read_casia(root: Path) -> Listing:
    """CASIA: ``Tp/`` (v1: ``Tp/Sp``, ``Tp/CM``), ``Au/``, masks ``*_gt.png`` in any other folder."""
    tp, au = _casia_folders(root)
    skip = {tp, au}
    masks: dict[str, Path] = {}
    for folder in sorted(c for c in root.iterdir() if c.is_dir() and c not in skip):
        for mask in _images(folder, recursive=True):
            if mask.stem.lower().endswith("_gt"):
                masks.setdefault(mask.stem[:-3].lower(), mask)
    listing = _pair(root, _images(tp, recursive=True), masks, CASIA_RULE, source=_casia_sources)
    listing.refs += [SampleRef(image, source=_casia_authentic_source(image)) for image in _images(au, recursive=True)]
    return listing


# --- Columbia uncompressed --------------------------------------------------------------

COLUMBIA_RULE = MaskRule(channel=1)
"""Columbia's edge masks are colour JPEGs: the spliced region (from the second camera) is
green, the host region red; green >= 128 is tampered (photoholmes' ``TAMPERED_COLOR_INDEX = 1``,
with the threshold at mid-range so JPEG ringing around the colours does not count)."""


def _detect_columbia(root: Path) -> bool:
    return _child(root, "4cam_splc") is not None


def _read_columbia(root: Path) -> Listing:
    splc = _child(root, "4cam_splc")
    masks = _by_stem(_images(_child(splc, "edgemask")), strip=("_edgemask",))
    listing = _pair(root, _images(splc), masks, COLUMBIA_RULE)
    listing.refs += [SampleRef(image) for image in _images(_child(root, "4cam_auth"))]
    return listing


# --- COVERAGE ----------------------------------------------------------------------------

_COVERAGE_FORGED = re.compile(r"^(\d+)t$", re.IGNORECASE)
_COVERAGE_ORIGINAL = re.compile(r"^(\d+)$")


def _detect_coverage(root: Path) -> bool:
    image = _child(root, "image")
    if image is None or _child(root, "mask") is None:
        return False
    return any(_COVERAGE_FORGED.match(path.stem) for path in _images(image))


def _read_coverage(root: Path) -> Listing:
    """``image/{N}t.tif`` forged, ``image/{N}.tif`` original, ``mask/{N}forged.tif``; source N."""
    images = _images(_child(root, "image"))
    masks = {
        path.stem[: -len("forged")].lower(): path
        for path in _images(_child(root, "mask"))
        if path.stem.lower().endswith("forged")
    }
    forged = [path for path in images if _COVERAGE_FORGED.match(path.stem)]
    number = lambda path: _COVERAGE_FORGED.match(path.stem).group(1)  # noqa: E731 - a one-line key function
    listing = _pair(root, forged, masks, MaskRule(), key=number, source=lambda path: f"coverage{number(path)}")
    listing.refs += [
        SampleRef(path, source=f"coverage{path.stem}") for path in images if _COVERAGE_ORIGINAL.match(path.stem)
    ]
    return listing


# --- NIST Nimble 2016 ---------------------------------------------------------------------

NIST16_RULE = MaskRule(invert=True)
"""NIST16 reference masks are black (0) where the probe was manipulated, white elsewhere."""


def _nist16_tables(root: Path) -> list[Path]:
    reference = _child(root, "reference")
    if reference is None:
        return []
    tables = sorted(reference.glob("*/*-ref.csv"))
    manipulation = [table for table in tables if table.name.lower().endswith("-manipulation-ref.csv")]
    return manipulation or tables  # the manipulation table lists every probe


def _detect_nist16(root: Path) -> bool:
    return _child(root, "probe") is not None and bool(_nist16_tables(root))


def _read_nist16(root: Path) -> Listing:
    """Probes from ``reference/*/NC2016-*-ref.csv`` (``|``-separated; ``IsTarget`` Y = manipulated)."""
    listing, seen = Listing(), set()
    authentic = []
    for table in _nist16_tables(root):
        try:
            with table.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle, delimiter="|"))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"{table}: cannot read: {exc}") from exc
        needed = {"ProbeFileName", "ProbeMaskFileName", "IsTarget"}
        if rows and not needed <= set(rows[0]):
            raise DatasetError(f"{table}: expected |-separated columns {sorted(needed)}, got {sorted(rows[0])}")
        for row in rows:
            probe = row["ProbeFileName"].strip()
            if not probe or probe in seen:
                continue
            seen.add(probe)
            image = root / probe
            base = (row.get("BaseFileName") or "").strip()
            source = Path(base).stem if base else ""
            if row["IsTarget"].strip().upper() != "Y":
                authentic.append(SampleRef(image, source=source))
            elif mask := row["ProbeMaskFileName"].strip():
                listing.refs.append(SampleRef(image, root / mask, source, mask_rule=NIST16_RULE))
            else:
                listing.missing.append(probe)
    listing.refs.sort(key=lambda ref: ref.image.name)
    listing.refs += sorted(authentic, key=lambda ref: ref.image.name)
    return listing


# --- IMD2020 --------------------------------------------------------------------------------

_IMD_MASK = re.compile(r"^(.+_\d+)_mask$", re.IGNORECASE)
_IMD_ORIGINAL = re.compile(r"^.+_orig$", re.IGNORECASE)


def _detect_imd2020(root: Path) -> bool:
    folders = [root] + sorted(c for c in root.iterdir() if c.is_dir())
    return any(_IMD_MASK.match(path.stem) for folder in folders[:50] for path in _images(folder))


def _read_imd2020(root: Path) -> Listing:
    """Per post folder: ``{id}_orig.jpg``, tampered ``{id}_{n}.jpg|png``, masks ``{id}_{n}_mask.png``."""
    files = _images(root, recursive=True)
    masks = {m.group(1).lower(): path for path in files if (m := _IMD_MASK.match(path.stem))}
    tampered = [
        path
        for path in files
        if not _IMD_MASK.match(path.stem) and not _IMD_ORIGINAL.match(path.stem) and re.search(r"_\d+$", path.stem)
    ]
    post = lambda path: path.parent.name if path.parent != root else path.stem.rsplit("_", 1)[0]  # noqa: E731 - a one-line key function
    listing = _pair(root, tampered, masks, MaskRule(), source=post)
    listing.refs += [SampleRef(path, source=post(path)) for path in files if _IMD_ORIGINAL.match(path.stem)]
    return listing


# --- DEFACTO ----------------------------------------------------------------------------------

_DEFACTO_COCO = re.compile(r"^\d+_(\d+)$")


def _defacto_pairs(root: Path) -> list[tuple[Path, Path | None]]:
    """``(X_img/img, X_annotations/probe_mask)`` folder pairs (the mask folder may be absent)."""
    pairs = []
    for folder in sorted(c for c in root.iterdir() if c.is_dir() and c.name.lower().endswith("_img")):
        images = _child(folder, "img")
        if images is None:
            continue
        annotations = _child(root, folder.name[: -len("_img")] + "_annotations")
        pairs.append((images, _child(annotations, "probe_mask") if annotations else None))
    return pairs


def _detect_defacto(root: Path) -> bool:
    return any(masks is not None for _, masks in _defacto_pairs(root))


def _read_defacto(root: Path) -> Listing:
    """``*_img/img/*.tif`` with ``*_annotations/probe_mask/*``; source = the COCO id in the name."""
    listing = Listing()
    source = lambda path: f"coco{int(m.group(1))}" if (m := _DEFACTO_COCO.match(path.stem)) else ""  # noqa: E731 - a one-line key function
    for images, masks in _defacto_pairs(root):
        part = _pair(root, _images(images), _by_stem(_images(masks)), MaskRule(), source=source)
        listing.refs += part.refs
        listing.missing += part.missing
    return listing


# --- CocoGlide ---------------------------------------------------------------------------------


def _detect_cocoglide(root: Path) -> bool:
    return _child(root, "fake") is not None and _child(root, "mask") is not None


def _read_cocoglide(root: Path) -> Listing:
    """``fake/`` with ``mask/`` (same stem), ``real/`` authentic (same stem = same source)."""
    masks = _by_stem(_images(_child(root, "mask")), strip=MASK_SUFFIXES)
    listing = _pair(root, _images(_child(root, "fake")), masks, MaskRule())
    listing.refs += [SampleRef(path) for path in _images(_child(root, "real"))]
    return listing


# --- Korus realistic tampering -------------------------------------------------------------------

KORUS_RULE = MaskRule(threshold=11)
"""Korus' ground-truth maps have three levels; every non-black one (> 10) is tampered, as
photoholmes' ``TAMPERED_INTENSITY_THRESHOLD = 10``."""


def _korus_cameras(root: Path) -> list[Path]:
    candidates = [root] + sorted(c for c in root.iterdir() if c.is_dir())
    return [
        c for c in candidates if _child(c, "tampered-realistic") is not None and _child(c, "ground-truth") is not None
    ]


def _detect_korus(root: Path) -> bool:
    return bool(_korus_cameras(root))


def _read_korus(root: Path) -> Listing:
    """Per camera: ``tampered-realistic/*.TIF``, ``ground-truth/*.PNG`` (same stem), ``pristine/``."""
    listing, authentic = Listing(), []
    for camera in _korus_cameras(root):
        source = lambda path, camera=camera: f"{camera.name}/{path.stem}"  # noqa: E731 - a one-line key function
        masks = _by_stem(_images(_child(camera, "ground-truth")))
        part = _pair(root, _images(_child(camera, "tampered-realistic")), masks, KORUS_RULE, source=source)
        listing.refs += part.refs
        listing.missing += part.missing
        authentic += [SampleRef(path, source=source(path)) for path in _images(_child(camera, "pristine"))]
    listing.refs += authentic
    return listing


# --- DSO-1 -----------------------------------------------------------------------------------------

DSO1_RULE = MaskRule(invert=True)
"""DSO-1's masks are black (0) on the spliced region (photoholmes: ``mask == 0``)."""


def _dso1_folders(root: Path) -> tuple[Path | None, Path | None]:
    return _child(root, "DSO-1"), _child(root, "DSO-1-Fake-Images-Masks")


def _detect_dso1(root: Path) -> bool:
    images, masks = _dso1_folders(root)
    return images is not None and masks is not None


def _read_dso1(root: Path) -> Listing:
    """``DSO-1/splicing-*.png`` with ``DSO-1-Fake-Images-Masks/`` (same name), ``normal-*`` authentic."""
    images, masks = _dso1_folders(root)
    files = _images(images)
    spliced = [path for path in files if path.name.lower().startswith("splicing")]
    listing = _pair(root, spliced, _by_stem(_images(masks)), DSO1_RULE)
    listing.refs += [SampleRef(path) for path in files if path.name.lower().startswith("normal")]
    return listing


LAYOUTS: tuple[Layout, ...] = (
    Layout("casia1", "CASIA v1.0", "Tp/Sp/, Tp/CM/, Au/; masks *_gt.png in another folder (corrected ground truth)",
           CASIA_RULE, _detect_casia1, _read_casia),
    Layout("casia2", "CASIA v2.0", "Tp/Tp_*.jpg|tif, Au/; masks *_gt.png in another folder (corrected ground truth)",
           CASIA_RULE, _detect_casia2, _read_casia),
    Layout("columbia", "Columbia uncompressed", "4cam_splc/*.tif, 4cam_splc/edgemask/*_edgemask.jpg, 4cam_auth/",
           COLUMBIA_RULE, _detect_columbia, _read_columbia),
    Layout("coverage", "COVERAGE", "image/{N}t.tif, image/{N}.tif, mask/{N}forged.tif",
           MaskRule(), _detect_coverage, _read_coverage),
    Layout("nist16", "NIST Nimble 2016", "probe/, reference/*/NC2016-*-ref.csv (|-separated)",
           NIST16_RULE, _detect_nist16, _read_nist16),
    Layout("imd2020", "IMD2020", "{post}/{id}_{n}.jpg|png with {id}_{n}_mask.png, {id}_orig.*",
           MaskRule(), _detect_imd2020, _read_imd2020),
    Layout("defacto", "DEFACTO", "*_img/img/* with *_annotations/probe_mask/*",
           MaskRule(), _detect_defacto, _read_defacto),
    Layout("cocoglide", "CocoGlide", "fake/, mask/, real/ (same stems)",
           MaskRule(), _detect_cocoglide, _read_cocoglide),
    Layout("korus", "Korus realistic tampering", "*/tampered-realistic/*.TIF, */ground-truth/*.PNG, */pristine/",
           KORUS_RULE, _detect_korus, _read_korus),
    Layout("dso1", "DSO-1", "DSO-1/{splicing,normal}-*.png, DSO-1-Fake-Images-Masks/",
           DSO1_RULE, _detect_dso1, _read_dso1),
)  # fmt: skip
"""Every public layout, in detection order."""
