"""SCUNet: reference layout, shifted-window mask, fused attention equals the plain formula."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from conftest import reference_shapes
from reloc.models.scunet import SCUNET_PRESETS, WindowAttention, build_scunet, shifted_window_mask


def test_state_dict_matches_reference_names_and_shapes():
    with torch.device("meta"):
        network = build_scunet("paper")
    ours = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    assert ours == reference_shapes("scunet-paper.tsv")


def swin_region_mask(rows: int, cols: int, window: int) -> torch.Tensor:
    """The Swin Transformer's own construction: label the regions of the rolled map, and
    forbid attention between different labels. (nW, p*p, p*p), True = forbidden."""
    shift = window // 2
    labels = torch.zeros(rows * window, cols * window)
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for h in slices:
        for w in slices:
            labels[h, w] = label
            label += 1
    windows = rearrange(labels, "(r p1) (c p2) -> (r c) (p1 p2)", p1=window, p2=window)
    return windows[:, :, None] != windows[:, None, :]


@pytest.mark.parametrize(("rows", "cols", "window"), [(1, 1, 8), (3, 2, 8), (2, 4, 4)])
def test_shift_mask_equals_swin_region_construction(rows, cols, window):
    assert torch.equal(shifted_window_mask(rows, cols, window), swin_region_mask(rows, cols, window))


def plain_window_attention(module: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Attention written out with einsum and an explicit softmax, as in the release."""
    p, d = module.window_size, module.head_dim
    if module.shifted:
        x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
    rows, cols = x.shape[1] // p, x.shape[2] // p
    x = rearrange(x, "b (r p1) (c p2) ch -> b (r c) (p1 p2) ch", p1=p, p2=p)
    q, k, v = rearrange(module.embedding_layer(x), "b w n (th c) -> th b w n c", c=d).chunk(3, dim=0)
    sim = torch.einsum("hbwpc,hbwqc->hbwpq", q, k) * d**-0.5
    sim = sim + module.relative_bias()[:, None, None]
    if module.shifted:
        sim = sim.masked_fill(shifted_window_mask(rows, cols, p)[None, None], float("-inf"))
    out = torch.einsum("hbwij,hbwjc->hbwic", sim.softmax(-1), v)
    out = module.linear(rearrange(out, "h b w p c -> b w p (h c)"))
    out = rearrange(out, "b (r c) (p1 p2) ch -> b (r p1) (c p2) ch", r=rows, p1=p)
    if module.shifted:
        out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
    return out


@pytest.mark.parametrize("shifted", [False, True])
def test_fused_attention_equals_plain_formula(shifted):
    module = WindowAttention(dim=64, head_dim=16, window_size=8, shifted=shifted)
    x = torch.randn(2, 24, 32, 64)
    torch.testing.assert_close(module(x), plain_window_attention(module, x), rtol=1e-5, atol=1e-5)


def test_presets_and_head_dim_validation():
    assert set(SCUNET_PRESETS) >= {"paper", "small"}
    with pytest.raises(ValueError, match="head_dim"):
        build_scunet("paper", dim=32)  # 16 channels per half cannot hold a 32-channel head
    custom = build_scunet(None, config=(1,) * 7, dim=16, head_dim=8, drop_path_rate=0.1)
    assert custom(torch.rand(1, 3, 30, 40)).shape == (1, 3, 30, 40)


def test_padding_replicates_and_is_cropped():
    network = build_scunet("tiny").eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        full = network(image)
        cropped = network(image[..., :50, :60])
    assert cropped.shape == (1, 3, 50, 60)
    assert torch.isfinite(cropped).all() and not torch.equal(full[..., :50, :60], cropped)


def test_residual_option_starts_at_identity_and_keeps_size():
    network = build_scunet("tiny", residual=True)
    image = torch.rand(1, 3, 40, 70)
    torch.testing.assert_close(network(image), image)
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in build_scunet("tiny").parameters())
