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


def test_highpass_front_end_is_fixed_and_changes_only_the_first_block():
    from reloc.models.dfcn import SRMHighPass

    plain, filtered = DFCN(width=0.5, faithful=False), DFCN(width=0.5, faithful=False, highpass=True)
    ours, theirs = plain.state_dict(), filtered.state_dict()
    assert list(ours) == list(theirs)  # the filter bank is a non-persistent buffer
    changed = {key for key in ours if ours[key].shape != theirs[key].shape}
    assert changed and all(key.startswith("dense_block1.") for key in changed)
    assert all(not key.startswith("highpass") for key, _ in filtered.named_parameters())
    # 9 residual channels; 0 on a flat image, non-zero on texture; bounded by the truncation
    bank = SRMHighPass()
    flat = bank(torch.full((1, 3, 16, 16), 0.4))
    noisy = bank(torch.rand(1, 3, 16, 16))
    assert flat.shape == (1, 9, 16, 16) and flat.abs().max() < 1e-4
    assert noisy.abs().mean() > 0.1 and noisy.abs().max() <= 1.0
    # each colour channel's residuals depend on that channel only
    image = torch.rand(1, 3, 16, 16)
    shifted = image.clone()
    shifted[:, 1] = torch.rand(16, 16)
    a, b = bank(image), bank(shifted)
    assert torch.equal(a[:, :3], b[:, :3]) and torch.equal(a[:, 6:], b[:, 6:]) and not torch.equal(a[:, 3:6], b[:, 3:6])
    assert filtered(torch.rand(2, 3, 37, 53)).shape == (2, 1, 37, 53)


def test_highpass_network_round_trips_through_weights_file(tmp_path):
    from reloc.models import create_localizer
    from reloc.models.weights import load_network, save_network

    network = create_localizer("dfcn", width=0.25, faithful=False, highpass=True).eval()
    loaded = load_network(save_network(network, tmp_path / "l.safetensors")).eval()
    assert loaded.highpass is not None
    image = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(network(image), loaded(image))
