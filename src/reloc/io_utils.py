"""Atomic file writes: a reader never sees a half-written file.

Every file reloc writes that another process may read while it is written (weights,
checkpoints, PNGs, JSON records, manifests) goes through :func:`atomic_path`: the content
is written to a temporary file in the destination's folder and renamed over the
destination (``os.replace``, atomic on POSIX and Windows within one file system); on any
error the temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_json_atomic", "write_text_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on normal exit rename it over ``path``.

    The parent folder is created if missing. The temporary file exists (empty) when the
    block starts, so writers may open it in ``"w"``/``"wb"`` mode or pass its name to a
    library (``torch.save``, ``safetensors.torch.save_file``, ``PIL.Image.save``).

    >>> with atomic_path("out/model.safetensors") as temporary:
    ...     save_file(tensors, temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 1, **options: Any) -> None:
    """Write ``data`` as JSON (plus a final newline) to ``path`` atomically; ``options``
    go to :func:`json.dumps` (e.g. ``ensure_ascii=False``)."""
    write_text_atomic(path, json.dumps(data, indent=indent, **options) + "\n")
