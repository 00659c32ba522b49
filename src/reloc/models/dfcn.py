"""DFCN localizer: densely connected fully convolutional network.

Implements the PyTorch DFCN used by ReLoc (Zhuang et al., "Image tampering localization
using a dense fully convolutional network", IEEE TIFS 2021; and ReLoc, IEEE TIFS 2023).

Module and parameter names follow the authors' release (``dense_block1.conv1.conv``,
``...bn_layer``, ``transition_layer``, ``se_layer.fc1``, ``de_conv1``, ``final_conv``), so
its checkpoints load by key name.

The released dense block always builds four convolutions although blocks 2-7 call only
two of them in ``forward``. ``faithful=True`` (the default) keeps the unused ones so the
network has the published 2,553,489 parameters and released weights load without
"unexpected key" reports; ``faithful=False`` drops them (1,448,241 parameters, same
outputs).

``highpass=True`` (off by default; **not in the paper or its release**) adds the
forensic-standard fixed front end of SRM high-pass filters (Fridrich and Kodovsky's rich
models, as in RGB-N and many later localizers): three 5x5 SRM kernels applied to each
colour channel, truncated, concatenated to the RGB input. The filters are a
non-trainable, non-persistent buffer (not in the state dict); only ``dense_block1``'s
input width changes (3 -> 12 channels). At CPU scale a network without it learns content
cues that survive JPEG instead of the faint noise traces the paper's question is about.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reloc.precision import full_precision

#: Convolutions per dense block the released definition always builds.
REGISTERED_CONVS = 4

#: The three SRM kernels of the high-pass front end (first order, 5x5 "KV", second order).
SRM_KERNELS = (
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
)
#: Their normalisations (each kernel divided by it, as in SRM).
SRM_SCALES = (4.0, 12.0, 2.0)
#: Residuals are computed on the 0-255 scale and truncated to [-T, T], then divided by T.
SRM_TRUNCATION = 3.0


class SRMHighPass(nn.Module):
    """Fixed SRM filter bank: ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 9, H, W)`` residuals in [-1, 1].

    Each of the three kernels is applied to each colour channel (depthwise, replicate
    padding) on the 0-255 scale; the residual is truncated to ``[-T, T]`` (T = 3, the
    steganalysis standard) and scaled to [-1, 1]. Nothing here trains; the kernels are a
    non-persistent buffer, so state dicts are those of the network without the front end.
    """

    def __init__(self) -> None:
        super().__init__()
        kernels = torch.tensor(SRM_KERNELS, dtype=torch.float32) / torch.tensor(SRM_SCALES)[:, None, None]
        # channel c, kernel k -> output 3c + k
        weight = kernels[None].expand(3, -1, -1, -1).reshape(9, 1, 5, 5).clone()
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        padded = F.pad(image * 255.0, (2, 2, 2, 2), mode="replicate")
        residual = F.conv2d(padded, self.weight.to(image.dtype), groups=3)
        return residual.clamp(-SRM_TRUNCATION, SRM_TRUNCATION) / SRM_TRUNCATION


class ConvBNReLU(nn.Module):
    """``conv (with bias) -> BatchNorm -> ReLU``, padded to keep the size.

    Args:
        in_channels, out_channels: channels. kernel: square kernel side. dilation: dilation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.bn_layer = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        return F.relu(self.bn_layer(self.conv(x)))


class ChannelSE(nn.Module):
    """Squeeze-excitation over channels: global mean -> Linear C->C/2 -> ReLU -> Linear -> sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))  # (B, C)
        return x * weights[:, :, None, None]


class DenseBlock(nn.Module):
    """Dense block: each conv sees the input and all earlier outputs; a transition conv
    (same kernel and dilation, bias, no BN/ReLU) maps the concatenation to ``out_channels``,
    then an optional 2x2 average pool and channel squeeze-excitation.

    Args:
        in_channels: input channels. growth: channels each conv adds.
        used_convs: convs called in ``forward``. registered_convs: convs built (>= used).
        out_channels: channels after the transition. dilation: of every 3x3 conv.
        pool: halve the resolution after the transition.
    """

    def __init__(
        self,
        in_channels: int,
        growth: int,
        used_convs: int,
        out_channels: int,
        dilation: int = 1,
        pool: bool = False,
        registered_convs: int | None = None,
    ) -> None:
        super().__init__()
        registered = max(used_convs, registered_convs or used_convs)
        self.used_convs = used_convs
        for i in range(registered):
            self.add_module(f"conv{i + 1}", ConvBNReLU(in_channels + i * growth, growth, 3, dilation))
        self.transition_layer = nn.Conv2d(
            in_channels + used_convs * growth, out_channels, 3, padding=dilation, dilation=dilation
        )
        self.pool = pool
        self.se_layer = ChannelSE(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H', W')
        features = [x]
        for i in range(self.used_convs):
            conv = getattr(self, f"conv{i + 1}")
            features.append(conv(torch.cat(features, dim=1)))
        x = self.transition_layer(torch.cat(features, dim=1))
        if self.pool:
            x = F.avg_pool2d(x, 2)
        return self.se_layer(x)


class DFCN(nn.Module):
    """Dense FCN localizer: RGB in [0, 1] ``(B, 3, H, W)`` -> tamper logits ``(B, 1, H, W)``.

    Works on any size: the decoder resizes (nearest) to the skip features' sizes and to
    the input size, as the release does.

    Args:
        width: multiplier of every channel count (1.0 is the published network; 0.5 a
            CPU-sized variant). Channels are rounded to integers of at least 2.
        faithful: keep the never-called convs of the released dense blocks (see module doc).
        highpass: prepend the fixed SRM front end (see module doc; not the paper's network).
    """

    #: the network takes any side as it is (no padding; see :mod:`reloc.export`)
    pad_multiple: int = 1
    MIN_SIDE = 8
    """The smallest input side: three 2x2 poolings leave 1 pixel (``Pipeline`` pads smaller windows)."""
    LOGIT_BIAS = "final_conv.bias"
    """The parameter that shifts every output logit (:func:`reloc.models.calibration.calibrate`)."""

    def __init__(self, width: float = 1.0, faithful: bool = True, highpass: bool = False) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")

        def ch(channels: int) -> int:
            return max(2, round(channels * width))

        extra = REGISTERED_CONVS if faithful else None
        self.highpass = SRMHighPass() if highpass else None
        self.dense_block1 = DenseBlock(12 if highpass else 3, ch(8), 4, ch(16), pool=True, registered_convs=extra)
        self.dense_block2 = DenseBlock(ch(16), ch(16), 2, ch(32), pool=True, registered_convs=extra)
        self.dense_block3 = DenseBlock(ch(32), ch(32), 2, ch(64), pool=True, registered_convs=extra)
        self.dense_block4 = DenseBlock(ch(64), ch(64), 2, ch(96), dilation=3, registered_convs=extra)
        self.dense_block5 = DenseBlock(ch(96), ch(96), 2, ch(96), dilation=3, registered_convs=extra)
        self.de_conv1 = ConvBNReLU(ch(96), ch(64), 5)
        self.dense_block6 = DenseBlock(ch(64) + ch(32), ch(32), 2, ch(64), registered_convs=extra)
        self.de_conv2 = ConvBNReLU(ch(64), ch(48), 5)
        self.dense_block7 = DenseBlock(ch(48) + ch(16), ch(32), 2, ch(48), registered_convs=extra)
        self.de_conv3 = ConvBNReLU(ch(48), ch(32), 5)
        self.final_conv = nn.Conv2d(ch(32), 1, 5, padding=2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image ``(B, 3, H, W)``. Returns logits ``(B, 1, H, W)``."""
        with full_precision(image):  # every conv of the first block sees the pixels: float32
            pixels = image.float()
            features = (
                pixels if self.highpass is None else torch.cat((pixels, self.highpass(pixels)), dim=1)
            )  # (B, 3|12, H, W)
            b1 = self.dense_block1(features)  # (B, 16w, H/2, W/2)
        b2 = self.dense_block2(b1)  # (B, 32w, H/4, W/4)
        b3 = self.dense_block3(b2)  # (B, 64w, H/8, W/8)
        b5 = self.dense_block5(self.dense_block4(b3))  # (B, 96w, H/8, W/8)
        x = self.de_conv1(F.interpolate(b5, size=b2.shape[-2:], mode="nearest"))  # (B, 64w, H/4, W/4)
        x = self.dense_block6(torch.cat((x, b2), dim=1))  # (B, 64w, H/4, W/4)
        x = self.de_conv2(F.interpolate(x, size=b1.shape[-2:], mode="nearest"))  # (B, 48w, H/2, W/2)
        x = self.dense_block7(torch.cat((x, b1), dim=1))  # (B, 48w, H/2, W/2)
        x = self.de_conv3(F.interpolate(x, size=image.shape[-2:], mode="nearest"))  # (B, 32w, H, W)
        return self.final_conv(x)  # (B, 1, H, W)


def build_dfcn(width: float = 1.0, faithful: bool = True, highpass: bool = False) -> DFCN:
    """Registry builder for :class:`DFCN`."""
    return DFCN(width=width, faithful=faithful, highpass=highpass)
