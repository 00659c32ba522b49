"""Every speed optimisation gives the outputs of the plain path (within 1e-4, small inputs)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import build_cached
from einops import rearrange

import reloc.models.scunet as scunet_module
from reloc.engine.inference import Pipeline
from reloc.models.scunet import WindowAttention, build_scunet, use_reference_path, window_layout

TOLERANCE = {"rtol": 0, "atol": 1e-4}


def _pair(preset: str = "tiny", **kwargs):
    torch.manual_seed(0)
    fast = build_scunet(preset, **kwargs)
    return fast, use_reference_path(copy.deepcopy(fast))


@pytest.mark.parametrize(("rows", "cols", "shifted"), [(1, 1, True), (3, 2, True), (2, 4, False), (1, 3, True)])
def test_window_layout_is_roll_then_partition(rows, cols, shifted):
    p = 4
    grid = torch.arange(rows * p * cols * p).reshape(rows * p, cols * p)
    rolled = torch.roll(grid, shifts=(-(p // 2), -(p // 2)), dims=(0, 1)) if shifted else grid
    windows = rearrange(rolled, "(r p1) (c p2) -> (r c) (p1 p2)", p1=p, p2=p)  # release order
    layout = window_layout(rows, cols, p, shifted)
    ours = layout.index.reshape(rows * cols, p * p)
    # same windows, each with the same token order; interior windows first
    assert sorted(map(tuple, ours.tolist())) == sorted(map(tuple, windows.tolist()))
    assert torch.equal(layout.index[layout.inverse], torch.arange(grid.numel()))
    if shifted:
        assert layout.interior == (rows - 1) * (cols - 1) and layout.border_mask.shape[0] == rows + cols - 1
        by_position = windows.reshape(rows, cols, -1)
        border = [
            by_position[r, c].tolist() for r in range(rows) for c in range(cols) if r == rows - 1 or c == cols - 1
        ]
        assert sorted(ours[layout.interior :].tolist()) == sorted(border)


@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_batch_and_border_windows(shifted):
    torch.manual_seed(0)
    module = WindowAttention(dim=16, head_dim=8, window_size=4, shifted=shifted)
    x = torch.randn(3, 12, 8, 16)  # 3 images, 3x2 windows: interior and border ones
    with torch.inference_mode():
        torch.testing.assert_close(module(x), module.reference_forward(x), **TOLERANCE)


@pytest.mark.parametrize(
    ("preset", "shape"), [("tiny", (1, 3, 100, 130)), ("tiny", (3, 3, 64, 128)), ("small", (2, 3, 70, 64))]
)
@pytest.mark.parametrize("mode", ["inference", "no_grad"])
def test_fast_scunet_equals_reference_path(preset, shape, mode):
    fast, reference = _pair(preset)
    fast.eval(), reference.eval()
    image = torch.rand(*shape)
    context = torch.inference_mode() if mode == "inference" else torch.no_grad()
    with context:
        torch.testing.assert_close(fast(image), reference(image), **TOLERANCE)


def test_each_lever_alone_keeps_outputs():
    fast, reference = _pair("tiny")
    fast.eval(), reference.eval()
    image = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        expected = reference(image)
        fast.channels_last = False
        torch.testing.assert_close(fast(image), expected, **TOLERANCE)
        fast.channels_last = True
        scunet_module.FUSED_CPU_LINEAR = False
        try:
            torch.testing.assert_close(fast(image), expected, **TOLERANCE)
        finally:
            scunet_module.FUSED_CPU_LINEAR = True
        torch.testing.assert_close(fast(image), expected, **TOLERANCE)


def test_training_gradients_equal_reference_path_with_drop_path():
    fast, reference = _pair("tiny", drop_path_rate=0.2)
    fast.train(), reference.train()
    image = torch.rand(3, 3, 64, 64)
    outputs = []
    for network in (fast, reference):
        torch.manual_seed(1)  # the same stochastic-depth draws (one per image and block) on both paths
        output = network(image)
        output.square().mean().backward()
        outputs.append(output)
    torch.testing.assert_close(outputs[0], outputs[1], **TOLERANCE)
    for (name, a), b in zip(fast.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_layouts_cached_in_inference_mode_serve_training():
    network = build_scunet("tiny")
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        network.eval()(image)
    network.train()(image).mean().backward()  # cached index tensors are not inference tensors
    assert network.m_head[0].weight.grad is not None


def test_updated_relative_position_params_are_used():
    """Nothing parameter-dependent is cached: a changed bias changes the output at once."""
    network = build_scunet("tiny").eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        before = network(image)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, WindowAttention):
                module.relative_position_params.add_(1.0)
    reference = use_reference_path(copy.deepcopy(network))
    with torch.inference_mode():
        after = network(image)
        torch.testing.assert_close(after, reference(image), **TOLERANCE)
    assert not torch.allclose(before, after)


def test_pipeline_channels_last_localizer_input_equals_nchw():
    restorer = build_cached("restorer", "scunet", preset="tiny").eval()
    localizer = build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()
    image = torch.rand(2, 3, 64, 80)
    with torch.inference_mode():
        restored, probabilities = Pipeline(restorer, localizer).run(image)
        expected = torch.sigmoid(localizer(restored.contiguous()))
    torch.testing.assert_close(probabilities, expected, **TOLERANCE)


def test_default_batch_size_and_malloc_setting():
    from reloc.engine import inference

    cpu = torch.device("cpu")
    assert inference.default_batch_size(cpu, 512 * 512) == 1
    assert inference.default_batch_size(cpu, 128 * 128) == 1
    assert inference.default_batch_size(cpu, 32 * 32) == 16
    assert inference.default_batch_size(torch.device("cuda"), 512 * 512) == 4
    localizer = build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()
    Pipeline(None, localizer).predict(torch.rand(3, 40, 40), window=32, stride=32)
    import platform

    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert inference.retain_freed_memory() is on_glibc  # set on glibc, nothing elsewhere
    assert inference.retain_freed_memory() is on_glibc  # idempotent
