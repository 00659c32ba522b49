"""Converted weights reproduce an independent implementation of the published SCUNet.

The reference is spandrel's copy of SCUNet (the architecture of the public release, with
its state-dict layout), installed from the package index as a test dependency; no
third-party code lives in this repository. A checkpoint written by the reference goes
through ``reloc convert`` and our network must give the reference's outputs.
"""

from __future__ import annotations

import torch
from spandrel.architectures.SCUNet import SCUNet as ReferenceSCUNet
from typer.testing import CliRunner

from reloc.cli import app
from reloc.models.scunet import use_reference_path
from reloc.models.weights import load_network

TOLERANCE = {"rtol": 0, "atol": 1e-4}


def _reference_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = ReferenceSCUNet(config=[2] * 7, dim=64, input_resolution=256).eval()
    with torch.no_grad():  # the release initialises the relative-position tables to small values: make them matter
        for name, parameter in reference.named_parameters():
            if "relative_position_params" in name:
                parameter.normal_(0, 1)
    path = tmp_path / "scunet_color_real_psnr.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_converted_release_checkpoint_gives_the_reference_outputs(tmp_path):
    reference, source = _reference_checkpoint(tmp_path)
    out = tmp_path / "scunet.safetensors"
    result = CliRunner().invoke(
        app, ["convert", str(source), "--network", "scunet", "--preset", "paper", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    ours = load_network(out).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    # sides multiple of 64, so neither pads (the reference pads by reflection, the release and we by replication);
    # 192 px wide = 3 windows of the deepest stage, so shifted windows wrap around and are masked
    image = torch.rand(2, 3, 128, 192)
    with torch.inference_mode():
        expected = reference(image)
        torch.testing.assert_close(ours(image), expected, **TOLERANCE)  # the fast path
        torch.testing.assert_close(use_reference_path(ours)(image), expected, **TOLERANCE)


def test_converted_release_checkpoint_trains_like_the_reference(tmp_path):
    """Gradients too: the fast training path (window-order blocks, SDPA) equals the reference's."""
    reference, source = _reference_checkpoint(tmp_path)
    out = tmp_path / "scunet.safetensors"
    assert (
        CliRunner()
        .invoke(app, ["convert", str(source), "--network", "scunet", "--set", "preset=paper", "--out", str(out)])
        .exit_code
        == 0
    )
    ours = load_network(out).train()
    reference.train()
    image = torch.rand(1, 3, 64, 64)
    for network in (ours, reference):
        network(image).square().mean().backward()
    grads = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(parameter.grad, grads[name].grad, rtol=1e-3, atol=1e-6, msg=name)
