"""Every registered network: exact sizes, any input size, gradients, weights round trip."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from conftest import build_cached
from reloc.models import (
    DISCRIMINATORS,
    LOCALIZERS,
    RESTORERS,
    count_parameters,
    create_localizer,
    create_network,
    create_restorer,
    segmentation_logits,
)
from reloc.models.weights import load_network, save_network

#: (role, name, builder arguments) -> the published parameter count.
EXACT_COUNTS = [
    ("restorer", "scunet", {"preset": "paper"}, 9_662_892),
    ("localizer", "dfcn", {}, 2_553_489),
    ("localizer", "dfcn", {"faithful": False}, 1_448_241),
    ("localizer", "scse_unet", {}, 128_815_441),
    ("localizer", "mvssnet", {}, 142_782_335),
    ("discriminator", "dcgan", {}, 6_952_192),
]

#: The default variant of every registered network, for the per-network tests.
ALL_NETWORKS = (
    [("restorer", name, {"preset": "small"} if name == "scunet" else {}) for name in RESTORERS]
    + [("localizer", name, {}) for name in LOCALIZERS]
    + [("discriminator", name, {}) for name in DISCRIMINATORS]
)

#: Parameters the published forward never uses (DFCN's extra dense-block convs).
NEVER_USED = {"dfcn": re.compile(r"dense_block[2-7]\.conv[34]\.")}


def _ids(cases):
    return [f"{kind}-{name}-{kwargs}" for kind, name, kwargs, *_ in cases]


@pytest.mark.parametrize(("kind", "name", "kwargs", "expected"), EXACT_COUNTS, ids=_ids(EXACT_COUNTS))
def test_parameter_count_matches_publication(kind, name, kwargs, expected):
    with torch.device("meta"):
        network = create_network(kind, name, **kwargs)
    assert count_parameters(network) == expected


def test_every_registered_network_is_covered():
    assert {name for _, name, _ in ALL_NETWORKS} == set(RESTORERS) | set(LOCALIZERS) | set(DISCRIMINATORS)


@pytest.mark.parametrize(("kind", "name", "kwargs"), ALL_NETWORKS, ids=_ids(ALL_NETWORKS))
def test_output_shape_on_odd_size(kind, name, kwargs):
    network = build_cached(kind, name, **kwargs).eval()
    height, width = (100, 130) if kind != "discriminator" else (67, 93)
    with torch.inference_mode():
        output = network(torch.rand(2, 3, height, width))
    if kind == "restorer":
        assert output.shape == (2, 3, height, width)
    elif kind == "localizer":
        assert segmentation_logits(output).shape == (2, 1, height, width)
        if isinstance(output, tuple):
            assert all(part.shape == (2, 1, height, width) for part in output)
    else:
        assert output.shape == (2,)


@pytest.mark.parametrize(("kind", "name", "kwargs"), ALL_NETWORKS, ids=_ids(ALL_NETWORKS))
def test_pad_multiple_attribute_is_what_forward_pads_to(kind, name, kwargs, monkeypatch):
    """``network.pad_multiple`` (read by the ONNX export) is the multiple ``forward`` pads to."""
    network = build_cached(kind, name, **kwargs).eval()
    assert isinstance(network.pad_multiple, int) and network.pad_multiple >= 1
    module = sys.modules[type(network).__module__]
    if network.pad_multiple == 1:
        assert not hasattr(module, "pad_to_multiple")  # takes any side as it is
        return
    seen = []
    real = module.pad_to_multiple

    def spy(x, multiple, *args):
        seen.append(multiple)
        return real(x, multiple, *args)

    monkeypatch.setattr(module, "pad_to_multiple", spy)
    with torch.inference_mode():
        network(torch.rand(1, 3, 37, 45))
    assert seen == [network.pad_multiple]


@pytest.mark.parametrize(("kind", "name", "kwargs"), ALL_NETWORKS, ids=_ids(ALL_NETWORKS))
def test_backward_reaches_every_used_parameter(kind, name, kwargs):
    network = build_cached(kind, name, **kwargs).train()
    network.zero_grad(set_to_none=True)
    output = network(torch.rand(2, 3, 64, 64))
    parts = output if isinstance(output, tuple) else (output,)
    sum(part.square().mean() for part in parts).backward()
    unused = NEVER_USED.get(name)
    for param_name, param in network.named_parameters():
        if not param.requires_grad:  # fixed filters (MVSS-Net's Sobel kernels)
            continue
        if unused is not None and unused.match(param_name):
            assert param.grad is None, f"{param_name} was expected to be unused"
            continue
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
    network.zero_grad(set_to_none=True)


@pytest.mark.parametrize(("kind", "name", "kwargs"), ALL_NETWORKS, ids=_ids(ALL_NETWORKS))
def test_save_load_round_trip_gives_identical_outputs(kind, name, kwargs, tmp_path):
    network = build_cached(kind, name, **kwargs).eval()
    path = save_network(network, tmp_path / f"{name}.safetensors")
    rebuilt = load_network(path)
    assert rebuilt.spec == network.spec
    image = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        expected, actual = network(image), rebuilt(image)
    for a, b in zip(
        expected if isinstance(expected, tuple) else (expected,), actual if isinstance(actual, tuple) else (actual,)
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("kind", "name", "kwargs"), ALL_NETWORKS, ids=_ids(ALL_NETWORKS))
def test_construction_prints_nothing(kind, name, kwargs, capfd):
    with torch.device("meta"):
        create_network(kind, name, **kwargs)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="dfcn"):
        create_localizer("unet")
    with pytest.raises(ValueError, match="small"):
        create_restorer("scunet", preset="huge")
    with pytest.raises(ValueError, match="localizer"):
        create_network("segmenter", "dfcn")


@pytest.mark.parametrize("size", [(100, 130), (513, 777)])
def test_paper_restorer_feeds_every_localizer_at_any_size(size):
    restorer = build_cached("restorer", "scunet", preset="paper").eval()
    with torch.inference_mode():
        restored = restorer(torch.rand(1, 3, *size)).clamp(0, 1)
        assert restored.shape == (1, 3, *size)
        for name in LOCALIZERS:
            logits = segmentation_logits(build_cached("localizer", name).eval()(restored))
            assert logits.shape == (1, 1, *size)
            assert torch.isfinite(logits).all()
