"""Inference: a restorer (or none) in front of a localizer.

``Pipeline(restorer, localizer)`` composes any restorer with any localizer, the paper's
transferability; ``restorer=None`` localizes the input as it is. The restored image is
clamped to [0, 1] before localization (the released SCUNet does not clamp its output).
"""

from __future__ import annotations

import torch
from torch import nn

from reloc.models import segmentation_logits


class Pipeline(nn.Module):
    """Restore then localize.

    Args:
        restorer: image ``(B, 3, H, W)`` -> restored image, or ``None`` for no restoration.
        localizer: image -> logits ``(B, 1, H, W)`` (or MVSS-Net's ``(edge, seg)``).
    """

    def __init__(self, restorer: nn.Module | None, localizer: nn.Module) -> None:
        super().__init__()
        self.restorer = restorer
        self.localizer = localizer

    def restore(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> restored ``(B, 3, H, W)`` clamped to [0, 1]."""
        if self.restorer is None:
            return image
        return self.restorer(image).clamp(0.0, 1.0)

    def run(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> (restored ``(B, 3, H, W)``, probabilities ``(B, 1, H, W)``)."""
        restored = self.restore(image)
        return restored, torch.sigmoid(segmentation_logits(self.localizer(restored)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> tamper probabilities ``(B, 1, H, W)``."""
        return self.run(image)[1]
