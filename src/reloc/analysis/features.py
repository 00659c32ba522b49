"""Fig. 2 of the paper: encoder features of tampered and original pixels, per situation.

For each situation, the localizer's encoder features of ``n`` tampered and ``n`` original
pixels (sampled from the test images) are projected to 2-D with t-SNE, and the earth
mover's distance (EMD) between the two projected point sets measures how far apart the
network represents them. With equal-size point sets and uniform weights the EMD is the
mean distance of the optimal one-to-one matching, computed exactly with
``scipy.optimize.linear_sum_assignment``. As in the figure, the EMD is taken between the
plotted 2-D points, so it compares situations only roughly (t-SNE has no common scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reloc.data.catalog import SampleRef
from reloc.data.datasets import WholeImages
from reloc.data.io import ImageError
from reloc.engine.evaluate import Situation
from reloc.extras import require

#: The module whose output is "the encoder's features", per localizer (its last map if a list).
FEATURE_LAYERS = {"dfcn": "dense_block5", "scse_unet": "encoder", "mvssnet": "model.layer4"}
#: Each image is centre-cropped to at most this side, which bounds memory on large images.
MAX_SIDE = 512
#: Pixels are drawn from at most this many test images (those holding both classes).
MAX_IMAGES = 20


def encoder_features(localizer: torch.nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """Features of ``layer`` resized (bilinear) to the input size.

    Args:
        localizer: a localizer network. images: ``(B, 3, H, W)``. layer: a module name.

    Returns:
        ``(B, C, H, W)``.
    """
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[-1] if isinstance(output, (list, tuple)) else output)

    handle = localizer.get_submodule(layer).register_forward_hook(hook)
    try:
        localizer(images)
    finally:
        handle.remove()
    return F.interpolate(captured[0].float(), size=images.shape[-2:], mode="bilinear", align_corners=False)


def earth_movers_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact EMD between two equal-size point sets ``(n, d)`` with uniform weights."""
    linear_sum_assignment = require("scipy.optimize", "figures", "the EMD of the feature figure").linear_sum_assignment
    cdist = require("scipy.spatial.distance", "figures", "the EMD of the feature figure").cdist

    if a.shape != b.shape:
        raise ValueError(f"point sets must have the same shape, got {a.shape} and {b.shape}")
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def _centre_crop(tensor: torch.Tensor) -> torch.Tensor:
    height, width = tensor.shape[-2:]
    top, left = max(0, (height - MAX_SIDE) // 2), max(0, (width - MAX_SIDE) // 2)
    return tensor[..., top : top + MAX_SIDE, left : left + MAX_SIDE]


@torch.inference_mode()
def sample_pixel_features(
    situation: Situation,
    refs: list[SampleRef],
    distortion: str,
    device: torch.device,
    pixels: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``pixels`` tampered and ``pixels`` original feature vectors, ``(pixels, C)`` each, drawn
    from the first :data:`MAX_IMAGES` images of ``refs`` that hold both classes."""
    pipeline = situation.pipeline(device)
    name = pipeline.localizer.spec.name
    if name not in FEATURE_LAYERS:
        raise ValueError(f"no encoder layer known for localizer {name!r}; known: {sorted(FEATURE_LAYERS)}")
    images = WholeImages(refs, distortion if situation.distorted else None, seed=seed)
    rng = np.random.default_rng(seed)
    tampered, original = [], []
    for index in range(len(images)):
        if len(tampered) == MAX_IMAGES:
            break
        try:
            item = images[index]
        except ImageError:  # skipped (with a warning) by the evaluation too
            continue
        source = _centre_crop(item["distorted"] if situation.distorted else item["plain"])[None].to(device)
        mask = _centre_crop(item["mask"])[0].bool().flatten()
        if mask.all() or not mask.any():
            continue
        features = encoder_features(pipeline.localizer, pipeline.restore(source), FEATURE_LAYERS[name])
        features = features[0].flatten(1).T.cpu()  # (H*W, C)
        tampered.append(features[mask].numpy())
        original.append(features[~mask].numpy())
    if not tampered:
        raise ValueError("no test image holds both tampered and original pixels")
    pools = [np.concatenate(group) for group in (tampered, original)]
    count = min(pixels, *(len(pool) for pool in pools))
    return tuple(pool[rng.choice(len(pool), count, replace=False)] for pool in pools)


def feature_figure(
    situations: list[Situation],
    refs: list[SampleRef],
    distortion: str,
    out: Path,
    device: torch.device,
    pixels: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Draw the t-SNE panels (one per situation) into ``out``; returns the EMD per situation."""
    TSNE = require("sklearn.manifold", "figures", "the t-SNE feature figure (reloc report --features 0 skips it)").TSNE
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(situations), figsize=(3.2 * len(situations), 3.4), squeeze=False)
    distances = {}
    for axis, situation in zip(axes[0], situations):
        tampered, original = sample_pixel_features(situation, refs, distortion, device, pixels, seed)
        points = np.concatenate([tampered, original])
        embedded = TSNE(2, init="pca", perplexity=min(30, len(points) - 1), random_state=seed).fit_transform(points)
        count = len(tampered)
        distances[situation.name] = earth_movers_distance(embedded[:count], embedded[count:])
        axis.scatter(*embedded[count:].T, s=2, c="tab:blue", label="original")
        axis.scatter(*embedded[:count].T, s=2, c="tab:red", label="tampered")
        axis.set_title(f"{situation.name}\nEMD {distances[situation.name]:.2f}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][0].legend(fontsize=7, markerscale=4)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return distances
