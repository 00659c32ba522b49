"""SCUNet restoration network (Swin-Conv-UNet).

Implements the restorer of ReLoc (Zhuang et al., "ReLoc: A Restoration-Assisted Framework
for Robust Image Tampering Localization", IEEE TIFS 2023), which is SCUNet from Zhang et
al., "Practical Blind Image Denoising via Swin-Conv-UNet and Data Synthesis" (Machine
Intelligence Research, 2023).

The module and parameter names follow the public SCUNet release (``m_head``, ``m_down1``,
``trans_block.msa.relative_position_params``, ...), so its checkpoints and the ReLoc
authors' restorer weights load by key name without any mapping.

Faithful to the release: no global residual and no output clamp (``forward`` returns the
raw image; the inference pipeline clamps to [0, 1] and says so). The input is padded by
replication to a multiple of 64 and the output cropped back, so any size works.

Differences that do not change outputs (within float rounding): attention runs through
``torch.nn.functional.scaled_dot_product_attention`` with the relative-position bias and
the shifted-window mask added as one float bias, and that bias is cached per window
grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, trunc_normal_
from torch import nn

from reloc.models.layers import pad_to_multiple

#: Sides of the input must divide by this (three 2x downsamplings, then 8x8 windows).
SCUNET_MULTIPLE = 64


@dataclass(frozen=True)
class SCUNetPreset:
    """Named SCUNet sizes. ``paper`` is the published one (9,662,892 parameters)."""

    config: tuple[int, ...]
    dim: int
    head_dim: int
    window_size: int = 8


SCUNET_PRESETS: dict[str, SCUNetPreset] = {
    "paper": SCUNetPreset(config=(2, 2, 2, 2, 2, 2, 2), dim=64, head_dim=32),
    "small": SCUNetPreset(config=(1, 1, 1, 1, 1, 1, 1), dim=32, head_dim=16),
    "tiny": SCUNetPreset(config=(1, 1, 1, 1, 1, 1, 1), dim=16, head_dim=8),
}


def shifted_window_mask(rows: int, cols: int, window: int) -> torch.Tensor:
    """Mask of attention pairs that straddle the wrap-around of a cyclic shift.

    After rolling the feature map by ``window // 2``, the last row and column of windows
    hold pixels from opposite image borders; a query may not attend to a key from the
    other side.

    Args:
        rows, cols: number of windows vertically and horizontally.
        window: window side ``p``.

    Returns:
        bool ``(rows * cols, p * p, p * p)``; ``True`` where attention is forbidden.
    """
    split = window - window // 2
    mask = torch.zeros(rows, cols, window, window, window, window, dtype=torch.bool)
    mask[-1, :, :split, :, split:, :] = True
    mask[-1, :, split:, :, :split, :] = True
    mask[:, -1, :, :split, :, split:] = True
    mask[:, -1, :, split:, :, :split] = True
    return rearrange(mask, "r c p1 p2 p3 p4 -> (r c) (p1 p2) (p3 p4)")


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, optionally shifted.

    Args:
        dim: channels of the tokens (a multiple of ``head_dim``).
        head_dim: channels per head.
        window_size: window side ``p``.
        shifted: roll the map by ``p // 2`` before windowing (SW-MSA) and back after.
    """

    def __init__(self, dim: int, head_dim: int, window_size: int, shifted: bool) -> None:
        super().__init__()
        if dim % head_dim or dim < head_dim:
            raise ValueError(f"dim ({dim}) must be a positive multiple of head_dim ({head_dim})")
        self.head_dim = head_dim
        self.n_heads = dim // head_dim
        self.window_size = window_size
        self.shifted = shifted
        self.embedding_layer = nn.Linear(dim, 3 * dim, bias=True)
        span = 2 * window_size - 1
        self.relative_position_params = nn.Parameter(torch.zeros(self.n_heads, span, span))
        trunc_normal_(self.relative_position_params, std=0.02)
        self.linear = nn.Linear(dim, dim)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"), -1
        ).reshape(-1, 2)
        relation = coords[:, None, :] - coords[None, :, :] + window_size - 1  # (p*p, p*p, 2)
        self.register_buffer("relative_index", relation[..., 0] * span + relation[..., 1], persistent=False)
        self._mask_cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def relative_bias(self) -> torch.Tensor:
        """Relative-position bias, ``(heads, p*p, p*p)``."""
        table = self.relative_position_params.flatten(1)  # (heads, span*span)
        return table[:, self.relative_index]

    def _shift_mask(self, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        key = (rows, cols, device)
        if key not in self._mask_cache:
            if len(self._mask_cache) > 8:
                self._mask_cache.clear()
            mask = shifted_window_mask(rows, cols, self.window_size).to(device)
            self._mask_cache[key] = mask
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, H, W, C)`` with H, W multiples of the window. Returns the same shape."""
        p = self.window_size
        if self.shifted:
            x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
        rows, cols = x.shape[1] // p, x.shape[2] // p
        x = rearrange(x, "b (r p1) (c p2) ch -> b (r c) (p1 p2) ch", p1=p, p2=p)  # (B, nW, p*p, C)
        qkv = self.embedding_layer(x)
        q, k, v = rearrange(qkv, "b w n (t h d) -> t b h w n d", t=3, d=self.head_dim)  # each (B, h, nW, n, d)
        bias = self.relative_bias()[:, None]  # (h, 1, n, n)
        if self.shifted:
            mask = self._shift_mask(rows, cols, x.device)  # (nW, n, n)
            bias = bias.masked_fill(mask, float("-inf"))  # (h, nW, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # (B, h, nW, n, d)
        out = self.linear(rearrange(out, "b h w n d -> b w n (h d)"))
        out = rearrange(out, "b (r c) (p1 p2) ch -> b (r p1) (c p2) ch", r=rows, p1=p)
        if self.shifted:
            out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
        return out


class SwinBlock(nn.Module):
    """Pre-norm transformer block: (S)W-MSA then a 4x MLP, each with a residual.

    Args:
        dim: token channels. head_dim, window_size, shifted: see :class:`WindowAttention`.
        drop_path: stochastic-depth rate.
    """

    def __init__(self, dim: int, head_dim: int, window_size: int, shifted: bool, drop_path: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WindowAttention(dim, head_dim, window_size, shifted)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, H, W, C)
        x = x + self.drop_path(self.msa(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


class ConvTransBlock(nn.Module):
    """SCUNet's Swin-Conv block: a 1x1 conv splits channels into a residual conv half and
    a transformer half, a second 1x1 conv fuses them, plus an outer residual.

    Args:
        half: channels of each half (the block has ``2 * half`` channels).
        head_dim, window_size, shifted, drop_path: see :class:`SwinBlock`.
    """

    def __init__(self, half: int, head_dim: int, window_size: int, shifted: bool, drop_path: float) -> None:
        super().__init__()
        self.half = half
        self.trans_block = SwinBlock(half, head_dim, window_size, shifted, drop_path)
        self.conv1_1 = nn.Conv2d(2 * half, 2 * half, 1, bias=True)
        self.conv1_2 = nn.Conv2d(2 * half, 2 * half, 1, bias=True)
        self.conv_block = nn.Sequential(
            nn.Conv2d(half, half, 3, 1, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2*half, H, W) -> same
        conv_x, trans_x = torch.split(self.conv1_1(x), (self.half, self.half), dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), dim=1))


class SCUNet(nn.Module):
    """Swin-Conv-UNet restorer: RGB in [0, 1] -> restored RGB (not clamped).

    Args:
        config: blocks per stage, 7 numbers (3 encoder levels, body, 3 decoder levels).
        dim: channels after the head conv; level ``i`` has ``dim * 2**i`` channels.
        head_dim: channels per attention head; ``dim // 2`` must divide by it.
        window_size: attention window side.
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        in_channels: image channels.
        residual: predict a correction added to the input, with the tail conv zeroed so
            the untrained network is the identity (a documented deviation for training
            from scratch at small scale; the release has no global residual, ``False``).
    """

    def __init__(
        self,
        config: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2),
        dim: int = 64,
        head_dim: int = 32,
        window_size: int = 8,
        drop_path_rate: float = 0.0,
        in_channels: int = 3,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        if len(config) != 7:
            raise ValueError(f"config needs 7 stage depths, got {len(config)}")
        if (dim // 2) % head_dim or dim // 2 < head_dim:
            raise ValueError(f"dim // 2 ({dim // 2}) must be a positive multiple of head_dim ({head_dim})")
        total = sum(config)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear, as torch.linspace
        starts = [sum(config[:i]) for i in range(7)]

        def stage(level: int, index: int) -> list[nn.Module]:
            half = dim * 2**level // 2
            return [
                ConvTransBlock(half, head_dim, window_size, shifted=bool(i % 2), drop_path=rates[starts[index] + i])
                for i in range(config[index])
            ]

        self.m_head = nn.Sequential(nn.Conv2d(in_channels, dim, 3, 1, 1, bias=False))
        self.m_down1 = nn.Sequential(*stage(0, 0), nn.Conv2d(dim, 2 * dim, 2, 2, 0, bias=False))
        self.m_down2 = nn.Sequential(*stage(1, 1), nn.Conv2d(2 * dim, 4 * dim, 2, 2, 0, bias=False))
        self.m_down3 = nn.Sequential(*stage(2, 2), nn.Conv2d(4 * dim, 8 * dim, 2, 2, 0, bias=False))
        self.m_body = nn.Sequential(*stage(3, 3))
        self.m_up3 = nn.Sequential(nn.ConvTranspose2d(8 * dim, 4 * dim, 2, 2, 0, bias=False), *stage(2, 4))
        self.m_up2 = nn.Sequential(nn.ConvTranspose2d(4 * dim, 2 * dim, 2, 2, 0, bias=False), *stage(1, 5))
        self.m_up1 = nn.Sequential(nn.ConvTranspose2d(2 * dim, dim, 2, 2, 0, bias=False), *stage(0, 6))
        self.m_tail = nn.Sequential(nn.Conv2d(dim, in_channels, 3, 1, 1, bias=False))
        if residual:
            nn.init.zeros_(self.m_tail[0].weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image ``(B, 3, H, W)``, any H and W. Returns ``(B, 3, H, W)``."""
        height, width = image.shape[-2:]
        x0 = pad_to_multiple(image, SCUNET_MULTIPLE, "replicate")  # (B, 3, H64, W64)
        x1 = self.m_head(x0)  # (B, dim, H64, W64)
        x2 = self.m_down1(x1)  # (B, 2dim, H64/2, W64/2)
        x3 = self.m_down2(x2)  # (B, 4dim, /4)
        x4 = self.m_down3(x3)  # (B, 8dim, /8)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)  # (B, 4dim, /4)
        x = self.m_up2(x + x3)  # (B, 2dim, /2)
        x = self.m_up1(x + x2)  # (B, dim, H64, W64)
        x = self.m_tail(x + x1)  # (B, 3, H64, W64)
        if self.residual:
            x = x + x0
        return x[..., :height, :width]


def build_scunet(preset: str | None = "paper", **overrides) -> SCUNet:
    """Build an SCUNet from a named preset, with any constructor argument overridden.

    Args:
        preset: a key of :data:`SCUNET_PRESETS` or ``None`` for the constructor defaults.
        **overrides: ``config``, ``dim``, ``head_dim``, ``window_size``, ``drop_path_rate``,
            ``residual``.
    """
    if preset is None:
        return SCUNet(**overrides)
    if preset not in SCUNET_PRESETS:
        raise ValueError(f"unknown SCUNet preset {preset!r}; choose from {sorted(SCUNET_PRESETS)}")
    chosen = SCUNET_PRESETS[preset]
    kwargs = {"config": chosen.config, "dim": chosen.dim, "head_dim": chosen.head_dim, "window_size": chosen.window_size}
    kwargs.update(overrides)
    kwargs["config"] = tuple(kwargs["config"])
    return SCUNet(**kwargs)
