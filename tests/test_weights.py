"""Weights: safetensors with the spec inside, foreign checkpoints matched by key name."""

from __future__ import annotations

import pytest
import torch

from reloc.models import create_localizer, create_restorer
from reloc.models.weights import WeightsError, load_foreign_weights, load_network, read_spec, save_network


def test_spec_in_metadata_rebuilds_network(tmp_path):
    network = create_localizer("dfcn", width=0.5, faithful=False)
    path = save_network(network, tmp_path / "weights" / "dfcn.safetensors")
    spec = read_spec(path)
    assert (spec.kind, spec.name, spec.kwargs) == ("localizer", "dfcn", {"width": 0.5, "faithful": False})
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temporary file
    rebuilt = load_network(path)
    expected, actual = network.state_dict(), rebuilt.state_dict()
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_foreign_checkpoint_loads_by_name_not_order(tmp_path):
    source = create_restorer("scunet", preset="tiny")
    shuffled = dict(reversed(list(source.state_dict().items())))  # order must not matter
    path = tmp_path / "scunet_color_real_psnr.pth"
    torch.save({"params": {f"module.{k}": v for k, v in shuffled.items()}}, path)
    target = create_restorer("scunet", preset="tiny")
    report = load_foreign_weights(target, path)
    assert report.ok and len(report.matched) == len(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_mismatch_is_reported_by_key(tmp_path):
    state = create_localizer("dfcn").state_dict()
    state.pop("final_conv.bias")
    state["extra.weight"] = torch.zeros(1)
    state["de_conv1.conv.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "dfcn.pth"
    torch.save(state, path)
    target = create_localizer("dfcn")
    with pytest.raises(WeightsError) as error:
        load_foreign_weights(target, path)
    message = str(error.value)
    assert "final_conv.bias" in message and "extra.weight" in message and "de_conv1.conv.weight" in message
    report = load_foreign_weights(target, path, strict=False)
    assert report.missing == ["final_conv.bias"] and report.unexpected == ["extra.weight"]
    assert report.mismatched[0].startswith("de_conv1.conv.weight")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_unreadable_weights_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="broken.pth"):
        load_foreign_weights(create_localizer("dfcn"), path)
    safetensors_path = tmp_path / "broken.safetensors"
    safetensors_path.write_bytes(content)
    with pytest.raises(WeightsError, match="broken.safetensors"):
        load_network(safetensors_path)


def test_top_level_load_network_rebuilds_from_the_file_alone(tmp_path):
    import reloc

    network = reloc.create_restorer("scunet", preset="tiny")
    path = reloc.save_network(network, tmp_path / "restorer.safetensors")
    rebuilt = reloc.load_network(path)
    assert type(rebuilt) is type(network)
    expected, actual = network.state_dict(), rebuilt.state_dict()
    assert list(actual) == list(expected) and all(torch.equal(expected[key], actual[key]) for key in expected)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        reloc.nope  # noqa: B018
