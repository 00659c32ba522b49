"""What the wheel ships: the package's modules and its package data, never a test fixture.

The file list is the one setuptools builds the wheel from (``pyproject.toml``'s package
discovery and package data, read by setuptools itself), without building it.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_NAMES = ["conftest.py", "test_*.py", "*_test.py", "fake_*", "*fixture*"]
"""Names of files that belong to the tests (``tests/fake_trees.py`` was ``reloc/data/fake_trees.py``)."""


def shipped_files() -> list[Path]:
    """The files of ``src/`` that go into the wheel: each package's modules and its package data."""
    options = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]
    source = ROOT / options["package-dir"][""]
    files = []
    for package in options["packages"]:
        folder = source.joinpath(*package.split("."))
        files += sorted(folder.glob("*.py"))
        for pattern in options["package-data"].get(package, []):
            files += sorted(path for path in folder.glob(pattern) if path.is_file())
    return files


def test_the_wheel_ships_the_package_and_its_data():
    names = {path.relative_to(ROOT / "src").as_posix() for path in shipped_files()}
    for expected in ("reloc/cli.py", "reloc/errors.py", "reloc/data/layouts.py", "reloc/pretrained/cards.json"):
        assert expected in names
    assert any(name.endswith(".safetensors") for name in names)


def test_no_test_fixture_ships_in_the_wheel():
    fixtures = [
        path.relative_to(ROOT).as_posix()
        for path in shipped_files()
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in FIXTURE_NAMES)
    ]
    assert fixtures == []
    assert (ROOT / "tests" / "fake_trees.py").is_file()
