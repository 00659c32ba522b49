"""MVSS-Net tampering localizer (multi-view multi-scale supervision, ResNet-50 streams).

Implements the localizer of Chen et al., "Image Manipulation Detection by Multi-View
Multi-Scale Supervision" (ICCV 2021; Dong et al., TPAMI 2022 for MVSS-Net++), in the form
ReLoc (Zhuang et al., "ReLoc: A Restoration-Assisted Framework for Robust Image Tampering
Localization", IEEE TIFS 2023) puts behind its SCUNet restorer. ReLoc uses only the
segmentation output.

Architecture (142,782,335 parameters; the released definition has 146,880,335 of which
4,098,000 sit in the two unused ImageNet ``fc`` layers, dropped here):

* RGB stream ``model``: ResNet-50 (timm, torchvision key names) with output stride 16:
  ``layer4`` keeps stride 1 and uses the DeepLab-v3 "multi-grid" dilations 1, 2, 4 in its
  three bottlenecks. Features ``c1..c4``: 256, 512, 1024, 2048 channels at strides
  4, 8, 16, 16.
* Edge-supervised branch: on every ``c_i`` a fixed Sobel x/y convolution (all input
  channels summed to one map, weights not trained) followed by ``BatchNorm2d(1)`` gives
  ``g = sqrt(gx^2 + gy^2)``; the features are gated by ``sigmoid(g) * c_i`` and reduced to
  one channel by an edge residual block (ERB: 1x1 conv, then ``conv3x3-BN-ReLU-conv3x3``
  residual, ReLU). The four one-channel maps are merged coarse-to-fine at stride 4 by
  three more ERBs (``erb_trans_*``, the last without ReLU), whose output is the edge logit.
* Noise-sensitive branch: grayscale -> :class:`BayarConv2d` (1 -> 3 channels, 5x5,
  padding 2) -> a second ResNet-50 (``noise_extractor.model``); only its ``layer4``
  output is used.
* Head: DANet dual attention (:class:`DualAttentionHead`) on the concatenation of both
  streams' last features (4096 channels at stride 16): a position-attention branch and a
  channel-attention branch, each 3x3 conv-BN-ReLU 4096 -> 1024, attention, 3x3
  conv-BN-ReLU 1024 -> 1024; their sum -> dropout 0.1 -> 1x1 conv -> one logit, upsampled
  bilinearly (``align_corners=True``).

State-dict keys equal the reference's (``model.*``, ``noise_extractor.model.*``,
``erb_db_1..4``, ``erb_trans_1..3``, ``sobel_x1..4``/``sobel_y1..4`` with ``.0.weight``
the fixed kernel and ``.1`` the BatchNorm, ``constrain_conv.kernel``, ``head.*``), minus
the duplicate ``blocks.*`` aliases and the ``fc`` layers; :func:`mvssnet_key_map` says
which reference keys to drop.

Differences from the reference code:

* ``forward`` accepts any ``H, W``: the input is padded bottom/right by replication to a
  multiple of 16 and both outputs are cropped back. For sides divisible by 16 the
  segmentation output is the reference's.
* The edge logits are upsampled (bilinear, ``align_corners=True``) from stride 4 to the
  input size; the reference returns them at ``(H/4, W/4)``.
* Grayscale: the reference computes ``0.2989 * ch2 + 0.587 * ch1 + 0.114 * ch0`` (BGR
  order, as in the original MVSS-Net, which reads images with OpenCV) although ReLoc feeds
  RGB. Here the default is the correct ITU-R BT.601 luma of RGB,
  ``0.299 R + 0.587 G + 0.114 B``; ``bgr_gray_bug=True`` reproduces the reference
  exactly, which is what checkpoints trained by ReLoc's code expect.
* :class:`BayarConv2d` applies its constraint functionally in ``forward`` (the reference
  overwrites ``kernel.data`` in place on every call). Outputs are identical; gradients
  here also flow through the normalisation, and the stored kernel is left untouched.
* The Sobel magnitude is computed as ``sqrt(max(gx^2 + gy^2, 1e-12))`` so its gradient
  stays finite where both responses vanish (the reference takes ``sqrt`` of the raw sum,
  whose gradient there is NaN). The outputs differ by at most 1e-6 before the sigmoid.
* The Sobel kernels are ``nn.Parameter(requires_grad=False)`` as in the reference: they
  are counted in the parameter total and stored in the state dict. Note that ReLoc's
  training loop sets ``requires_grad = True`` on every localizer parameter, so its
  checkpoints may hold trained Sobel kernels; they load by name like everything else.
* No auxiliary DANet outputs (``aux=False`` in the reference configuration; no such keys).

Input normalisation: the original MVSS-Net pipeline normalises images with the ImageNet
mean/std *outside* the network (``direct_val``), whereas ReLoc feeds the restorer's RGB
output in [0, 1] straight into MVSS-Net. The default ``input_normalization="none"``
follows ReLoc; ``"imagenet"`` applies the ImageNet mean/std inside ``forward`` (the
grayscale of the noise branch is then taken from the normalised tensor, as in the
reference).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import timm
import torch
import torch.nn.functional as F
from torch import nn

from reloc.models.layers import pad_to_multiple
from reloc.precision import full_precision

#: Dilations of the three bottlenecks of ``layer4`` (DeepLab-v3 multi-grid, stride 1).
LAYER4_DILATIONS = (1, 2, 4)

#: Channels of the ResNet-50 stage outputs ``c1..c4``.
RESNET50_CHANNELS = (256, 512, 1024, 2048)

#: ITU-R BT.601 luma weights for (R, G, B).
BT601_RGB = (0.299, 0.587, 0.114)

#: The reference ``rgb2gray`` weights for channels (0, 1, 2), i.e. it reads them as B, G, R.
REFERENCE_GRAY_WEIGHTS = (0.1140, 0.5870, 0.2989)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Floor of ``gx^2 + gy^2`` before the square root of the Sobel magnitude.
SOBEL_EPS = 1e-12


def rgb_to_gray(x: torch.Tensor, bgr_gray_bug: bool = False) -> torch.Tensor:
    """Grayscale of a batch of 3-channel images.

    Args:
        x: images, shape ``(B, 3, H, W)``, channels in RGB order.
        bgr_gray_bug: use the reference MVSS-Net weights, which treat channel 0 as blue
            (``0.114 * ch0 + 0.587 * ch1 + 0.2989 * ch2``), instead of BT.601 luma of RGB.

    Returns:
        ``(B, 1, H, W)``.
    """
    weights = REFERENCE_GRAY_WEIGHTS if bgr_gray_bug else BT601_RGB
    return weights[0] * x[:, 0:1] + weights[1] * x[:, 1:2] + weights[2] * x[:, 2:3]


class BayarConv2d(nn.Module):
    """Constrained convolution of Bayar & Stamm: every filter's centre tap is -1 and its
    other taps sum to 1, so the layer predicts each pixel from its neighbours and outputs
    the prediction residual (a learned high-pass "noise" view).

    The free parameter ``kernel`` has shape ``(in_channels, out_channels, k*k - 1)`` (the
    reference layout, so checkpoints load by name). The constraint is applied in
    ``forward`` without modifying ``kernel``.

    Args:
        in_channels, out_channels: channels. kernel_size: square side ``k`` (odd).
        stride, padding: as in ``F.conv2d``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        # Uniform [0, 1) as the reference, so the normalising sums are positive at start.
        self.kernel = nn.Parameter(torch.rand(in_channels, out_channels, kernel_size**2 - 1))

    def constrained_weight(self) -> torch.Tensor:
        """The convolution weight ``(out_channels, in_channels, k, k)`` satisfying the constraint.

        ``weight[o, i]`` is built from ``kernel[i, o]`` (for ``in_channels == 1`` this equals
        the reference's plain reshape).
        """
        taps = self.kernel / self.kernel.sum(dim=-1, keepdim=True)  # (Cin, Cout, k*k-1)
        centre = self.kernel_size**2 // 2
        minus_one = taps.new_full((*taps.shape[:2], 1), -1.0)  # (Cin, Cout, 1)
        full = torch.cat((taps[..., :centre], minus_one, taps[..., centre:]), dim=-1)  # (Cin, Cout, k*k)
        full = full.permute(1, 0, 2)  # (Cout, Cin, k*k)
        return full.reshape(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H', W')
        return F.conv2d(x, self.constrained_weight(), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


_SOBEL_KERNELS = {
    "x": ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    "y": ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
}


class SobelFilter(nn.Sequential):
    """Fixed Sobel derivative summed over all input channels, then ``BatchNorm2d(1)``.

    Index ``0`` is a ``Conv2d(in_channels, 1, 3, padding=1, bias=False)`` whose weight is the
    3x3 Sobel kernel repeated over the input channels, registered as a parameter with
    ``requires_grad=False`` (as in the reference, so it is in the state dict); index ``1``
    is the BatchNorm.

    Args:
        in_channels: channels of the feature map. axis: ``"x"`` (horizontal derivative) or
            ``"y"``.

    Shapes: ``(B, in_channels, H, W) -> (B, 1, H, W)``.
    """

    def __init__(self, in_channels: int, axis: Literal["x", "y"]) -> None:
        conv = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1, bias=False)
        kernel = torch.tensor(_SOBEL_KERNELS[axis]).expand(1, in_channels, 3, 3).clone()
        conv.weight = nn.Parameter(kernel, requires_grad=False)
        super().__init__(conv, nn.BatchNorm2d(1))


def sobel_gate(sobel_x: nn.Module, sobel_y: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Gate features by their edge strength: ``sigmoid(sqrt(gx^2 + gy^2)) * features``.

    Args:
        sobel_x, sobel_y: :class:`SobelFilter` modules for the two axes.
        features: ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)``.
    """
    g_x = sobel_x(features)  # (B, 1, H, W)
    g_y = sobel_y(features)  # (B, 1, H, W)
    magnitude = torch.sqrt((g_x.square() + g_y.square()).clamp_min(SOBEL_EPS))  # (B, 1, H, W)
    return torch.sigmoid(magnitude) * features


class ERB(nn.Module):
    """Edge residual block: ``y = conv1x1(x)``, ``out = act(y + conv3(relu(bn(conv2(y)))))``.

    ``conv1`` is 1x1, ``conv2``/``conv3`` are 3x3 (padding 1); all convolutions have biases.
    ``act`` is ReLU unless ``forward(..., relu=False)``.

    Args:
        in_channels, out_channels: channels.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = self.conv1(x)  # (B, Cout, H, W)
        residual = self.conv3(F.relu(self.bn(self.conv2(x))))  # (B, Cout, H, W)
        out = x + residual
        return F.relu(out) if relu else out


class PositionAttention(nn.Module):
    """DANet position attention: every position attends to all positions.

    ``conv_b``/``conv_c`` (1x1, C -> C/8) give queries/keys, ``conv_d`` (1x1, C -> C) values;
    ``out = alpha * attended + x`` with ``alpha`` initialised to 0.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_b = nn.Conv2d(channels, channels // 8, 1)
        self.conv_c = nn.Conv2d(channels, channels // 8, 1)
        self.conv_d = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        query = self.conv_b(x).flatten(2).transpose(1, 2)  # (B, N, C/8), N = H*W
        key = self.conv_c(x).flatten(2)  # (B, C/8, N)
        attention = torch.softmax(torch.bmm(query, key), dim=-1)  # (B, N, N), rows: queries
        value = self.conv_d(x).flatten(2)  # (B, C, N)
        attended = torch.bmm(value, attention.transpose(1, 2))  # (B, C, N)
        return self.alpha * attended.view(batch, -1, height, width) + x


class ChannelAttention(nn.Module):
    """DANet channel attention: every channel attends to all channels.

    Affinities ``A = X X^T`` (``X``: ``(C, H*W)``) are turned into ``softmax(max_row(A) - A)``
    (the DANet form that favours dissimilar channels); ``out = beta * (softmax X) + x``
    with ``beta`` initialised to 0.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        flat = x.flatten(2)  # (B, C, N)
        affinity = torch.bmm(flat, flat.transpose(1, 2))  # (B, C, C)
        affinity = affinity.amax(dim=-1, keepdim=True) - affinity  # (B, C, C)
        attention = torch.softmax(affinity, dim=-1)  # (B, C, C)
        attended = torch.bmm(attention, flat)  # (B, C, N)
        return self.beta * attended.view(batch, -1, height, width) + x


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """``Sequential(conv3x3 (no bias), BatchNorm, ReLU)``; keys ``.0.weight``, ``.1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DualAttentionHead(nn.Module):
    """DANet head (``_DAHead`` of the reference with ``aux=False``).

    ``p = conv_p2(pam(conv_p1(x)))``, ``c = conv_c2(cam(conv_c1(x)))``,
    ``out = conv1x1(dropout(p + c))``; the conv blocks are 3x3 conv-BN-ReLU with
    ``in_channels // 4`` channels.

    Args:
        in_channels: input channels (4096 in MVSS-Net). num_classes: output channels.

    Shapes: ``(B, in_channels, h, w) -> (B, num_classes, h, w)``.
    """

    def __init__(self, in_channels: int, num_classes: int = 1) -> None:
        super().__init__()
        inter = in_channels // 4
        self.conv_p1 = _conv_bn_relu(in_channels, inter)
        self.conv_c1 = _conv_bn_relu(in_channels, inter)
        self.pam = PositionAttention(inter)
        self.cam = ChannelAttention()
        self.conv_p2 = _conv_bn_relu(inter, inter)
        self.conv_c2 = _conv_bn_relu(inter, inter)
        self.out = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inter, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat_p = self.conv_p2(self.pam(self.conv_p1(x)))  # (B, inter, h, w)
        feat_c = self.conv_c2(self.cam(self.conv_c1(x)))  # (B, inter, h, w)
        return self.out(feat_p + feat_c)  # (B, num_classes, h, w)


def build_resnet50_os16() -> nn.Module:
    """timm ResNet-50 without classifier, output stride 16, ``layer4`` dilations 1, 2, 4.

    timm's ``output_stride=16`` gives ``layer4`` stride 1 with dilations 1, 2, 2; the third
    bottleneck is switched to dilation 4 to match the reference (DeepLab-v3 multi-grid).
    Initialisation as the reference: Kaiming-normal (fan-out) convolutions, BatchNorm 1/0
    (``zero_init_last=False``). Never downloads weights.

    Returns:
        the timm ``ResNet``; its state-dict keys are torchvision's (``conv1``, ``bn1``,
        ``layer1.0.conv1``, ..., ``layer4.2.bn3``), without ``fc``.
    """
    resnet = timm.create_model(
        "resnet50", pretrained=False, num_classes=0, global_pool="", output_stride=16, zero_init_last=False
    )
    for block, dilation in zip(resnet.layer4, LAYER4_DILATIONS, strict=True):
        block.conv2.dilation = (dilation, dilation)
        block.conv2.padding = (dilation, dilation)
    return resnet


def resnet_features(resnet: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the four stages of a (timm or torchvision) ResNet.

    Args:
        resnet: module with ``conv1, bn1, maxpool, layer1..layer4`` (ReLU applied here).
        x: ``(B, 3, H, W)`` with ``H, W`` divisible by 16.

    Returns:
        ``[c1, c2, c3, c4]``: ``(B, 256, H/4, W/4)``, ``(B, 512, H/8, W/8)``,
        ``(B, 1024, H/16, W/16)``, ``(B, 2048, H/16, W/16)`` for the output-stride-16 ResNet-50.
    """
    with full_precision(x):  # the stem sees the pixels: float32 (reloc.precision)
        x = resnet.maxpool(F.relu(resnet.bn1(resnet.conv1(x.float()))))  # (B, 64, H/4, W/4)
    features = []
    for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        x = layer(x)
        features.append(x)
    return features


class ResNet50Stream(nn.Module):
    """Holder of a second ResNet-50 under ``.model`` (reference key ``noise_extractor.model.*``).

    Shapes: ``forward``: ``(B, 3, H, W) -> [c1, c2, c3, c4]`` as :func:`resnet_features`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model = build_resnet50_os16()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return resnet_features(self.model, x)


class MVSSNet(nn.Module):
    """MVSS-Net: RGB ResNet-50 + edge branch, Bayar-noise ResNet-50, dual-attention head.

    Args:
        bgr_gray_bug: compute the noise branch's grayscale like the reference code, which
            reads the RGB input as BGR (a pure red pixel gets gray 0.114 instead of 0.299).
            Set it to use checkpoints trained with the reference code on RGB input, e.g.
            ReLoc's; leave it ``False`` (correct BT.601 luma) when training from scratch.
        input_normalization: ``"none"`` feeds the [0, 1] RGB input to both streams as ReLoc
            does; ``"imagenet"`` first normalises it with the ImageNet mean/std, as the
            original MVSS-Net pipeline does outside its network.

    ``forward(x)``: ``x`` is RGB in [0, 1], ``(B, 3, H, W)`` of any size; returns
    ``(edge_logits, seg_logits)``, both ``(B, 1, H, W)`` (apply a sigmoid for probabilities).
    """

    #: sides of the input are padded (replication, bottom/right) to a multiple of this
    #: inside :meth:`forward` (output stride 16); :mod:`reloc.export` reads it
    pad_multiple: int = 16

    def __init__(self, bgr_gray_bug: bool = False, input_normalization: Literal["none", "imagenet"] = "none") -> None:
        super().__init__()
        if input_normalization not in ("none", "imagenet"):
            raise ValueError(f"input_normalization must be 'none' or 'imagenet', got {input_normalization!r}")
        self.bgr_gray_bug = bgr_gray_bug
        self.input_normalization = input_normalization
        if input_normalization == "imagenet":
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        c1, c2, c3, c4 = RESNET50_CHANNELS
        # RGB stream (reference: MVSSNet inherits the ResNet50 wrapper, hence top-level ``model``).
        self.model = build_resnet50_os16()

        # Edge-supervised branch.
        self.erb_db_1 = ERB(c1, 1)
        self.erb_db_2 = ERB(c2, 1)
        self.erb_db_3 = ERB(c3, 1)
        self.erb_db_4 = ERB(c4, 1)
        self.erb_trans_1 = ERB(1, 1)
        self.erb_trans_2 = ERB(1, 1)
        self.erb_trans_3 = ERB(1, 1)
        self.sobel_x1, self.sobel_y1 = SobelFilter(c1, "x"), SobelFilter(c1, "y")
        self.sobel_x2, self.sobel_y2 = SobelFilter(c2, "x"), SobelFilter(c2, "y")
        self.sobel_x3, self.sobel_y3 = SobelFilter(c3, "x"), SobelFilter(c3, "y")
        self.sobel_x4, self.sobel_y4 = SobelFilter(c4, "x"), SobelFilter(c4, "y")

        # Noise-sensitive branch.
        self.noise_extractor = ResNet50Stream()
        self.constrain_conv = BayarConv2d(1, 3, kernel_size=5, padding=2)

        self.head = DualAttentionHead(2 * c4, num_classes=1)

    def grayscale(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 1, H, W)`` with this model's ``bgr_gray_bug`` setting."""
        return rgb_to_gray(x, bgr_gray_bug=self.bgr_gray_bug)

    def edge_logits(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Edge branch on ``[c1, c2, c3, c4]`` (strides 4, 8, 16, 16) -> ``(B, 1, H/4, W/4)``."""
        c1, c2, c3, c4 = features
        size = c1.shape[-2:]  # (H/4, W/4)
        e1 = self.erb_db_1(sobel_gate(self.sobel_x1, self.sobel_y1, c1))  # (B, 1, H/4, W/4)
        e2 = self.erb_db_2(sobel_gate(self.sobel_x2, self.sobel_y2, c2))  # (B, 1, H/8, W/8)
        e3 = self.erb_db_3(sobel_gate(self.sobel_x3, self.sobel_y3, c3))  # (B, 1, H/16, W/16)
        e4 = self.erb_db_4(sobel_gate(self.sobel_x4, self.sobel_y4, c4))  # (B, 1, H/16, W/16)
        edge = self.erb_trans_1(e1 + _upsample(e2, size))  # (B, 1, H/4, W/4)
        edge = self.erb_trans_2(edge + _upsample(e3, size))
        return self.erb_trans_3(edge + _upsample(e4, size), relu=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.pad_multiple)  # (B, 3, H', W'), H', W' divisible by 16
        if self.input_normalization == "imagenet":
            x = (x - self.mean) / self.std
        padded_size = x.shape[-2:]

        features = resnet_features(self.model, x)  # c1..c4, strides 4, 8, 16, 16
        edge = self.edge_logits(features)  # (B, 1, H'/4, W'/4)

        with full_precision(x):  # the constrained (high-pass) conv sees the pixels: float32
            noise = self.constrain_conv(self.grayscale(x.float()))  # (B, 3, H', W')
        noise_c4 = self.noise_extractor(noise)[-1]  # (B, 2048, H'/16, W'/16)
        fused = torch.cat([features[-1], noise_c4], dim=1)  # (B, 4096, H'/16, W'/16)
        seg = self.head(fused)  # (B, 1, H'/16, W'/16)

        edge = _upsample(edge, padded_size)  # (B, 1, H', W')
        seg = _upsample(seg, padded_size)  # (B, 1, H', W')
        return edge[..., :height, :width], seg[..., :height, :width]  # 2 x (B, 1, H, W)


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (the reference's ``nn.Upsample``/``interpolate``)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def build_mvssnet(**kwargs) -> MVSSNet:
    """Registry entry point: ``MVSSNet(**kwargs)``."""
    return MVSSNet(**kwargs)


#: Wrapper prefixes stripped before mapping (``nn.DataParallel`` adds ``module.``).
_WRAPPER_PREFIXES = ("module.",)


#: Reference keys with no counterpart here: ImageNet classifiers of both ResNets, and the
#: auxiliary DANet outputs of an ``aux=True`` build (absent from the released configuration).
_DROPPED_PREFIXES = ("model.fc.", "noise_extractor.model.fc.", "head.conv_p3.", "head.conv_c3.")

#: ``blocks.N`` (and ``noise_extractor.blocks.N``) is a second name of ``model.layer{N+1}``.
_BLOCK_ALIAS = re.compile(r"(noise_extractor\.)?blocks\.[0-3]\..+")


def mvssnet_key_map(reference_key: str) -> str | None:
    """Translate a state-dict key of the reference MVSS-Net to this module's key.

    The reference registers each ResNet's ``layer1..layer4`` twice: as ``model.layerK`` and
    as ``blocks.{K-1}`` (a ``ModuleList`` of the same modules), so a checkpoint stores every
    stage tensor under both names. Mapping:

    * ``blocks.*``, ``noise_extractor.blocks.*`` -> ``None`` (aliases of ``model.layer*``)
    * ``model.fc.*``, ``noise_extractor.model.fc.*`` -> ``None`` (unused classifiers)
    * ``head.conv_p3.*``, ``head.conv_c3.*`` -> ``None`` (auxiliary outputs, ``aux=True`` only)
    * every other key (``model.*``, ``noise_extractor.model.*``, ``erb_*``, ``sobel_*``,
      ``constrain_conv.kernel``, ``head.*``) -> unchanged (timm's ResNet uses torchvision's
      names).

    A leading ``module.`` (``nn.DataParallel``, as in ReLoc's saved checkpoints) is stripped
    first.

    Args:
        reference_key: e.g. ``"noise_extractor.model.layer4.2.conv2.weight"``.

    Returns:
        our key, or ``None`` for a reference key to drop. Any other key comes back
        unchanged, so a by-name loader reports it as unexpected.
    """
    key = reference_key
    while key.startswith(_WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    if _BLOCK_ALIAS.fullmatch(key) or key.startswith(_DROPPED_PREFIXES):
        return None
    return key
