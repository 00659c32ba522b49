"""SCSE-Unet tampering localizer (SENet-154 encoder, U-Net decoder with max-out scSE).

Implements the localizer of Wu et al., "Robust Image Forgery Detection over Online Social
Network Shared Images" (CVPR 2022), as used by ReLoc (Zhuang et al., "ReLoc: A
Restoration-Assisted Framework for Robust Image Tampering Localization", IEEE TIFS 2023),
where it sits behind the SCUNet restorer.

Architecture (128,815,441 parameters with SENet-154):

* Encoder: SENet-154 (timm ``legacy_senet154``, ``features_only``), five feature maps of
  128, 256, 512, 1024 and 2048 channels at strides 2, 4, 8, 16 and 32. The stride-2 map is
  the output of the three-convolution stem (before its max-pool).
* Decoder: four stages, each nearest-neighbour 2x upsampling, 3x3 convolution and ReLU
  (widths 384, 256, 128, 64 from deep to shallow), each followed by a skip fusion:
  concatenate ``[decoder, encoder skip]``, 3x3 convolution, ReLU and a concurrent
  spatial/channel squeeze-and-excitation block (scSE, reduction 2) whose two branches are
  combined by an element-wise maximum ("max-out"), not by a sum as in
  segmentation_models_pytorch. No BatchNorm in the decoder.
* Head: one more 2x upsample + 3x3 convolution + ReLU to 32 channels at full resolution,
  then a 1x1 convolution to a single logit.

Differences from the reference code, none of which changes the function computed on
inputs whose sides divide by 32:

* ``forward`` returns logits; the reference ends with a sigmoid (``final.1``), so
  ``torch.sigmoid(model(x))`` equals the reference output.
* Any input size works: the input is padded on the bottom/right by replication to a
  multiple of 32 and the output cropped back (the reference needs sides divisible by 32).
* The encoder is timm's module tree, so its keys differ from the reference
  ``encoder_stages.*`` names; :func:`scse_unet_key_map` translates them. Decoder keys
  (``bottlenecks``, ``decoder_stages``, ``last_upsample``, ``final``) are identical.

Input normalisation: ReLoc feeds the restorer's RGB output in [0, 1] straight into the
localizer (no mean/std), which is the default here (``input_normalization="none"``).
Wu et al.'s own release instead normalises RGB to [-1, 1] (mean 0.5, std 0.5); pass
``input_normalization="symmetric"`` to use checkpoints trained that way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import timm
import torch
from torch import nn

from reloc.models.layers import pad_to_multiple
from reloc.models.state_dicts import WeightsError, match_state_dict, read_state_dict
from reloc.precision import full_precision

#: Encoder feature strides the decoder is built for.
ENCODER_REDUCTIONS = (2, 4, 8, 16, 32)

#: Prefixes of checkpoint wrappers that are stripped before mapping a reference key
#: (``nn.DataParallel`` adds ``module.``; Wu et al.'s ``Detector`` adds ``det_net.``).
_WRAPPER_PREFIXES = ("module.", "det_net.")

#: Classifier head of a SENet ImageNet checkpoint (Cadene ``pretrainedmodels`` and timm
#: ``legacy_senet154`` both call it ``last_linear``); unused by the localizer.
_CLASSIFIER_PREFIXES = ("last_linear.",)


class MaxoutSCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation, branches merged by maximum.

    Channel branch: global average pool, 1x1 conv ``C -> C // reduction``, ReLU, 1x1 conv
    back to ``C``, sigmoid, times the input. Spatial branch: 1x1 conv ``C -> 1`` without
    bias, sigmoid, times the input. Output: element-wise ``max`` of the two branches.

    Args:
        channels: ``C``.
        reduction: channel squeeze ratio (2 in SCSE-Unet).
    """

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1)
        self.spatial_se = nn.Sequential(
            nn.Conv2d(channels, 1, kernel_size=1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Re-weight ``x``.

        Args:
            x: features ``(B, C, H, W)``.

        Returns:
            ``(B, C, H, W)``.
        """
        gate = self.avg_pool(x)  # (B, C, 1, 1)
        gate = self.fc2(self.relu(self.fc1(gate)))  # (B, C, 1, 1)
        channel_excited = x * torch.sigmoid(gate)  # (B, C, H, W)
        spatial_excited = x * self.spatial_se(x)  # (B, C, H, W), gate (B, 1, H, W)
        return torch.maximum(channel_excited, spatial_excited)


class UpsampleConvBlock(nn.Module):
    """Nearest-neighbour 2x upsampling, 3x3 convolution (with bias) and ReLU.

    ``layer`` is ``Sequential(Upsample, Conv2d, ReLU)``, so the convolution's keys are
    ``layer.1.weight`` / ``layer.1.bias`` as in the reference.

    Args:
        in_channels, out_channels: channels before and after the block.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``."""
        return self.layer(x)


class SkipFusion(nn.Module):
    """Merge upsampled decoder features with an encoder skip: concat, 3x3 conv, ReLU, scSE.

    ``seq`` is ``Sequential(Conv2d, ReLU, MaxoutSCSE)`` (reference keys ``seq.0`` and
    ``seq.2.{fc1,fc2,spatial_se.0}``). The decoder features come first in the concatenation.

    Args:
        decoder_channels: channels of the upsampled decoder features.
        skip_channels: channels of the encoder skip.
        out_channels: output channels.
        reduction: squeeze ratio of the scSE channel branch.
    """

    def __init__(self, decoder_channels: int, skip_channels: int, out_channels: int, reduction: int = 2) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            nn.Conv2d(decoder_channels + skip_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            MaxoutSCSE(out_channels, reduction=reduction),
        )

    def forward(self, decoder: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(B, C_dec, H, W), (B, C_skip, H, W) -> (B, C_out, H, W)``."""
        return self.seq(torch.cat([decoder, skip], dim=1))


class SCSEUnet(nn.Module):
    """SCSE-Unet localizer: RGB image in [0, 1] to per-pixel tampering logits.

    Args:
        encoder: timm model name of the encoder; it must offer ``features_only`` with five
            feature maps at strides 2, 4, 8, 16, 32 (``legacy_senet154`` is the reference).
        encoder_weights: optional path to a local encoder state dict (``.safetensors`` or a
            torch ``.pth``/``.pt`` file) with timm / Cadene SENet key names
            (``layer0.conv1.weight``, ``layer1.0.conv1.weight``, ...); a ``last_linear``
            classifier and ``module.`` prefixes are ignored. Loaded strictly by key name.
            ``None`` (default) keeps the random initialisation. Nothing is ever downloaded.
        decoder_widths: output channels of the four decoder stages, shallow to deep
            (index ``i`` is the stage at stride ``2 ** (i + 1)``).
        last_width: channels of the final full-resolution upsampling block.
        scse_reduction: squeeze ratio of the scSE channel branch.
        input_normalization: ``"none"`` feeds [0, 1] RGB as is (ReLoc); ``"symmetric"``
            maps it to [-1, 1] first (Wu et al.'s release).

    Attributes:
        encoder: the timm feature extractor (keys ``encoder.layer0...encoder.layer4``).
        decoder_stages: ``decoder_stages[i]`` upsamples to stride ``2 ** (i + 1)`` and
            outputs ``decoder_widths[i]`` channels; run from index 3 down to 0.
        bottlenecks: ``bottlenecks[j]`` fuses the output of ``decoder_stages[3 - j]`` with
            the encoder map at the same stride.
        last_upsample: stride 2 to stride 1, ``decoder_widths[0] -> last_width``.
        final: ``Sequential(Conv2d(last_width, 1, 1))``.
    """

    #: sides of the input are padded (replication, bottom/right) to a multiple of this
    #: inside :meth:`forward` (five 2x downsamplings); :mod:`reloc.export` reads it
    pad_multiple: int = 32
    LOGIT_BIAS = "final.0.bias"
    """The parameter that shifts every output logit (:func:`reloc.models.calibration.calibrate`)."""

    def __init__(
        self,
        encoder: str = "legacy_senet154",
        encoder_weights: str | Path | None = None,
        decoder_widths: Sequence[int] = (64, 128, 256, 384),
        last_width: int = 32,
        scse_reduction: int = 2,
        input_normalization: Literal["none", "symmetric"] = "none",
    ) -> None:
        super().__init__()
        if len(decoder_widths) != 4:
            raise ValueError(f"decoder_widths needs 4 entries, got {tuple(decoder_widths)}")
        if input_normalization not in ("none", "symmetric"):
            raise ValueError(f"input_normalization must be 'none' or 'symmetric', got {input_normalization!r}")
        self.input_normalization = input_normalization

        self.encoder = timm.create_model(encoder, pretrained=False, features_only=True)
        reductions = tuple(self.encoder.feature_info.reduction())
        if reductions != ENCODER_REDUCTIONS:
            raise ValueError(
                f"encoder {encoder!r} gives feature strides {reductions}, the decoder needs {ENCODER_REDUCTIONS}"
            )
        skips = tuple(self.encoder.feature_info.channels())  # (128, 256, 512, 1024, 2048)
        self.encoder_channels = skips

        widths = tuple(int(w) for w in decoder_widths)
        # Stage i takes the next deeper stage's output, the deepest one the last encoder map.
        stage_inputs = widths[1:] + (skips[4],)
        self.decoder_stages = nn.ModuleList(UpsampleConvBlock(stage_inputs[i], widths[i]) for i in range(4))
        # Bottleneck j follows decoder stage 3 - j and takes the skip at its stride.
        self.bottlenecks = nn.ModuleList(
            SkipFusion(widths[3 - j], skips[3 - j], widths[3 - j], reduction=scse_reduction) for j in range(4)
        )
        self.last_upsample = UpsampleConvBlock(widths[0], last_width)
        self.final = nn.Sequential(nn.Conv2d(last_width, 1, kernel_size=1))
        self._init_decoder()

        if encoder_weights is not None:
            load_encoder_weights(self.encoder, encoder_weights)

    def _init_decoder(self) -> None:
        """Kaiming-normal convolution weights and zero biases, as the reference decoder."""
        for part in (self.decoder_stages, self.bottlenecks, self.last_upsample, self.final):
            for module in part.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Localize tampering.

        Args:
            x: RGB images in [0, 1], ``(B, 3, H, W)``, any ``H, W``.

        Returns:
            logits ``(B, 1, H, W)``; ``sigmoid`` gives the tampering probability.
        """
        height, width = x.shape[-2:]
        if self.input_normalization == "symmetric":
            x = x * 2.0 - 1.0
        x = pad_to_multiple(x, self.pad_multiple)  # (B, 3, H', W'), H', W' divide by 32
        features = self._encode(x)  # 5 maps: (B, 128, H'/2, W'/2) ... (B, 2048, H'/32, W'/32)
        y = features[4]  # (B, 2048, H'/32, W'/32)
        for j, fuse in enumerate(self.bottlenecks):
            stage = 3 - j  # 3, 2, 1, 0 -> strides 16, 8, 4, 2
            y = self.decoder_stages[stage](y)  # (B, widths[stage], 2x the previous side)
            y = fuse(y, features[stage])  # (B, widths[stage], H'/2**(stage+1), ...)
        y = self.last_upsample(y)  # (B, last_width, H', W')
        logits = self.final(y)  # (B, 1, H', W')
        return logits[..., :height, :width]  # (B, 1, H, W)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's five feature maps from ``x`` ``(B, 3, H', W')``, as timm's
        feature extractor returns them, with its stem (every module up to and including the
        first returned map: the layers that see the pixels) in float32 under any autocast
        (:mod:`reloc.precision`); the deeper stages follow the caller's precision."""
        features: list[torch.Tensor] = []
        for name, module in self.encoder.items():
            if features:
                x = module(x)
            else:
                with full_precision(x):
                    x = module(x.float())
            if name in self.encoder.return_layers:
                features.append(x)
        return features


def build_scse_unet(**kwargs) -> SCSEUnet:
    """Registry entry point: ``SCSEUnet(**kwargs)``."""
    return SCSEUnet(**kwargs)


_ENCODER_STAGE = re.compile(r"encoder_stages\.(\d+)\.(.+)")


def scse_unet_key_map(reference_key: str) -> str:
    """Translate a state-dict key of the reference SCSE-Unet to this module's key.

    The reference wraps the Cadene SENet modules as ``encoder_stages``:
    stage 0 is ``layer0`` (the stem without its max-pool), stage 1 is
    ``Sequential(pool, layer1)`` and stages 2-4 are ``layer2``-``layer4``. Here the encoder
    is timm's feature extractor under ``encoder``:

    * ``encoder_stages.0.<rest>``   -> ``encoder.layer0.<rest>``
    * ``encoder_stages.1.1.<rest>`` -> ``encoder.layer1.<rest>``
    * ``encoder_stages.N.<rest>``   -> ``encoder.layerN.<rest>`` for N = 2, 3, 4
    * ``bottlenecks.*``, ``decoder_stages.*``, ``last_upsample.*``, ``final.*`` unchanged.

    Leading ``module.`` (``nn.DataParallel``) and ``det_net.`` (Wu et al.'s ``Detector``
    wrapper) are stripped first. Any other key is returned unchanged (after stripping), so
    a by-name loader reports it as unexpected; the map never drops a key (no ``None``).

    Args:
        reference_key: e.g. ``"encoder_stages.1.1.0.conv1.weight"``.

    Returns:
        e.g. ``"encoder.layer1.0.conv1.weight"``.
    """
    key = reference_key
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                stripped = True
    match = _ENCODER_STAGE.fullmatch(key)
    if match is None:
        return key
    stage, rest = int(match.group(1)), match.group(2)
    if stage in (0, 2, 3, 4):
        return f"encoder.layer{stage}.{rest}"
    if stage == 1 and rest.startswith("1."):
        return f"encoder.layer1.{rest[2:]}"
    return key


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a local encoder state dict into ``encoder`` strictly, by key name.

    ``module.`` prefixes are stripped and ``last_linear.*`` (the ImageNet classifier of a
    SENet checkpoint) is dropped; every other key must match ``encoder.state_dict()`` in
    name and shape.

    Args:
        encoder: the module to fill (``SCSEUnet.encoder``).
        path: a ``.safetensors`` file or a torch checkpoint holding a state dict.

    Raises:
        WeightsError: an unreadable file, or missing, unexpected or mis-shaped keys (all
            listed).
    """
    report = match_state_dict(encoder, read_state_dict(path), _encoder_key_map)
    if not report.ok:
        raise WeightsError(f"{path}: encoder weights do not fit the encoder:\n{report}")
    encoder.load_state_dict(report.matched, strict=True)


def _encoder_key_map(key: str) -> str | None:
    return None if key.startswith(_CLASSIFIER_PREFIXES) else key
