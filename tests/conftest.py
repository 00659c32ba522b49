"""Shared fixtures: networks are built once per test session (the big ones take seconds);
the scripts of benchmarks/ loaded as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REFERENCE_KEYS = Path(__file__).resolve().parent / "data" / "state-dict-keys"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

_NETWORKS: dict[tuple, torch.nn.Module] = {}


def build_cached(kind: str, name: str, **kwargs) -> torch.nn.Module:
    """A network from the registry, built once per session with a fixed seed."""
    from reloc.models import create_network

    key = (kind, name, tuple(sorted(kwargs.items())))
    if key not in _NETWORKS:
        torch.manual_seed(0)
        _NETWORKS[key] = create_network(kind, name, **kwargs)
    return _NETWORKS[key]


def reference_shapes(filename: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a reference state dict, from ``tests/data/state-dict-keys``."""
    shapes = {}
    for line in (REFERENCE_KEYS / filename).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))
    return shapes


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def load_benchmark(script: str, name: str, monkeypatch: pytest.MonkeyPatch | None = None) -> ModuleType:
    """``benchmarks/SCRIPT`` executed as the module ``name``, entered in ``sys.modules`` first
    (dataclasses look their module up while it executes): for this test only with
    ``monkeypatch``, else for the session unless a module of that name is there already.
    The benchmarks folder goes on the end of ``sys.path`` (a script run as ``python
    benchmarks/SCRIPT`` has it first): the scripts import each other by name (e.g. ``seed_spread``)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is None:
        sys.modules.setdefault(name, module)
    else:
        monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
