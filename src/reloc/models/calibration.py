"""A localizer's decision threshold folded into its logits.

A localizer trained on tamper-biased crops (most crops centred on an edit) over-predicts
tampering on whole images, where edits cover a few percent to a third of the pixels: its
probabilities are best cut well above 0.5. :func:`calibrate` shifts the network's output
bias by ``-logit(threshold)`` so that its probability exceeds 0.5 exactly where the
original's exceeded ``threshold``; every map keeps its pixel order, so AUC is unchanged, and
every tool that cuts at 0.5 (``localize`` masks, the paper's F1 / IoU, ONNX exports) uses
the chosen threshold without knowing of it. the release recipe (:mod:`reloc.release`) chooses the threshold
on validation images and records it in the weights (``reloc.calibration`` metadata).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def logit(probability: float) -> float:
    """``log(p / (1 - p))`` for ``0 < p < 1``."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"a threshold must be in (0, 1), got {probability}")
    return math.log(probability / (1.0 - probability))


def calibrate(localizer: nn.Module, threshold: float) -> nn.Module:
    """Shift ``localizer``'s output logits by ``-logit(threshold)``, in place.

    Args:
        localizer: a network whose class names the bias of its last layer in
            ``LOGIT_BIAS`` (e.g. ``"final_conv.bias"``), a parameter added to every output
            logit ``(B, 1, H, W)`` (interpolations after it keep the shift: their weights sum
            to one).
        threshold: the probability of the original network that becomes 0.5.

    Returns:
        ``localizer``, whose ``sigmoid(output) > 0.5`` now where the original's
        ``sigmoid(output) > threshold``.

    Raises:
        ValueError: ``threshold`` outside (0, 1), or a network without ``LOGIT_BIAS``.
    """
    shift = logit(threshold)
    name = getattr(localizer, "LOGIT_BIAS", None)
    if name is None:
        raise ValueError(f"{type(localizer).__name__} names no LOGIT_BIAS: its logits cannot be shifted")
    bias = localizer.get_parameter(name)
    with torch.no_grad():
        bias.sub_(shift)
    return localizer
