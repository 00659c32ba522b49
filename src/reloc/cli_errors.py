"""The command line's side of :mod:`reloc.errors`: the typer app's click group that applies it.

:class:`GuardedGroup` is the ``reloc`` app's click group, so every command (and
``typer.testing.CliRunner``) goes through it: click's usage errors, a command's expected
errors (:func:`reloc.errors.expected_types`) and Python warnings become one line on stderr,
any other exception a saved traceback, each with the exit code :mod:`reloc.errors` names.
Only the command line imports typer or click (an import-linter contract of ``pyproject.toml``).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from reloc.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_USAGE,
    describe,
    expected_types,
    one_line,
    write_crash_log,
)

# The click that typer runs on: click itself, or the copy newer typer versions vendor.
_click = importlib.import_module(typer.BadParameter.__module__)
UsageErrorTypes = _click.UsageError
ClickException = _click.ClickException
NoArgsIsHelpError = getattr(_click, "NoArgsIsHelpError", None)
ABORTS = tuple({getattr(_click, "Abort", typer.Abort), typer.Abort})
EXITS = tuple({getattr(_click, "Exit", typer.Exit), typer.Exit})


def _drop_standard_output() -> None:
    """Point standard output at the null device: its reader is gone, and Python's flush at
    exit would otherwise fail again (the recipe of Python's ``signal`` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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
