"""Atomic file writes (a reader never sees a half-written file), and the no-overwrite rule.

Every file reloc writes that another process may read while it is written (weights,
checkpoints, PNGs, JSON records, manifests) goes through :func:`atomic_path`: the content
is written to a temporary file in the destination's folder and renamed over the
destination (``os.replace``, atomic on POSIX and Windows within one file system); on any
error the temporary file is removed and the destination is left as it was.

No command replaces what the user already has: before writing, a command passes the paths
it will write to :func:`refuse_to_replace`, which names the first that exists (or two that
would be one file) unless the user passed ``--overwrite``. ``reloc localize`` goes further
and writes into a fresh sub-folder instead (:func:`reloc.engine.localize.choose_output_folder`).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "parse_json", "publish", "refuse_to_replace", "write_json_atomic", "write_text_atomic"]

OVERWRITE_HINT = "pass --overwrite to replace it"


def refuse_to_replace(
    paths: Iterable[str | os.PathLike], *, overwrite: bool = False, hint: str = OVERWRITE_HINT
) -> None:
    """Refuse to write ``paths`` if one exists already (unless ``overwrite``) or two are one file.

    Call it before anything is written, with every file or folder the command will write.

    Args:
        paths: the outputs.
        overwrite: the user asked to replace existing outputs (``--overwrite``).
        hint: what the user can do, ending the message.

    Raises:
        FileExistsError: naming the path (an expected error: ``error: <path>: <why>``, exit 2).
    """
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        key = os.path.normcase(os.path.abspath(path)).casefold()
        if key in seen:
            raise FileExistsError(
                errno.EEXIST, "would be written twice by this command (two outputs get this one name); rename one",
                str(path),
            )  # fmt: skip
        seen[key] = path
        if not overwrite and (path.exists() or path.is_symlink()):
            raise FileExistsError(errno.EEXIST, f"already exists; nothing was written ({hint})", str(path))


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on normal exit publish it as ``path``.

    The parent folder is created if missing. The temporary file exists (empty) when the
    block starts, so writers may open it in ``"w"``/``"wb"`` mode or pass its name to a
    library (``torch.save``, ``safetensors.torch.save_file``, ``PIL.Image.save``).

    Args:
        path: the destination.
        overwrite: rename the temporary file over an existing ``path``; with ``False`` an
            existing file is never touched, even one that appears while writing
            (see :func:`publish`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is ``False``.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> target = Path(folder.name) / "out" / "notes.txt"
    >>> with atomic_path(target) as temporary:
    ...     _ = temporary.write_text("done")
    >>> target.read_text()
    'done'
    >>> folder.cleanup()
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        publish(temporary, path, overwrite=overwrite)
    finally:
        temporary.unlink(missing_ok=True)


def publish(temporary: Path, path: Path, *, overwrite: bool = True) -> None:
    """Give the complete file ``temporary`` its final name ``path`` (same folder), atomically.

    With ``overwrite`` it is renamed over ``path``; without, it is hard-linked to ``path``,
    which fails if ``path`` exists, so no existing file is ever replaced (on file systems
    without hard links the bytes are copied to a file created exclusively). ``temporary``
    may be left behind for the caller to remove.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is ``False``.
    """
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise FileExistsError(17, "exists and is not overwritten", str(path)) from None
    except OSError:  # no hard links here (e.g. FAT, some network file systems)
        with open(temporary, "rb") as source, open(path, "xb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically (``overwrite``: see
    :func:`atomic_path`)."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)


def write_json_atomic(
    path: str | os.PathLike, data: Any, indent: int | None = 1, *, overwrite: bool = True, **options: Any
) -> None:
    """Write ``data`` as JSON (plus a final newline) to ``path`` atomically (``overwrite``:
    see :func:`atomic_path`); ``options`` go to :func:`json.dumps` (e.g. ``allow_nan=False``)."""
    write_text_atomic(path, json.dumps(data, indent=indent, **options) + "\n", overwrite=overwrite)


def parse_json(text: str | bytes) -> Any:
    """:func:`json.loads`, with JSON nested too deeply for Python (``[[[[...]]]]``, a hostile
    file) reported as the :class:`json.JSONDecodeError` of any malformed JSON, not a ``RecursionError``."""
    try:
        return json.loads(text)
    except RecursionError:
        document = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise json.JSONDecodeError("nested too deeply to read", document[:100], 0) from None
