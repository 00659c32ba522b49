"""Tests of the MVSS-Net localizer: size, shapes, gradients, reference keys, grayscale."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import reference_shapes
from reloc.models.mvssnet import (
    BayarConv2d,
    MVSSNet,
    build_mvssnet,
    mvssnet_key_map,
    rgb_to_gray,
)
from reloc.models.state_dicts import match_state_dict

#: 146,880,335 in the released definition minus the two ResNet-50 fc layers (4,098,000).
EXPECTED_PARAMETERS = 142_782_335
#: Fixed Sobel kernels: 2 axes x (256 + 512 + 1024 + 2048) input channels x 3 x 3.
SOBEL_PARAMETERS = 69_120


@pytest.fixture(scope="module")
def model() -> MVSSNet:
    torch.manual_seed(0)
    return MVSSNet()


def test_parameter_count_and_silent_construction(capsys: pytest.CaptureFixture[str]) -> None:
    network = build_mvssnet()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert sum(p.numel() for p in network.parameters()) == EXPECTED_PARAMETERS
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    assert trainable == EXPECTED_PARAMETERS - SOBEL_PARAMETERS


def test_any_size_gives_full_size_outputs(model: MVSSNet) -> None:
    model.eval()
    with torch.no_grad():
        edge, seg = model(torch.rand(1, 3, 100, 130))
    assert edge.shape == (1, 1, 100, 130)
    assert seg.shape == (1, 1, 100, 130)
    assert torch.isfinite(edge).all() and torch.isfinite(seg).all()


def test_backward_gives_finite_gradients(model: MVSSNet) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    edge, seg = model(torch.rand(1, 3, 64, 64))
    (seg.mean() + edge.mean()).backward()
    frozen = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            frozen.append(name)
            continue
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert sorted(frozen) == sorted(f"sobel_{axis}{i}.0.weight" for axis in "xy" for i in range(1, 5))
    model.zero_grad(set_to_none=True)


def test_reference_keys_map_onto_ours() -> None:
    entries = list(reference_shapes("mvssnet-resnet50.tsv").items())
    assert len(entries) == 1424
    shapes = dict(entries)
    # Random tensors of the listed shapes, stored as expanded scalars to save memory.
    reference = {
        key: torch.tensor(3) if key.endswith("num_batches_tracked") else torch.randn(()).expand(shape)
        for key, shape in entries
    }
    network = MVSSNet()
    ours = {key: tuple(value.shape) for key, value in network.state_dict().items()}

    dropped = []
    for key, shape in entries:
        mapped = mvssnet_key_map(key)
        if mapped is None:
            dropped.append(key)
            continue
        assert mapped in ours, key
        assert ours[mapped] == shape, key
    # Dropped: the blocks.* aliases of layer1..4 (same shapes as model.layer*) and the fc layers.
    for key in dropped:
        if ".fc." in f".{key}":
            continue
        prefix, rest = key.split("blocks.", 1)
        stage, tail = rest.split(".", 1)
        assert shapes[f"{prefix}model.layer{int(stage) + 1}.{tail}"] == shapes[key], key
    assert sorted(k for k in dropped if "fc." in k) == [
        "model.fc.bias",
        "model.fc.weight",
        "noise_extractor.model.fc.bias",
        "noise_extractor.model.fc.weight",
    ]
    report = match_state_dict(network, reference, mvssnet_key_map)
    assert report.ok, str(report)  # every one of our keys is covered, nothing extra
    converted = report.matched

    network.load_state_dict(converted, strict=True)
    loaded = network.state_dict()
    for key in ("model.layer4.2.conv2.weight", "noise_extractor.model.conv1.weight", "constrain_conv.kernel"):
        assert torch.equal(loaded[key], reference[key].expand_as(loaded[key]))
    assert torch.equal(loaded["head.out.1.bias"], reference["head.out.1.bias"])
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    kept_parameters = sum(
        math.prod(shape) for key, shape in entries if mvssnet_key_map(key) is not None and not key.endswith(buffers)
    )
    assert kept_parameters == EXPECTED_PARAMETERS


def test_key_map_wrappers_and_unknown_keys() -> None:
    assert mvssnet_key_map("module.head.pam.alpha") == "head.pam.alpha"
    assert mvssnet_key_map("module.noise_extractor.blocks.3.2.bn3.bias") is None
    assert mvssnet_key_map("sobel_y4.0.weight") == "sobel_y4.0.weight"
    assert mvssnet_key_map("decoder.weight") == "decoder.weight"  # reported as unexpected by the loader


def test_grayscale_of_pure_red(model: MVSSNet) -> None:
    red = torch.zeros(1, 3, 64, 64)
    red[:, 0] = 1.0
    assert torch.allclose(rgb_to_gray(red), torch.full((1, 1, 64, 64), 0.299))
    assert torch.allclose(rgb_to_gray(red, bgr_gray_bug=True), torch.full((1, 1, 64, 64), 0.114))

    # The noise branch really sees that grayscale (input of the Bayar convolution).
    seen = []
    hook = model.constrain_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.eval()
    try:
        with torch.no_grad():
            model(red)
            model.bgr_gray_bug = True
            model(red)
    finally:
        model.bgr_gray_bug = False
        hook.remove()
    assert torch.allclose(seen[0], torch.full_like(seen[0], 0.299))
    assert torch.allclose(seen[1], torch.full_like(seen[1], 0.114))


def test_bayar_constraint_is_functional() -> None:
    conv = BayarConv2d(1, 3, kernel_size=5, padding=2)
    before = conv.kernel.detach().clone()
    weight = conv.constrained_weight()
    assert weight.shape == (3, 1, 5, 5)
    assert torch.equal(weight[:, 0, 2, 2], torch.full((3,), -1.0))
    assert torch.allclose(weight.sum(dim=(1, 2, 3)), torch.zeros(3), atol=1e-6)  # taps sum to 1, centre -1
    out = conv(torch.rand(2, 1, 16, 16))
    assert out.shape == (2, 3, 16, 16)
    assert torch.equal(conv.kernel.detach(), before)


def test_invalid_normalization_rejected() -> None:
    with pytest.raises(ValueError):
        MVSSNet(input_normalization="bgr")
