"""The shortcut check at a tiny size: a model trained on the generator's masks with no edit
applied (``SynthSettings.no_edit``) must score chance on held-out no-edit samples, while
the same training on real edits of an easy kind scores far above it.

If the no-edit AUC rose, the masks could be told from the photos without any edit (a
placement or shape prior the image reveals, a trace of the generator outside the edit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reloc.data.photos import list_photos
from reloc.data.synth import SynthSettings, render_sample
from reloc.metrics import binary_auc

SIZE = 64
# An easy edit: hard-edged splices of another photo with added noise, nothing else.
EASY = {
    "p_feather": 0.0,
    "p_resample": 0.0,
    "p_color_match": 0.0,
    "p_gamma": 0.0,
    "p_region_jpeg": 0.0,
    "p_blur": 0.0,
    "p_denoise": 0.0,
    "p_noise": 1.0,
    "noise_sigma_range": (14.0, 18.0),
}


def _samples(settings: SynthSettings, photos, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """float ``(N, 3, SIZE, SIZE)`` images and ``(N, 1, SIZE, SIZE)`` masks of splices."""
    images, masks = [], []
    for seed in seeds:
        host, donor = photos[seed % len(photos)], photos[(seed + 1) % len(photos)]
        sample = render_sample("splice", host, np.random.default_rng([seed, 7]), SIZE, settings, donor)
        images.append(sample.image)
        masks.append(sample.mask)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(np.stack(masks)).float()[:, None]


class _HighPass(nn.Module):
    """The image minus its 3x3 mean (a fixed front end, as the localizers' SRM filters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        return 10.0 * (x - nn.functional.avg_pool2d(padded, 3, stride=1))


def _train_and_score(settings: SynthSettings, photos) -> float:
    """Pixel AUC on 32 held-out samples of a tiny CNN trained 100 steps on 32 others."""
    torch.manual_seed(0)
    train_x, train_y = _samples(settings, photos, range(0, 32))
    test_x, test_y = _samples(settings, photos, range(1000, 1032))
    net = nn.Sequential(
        _HighPass(),
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
        nn.ReLU(),
        nn.AvgPool2d(7, stride=1, padding=3, count_include_pad=False),
        nn.Conv2d(8, 1, 1),
    )
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        batch = torch.randint(0, len(train_x), (8,), generator=generator)
        loss = nn.functional.binary_cross_entropy_with_logits(net(train_x[batch]), train_y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        scores = net(test_x)
    return binary_auc(scores.numpy().ravel(), test_y.numpy().ravel() > 0.5)


@pytest.fixture(scope="module")
def photos():
    return list_photos("default")


def test_no_edit_samples_teach_nothing_while_edits_do(photos):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        edited = _train_and_score(SynthSettings(**EASY), photos)
        no_edit = _train_and_score(SynthSettings(**EASY, no_edit=True), photos)
    finally:
        torch.set_num_threads(threads)
    assert abs(no_edit - 0.5) < 0.1, f"no-edit AUC {no_edit:.3f}: the masks can be told from unedited photos"
    assert edited > 0.8 and edited > no_edit + 0.25, f"edited AUC {edited:.3f} vs no-edit {no_edit:.3f}: no power"
