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

Differences that do not change outputs (within float rounding, checked against the
release's einsum formula in the tests):

- attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with 4-D
  queries (PyTorch's fused CPU kernel), the relative-position bias as a float mask
  broadcast over windows, and ``-inf`` added only on the windows the shift mask touches;
- a :class:`SwinBlock` gathers its map into window order once (the cyclic shift folded
  into a cached index), and its norms, attention, MLP and residuals run in that order;
- feature maps are kept ``channels_last``, on which oneDNN's CPU convolutions run
  faster (1.8x for the 3x3 ones at 512 px) and which makes the NCHW <-> NHWC permutes
  around the transformer halves free;
- in CPU inference the transformer's linear layers run fused with their bias, GELU and
  residual addition (per network, on by default: :func:`use_fused_linear`).

:func:`use_reference_path` switches a network back to the release's formulation (the
baseline of ``benchmarks/speed.py``, and what ONNX export traces).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, trunc_normal_
from torch import nn

from reloc.models.layers import pad_to_multiple
from reloc.precision import full_precision

#: Whether this torch has the fused oneDNN linear kernel (``torch.ops.mkldnn._linear_pointwise``,
#: a private op, the one ``torch.compile`` itself uses): CPU inference (no autograd, float32)
#: then runs the transformer's linear layers with the bias, the MLP's exact (erf) GELU and
#: the residual additions fused into one kernel (see :func:`use_fused_linear`). Without it
#: ``nn.Linear`` is used (same values, slower); ``tests/test_speed_paths.py`` fails loudly
#: if a torch upgrade removes the op.
HAS_FUSED_LINEAR = hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _fusable(x: torch.Tensor, enabled: bool) -> bool:
    """Whether :func:`_linear` may use the fused oneDNN kernel for ``x`` (no autograd)."""
    return (
        enabled
        and HAS_FUSED_LINEAR
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not _is_compiling()  # inductor fuses by itself (and cannot lower this op unfrozen)
    )


def _linear(
    layer: nn.Linear, x: torch.Tensor, gelu: bool = False, residual: torch.Tensor | None = None, fused: bool = False
) -> torch.Tensor:
    """``layer(x)``, then exact GELU if ``gelu``, plus ``residual`` if given; one oneDNN
    kernel when ``fused`` (call only where :func:`_fusable` holds)."""
    if fused:
        if residual is not None and not gelu:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
        out = torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu" if gelu else "none", [], "none")
    else:
        out = F.gelu(layer(x)) if gelu else layer(x)
    return out if residual is None else out + residual


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


@dataclass(frozen=True)
class WindowLayout:
    """Where each token of a (shifted) window partition comes from, for one map size.

    Attributes:
        index: ``(H * W,)`` long; token ``t`` of the window-ordered sequence is pixel
            ``index[t]`` of the row-major map (the cyclic shift included).
        inverse: ``(H * W,)`` long, the inverse permutation (window order -> map).
        interior: windows first in the order whose attention needs no shift mask (all of
            them when not shifted); the remaining ``border`` windows (last row and column
            of a shifted partition) follow.
        border_mask: bool ``(border, p*p, p*p)``, ``True`` where attention is forbidden.
    """

    index: torch.Tensor
    inverse: torch.Tensor
    interior: int
    border_mask: torch.Tensor


def window_layout(rows: int, cols: int, window: int, shifted: bool) -> WindowLayout:
    """The token order of a window partition of a ``rows x cols``-window map.

    Windows are row-major, except that a shifted partition puts the windows that straddle
    the wrap-around (last row and column) after all the others, so the others can share
    one broadcast bias. Within a window, tokens are row-major. The order equals
    ``torch.roll`` by ``-(p // 2)`` then the usual window partition, window for window.
    """
    p = window
    shift = p // 2 if shifted else 0
    height, width = rows * p, cols * p
    win_r, win_c = (t.flatten() for t in torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"))
    if shifted:
        border = (win_r == rows - 1) | (win_c == cols - 1)
        order = torch.cat((torch.nonzero(~border).flatten(), torch.nonzero(border).flatten()))
        interior = int((~border).sum())
        border_mask = shifted_window_mask(rows, cols, p)[order[interior:]]
    else:
        order = torch.arange(rows * cols)
        interior = rows * cols
        border_mask = torch.zeros(0, p * p, p * p, dtype=torch.bool)
    offsets = torch.arange(p)
    y = (win_r[order, None, None] * p + offsets[None, :, None] + shift) % height  # (nW, p, 1)
    x = (win_c[order, None, None] * p + offsets[None, None, :] + shift) % width  # (nW, 1, p)
    index = (y * width + x).flatten()
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(index.numel())
    return WindowLayout(index, inverse, interior, border_mask)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, optionally shifted.

    Args:
        dim: channels of the tokens (a multiple of ``head_dim``).
        head_dim: channels per head.
        window_size: window side ``p``.
        shifted: roll the map by ``p // 2`` before windowing (SW-MSA) and back after.

    :meth:`forward` takes a map; :meth:`attend` takes tokens already in the window order
    of :meth:`layout`, so a :class:`SwinBlock` partitions its map once (one gather) and
    runs layer norms, attention and MLP in that order.
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
        self._layout_cache: dict[tuple[int, int, torch.device], WindowLayout] = {}
        #: use the release's formulation (see :func:`use_reference_path`)
        self.reference = False
        #: fuse the linear layers in CPU inference (see :func:`use_fused_linear`)
        self.fused_linear = True

    def relative_bias(self) -> torch.Tensor:
        """Relative-position bias, ``(heads, p*p, p*p)``."""
        table = self.relative_position_params.flatten(1)  # (heads, span*span)
        return table[:, self.relative_index]

    def layout(self, height: int, width: int, device: torch.device) -> WindowLayout:
        """The (cached) :class:`WindowLayout` of a ``height x width`` map (multiples of ``p``).

        Depends on shapes only, never on parameters; built outside inference mode so the
        index tensors may also serve autograd.
        """
        key = (height, width, device)
        layout = self._layout_cache.get(key)
        if layout is None:
            p = self.window_size
            with torch.inference_mode(False):
                layout = window_layout(height // p, width // p, p, self.shifted)
                layout = WindowLayout(
                    layout.index.to(device), layout.inverse.to(device), layout.interior, layout.border_mask.to(device)
                )
            if len(self._layout_cache) > 8:
                self._layout_cache.clear()
            self._layout_cache[key] = layout
        return layout

    def attend(self, tokens: torch.Tensor, layout: WindowLayout, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of tokens in window order: ``(B, H*W, C)`` -> ``(B, H*W, C)``, plus
        ``residual`` (same shape) when given.

        The relative-position bias (plus ``-inf`` on the shift mask of border windows) is
        the float ``attn_mask`` of ``scaled_dot_product_attention``; queries are 4-D
        ``(windows, heads, p*p, head_dim)`` so that PyTorch's fused CPU kernel is used
        (a 5-D query falls back to the unfused math path).
        """
        batch, length, dim = tokens.shape
        n = self.window_size**2
        windows = length // n
        fused = _fusable(tokens, self.fused_linear)
        qkv = _linear(self.embedding_layer, tokens, fused=fused)
        qkv = qkv.view(batch, windows, n, 3, self.n_heads, self.head_dim)
        bias = self.relative_bias()[None].to(qkv.dtype)  # (1, h, n, n)
        if layout.interior == windows:  # no shift mask: one call for every window of the batch
            groups = [(qkv.view(batch * windows, n, 3, self.n_heads, self.head_dim), bias)]
        else:
            border = bias.masked_fill(layout.border_mask[:, None], float("-inf"))  # (border, h, n, n)
            groups = []
            for image in qkv:  # a border mask is per window, so images go one at a time
                if layout.interior:
                    groups.append((image[: layout.interior], bias))
                groups.append((image[layout.interior :], border))
        outputs = []
        for group, mask in groups:
            q, k, v = (t.transpose(1, 2) for t in group.unbind(2))  # each (windows, h, n, d)
            outputs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2))
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)  # (B * windows, n, h, d)
        return _linear(self.linear, out.reshape(batch, length, dim), residual=residual, fused=fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, H, W, C)`` with H, W multiples of the window. Returns the same shape."""
        if self.reference:
            return self.reference_forward(x)
        batch, height, width, dim = x.shape
        layout = self.layout(height, width, x.device)
        tokens = x.reshape(batch, height * width, dim).index_select(1, layout.index)
        out = self.attend(tokens, layout)
        return out.index_select(1, layout.inverse).view(batch, height, width, dim)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The release's formulation: roll, partition, einsum, softmax, merge, roll back.

        Slower (one window grid at a time, the attention matrix written out), kept as the
        reference the fast path is tested against and as the eager baseline of
        ``benchmarks/speed.py``.
        """
        p, d = self.window_size, self.head_dim
        if self.shifted:
            x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
        rows, cols = x.shape[1] // p, x.shape[2] // p
        x = rearrange(x, "b (r p1) (c p2) ch -> b (r c) (p1 p2) ch", p1=p, p2=p)
        q, k, v = rearrange(self.embedding_layer(x), "b w n (th c) -> th b w n c", c=d).chunk(3, dim=0)
        sim = torch.einsum("hbwpc,hbwqc->hbwpq", q, k) * d**-0.5
        sim = sim + self.relative_bias()[:, None, None]
        if self.shifted:
            mask = shifted_window_mask(rows, cols, p).to(x.device)
            sim = sim.masked_fill(mask[None, None], float("-inf"))
        out = torch.einsum("hbwij,hbwjc->hbwic", sim.softmax(-1), v)
        out = self.linear(rearrange(out, "h b w p c -> b w p (h c)"))
        out = rearrange(out, "b (r c) (p1 p2) ch -> b (r p1) (c p2) ch", r=rows, p1=p)
        if self.shifted:
            out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
        return out


class SwinBlock(nn.Module):
    """Pre-norm transformer block: (S)W-MSA then a 4x MLP, each with a residual.

    Layer norms, MLP and residuals act on each token alone, so the block gathers its map
    into window order once, runs everything there, and scatters back once (instead of a
    roll and a partition around the attention alone).

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
        #: use the release's formulation (see :func:`use_reference_path`)
        self.reference = False
        #: fuse the linear layers, GELU and residuals in CPU inference (see :func:`use_fused_linear`)
        self.fused_linear = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, H, W, C)
        if self.reference:
            x = x + self.drop_path(self.msa(self.ln1(x)))
            return x + self.drop_path(self.mlp(self.ln2(x)))
        batch, height, width, dim = x.shape
        layout = self.msa.layout(height, width, x.device)
        x = x.reshape(batch, height * width, dim).index_select(1, layout.index)  # window order
        fc1, act, fc2 = self.mlp
        if (
            _fusable(x, self.fused_linear)
            and isinstance(act, nn.GELU)
            and act.approximate == "none"
            and (isinstance(self.drop_path, nn.Identity) or not self.training)
        ):  # inference: residual additions and GELU inside the linear kernels
            x = self.msa.attend(self.ln1(x), layout, residual=x)
            x = _linear(fc2, _linear(fc1, self.ln2(x), gelu=True, fused=True), residual=x, fused=True)
        else:
            x = x + self.drop_path(self.msa.attend(self.ln1(x), layout))
            x = x + self.drop_path(self.mlp(self.ln2(x)))
        return x.index_select(1, layout.inverse).view(batch, height, width, dim)


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

    #: sides of the input are padded (replication, bottom/right) to a multiple of this
    #: inside :meth:`forward` (three 2x downsamplings, then 8x8 windows); :mod:`reloc.export` reads it
    pad_multiple: int = 64

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
        #: run the feature maps in ``channels_last`` memory (same values, faster convs on CPU)
        self.channels_last = True
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
        x0 = pad_to_multiple(image, self.pad_multiple, "replicate")  # (B, 3, H64, W64)
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)  # every conv then keeps it
        with full_precision(x0):  # the head sees the pixels: float32 (reloc.precision)
            x1 = self.m_head(x0.float())  # (B, dim, H64, W64)
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


def use_reference_path(network: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every SCUNet part inside ``network`` to (or back from) the release's formulation.

    The reference path rolls and partitions around the attention alone, writes the
    attention out with einsum and softmax, and keeps feature maps NCHW: the plain eager
    baseline of ``benchmarks/speed.py`` and the reference the fast path is tested
    against. Parameters and outputs (within float rounding) are the same. Returns
    ``network``.
    """
    for module in network.modules():
        if isinstance(module, (WindowAttention, SwinBlock)):
            module.reference = enabled
        elif isinstance(module, SCUNet):
            module.channels_last = not enabled
    return network


def use_fused_linear(network: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch the fused oneDNN linear kernels of every SCUNet part inside ``network`` on or off.

    On (the default of a new network), CPU inference in float32 without autograd runs each
    transformer linear layer with its bias, GELU and residual addition as one oneDNN call
    (:data:`HAS_FUSED_LINEAR`); off, ``nn.Linear`` and separate additions. Values agree
    within float rounding; only this network is affected. Returns ``network``.
    """
    for module in network.modules():
        if isinstance(module, (WindowAttention, SwinBlock)):
            module.fused_linear = enabled
    return network


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
    kwargs = {
        "config": chosen.config,
        "dim": chosen.dim,
        "head_dim": chosen.head_dim,
        "window_size": chosen.window_size,
    }
    kwargs.update(overrides)
    kwargs["config"] = tuple(kwargs["config"])
    return SCUNet(**kwargs)
