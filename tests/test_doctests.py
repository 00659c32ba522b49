"""The docstring examples of the package run as written (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "reloc.pretrained",
    "reloc.engine.model_choice",
    "reloc.models",
    "reloc.models.weights",
    "reloc.io_utils",
    "reloc.data.kinds",
    "reloc.extras",
    "reloc.serve.facts",
    "reloc.serve.models",
]
"""The modules whose docstrings hold examples that run on a CPU in seconds."""


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
