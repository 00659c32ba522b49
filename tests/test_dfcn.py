"""DFCN: reference layout, the faithful flag, the width multiplier."""

from __future__ import annotations

import torch

from conftest import reference_shapes
from reloc.models import count_parameters
from reloc.models.dfcn import DFCN


def test_state_dict_matches_reference_names_and_shapes():
    ours = {key: tuple(value.shape) for key, value in DFCN().state_dict().items()}
    assert ours == reference_shapes("dfcn.tsv")


def test_dropping_unused_convs_keeps_outputs():
    faithful, lean = DFCN(faithful=True).eval(), DFCN(faithful=False).eval()
    missing, unexpected = lean.load_state_dict(faithful.state_dict(), strict=False)
    assert missing == [] and all(".conv3." in key or ".conv4." in key for key in unexpected)
    image = torch.rand(1, 3, 72, 88)
    with torch.inference_mode():
        assert torch.equal(faithful(image), lean(image))


def test_width_multiplier_shrinks_and_keeps_shapes():
    half = DFCN(width=0.5)
    assert count_parameters(half) < count_parameters(DFCN()) / 3
    assert half(torch.rand(2, 3, 37, 53)).shape == (2, 1, 37, 53)
