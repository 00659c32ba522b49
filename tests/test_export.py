"""ONNX export: onnxruntime reproduces PyTorch's outputs, at sizes other than the traced one."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_cached
from reloc.cli import app
from reloc.export import check_onnx, export_onnx
from reloc.models.weights import save_network


def test_cli_exports_dfcn_with_dynamic_size(tmp_path):
    localizer = build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()
    weights = save_network(localizer, tmp_path / "dfcn.safetensors")
    result = CliRunner().invoke(
        app, ["export", str(weights), "--out", str(tmp_path / "dfcn.onnx"), "--height", "64", "--width", "96"]
    )
    assert result.exit_code == 0, result.output
    assert "max |onnxruntime - torch|" in result.output
    for shape in [(1, 3, 64, 96), (2, 3, 75, 50)]:  # traced size, then another batch and odd size
        assert check_onnx(localizer, tmp_path / "dfcn.onnx", torch.rand(*shape)) < 1e-4


def test_scunet_export_pads_any_size_like_pytorch(tmp_path):
    restorer = build_cached("restorer", "scunet", preset="tiny").eval()
    path = export_onnx(restorer, tmp_path / "scunet.onnx", height=64, width=64)
    # the traced size, a size padded on both sides, and two windows wide
    for shape in [(1, 3, 64, 64), (2, 3, 70, 50), (1, 3, 64, 128)]:
        assert check_onnx(restorer, path, torch.rand(*shape)) < 1e-4
    assert not restorer.m_body[0].trans_block.reference  # the export worked on a copy


def test_fixed_size_export_rejects_other_sizes(tmp_path):
    import onnxruntime

    restorer = build_cached("restorer", "scunet", preset="tiny").eval()
    path = export_onnx(restorer, tmp_path / "fixed.onnx", height=40, width=72, dynamic=False)
    assert check_onnx(restorer, path, torch.rand(1, 3, 40, 72)) < 1e-4
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"image": torch.rand(1, 3, 64, 64).numpy()})


def test_check_fails_when_onnx_returns_fewer_outputs(tmp_path):
    localizer = build_cached("localizer", "dfcn", width=0.25, faithful=False).eval()
    path = export_onnx(localizer, tmp_path / "dfcn.onnx", height=32, width=32)

    class TwoOutputs(torch.nn.Module):  # what PyTorch returns for MVSS-Net: (edge, segmentation)
        def forward(self, image):
            logits = localizer(image)
            return logits, logits

    with pytest.raises(ValueError, match=r"dfcn.onnx: onnxruntime returned 1 output\(s\), PyTorch 2"):
        check_onnx(TwoOutputs(), path, torch.rand(1, 3, 32, 32))
