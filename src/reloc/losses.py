"""ReLoc's losses (paper eq. 1-7) and the two published weightings.

- pixel loss: MAE between restored and plain images (eq. 1);
- GAN losses of a DCGAN discriminator (eq. 2-3), on logits;
- localization loss ``λ1·BCE + (1-λ1)·Dice`` with the paper's Dice: squares in the
  denominator, one Dice over the whole batch (eq. 4-6);
- restoration loss ``λ2·MAE + λ3·L_G + λ4·L_L`` (eq. 7).

The paper and its released code weight these differently; both are presets of
:class:`LossWeights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DICE_EPSILON = 1e-6


@dataclass(frozen=True)
class LossWeights:
    """Weights of the ReLoc losses.

    Attributes:
        bce: λ1, the BCE share of the localization loss; Dice gets ``1 - bce`` (eq. 6).
        mae: λ2, pixel loss weight in the restoration loss.
        gan: λ3, generator loss weight.
        localization: λ4, localization loss weight in the restoration loss.
    """

    bce: float = 0.2
    mae: float = 100.0
    gan: float = 1.0
    localization: float = 0.1


#: ``paper``: λ1 0.2, λ2 100, λ3 1, λ4 0.1 (DEFACTO, IMD2020); ``paper-document``: λ4 0.05
#: (Certificate PS); ``official``: the released code (MAE 100, GAN 0.1, localization 1,
#: BCE share 0.2).
LOSS_PRESETS: dict[str, LossWeights] = {
    "paper": LossWeights(bce=0.2, mae=100.0, gan=1.0, localization=0.1),
    "paper-document": LossWeights(bce=0.2, mae=100.0, gan=1.0, localization=0.05),
    "official": LossWeights(bce=0.2, mae=100.0, gan=0.1, localization=1.0),
}


def mae_loss(restored: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """Eq. 1: mean absolute error over all pixels and channels. Both ``(B, 3, H, W)``."""
    return F.l1_loss(restored, plain)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``-log D(I^R)`` averaged over the batch. ``fake_logits``: ``(B,)``."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``-log D(I^P) - log(1 - D(I^R))``, each term averaged over the batch."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def dice_loss(probabilities: torch.Tensor, target: torch.Tensor, epsilon: float = DICE_EPSILON) -> torch.Tensor:
    """Eq. 5: ``1 - 2·Σ p·g / (Σ p² + Σ g² + ε)``, one Dice over the whole batch.

    Args:
        probabilities: ``(B, 1, H, W)`` in [0, 1]. target: ``(B, 1, H, W)`` in {0, 1}.
    """
    intersection = (probabilities * target).sum()
    return 1.0 - 2.0 * intersection / (probabilities.square().sum() + target.square().sum() + epsilon)


def localization_loss(logits: torch.Tensor, target: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """Eq. 6: ``bce·BCE + dice·Dice`` on logits ``(B, 1, H, W)`` and a {0, 1} mask of that shape."""
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return weights.bce * bce + (1.0 - weights.bce) * dice_loss(torch.sigmoid(logits), target)


def restoration_loss(
    restored: torch.Tensor,
    plain: torch.Tensor,
    fake_logits: torch.Tensor | None,
    localization_logits: torch.Tensor | None,
    mask: torch.Tensor,
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Eq. 7: ``mae·L_MAE + gan·L_G + localization·L_L``; a term whose input is ``None``
    (or whose weight is 0) is left out, which gives the Table I ablations.

    Returns:
        ``{"total", "mae", "gan", "localization"}`` (absent terms are omitted).
    """
    terms = {"mae": mae_loss(restored, plain)}
    total = weights.mae * terms["mae"]
    if fake_logits is not None and weights.gan:
        terms["gan"] = generator_loss(fake_logits)
        total = total + weights.gan * terms["gan"]
    if localization_logits is not None and weights.localization:
        terms["localization"] = localization_loss(localization_logits, mask, weights)
        total = total + weights.localization * terms["localization"]
    terms["total"] = total
    return terms
