"""The ``reloc`` command itself: its help summary and its version."""

from __future__ import annotations

from typer.testing import CliRunner

import reloc
from reloc.cli import app


def test_version_is_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"reloc {reloc.__version__}"


def test_help_summarises_what_reloc_does_and_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "typer app" not in result.output
    assert "Find the tampered" in result.output and "reloc localize photo.jpg" in result.output
    for command in ("localize", "train", "eval", "report", "synth", "demo"):
        assert command in result.output
