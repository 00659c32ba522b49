"""Shared fixtures: networks are built once per test session (the big ones take seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REFERENCE_KEYS = Path(__file__).resolve().parent / "data" / "state-dict-keys"

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
