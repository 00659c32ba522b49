"""Reading state dicts from any checkpoint file and matching them to a network by key name.

Kept free of the network registry so that the network modules themselves can use it
(e.g. SCSE-Unet's optional encoder weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

#: Keys under which training frameworks nest a state dict inside a checkpoint.
NESTING_KEYS = ("state_dict", "params_ema", "params", "model", "model_state_dict", "net")


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit its network; names the file."""


@dataclass
class LoadReport:
    """What a by-name load matched and what it could not."""

    matched: dict[str, torch.Tensor] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every key of the network got a tensor of the right shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"matched {len(self.matched)} tensors"]
        for title, keys in (
            ("missing (network keys the file lacks)", self.missing),
            ("unexpected (file keys the network lacks)", self.unexpected),
            ("shape mismatch", self.mismatched),
            ("dropped by the key map (unused in this network)", self.dropped),
        ):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")
                lines.append(f"{title}: {shown}")
        return "\n".join(lines)


def match_state_dict(
    network: nn.Module,
    state: Mapping[str, torch.Tensor],
    key_map: Callable[[str], str | None] | None = None,
) -> LoadReport:
    """Match a state dict to ``network`` by key name (after ``key_map``), never by order."""
    own = network.state_dict()
    report = LoadReport()
    wrong_shape: set[str] = set()
    for key, tensor in state.items():
        target = key_map(key) if key_map else key
        if target is None:
            report.dropped.append(key)
        elif target not in own:
            report.unexpected.append(key)
        elif target in report.matched:
            report.mismatched.append(f"{key} maps onto {target}, which another key already filled")
        elif tuple(own[target].shape) != tuple(tensor.shape):
            report.mismatched.append(f"{key} {tuple(tensor.shape)} vs {target} {tuple(own[target].shape)}")
            wrong_shape.add(target)
        else:
            report.matched[target] = tensor
    report.missing = [key for key in own if key not in report.matched and key not in wrong_shape]
    return report


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file or a PyTorch checkpoint (``weights_only``).

    Unwraps the usual nestings (``state_dict``, ``params_ema``, ``params``, ``model``, ...)
    and strips the ``module.`` prefix ``nn.DataParallel`` adds.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reader failure becomes one clear error
        raise WeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    while isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        nested = next((state[k] for k in NESTING_KEYS if k in state), None)
        if nested is None:
            raise WeightsError(f"{path}: holds no tensors at its top level or under {NESTING_KEYS}")
        state = nested
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}
