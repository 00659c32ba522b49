"""A decision threshold folded into a localizer's logits (reloc.models.calibration)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from reloc.models import create_network
from reloc.models.calibration import calibrate, logit
from reloc.models.weights import CALIBRATION_KEY, load_network, save_network


@pytest.mark.parametrize(
    ("name", "kwargs"), [("dfcn", {"width": 0.25, "faithful": False}), ("scse_unet", {"encoder": "resnet18"})]
)
@pytest.mark.parametrize("threshold", [0.2, 0.75])
def test_calibrated_network_cuts_at_half_where_the_original_cut_at_the_threshold(name, kwargs, threshold):
    torch.manual_seed(0)
    original = create_network("localizer", name, **kwargs).eval()
    calibrated = create_network("localizer", name, **kwargs).eval()
    calibrated.load_state_dict(original.state_dict())
    calibrate(calibrated, threshold)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before, after = original(image), calibrated(image)
    torch.testing.assert_close(after, before - logit(threshold), atol=1e-5, rtol=0)
    # pixels far enough from the cut to be decided the same way despite float rounding
    decided = (torch.sigmoid(before) - threshold).abs() > 1e-4
    assert decided.any()
    assert torch.equal((torch.sigmoid(after) > 0.5)[decided], (torch.sigmoid(before) > threshold)[decided])


def test_a_network_without_a_logit_bias_is_refused():
    with pytest.raises(ValueError, match="LOGIT_BIAS"):
        calibrate(nn.Conv2d(3, 1, 3), 0.7)
    mvss = create_network("localizer", "mvssnet")
    with pytest.raises(ValueError, match="MVSSNet names no LOGIT_BIAS"):
        calibrate(mvss, 0.7)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, float("nan")])
def test_a_threshold_outside_the_open_unit_interval_is_refused(threshold):
    network = create_network("localizer", "dfcn", width=0.25, faithful=False)
    with pytest.raises(ValueError, match="threshold"):
        calibrate(network, threshold)


def test_the_calibration_is_recorded_in_the_weights_and_the_tensors_kept(tmp_path):
    network = calibrate(create_network("localizer", "dfcn", width=0.25, faithful=False), 0.7)
    path = save_network(network, tmp_path / "localizer.safetensors", window=(64, 32), calibration={"threshold": 0.7})
    with safe_open(str(path), framework="pt") as handle:
        assert json.loads(handle.metadata()[CALIBRATION_KEY]) == {"threshold": 0.7}
    torch.testing.assert_close(load_network(path).final_conv.bias, network.final_conv.bias)
