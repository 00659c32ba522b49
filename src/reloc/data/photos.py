"""Finding the pristine photos that the synthetic tampering generator starts from.

``list_photos`` turns a *photo source* into a sorted list of image files:

* ``"default"`` -- the few lossless colour photographs shipped inside scikit-image's
  wheel (``skimage/data``), so the generator works with nothing but the installed
  dependencies;
* a folder -- every image file below it (recursively), sorted by relative path;
* a single image file.

``usable_photos`` keeps the photos the generator can start from and names the others
(unreadable, too small); grey, 16-bit, palette and transparent photos are converted to
8-bit RGB when read (:func:`reloc.data.io.read_image`).

``photo_ids`` gives each photo a short, stable identifier (its path relative to the
common folder of the list) that the generator records as ``source`` / ``donor`` in its
provenance, so that the files it writes do not depend on where the photos live.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from reloc.data.io import IMAGE_SUFFIXES, ImageError

__all__ = [
    "DEFAULT_PHOTO_NAMES",
    "default_photo_dir",
    "list_photos",
    "photo_ids",
    "usable_photos",
]


#: The lossless (PNG) colour photographs of natural scenes in ``skimage/data``.
#: Left out on purpose: grey-level images (camera, moon, ...), JPEGs (rocket, retina,
#: hubble_deep_field), synthetic or non-photographic ones (color, phantom, logo,
#: chessboard_RGB, ihc micrographs), images with alpha (horse, logo), and
#: ``motorcycle_right.png`` -- it is the stereo twin of ``motorcycle_left.png`` and would
#: put nearly the same scene into two different splits.
DEFAULT_PHOTO_NAMES: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
)


def default_photo_dir() -> Path:
    """The ``skimage/data`` folder inside the installed scikit-image (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "photo source 'default' needs scikit-image, which is not installed: pip install 'reloc[photos]'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _default_photos() -> list[Path]:
    folder = default_photo_dir()
    found = [folder / name for name in DEFAULT_PHOTO_NAMES if (folder / name).is_file()]
    missing = [name for name in DEFAULT_PHOTO_NAMES if not (folder / name).is_file()]
    if len(found) < 3:
        raise ValueError(
            f"photo source 'default': scikit-image's data folder {folder} lacks the "
            f"photos {missing}; pass a folder of photos instead"
        )
    return found


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_photos(source: str | os.PathLike[str]) -> list[Path]:
    """Image files of a photo source, sorted for determinism.

    ``source`` is ``"default"`` (scikit-image's lossless colour photos), a folder
    (searched recursively, hidden files and folders skipped, sorted by relative path) or
    a single image file.  Raises ``ValueError`` naming the path when it does not exist
    or holds no image.
    """
    if isinstance(source, str) and source == "default":
        return _default_photos()
    path = Path(source).expanduser()
    if path.is_file():
        if not _is_image(path):
            raise ValueError(
                f"photo source {str(path)!r} is not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return [path]
    if not path.is_dir():
        raise ValueError(f"photo source {str(path)!r} does not exist")
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            file = Path(root) / name
            if _is_image(file) and file.is_file():
                found.append((file.relative_to(path).as_posix(), file))
    if not found:
        raise ValueError(
            f"photo source {str(path)!r} holds no image files "
            f"(looked recursively for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    found.sort(key=lambda item: item[0])
    return [file for _, file in found]


def photo_ids(paths: Sequence[str | os.PathLike[str]] | Iterable[Path]) -> list[str]:
    """Short stable identifiers: each path relative to the list's common folder (POSIX).

    ``["/x/kodak/a.png", "/x/wiki/b.png"]`` -> ``["kodak/a.png", "wiki/b.png"]``; a
    single photo is identified by its file name.  Raises ``ValueError`` on duplicates.
    """
    files = [Path(p).absolute() for p in paths]
    if not files:
        return []
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    ids = [f.relative_to(root).as_posix() for f in files]
    if len(set(ids)) != len(ids):
        raise ValueError("the photo list names the same file more than once")
    return ids


def usable_photos(paths: Sequence[Path], min_side: int = 32) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split photos into usable ones and skipped ones with the reason.

    Each photo is decoded whole once (so a truncated file is caught here, not in a worker);
    one whose short side is below ``min_side`` is skipped as too small.

    Returns:
        ``(usable, skipped)``: the usable paths in order, and ``(path, reason)`` of the others.

    Raises:
        ValueError: no photo is usable (naming the first few skipped ones).
    """
    from reloc.data.io import read_image

    usable: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        try:
            height, width = read_image(path, compact=True).shape[:2]
        except ImageError as exc:
            skipped.append((path, exc.reason))
            continue
        if min(width, height) < min_side:
            skipped.append((path, f"too small ({width}x{height}; short side below {min_side} px)"))
            continue
        usable.append(path)
    if not usable:
        listed = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
        raise ValueError(f"no usable photo among {len(skipped)} ({listed})")
    return usable, skipped
