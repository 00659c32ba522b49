"""Network registries: explicit name -> builder dicts for the three roles of ReLoc.

>>> restorer = create_restorer("scunet", preset="small")
>>> localizer = create_localizer("dfcn")
>>> sum(parameter.numel() for parameter in localizer.parameters())
2553489

Every network created here remembers how it was built (``network.spec``), so
:func:`reloc.models.weights.save_network` can store that in the weights file and
:func:`reloc.models.weights.load_network` can rebuild it from the file alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reloc.io_utils import parse_json
from reloc.models.dfcn import build_dfcn
from reloc.models.discriminator import build_dcgan
from reloc.models.mvssnet import build_mvssnet, mvssnet_key_map
from reloc.models.scse_unet import build_scse_unet, scse_unet_key_map
from reloc.models.scunet import build_scunet

RESTORERS: dict[str, Callable[..., nn.Module]] = {"scunet": build_scunet}
LOCALIZERS: dict[str, Callable[..., nn.Module]] = {
    "dfcn": build_dfcn,
    "scse_unet": build_scse_unet,
    "mvssnet": build_mvssnet,
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"dcgan": build_dcgan}
REGISTRIES: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "restorer": RESTORERS,
    "localizer": LOCALIZERS,
    "discriminator": DISCRIMINATORS,
}

#: Builder arguments that matter only while building (a file to initialise from): kept
#: out of ``network.spec``, because the weights saved with the spec already hold their
#: effect and the file may not exist where the weights are loaded again.
CONSTRUCTION_ONLY: dict[str, tuple[str, ...]] = {"scse_unet": ("encoder_weights",)}

#: Maps from the reference implementations' state-dict keys to ours, where they differ.
#: A map returns ``None`` for a reference key with no counterpart (e.g. unused fc layers).
FOREIGN_KEY_MAPS: dict[str, Callable[[str], str | None]] = {
    "scse_unet": scse_unet_key_map,
    "mvssnet": mvssnet_key_map,
}


@dataclass(frozen=True)
class NetworkSpec:
    """How a network was built: its role, registry name and builder arguments."""

    kind: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Build a freshly initialised network from this spec."""
        return create_network(self.kind, self.name, **self.kwargs)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "name": self.name, "kwargs": self.kwargs}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        data = parse_json(text)
        return cls(data["kind"], data["name"], data.get("kwargs", {}))


def create_network(kind: str, name: str, **kwargs: Any) -> nn.Module:
    """Build the network ``name`` of role ``kind`` (``restorer``, ``localizer``, ``discriminator``).

    Raises:
        ValueError: for an unknown role or name, listing the valid ones.
    """
    if kind not in REGISTRIES:
        raise ValueError(f"unknown network role {kind!r}; choose from {sorted(REGISTRIES)}")
    registry = REGISTRIES[kind]
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose from {sorted(registry)}")
    network = registry[name](**kwargs)
    dropped = CONSTRUCTION_ONLY.get(name, ())
    network.spec = NetworkSpec(kind, name, {key: value for key, value in kwargs.items() if key not in dropped})
    return network


def create_restorer(name: str, **kwargs: Any) -> nn.Module:
    """Build a restorer: ``(B, 3, H, W)`` in [0, 1] -> restored ``(B, 3, H, W)``."""
    return create_network("restorer", name, **kwargs)


def create_localizer(name: str, **kwargs: Any) -> nn.Module:
    """Build a localizer: ``(B, 3, H, W)`` in [0, 1] -> logits ``(B, 1, H, W)``
    (MVSS-Net: a tuple ``(edge_logits, seg_logits)``; see :func:`segmentation_logits`)."""
    return create_network("localizer", name, **kwargs)


def create_discriminator(name: str, **kwargs: Any) -> nn.Module:
    """Build a discriminator: ``(B, 3, H, W)`` -> real/fake logits ``(B,)``."""
    return create_network("discriminator", name, **kwargs)


def segmentation_logits(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The tamper-map logits ``(B, 1, H, W)`` of any localizer's output (MVSS-Net's last)."""
    return output[-1] if isinstance(output, tuple) else output


def count_parameters(network: nn.Module) -> int:
    """Number of registered parameters (trainable or not, buffers excluded)."""
    return sum(p.numel() for p in network.parameters())
