"""Tests of the SCSE-Unet localizer (SENet-154 encoder; 128.8 M parameters, so inputs stay small)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import reference_shapes
from reloc.models.layers import pad_to_multiple
from reloc.models.scse_unet import (
    MaxoutSCSE,
    SCSEUnet,
    build_scse_unet,
    load_encoder_weights,
    scse_unet_key_map,
)
from reloc.models.state_dicts import WeightsError, match_state_dict

REFERENCE_PARAMETERS = 128_815_441
SENET154_PARAMETERS = 113_039_984


@pytest.fixture(scope="module")
def model() -> SCSEUnet:
    torch.manual_seed(0)
    return SCSEUnet().eval()


def test_parameter_count_matches_reference(model: SCSEUnet) -> None:
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMETERS
    assert sum(p.numel() for p in model.encoder.parameters()) == SENET154_PARAMETERS


def test_encoder_features_match_reference_strides(model: SCSEUnet) -> None:
    assert tuple(model.encoder.feature_info.channels()) == (128, 256, 512, 1024, 2048)
    assert tuple(model.encoder.feature_info.reduction()) == (2, 4, 8, 16, 32)
    # The reference's encoder_stages.1 starts with SENet's MaxPool2d(3, 2, ceil_mode=True).
    pool = model.encoder.pool0
    assert isinstance(pool, nn.MaxPool2d)
    assert (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) == (3, 2, 0, True)


def test_any_input_size_gives_same_size_logits(model: SCSEUnet) -> None:
    x = torch.rand(1, 3, 100, 130)
    with torch.no_grad():
        logits = model(x)
        padded = model(pad_to_multiple(x, 32))
    assert logits.shape == (1, 1, 100, 130)
    assert torch.isfinite(logits).all()
    # Padding happens inside: same as padding by replication outside and cropping.
    assert torch.allclose(logits, padded[..., :100, :130], atol=1e-5)


def test_symmetric_input_normalization(model: SCSEUnet) -> None:
    x = torch.rand(1, 3, 64, 64)
    try:
        with torch.no_grad():
            model.input_normalization = "symmetric"
            symmetric = model(x)
            model.input_normalization = "none"
            plain = model(x * 2 - 1)
    finally:
        model.input_normalization = "none"
    assert torch.allclose(symmetric, plain, atol=1e-5)


def test_reference_keys_map_onto_ours(model: SCSEUnet) -> None:
    shapes = reference_shapes("scse_unet-senet154.tsv")
    assert len(shapes) == 1182
    generator = torch.Generator().manual_seed(0)
    reference = {
        key: torch.randint(0, 10, shape, generator=generator)
        if key.endswith("num_batches_tracked")
        else torch.randn(shape, generator=generator)
        for key, shape in shapes.items()
    }
    report = match_state_dict(model, reference, scse_unet_key_map)
    assert report.ok, str(report)  # every reference key lands on one of ours, all covered
    assert len(report.matched) == len(reference) and not report.dropped  # one-to-one
    converted = report.matched

    # A reference checkpoint then loads strictly, values land where the map says.
    original = {key: value.clone() for key, value in model.state_dict().items()}
    try:
        model.load_state_dict(converted, strict=True)
        loaded = model.state_dict()
        for ref_key in (
            "encoder_stages.0.conv1.weight",
            "encoder_stages.1.1.0.se_module.fc1.bias",
            "encoder_stages.4.2.bn3.running_var",
            "bottlenecks.0.seq.2.spatial_se.0.weight",
            "final.0.bias",
        ):
            assert torch.equal(loaded[scse_unet_key_map(ref_key)], reference[ref_key])
    finally:
        model.load_state_dict(original, strict=True)


def test_key_map_examples_and_errors() -> None:
    assert scse_unet_key_map("encoder_stages.0.bn1.running_mean") == "encoder.layer0.bn1.running_mean"
    assert scse_unet_key_map("encoder_stages.1.1.2.conv2.weight") == "encoder.layer1.2.conv2.weight"
    assert scse_unet_key_map("encoder_stages.3.35.se_module.fc2.bias") == "encoder.layer3.35.se_module.fc2.bias"
    assert scse_unet_key_map("decoder_stages.3.layer.1.weight") == "decoder_stages.3.layer.1.weight"
    # DataParallel / Wu et al.'s Detector wrappers are stripped.
    assert scse_unet_key_map("module.det_net.final.0.bias") == "final.0.bias"
    assert scse_unet_key_map("module.encoder_stages.2.0.downsample.0.weight") == (
        "encoder.layer2.0.downsample.0.weight"
    )
    # Keys outside the reference pass through unchanged, so a by-name loader reports them
    # as unexpected instead of the map failing.
    for foreign in ("encoder_stages.1.0.weight", "encoder_stages.5.0.conv1.weight", "head.weight"):
        assert scse_unet_key_map(foreign) == foreign
    assert scse_unet_key_map("module.head.weight") == "head.weight"


def test_backward_gives_finite_gradients(model: SCSEUnet) -> None:
    model.train()
    try:
        x = torch.rand(1, 3, 64, 64)
        target = (torch.rand(1, 1, 64, 64) > 0.5).float()
        loss = F.binary_cross_entropy_with_logits(model(x), target)
        loss.backward()
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                assert parameter.grad is not None, name
                assert torch.isfinite(parameter.grad).all(), name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_maxout_scse_definition() -> None:
    torch.manual_seed(0)
    block = MaxoutSCSE(8, reduction=2)
    x = torch.randn(2, 8, 5, 7)
    gate = x.mean(dim=(2, 3), keepdim=True)
    gate = torch.sigmoid(block.fc2(torch.relu(block.fc1(gate))))
    spatial = torch.sigmoid(F.conv2d(x, block.spatial_se[0].weight))
    expected = torch.maximum(x * gate, x * spatial)
    assert block.spatial_se[0].bias is None
    assert block.fc1.weight.shape == (4, 8, 1, 1)
    assert torch.allclose(block(x), expected, atol=1e-6)
    assert not torch.allclose(block(x), x * gate + x * spatial)  # max-out, not the SMP sum


def test_construction_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    network = build_scse_unet()
    captured = capsys.readouterr()
    assert isinstance(network, SCSEUnet)
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("kwargs", [{"decoder_widths": (64, 128, 256)}, {"input_normalization": "imagenet"}])
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SCSEUnet(**kwargs)


class TinyEncoder(nn.Module):
    """Stand-in with SENet-like key names, to test the weight loader quickly."""

    def __init__(self) -> None:
        super().__init__()
        self.layer0 = nn.Sequential()
        self.layer0.add_module("conv1", nn.Conv2d(3, 4, 3, bias=False))
        self.layer0.add_module("bn1", nn.BatchNorm2d(4))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_encoder_weights_load_by_name(tmp_path: Path, suffix: str) -> None:
    source = TinyEncoder()
    nn.init.normal_(source.layer0.bn1.running_mean)
    state = {f"module.{key}": value for key, value in source.state_dict().items()}
    state["last_linear.weight"] = torch.zeros(2, 4)  # ImageNet classifier: ignored
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    target = TinyEncoder()
    load_encoder_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_encoder_weights_errors_list_keys(tmp_path: Path) -> None:
    state = TinyEncoder().state_dict()
    del state["layer0.bn1.bias"]
    state["layer9.conv.weight"] = torch.zeros(1)
    state["layer0.conv1.weight"] = torch.zeros(4, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_encoder_weights(TinyEncoder(), path)
    message = str(error.value)
    assert "bad.pth" in message
    assert "missing (network keys the file lacks): layer0.bn1.bias" in message
    assert "unexpected (file keys the network lacks): layer9.conv.weight" in message
    assert "shape mismatch: layer0.conv1.weight" in message
    with pytest.raises(WeightsError, match="absent.pth"):
        load_encoder_weights(TinyEncoder(), tmp_path / "absent.pth")


def test_encoder_weights_path_stays_out_of_the_spec(tmp_path: Path) -> None:
    """A network built from a local encoder file rebuilds from its weights file alone,
    after the encoder file is gone (the path is construction-only, not in the spec)."""
    from safetensors.torch import save_file

    from reloc.models import create_localizer
    from reloc.models.weights import load_network, save_network

    torch.manual_seed(1)
    donor = create_localizer("scse_unet", encoder="resnet18")
    encoder_file = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, str(encoder_file))
    built = create_localizer("scse_unet", encoder="resnet18", encoder_weights=str(encoder_file))
    assert "encoder_weights" not in built.spec.kwargs and built.spec.kwargs == {"encoder": "resnet18"}
    saved = save_network(built, tmp_path / "localizer.safetensors")
    encoder_file.unlink()
    rebuilt = load_network(saved)
    expected = built.state_dict()
    assert all(torch.equal(expected[key], value) for key, value in rebuilt.state_dict().items())
