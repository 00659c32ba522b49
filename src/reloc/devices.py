"""Choosing the compute device at run time (never hard-coded)."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else the CPU; any other torch device name is used as is.

    Raises:
        ValueError: a CUDA device was asked for on a machine without one.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
