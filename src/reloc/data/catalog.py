"""What a dataset holds: on-disk formats, validation and source-disjoint splits.

Three on-disk formats are read by :func:`load_dataset`, and the public benchmarks as
they are distributed (CASIA, Columbia, COVERAGE, NIST16, ...; :mod:`reloc.data.layouts`):

* a folder with ``Tp/`` (tampered images) and ``Gt/`` (masks) paired by file stem, the
  mask stem optionally ending in one of :data:`reloc.data.samples.MASK_SUFFIXES` (``Tp/x.jpg`` with
  ``Gt/x_gt.png``), plus an optional ``Au/`` folder of authentic images (all-zero masks);
  folder names are case-insensitive and only their top level is listed;
* an IMDL-BenCo JSON list ``[[image, mask or "Negative"], ...]`` whose relative paths
  are relative to the JSON file's folder (``"Negative"`` = authentic);
* our own synthetic output: ``OUT/manifest.json`` (or a per-split
  ``OUT/manifest_{split}.json``) in the IMDL-BenCo format plus, when present,
  ``OUT/provenance.jsonl`` whose records (``name``, ``source``, ``split``) give each
  sample its source photo(s) and recorded split. A folder holding ``manifest.json`` is
  read through it even if it also has ``Tp/`` and ``Gt/``.

Each sample is a :class:`reloc.data.samples.SampleRef` (files, name, source photos, recorded split);
:mod:`reloc.data.datasets` turns references into torch datasets.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from reloc.data.io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageError, MaskRule, read_image, read_mask
from reloc.data.layouts import LAYOUTS, detect_layout
from reloc.data.samples import MASK_SUFFIXES, SOURCE_SEPARATOR, SPLITS, DatasetError, SampleRef
from reloc.io_utils import parse_json

NEGATIVE = "Negative"

_MANIFEST = "manifest.json"
_PROVENANCE = "provenance.jsonl"
_LISTED = 20


def load_dataset(path: str | os.PathLike) -> list[SampleRef]:
    """List the samples of a dataset, detecting its format.

    Args:
        path: a folder with ``manifest.json`` (plus optional ``provenance.jsonl``), a
            folder with ``Tp/`` and ``Gt/``, an IMDL-BenCo ``.json`` file, or the folder of
            a public benchmark as unpacked (:data:`reloc.data.layouts.LAYOUTS`).

    Returns:
        the samples, in file order. Files are not opened (see :func:`validate`). In a
        public layout, tampered images without a mask are left out with one warning.

    Raises:
        DatasetError: the path is missing, of no known layout, malformed or empty.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        refs = read_benco_json(path)
    elif path.is_dir() and (path / _MANIFEST).is_file():
        refs = read_benco_json(path / _MANIFEST)
    elif path.is_dir() and {"tp", "gt"} <= set(_subfolders(path)):
        refs = read_tp_gt(path)
    elif path.is_dir() and (layout := _public_layout(path)) is not None:
        listing = layout.read(path)
        if listing.missing:
            warnings.warn(
                f"{path} ({layout.name}): leaving out {len(listing.missing)} tampered image(s) "
                "without a mask: " + _listing(listing.missing),
                stacklevel=2,
            )
        refs = listing.refs
    elif path.exists():
        raise DatasetError(
            f"{path}: not a dataset (expected a .json list, a folder with {_MANIFEST}, "
            "a folder with Tp/ and Gt/, or one of the public layouts: "
            f"{', '.join(_layout_names())})"
        )
    else:
        raise DatasetError(f"{path}: no such file or folder")
    if not refs:
        raise DatasetError(f"{path}: the dataset is empty")
    return refs


def read_tp_gt(folder: str | os.PathLike) -> list[SampleRef]:
    """List a ``Tp/`` + ``Gt/`` (+ optional ``Au/``) folder.

    Args:
        folder: the dataset folder.

    Returns:
        tampered samples (sorted by file name), then authentic ones.

    Raises:
        DatasetError: tampered images without a mask (all listed), or two masks for one
            image.
    """
    folder = Path(folder)
    subfolders = _subfolders(folder)
    masks: dict[str, Path] = {}
    for mask in _image_files(subfolders["gt"]):
        key = _strip_mask_suffix(mask.stem)
        if key in masks:
            raise DatasetError(f"{folder}: two masks for {key!r}: {masks[key].name}, {mask.name}")
        masks[key] = mask
    refs, unmatched = [], []
    for image in _image_files(subfolders["tp"]):
        if image.stem in masks:
            refs.append(SampleRef(image, masks[image.stem]))
        else:
            unmatched.append(image.name)
    if unmatched:
        raise DatasetError(
            f"{folder}: {len(unmatched)} image(s) in Tp/ have no mask in Gt/ (expected "
            f"<stem>.<ext> or <stem><suffix>.<ext>, suffix one of {MASK_SUFFIXES}): " + _listing(unmatched)
        )
    if "au" in subfolders:
        refs.extend(SampleRef(image) for image in _image_files(subfolders["au"]))
    return refs


def read_benco_json(path: str | os.PathLike) -> list[SampleRef]:
    """Read an IMDL-BenCo JSON list ``[[image, mask or "Negative"], ...]``.

    When a ``provenance.jsonl`` sits beside the file (our synthetic output: its
    ``manifest.json`` or a per-split ``manifest_train.json``...), its ``source`` and
    ``split`` fields are attached to the samples (see :func:`apply_provenance`).

    Args:
        path: the JSON file; relative paths inside are relative to its folder.

    Returns:
        the samples in list order.

    Raises:
        DatasetError: unreadable JSON or an entry that is not a pair of strings.
    """
    path = Path(path)
    try:
        entries = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: expected a JSON list of [image, mask] pairs")
    refs = []
    for number, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(item, str) and item for item in entry)):
            raise DatasetError(f"{path}: entry {number} is {entry!r}, expected [image, mask or {NEGATIVE!r}]")
        image, mask = entry
        refs.append(SampleRef(path.parent / image, None if mask == NEGATIVE else path.parent / mask))
    provenance = path.parent / _PROVENANCE
    if provenance.is_file():
        refs = apply_provenance(refs, provenance)
    return refs


def write_benco_json(refs: list[SampleRef], path: str | os.PathLike) -> Path:
    """Write samples as an IMDL-BenCo JSON list ``[[image, mask or "Negative"], ...]``.

    Paths are relative to the JSON file's folder (as :func:`read_benco_json` reads them).
    IMDL-BenCo reads masks as white = tampered; a mask whose :class:`MaskRule` differs
    (a colour channel, another threshold, black = tampered) is written converted, as a
    {0, 255} PNG in ``<json stem>_masks/`` beside the file, and the list points there.

    Args:
        refs: the samples (usable ones: see :func:`validate`).
        path: the JSON file to write.

    Returns:
        the JSON file's path.

    Raises:
        ImageError: a mask that needs converting cannot be read.
    """
    from reloc.data.io import write_png

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    converted = path.parent / f"{path.stem}_masks"
    entries = []
    for ref in refs:
        mask = NEGATIVE
        if ref.mask is not None:
            target = ref.mask
            if ref.mask_rule != MaskRule():
                target = converted / f"{_relative(ref.image, path.parent).replace('/', '__')}.png"
                write_png(target, read_mask(ref.mask, rule=ref.mask_rule).astype(bool))
            mask = os.path.relpath(target, path.parent)
        entries.append([os.path.relpath(ref.image, path.parent), mask])
    path.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    return path


def apply_provenance(refs: list[SampleRef], path: str | os.PathLike) -> list[SampleRef]:
    """Attach ``source`` and ``split`` from a ``provenance.jsonl`` file.

    Each line is a JSON object with ``name`` (matched against the image stem, file name
    or path relative to the provenance folder), ``source`` (a photo id or a list of them)
    and optionally ``split``.

    Args:
        refs: the samples.
        path: the provenance file.

    Returns:
        new samples carrying the recorded source and split.

    Raises:
        DatasetError: a malformed line, a duplicate name, or samples with no record.
    """
    path = Path(path)
    records: dict[str, dict] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
            name, source = str(record["name"]), record["source"]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise DatasetError(f"{path}:{number}: expected an object with name and source") from exc
        if isinstance(source, list):
            source = SOURCE_SEPARATOR.join(sorted(str(item) for item in source))
        if name in records:
            raise DatasetError(f"{path}:{number}: duplicate name {name!r}")
        records[name] = {"source": str(source), "split": record.get("split")}
    updated, unmatched = [], []
    for ref in refs:
        keys = (ref.image.stem, ref.image.name, _relative(ref.image, path.parent))
        record = next((records[key] for key in keys if key in records), None)
        if record is None:
            unmatched.append(ref.image.name)
        else:
            updated.append(SampleRef(ref.image, ref.mask, record["source"], record["split"]))
    if unmatched:
        raise DatasetError(f"{path}: no provenance record for {len(unmatched)} sample(s): " + _listing(unmatched))
    return updated


def validate(
    refs: list[SampleRef],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mask_resize: str | None = None,
) -> list[SampleRef]:
    """Decode every image and mask and drop the unusable samples.

    Decoding is the only way to notice truncated files, so this reads everything once;
    run it before training rather than per epoch. Unreadable samples are reported in ONE
    warning listing each file and its reason.

    Args:
        refs: the samples.
        max_pixels: pixel cap passed to the readers.
        mask_resize: ``None``: a mask of another size than its image is unusable;
            ``"nearest"``: it will be resized (see :func:`reloc.data.io.read_mask`).

    Returns:
        the readable samples, in order.

    Raises:
        DatasetError: ``refs`` is empty or no sample is readable.
    """
    if not refs:
        raise DatasetError("no samples to validate")
    good, problems = [], []
    for ref in refs:
        try:
            image = read_image(ref.image, max_pixels=max_pixels)
            if ref.mask is not None:
                read_mask(
                    ref.mask,
                    size=image.shape[:2],
                    max_pixels=max_pixels,
                    rule=ref.mask_rule,
                    resize=mask_resize,
                )
        except ImageError as exc:
            problems.append(str(exc))
        else:
            good.append(ref)
    if not good:
        raise DatasetError(f"none of the {len(refs)} samples is readable:\n" + _lines(problems))
    if problems:
        warnings.warn(
            f"skipping {len(problems)} of {len(refs)} samples that cannot be read:\n" + _lines(problems),
            stacklevel=2,
        )
    return good


def split_by_source(
    refs: list[SampleRef],
    seed: int,
    test_fraction: float = 0.25,
    val_fraction: float = 0.1,
) -> dict[str, list[SampleRef]]:
    """Split samples into train/val/test so that no source photo is in two splits.

    If every sample carries a recorded split (from provenance) it is used as is, after
    checking that no photo appears in two splits. Otherwise samples sharing a photo
    (directly or through a chain of multi-photo samples) form a group, groups are
    shuffled with ``seed`` and dealt to test until it holds ``test_fraction`` of the
    samples, then to val, the rest to train; big groups can overshoot a fraction.

    Args:
        refs: the samples.
        seed: shuffling seed; the result depends only on the seed and the set of samples.
        test_fraction: wanted share of samples in test.
        val_fraction: wanted share of samples in val.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each in input order.

    Raises:
        DatasetError: no samples, only some samples with a recorded split, or recorded
            splits sharing a photo.
        ValueError: fractions not in [0, 1) or summing to 1 or more.
    """
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError(f"need 0 <= fractions and test + val < 1, got test={test_fraction}, val={val_fraction}")
    if not refs:
        raise DatasetError("no samples to split")
    recorded = [ref.split for ref in refs]
    if all(split is not None for split in recorded):
        _check_recorded_splits(refs)
        assignment = recorded
    elif any(split is not None for split in recorded):
        count = sum(split is not None for split in recorded)
        raise DatasetError(f"only {count} of {len(refs)} samples carry a recorded split")
    else:
        assignment = _assign_groups(refs, seed, test_fraction, val_fraction)
    splits: dict[str, list[SampleRef]] = {split: [] for split in SPLITS}
    for ref, split in zip(refs, assignment):
        splits[split].append(ref)
    return splits


def load_pair(ref: SampleRef, mask_resize: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample's image and mask.

    Args:
        ref: the sample.
        mask_resize: ``None`` or ``"nearest"`` (see :func:`reloc.data.io.read_mask`).

    Returns:
        image float32 ``(H, W, 3)`` in [0, 1] and mask float32 ``(H, W)`` in {0, 1}
        (zeros for an authentic sample).

    Raises:
        ImageError: a file cannot be read or the mask size differs from the image's.
    """
    image = read_image(ref.image)
    if ref.mask is None:
        return image, np.zeros(image.shape[:2], dtype=np.float32)
    return image, read_mask(ref.mask, size=image.shape[:2], rule=ref.mask_rule, resize=mask_resize)


def dataset_root(path: str | os.PathLike) -> Path:
    """The folder sample ids are relative to: the dataset folder, or a JSON list's folder."""
    path = Path(path)
    return path.parent if path.is_file() else path


def sample_id(ref: SampleRef, root: str | os.PathLike) -> str:
    """A sample's id within its dataset: its image path relative to ``root`` (POSIX form)."""
    return _relative(Path(os.path.abspath(ref.image)), Path(os.path.abspath(root)))


def dataset_fingerprint(refs: list[SampleRef], root: str | os.PathLike) -> str:
    """SHA-256 over every sample's id, mask id and the two files' sizes, in id order.

    It changes when a sample is added, removed, renamed, re-paired or rewritten with a
    different size, so a split recorded at training can be checked against the dataset
    it is applied to; files are not read, only listed (``stat``).
    """
    import hashlib

    def size(path: Path | None) -> int:
        try:
            return -1 if path is None else path.stat().st_size
        except OSError:
            return -1

    lines = sorted(
        f"{sample_id(ref, root)}\t{'' if ref.mask is None else _relative(Path(os.path.abspath(ref.mask)), Path(os.path.abspath(root)))}"
        f"\t{size(ref.image)}\t{size(ref.mask)}"
        for ref in refs
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _assign_groups(refs: list[SampleRef], seed: int, test_fraction: float, val_fraction: float) -> list[str]:
    """Split name per sample, dealing shuffled photo groups to test, val, then train."""
    parent: dict[str, str] = {}

    def find(photo: str) -> str:
        parent.setdefault(photo, photo)
        while parent[photo] != photo:
            parent[photo] = parent[parent[photo]]
            photo = parent[photo]
        return photo

    for ref in refs:
        first, *others = ref.sources
        for other in others:
            parent[find(other)] = find(first)
    members: dict[str, list[int]] = {}
    for position, ref in enumerate(refs):
        members.setdefault(find(ref.sources[0]), []).append(position)
    groups = sorted(members.values(), key=lambda positions: min(refs[p].source for p in positions))
    order = np.random.default_rng(seed).permutation(len(groups))
    targets = {"test": test_fraction * len(refs), "val": val_fraction * len(refs)}
    counts = {"test": 0, "val": 0}
    assignment = [""] * len(refs)
    for group_index in order:
        positions = groups[group_index]
        split = next((s for s in ("test", "val") if counts[s] < targets[s]), "train")
        if split != "train":
            counts[split] += len(positions)
        for position in positions:
            assignment[position] = split
    return assignment


def _check_recorded_splits(refs: list[SampleRef]) -> None:
    """Raise DatasetError if a photo appears in two recorded splits."""
    seen: dict[str, set[str]] = {}
    for ref in refs:
        for photo in ref.sources:
            seen.setdefault(photo, set()).add(str(ref.split))
    shared = sorted(photo for photo, splits in seen.items() if len(splits) > 1)
    if shared:
        raise DatasetError(f"recorded splits share {len(shared)} source photo(s): " + _listing(shared))


def _public_layout(folder: Path):
    """The public layout whose naming signature ``folder`` shows, or ``None``."""
    return detect_layout(folder)


def _layout_names() -> list[str]:
    return [layout.name for layout in LAYOUTS]


def _subfolders(folder: Path) -> dict[str, Path]:
    """The ``tp``/``gt``/``au`` subfolders of ``folder``, keyed by lower-case name."""
    found = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in ("tp", "gt", "au"):
            found[child.name.lower()] = child
    return found


def _image_files(folder: Path) -> list[Path]:
    """Visible files of ``folder`` with an image extension, sorted by name."""
    return sorted(
        child
        for child in folder.iterdir()
        if child.is_file() and not child.name.startswith(".") and child.suffix.lower() in IMAGE_SUFFIXES
    )


def _strip_mask_suffix(stem: str) -> str:
    """Remove one of :data:`MASK_SUFFIXES` (any case) from the end of a mask stem."""
    lowered = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` in POSIX form, or the full path if outside it."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def _listing(names: list[str]) -> str:
    """Comma-separated names, the first :data:`_LISTED` of them."""
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _lines(problems: list[str]) -> str:
    """One indented line per problem, the first :data:`_LISTED` of them."""
    shown = "\n".join(f"  {problem}" for problem in problems[:_LISTED])
    more = len(problems) - _LISTED
    return shown + (f"\n  ... and {more} more" if more > 0 else "")
