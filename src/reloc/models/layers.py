"""Building blocks shared by several networks.

Padding helpers let every network accept any input size: a network that needs sides
divisible by ``k`` pads its input on the bottom/right and crops its output back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> torch.Tensor:
    """Pad a batch on the bottom and right so that height and width divide by ``multiple``.

    Args:
        x: images, shape ``(B, C, H, W)``.
        multiple: the required divisor of both sides.
        mode: an ``F.pad`` mode (``"replicate"`` as the reference SCUNet, ``"reflect"``,
            ``"constant"``).

    Returns:
        ``(B, C, H', W')`` with ``H' = ceil(H / multiple) * multiple`` (same for ``W'``);
        ``x`` itself when no padding is needed.
    """
    height, width = x.shape[-2:]
    pad_bottom = -height % multiple
    pad_right = -width % multiple
    if pad_bottom == 0 and pad_right == 0:
        return x
    return F.pad(x, (0, pad_right, 0, pad_bottom), mode=mode)
