"""Numeric precision of inference and training: ``fp32``, ``bf16``, ``fp16`` or ``auto``.

Reduced precision runs under ``torch.autocast`` (convolutions, matrix products and
attention in the reduced type; norms, softmax and the outputs stay float32), so weights and
results keep their float32 form and every caller sees float32 maps.

The layers that see pixels run in float32 even then (:func:`full_precision`, used by DFCN's
first block, SCUNet's head, MVSS-Net's ResNet stems and constrained convolution, SCSE-Unet's
encoder stem up to its first feature map): bf16 keeps 8 significant bits, so an
image in [0, 1] loses its last bit (``k / 255`` rounds to a 1/256 grid above 0.5), which is
where tampering traces live. Measured on the release's DFCN x0.5 + high-pass, 24 validation
images: trained in fp32 and run under bf16 autocast without the guard, per-image AUC
0.843 -> 0.797; trained under bf16 autocast without it (8000 steps) and run in fp32,
0.859 -> 0.728 (docs/results/precision.md, ``benchmarks/precision.py``).

``auto`` is decided at run time from what the hardware reports, never from a list of
machine names:

- CUDA: bf16 where the device supports it (``torch.cuda.is_bf16_supported()``), else fp16;
- CPU: bf16 where the processor reports native bf16 arithmetic (x86 ``avx512_bf16`` or
  ``amx_bf16``, Arm ``bf16``; read from ``/proc/cpuinfo``, or torch's cpuinfo elsewhere),
  else fp32: without those instructions bf16 is emulated and slower than fp32;
- any other device: fp32.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: CPU flags (``/proc/cpuinfo``) meaning native bf16 arithmetic.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first processor in ``/proc/cpuinfo`` (x86 ``flags``, Arm
    ``Features``); empty where there is no such file."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``; the platform's name elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Whether the processor does bf16 arithmetic natively (see the module docstring)."""
    flags = cpu_flags()
    if flags:
        return bool(flags & CPU_BF16_FLAGS)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's cpuinfo, off Linux
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The compute dtype of ``precision`` on ``device`` (``auto`` resolved as the module says).

    Raises:
        ValueError: an unknown precision, or fp16/bf16 asked for where it cannot run
            (fp16 on a device other than CUDA; bf16 on a CUDA device without it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_bf16():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device, not {device.type} (use bf16 or fp32)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16 is not supported by this CUDA device (use fp16)")
    return DTYPES[precision]


def autocast(device: torch.device | str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``dtype`` on ``device``; a no-op for float32."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``tensor``'s device: the pixel-facing layers inside run in
    float32 whatever precision the caller chose (see the module docstring); give them
    ``tensor.float()``. Their float32 outputs go on in the caller's precision."""
    return torch.autocast(tensor.device.type, enabled=False)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (the names of :data:`PRECISIONS`)."""
    return next(name for name, value in DTYPES.items() if value == dtype)
