"""Saving and loading network weights.

Our own format is safetensors with the network's spec (role, registry name, builder
arguments) in the file's metadata, so a weights file alone rebuilds its network:

>>> save_network(localizer, "dfcn.safetensors")
>>> same = load_network("dfcn.safetensors")

Foreign checkpoints (the public SCUNet ``.pth`` files, the ReLoc authors' localizer
weights) are matched to a network by key name, through the network's key map where the
reference names differ, never by order; :func:`load_foreign_weights` reports every
missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from reloc import __version__
from reloc.io_utils import atomic_path
from reloc.models import FOREIGN_KEY_MAPS, NetworkSpec
from reloc.models.state_dicts import LoadReport, WeightsError, match_state_dict, read_state_dict

__all__ = [
    "LoadReport",
    "WeightsError",
    "load_foreign_weights",
    "load_network",
    "read_spec",
    "save_network",
]

SPEC_KEY = "reloc.network"
VERSION_KEY = "reloc.version"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def save_network(network: nn.Module, path: str | Path, spec: NetworkSpec | None = None) -> Path:
    """Write ``network``'s state dict (buffers included) to a safetensors file, atomically.

    Args:
        network: a network made by :func:`reloc.models.create_network` (it carries
            ``network.spec``), or any module when ``spec`` is given.
        path: destination file.
        spec: overrides ``network.spec``.

    Returns:
        The path written.
    """
    spec = spec or getattr(network, "spec", None)
    if spec is None:
        raise WeightsError(f"{path}: the network has no spec; build it with reloc.models.create_network or pass spec=")
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in network.state_dict().items()}
    metadata = {SPEC_KEY: spec.to_json(), VERSION_KEY: __version__}
    _atomic_save(tensors, Path(path), metadata)
    return Path(path)


def read_spec(path: str | Path) -> NetworkSpec:
    """The network spec stored in one of our safetensors files."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error
    if SPEC_KEY not in metadata:
        raise WeightsError(
            f"{path}: no '{SPEC_KEY}' metadata, so the network cannot be rebuilt from the file; "
            "load it into a network you build with load_foreign_weights"
        )
    return NetworkSpec.from_json(metadata[SPEC_KEY])


def load_network(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a network from a safetensors file written by :func:`save_network`.

    Returns:
        The network in eval mode on ``map_location``, with its ``spec`` set.
    """
    spec = read_spec(path)
    network = spec.build()
    state = load_file(str(path), device=str(map_location))
    report = match_state_dict(network, state)
    if not report.ok:
        raise WeightsError(f"{path}: weights do not fit {spec.kind} {spec.name!r}:\n{report}")
    network.load_state_dict(report.matched, strict=True)
    return network.to(map_location).eval()


def load_foreign_weights(network: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a reference-layout checkpoint into ``network`` by key name.

    The key map of the network's registry name (``network.spec.name``) translates the
    reference names where ours differ. With ``strict``, any missing, unexpected or
    mis-shaped key raises :class:`WeightsError` with the full report and nothing is
    loaded; otherwise the matched tensors are loaded and the report returned.
    """
    spec = getattr(network, "spec", None)
    key_map = FOREIGN_KEY_MAPS.get(spec.name) if spec else None
    report = match_state_dict(network, read_state_dict(path), key_map)
    if strict and not report.ok:
        raise WeightsError(f"{path}: does not fit {spec.name if spec else type(network).__name__}:\n{report}")
    network.load_state_dict(report.matched, strict=False)
    return report
