"""The library's errors and the exit codes every ``reloc`` command ends with; no CLI framework.

What the engines raise and import (:class:`UsageError`, :func:`one_line`, :func:`utc_now`),
which exception types mean bad input rather than a bug (:func:`expected_types`), how one is
described on one line (:func:`describe`) and where a bug's traceback is saved
(:func:`write_crash_log`). The command line applies them to every command
(:class:`reloc.cli_errors.GuardedGroup`, the typer app's click group):

============  ===========================================================================
exit code     meaning
============  ===========================================================================
0             done
1             :data:`EXIT_INPUTS_FAILED`: the command ran, but some inputs gave no result
              (``reloc localize`` lists each with its reason)
2             :data:`EXIT_USAGE`: a bad option, argument, config value, weights file,
              dataset or output folder; nothing (or nothing more) was done
3             ``reloc train``: a loss became NaN or infinite (the last good checkpoint kept)
70            :data:`EXIT_INTERNAL`: a bug (``EX_SOFTWARE`` of ``sysexits.h``); the
              traceback is saved to ``reloc-error-<time>.log`` in the command's output
              folder (the temporary folder when it has none) and its path is printed
120           :data:`EXIT_BROKEN_PIPE`: the reader of standard output went away (``reloc models
              | head``); the rest of the output is dropped quietly, as ``SIGPIPE`` would
              (help text is printed by rich, which ends such a command with 1)
128 + signal  ``reloc serve`` stopped by SIGTERM (143) or SIGHUP (129), its work folder removed
============  ===========================================================================

Expected errors print exactly one line on stderr, ``error: <what>: <why>``, never a
traceback; Python warnings raised while a command runs print as one ``warning: <what>`` line.
Expected are: click's usage errors (options validated at the edge), a :class:`UsageError`
raised by a command, and the library's own error types (:func:`expected_types`: unreadable
images, weights or datasets, a pretrained model without the part asked for, files that are
missing, not permitted or that a command would replace).
"""

from __future__ import annotations

import datetime as _datetime
import re
import tempfile
import traceback
from pathlib import Path

EXIT_INPUTS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 120  # Python's own exit code when flushing standard output fails


MAX_LINE = 400
"""Characters of an error message kept on its one line."""


class UsageError(Exception):
    """An expected, user-fixable error: ``error: <what>: <why>``, exit code 2.

    Attributes:
        what: the option, argument or file at fault (e.g. ``"--out results"``).
        why: what is wrong with it.
    """

    def __init__(self, what: str, why: str) -> None:
        self.what, self.why = what, why
        super().__init__(f"{what}: {why}")


def expected_types() -> tuple[type[BaseException], ...]:
    """The library's exception types that mean bad input, not a bug (imported lazily)."""
    from reloc.data.catalog import DatasetError
    from reloc.data.io import ImageError
    from reloc.models.state_dicts import WeightsError
    from reloc.pretrained import PretrainedError

    return (UsageError, ImageError, WeightsError, DatasetError, PretrainedError, FileNotFoundError, PermissionError,
            NotADirectoryError, IsADirectoryError, FileExistsError)  # fmt: skip


def one_line(text: str) -> str:
    """``text`` on one line: line breaks become ``"; "``, runs of spaces one space, at most :data:`MAX_LINE` characters."""
    flat = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    flat = re.sub(r"\s+", " ", flat)
    return flat if len(flat) <= MAX_LINE else flat[: MAX_LINE - 3] + "..."


def describe(error: BaseException) -> str:
    """``<what>: <why>`` of an expected error (OS errors as ``<file>: <reason>``)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return one_line(f"{error.filename}: {error.strerror.lower()}")
    return one_line(str(error) or type(error).__name__)


def utc_now() -> _datetime.datetime:
    """The current time, timezone-aware UTC."""
    return _datetime.datetime.now(_datetime.timezone.utc)


def write_crash_log(folder: Path | None, error: BaseException, command: list[str]) -> Path:
    """Save ``error``'s traceback to ``folder/reloc-error-<UTC time>.log``.

    Falls back to the temporary folder when ``folder`` is ``None`` or cannot be written.

    Returns:
        The log file written.
    """
    stamp = utc_now().strftime("%Y%m%dT%H%M%S.%fZ")
    text = f"reloc {' '.join(command)}\n{utc_now().isoformat()}\n\n" + "".join(
        traceback.format_exception(type(error), error, error.__traceback__)
    )
    for candidate in ([folder] if folder is not None else []) + [Path(tempfile.gettempdir())]:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            path = candidate / f"reloc-error-{stamp}.log"
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(text)
            return path.absolute()
        except OSError:
            continue
    raise error  # nowhere to write: let the traceback through rather than lose it
