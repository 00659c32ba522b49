"""Choosing the compute device at run time (never hard-coded)."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else the CPU; any other torch device name is used as is.

    Raises:
        ValueError: not a device name, or a CUDA device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name!r} is not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cpu" and device.index not in (None, 0):
        raise ValueError(f"{name!r}: the CPU has no numbered devices; use 'cpu'")
    if device.type == "cpu":
        return torch.device("cpu")  # 'cpu:0' is the CPU, under the name every library takes
    if device.type == "mps" and not (torch.backends.mps.is_built() and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} requested but this PyTorch has no working MPS (Apple GPU) support here")
    if device.type not in ("cuda", "mps"):
        raise ValueError(f"{name!r}: reloc runs on 'cpu', 'cuda[:N]' or 'mps', not {device.type!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
