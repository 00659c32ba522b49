"""Losses of paper eq. 1-7, checked against the formulas written out."""

from __future__ import annotations

import math

import pytest
import torch

from reloc.losses import (
    LOSS_PRESETS,
    dice_loss,
    discriminator_loss,
    generator_loss,
    localization_loss,
    mae_loss,
    restoration_loss,
)


def test_dice_uses_squares_and_one_sum_over_the_batch():
    p = torch.tensor([0.5, 1.0, 0.0, 0.25]).view(2, 1, 1, 2)
    g = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(2, 1, 1, 2)
    expected = 1 - 2 * (0.5 + 1.0) / ((0.25 + 1.0 + 0.0 + 0.0625) + 2.0 + 1e-6)
    assert dice_loss(p, g).item() == pytest.approx(expected)


def test_localization_loss_mixes_bce_and_dice_by_lambda1():
    logits = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    p = torch.sigmoid(logits)
    bce = -(mask * torch.log(p) + (1 - mask) * torch.log(1 - p)).mean()
    weights = LOSS_PRESETS["paper"]
    expected = 0.2 * bce + 0.8 * dice_loss(p, mask)
    assert localization_loss(logits, mask, weights).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gan_losses_are_negative_log_likelihoods():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = torch.sigmoid
    assert generator_loss(fake).item() == pytest.approx((-torch.log(sig(fake))).mean().item(), rel=1e-6)
    expected = (-torch.log(sig(real))).mean() + (-torch.log(1 - sig(fake))).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)


def test_restoration_loss_terms_follow_weights_and_switches():
    restored, plain = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    fake, logits = torch.randn(2), torch.randn(2, 1, 8, 8)
    weights = LOSS_PRESETS["official"]
    terms = restoration_loss(restored, plain, fake, logits, mask, weights)
    expected = (
        100 * mae_loss(restored, plain) + 0.1 * generator_loss(fake) + 1.0 * localization_loss(logits, mask, weights)
    )
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    only_mae = restoration_loss(restored, plain, None, None, mask, weights)
    assert set(only_mae) == {"mae", "total"}
    assert only_mae["total"].item() == pytest.approx(100 * (restored - plain).abs().mean().item(), rel=1e-6)


def test_presets_match_the_paper_and_the_release():
    paper, document, official = LOSS_PRESETS["paper"], LOSS_PRESETS["paper-document"], LOSS_PRESETS["official"]
    assert (paper.bce, paper.mae, paper.gan, paper.localization) == (0.2, 100, 1, 0.1)
    assert document.localization == 0.05
    assert (official.mae, official.gan, official.localization, official.bce) == (100, 0.1, 1, 0.2)
    assert math.isclose(1 - paper.bce, 0.8)
