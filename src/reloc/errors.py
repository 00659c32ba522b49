"""How every ``reloc`` command ends: exit codes, one-line errors, crash logs.

One home for the command line's error policy (:class:`GuardedGroup` is the typer app's
click group, so every command and ``typer.testing.CliRunner`` go through it):

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
traceback; Python warnings raised while a command runs print as one ``warning: <what>`` line. Expected are: click's usage errors (options validated at the edge), a
:class:`UsageError` raised by a command, and the library's own error types
(:func:`expected_types`: unreadable images, weights or datasets, a pretrained model
without the part asked for, files that are missing, not permitted or that a command would
replace).
"""

from __future__ import annotations

import datetime as _datetime
import importlib
import os
import re
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

# The click that typer runs on: click itself, or the copy newer typer versions vendor.
_click = importlib.import_module(typer.BadParameter.__module__)
UsageErrorTypes = _click.UsageError
ClickException = _click.ClickException
NoArgsIsHelpError = getattr(_click, "NoArgsIsHelpError", None)
ABORTS = tuple({getattr(_click, "Abort", typer.Abort), typer.Abort})
EXITS = tuple({getattr(_click, "Exit", typer.Exit), typer.Exit})

EXIT_INPUTS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 120  # Python's own exit code when flushing standard output fails


def _drop_standard_output() -> None:
    """Point standard output at the null device: its reader is gone, and Python's flush at
    exit would otherwise fail again (the recipe of Python's ``signal`` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Show a Python warning as one ``warning: <message>`` line (no file, line or category)."""
    typer.echo(f"warning: {one_line(str(message))}", err=True)


def _error_line(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _usage_message(error: Exception) -> str:
    """``<option>: <why>`` for a click usage error."""
    command = error.ctx.command_path if getattr(error, "ctx", None) is not None else "reloc"
    if not isinstance(error, typer.BadParameter):
        return one_line(f"{command}: {error.format_message()}")
    if error.param is not None:
        options = [name for name in getattr(error.param, "opts", []) if name.startswith("-")]
        what = "/".join(options) if options else (error.param.name or "?").upper()
    else:
        what = error.param_hint if isinstance(error.param_hint, str) else command
    return one_line(f"{what}: {error.message}")


class GuardedGroup(TyperGroup):
    """The ``reloc`` click group: applies this module's exit codes and one-line errors.

    ``main`` turns click's usage errors into one line (exit 2); ``invoke`` turns a
    command's expected errors into one line (exit 2) and any other exception into a
    saved traceback (exit :data:`EXIT_INTERNAL`).
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageErrorTypes as error:
            if NoArgsIsHelpError is not None and isinstance(error, NoArgsIsHelpError):
                error.show()
            else:
                _error_line(_usage_message(error))
                hint = error.ctx.command_path if error.ctx is not None else "reloc"
                typer.echo(f"(see {hint} --help)", err=True)
            code = EXIT_USAGE
        except ClickException as error:
            _error_line(one_line(error.format_message()))
            code = error.exit_code
        except ABORTS:
            _error_line("aborted")
            code = 130
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)

    def invoke(self, ctx: Any) -> Any:
        arguments = [*ctx._protected_args, *ctx.args]  # before click consumes them
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_line
                return super().invoke(ctx)
        except (*EXITS, ClickException, *ABORTS, KeyboardInterrupt):
            raise
        except expected_types() as error:
            _error_line(describe(error))
            raise typer.Exit(EXIT_USAGE) from None
        except BrokenPipeError:
            _drop_standard_output()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as error:  # noqa: BLE001 - anything else is a bug: keep its traceback
            log = write_crash_log(self._output_folder(ctx, arguments), error, arguments)
            _error_line(one_line(f"internal error: {type(error).__name__}: {error}"))
            typer.echo(f"the traceback is in {log}; please report it", err=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    def _output_folder(self, ctx: Any, arguments: list[str]) -> Path | None:
        """The failed command's ``--out`` folder (a file's parent), found by re-parsing its arguments."""
        try:
            name, command, rest = self.resolve_command(ctx, list(arguments))
            sub = command.make_context(name, rest, parent=ctx, resilient_parsing=True)
            out = sub.params.get("out")
        except Exception:  # noqa: BLE001 - best effort: the temporary folder then
            return None
        if out is None:
            return None
        out = Path(os.fspath(out))
        return out.parent if out.suffix and not out.is_dir() else out
