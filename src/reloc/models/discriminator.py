"""DCGAN discriminator used by ReLoc's image-level (GAN) loss.

Radford et al., "Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks" (ICLR 2016), in the variant of the ReLoc release: four stride-2 4x4
convs (no BatchNorm on the first), a 4x4 valid conv, global average pooling and a 1x1
conv to one score. Parameter names follow the release (``main.0`` ... ``main.13``).

The release ends in a sigmoid; this module returns the logit instead and the GAN losses
use ``binary_cross_entropy_with_logits`` (same value, numerically stable).
"""

from __future__ import annotations

import torch
from torch import nn

#: Smallest input side: four halvings then a 4x4 valid conv.
MIN_DISCRIMINATOR_SIDE = 64


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANDiscriminator(nn.Module):
    """Images ``(B, 3, H, W)`` (H, W >= 64) -> real/fake logits ``(B,)``.

    Args:
        width: channels of the first conv (64 as published); doubles three times.
        in_channels: image channels.
    """

    #: the network takes any side as it is (no padding; see :mod:`reloc.export`)
    pad_multiple: int = 1

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()

        def down(cin: int, cout: int, norm: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
            if norm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.LeakyReLU(0.2, inplace=True)]

        self.main = nn.Sequential(
            *down(in_channels, width, norm=False),  # main.0-1
            *down(width, 2 * width, norm=True),  # main.2-4
            *down(2 * width, 4 * width, norm=True),  # main.5-7
            *down(4 * width, 8 * width, norm=True),  # main.8-10
            nn.Conv2d(8 * width, 8 * width, 4, 1, 0, bias=False),  # main.11
            nn.AdaptiveAvgPool2d(1),  # main.12
            nn.Conv2d(8 * width, 1, 1, bias=False),  # main.13
        )
        self.apply(dcgan_init_)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image ``(B, 3, H, W)``. Returns logits ``(B,)``."""
        if min(image.shape[-2:]) < MIN_DISCRIMINATOR_SIDE:
            raise ValueError(
                f"the DCGAN discriminator needs sides of at least {MIN_DISCRIMINATOR_SIDE}, "
                f"got {tuple(image.shape[-2:])}"
            )
        return self.main(image).flatten()


def build_dcgan(width: int = 64) -> DCGANDiscriminator:
    """Registry builder for :class:`DCGANDiscriminator`."""
    return DCGANDiscriminator(width=width)
