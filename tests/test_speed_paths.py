"""Every speed optimisation gives the outputs of the plain path (within 1e-4, small inputs)."""

from __future__ import annotations

import copy

import pytest
import torch
from einops import rearrange

import reloc.models.scunet as scunet_module
from conftest import build_cached
from reloc.engine.inference import Pipeline
from reloc.models.scunet import WindowAttention, build_scunet, use_fused_linear, use_reference_path, window_layout

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
        use_fused_linear(fast, False)
        torch.testing.assert_close(fast(image), expected, **TOLERANCE)
        use_fused_linear(fast, True)
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


def test_fused_linear_kernel_exists_in_this_torch():
    """SCUNet's fast CPU path relies on the private oneDNN op ``torch.ops.mkldnn._linear_pointwise``:
    fail loudly (instead of silently falling back to the slower path) if a torch upgrade removes it."""
    assert torch.backends.mkldnn.is_available(), "oneDNN (mkldnn) is not available in this torch build"
    assert hasattr(torch.ops.mkldnn, "_linear_pointwise"), (
        f"torch {torch.__version__} no longer has torch.ops.mkldnn._linear_pointwise; "
        "update reloc.models.scunet._linear (the fused CPU path)"
    )
    assert scunet_module.HAS_FUSED_LINEAR
    layer = torch.nn.Linear(8, 16)
    x, residual = torch.randn(2, 5, 8), torch.randn(2, 5, 16)
    with torch.inference_mode():
        gelu = torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")
        added = torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
        torch.testing.assert_close(gelu, torch.nn.functional.gelu(layer(x)), **TOLERANCE)
        torch.testing.assert_close(added, layer(x) + residual, **TOLERANCE)


def test_fused_linear_is_a_per_network_switch(monkeypatch):
    fast, reference = _pair("tiny")
    other = copy.deepcopy(fast)
    fast.eval(), reference.eval(), other.eval()
    use_fused_linear(fast, False)
    fused_flags = []
    real = scunet_module._linear

    def spy(*args, fused=False, **kwargs):
        fused_flags.append(fused)
        return real(*args, fused=fused, **kwargs)

    monkeypatch.setattr(scunet_module, "_linear", spy)
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = reference(image)
        torch.testing.assert_close(fast(image), expected, **TOLERANCE)
        assert fused_flags and not any(fused_flags)  # switched off: nn.Linear everywhere
        fused_flags.clear()
        torch.testing.assert_close(other(image), expected, **TOLERANCE)
        assert fused_flags and all(fused_flags)  # another network keeps its own (default) setting


def test_predict_leaves_the_process_malloc_alone():
    """``Pipeline.predict`` changes nothing process-wide; ``retain_freed_memory`` is the caller's choice."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from reloc.engine import inference\n"
        "from reloc.models import create_localizer\n"
        "net = create_localizer('dfcn', width=0.25, faithful=False).eval()\n"
        "inference.Pipeline(None, net).predict(torch.rand(3, 40, 40), window=32, stride=32)\n"
        "print(inference._MALLOC_TUNED)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split()[-1] == "None"


def _randomise_batchnorms(network: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine terms, so folding them changes weights."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))


@pytest.mark.parametrize(
    ("name", "kwargs"), [("dfcn", {"width": 0.25, "faithful": False}), ("scse_unet", {}), ("mvssnet", {})]
)
def test_prepared_localizer_equals_plain(name, kwargs):
    from reloc.models import segmentation_logits
    from reloc.models.fusion import prepare_for_inference

    plain = copy.deepcopy(build_cached("localizer", name, **kwargs)).eval()
    _randomise_batchnorms(plain)
    assert any(type(m) is torch.nn.BatchNorm2d for m in plain.modules())
    image = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        expected = segmentation_logits(plain(image))
    prepared = prepare_for_inference(copy.deepcopy(plain))
    del plain
    assert not any(type(m) is torch.nn.BatchNorm2d for m in prepared.modules())  # each follows a convolution
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in prepared.parameters() if p.ndim == 4)
    with torch.inference_mode():
        actual = segmentation_logits(prepared(image.contiguous(memory_format=torch.channels_last)))
    # MVSS-Net's logits reach ~20 here, and its 50 layers reorder fp32 sums (channels_last alone
    # moves them by ~1e-4): logits within 2e-5 of their scale, probabilities within 1e-4
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-5 * scale)
    torch.testing.assert_close(actual.sigmoid(), expected.sigmoid(), **TOLERANCE)


def test_fold_batchnorm_folds_each_conv_bn_pair_once():
    from reloc.models.fusion import conv_bn_pairs, fold_batchnorm

    network = copy.deepcopy(build_cached("localizer", "dfcn", width=0.25, faithful=False)).eval()
    _randomise_batchnorms(network)
    pairs = conv_bn_pairs(network, torch.rand(1, 3, 32, 32))
    assert ("dense_block1.conv1.conv", "dense_block1.conv1.bn_layer") in pairs
    image = torch.rand(2, 3, 48, 40)
    with torch.inference_mode():
        expected = network(image)
    assert fold_batchnorm(network) == len(pairs) == 19  # 4 + 6 x 2 dense-block convs, 3 decoder convs
    assert fold_batchnorm(network) == 0
    with torch.inference_mode():
        torch.testing.assert_close(network(image), expected, **TOLERANCE)


def test_pipeline_prepare_keeps_probabilities():
    localizer = copy.deepcopy(build_cached("localizer", "dfcn", width=0.25, faithful=False)).eval()
    _randomise_batchnorms(localizer)
    image = torch.rand(3, 80, 100)
    plain = Pipeline(None, localizer).eval().predict(image, window=64, stride=32)
    prepared = Pipeline(None, copy.deepcopy(localizer)).prepare()
    torch.testing.assert_close(prepared.predict(image, window=64, stride=32), plain, **TOLERANCE)
