"""Inference-time rewrites of a network that keep its outputs (within float rounding).

- :func:`fold_batchnorm`: every BatchNorm (in eval mode) that directly follows a
  convolution is folded into that convolution's weight and bias and replaced by
  ``nn.Identity`` (one pass over the activations less per pair);
- :func:`prepare_for_inference`: eval mode, :func:`fold_batchnorm`, and weights in
  ``channels_last`` memory so oneDNN's convolutions read them without reordering.

Both change the module in place: the result is for inference only (a folded network
trains differently, having no BatchNorm). ``tests/test_speed_paths.py`` checks every
localizer against its plain form within 1e-4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn_pairs(network: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Names of ``(convolution, BatchNorm)`` pairs where the BatchNorm's input *is* the
    convolution's output, found by running ``example`` ``(B, 3, H, W)`` once with hooks.

    Only plain ``nn.BatchNorm2d`` counts (subclasses such as timm's ``BatchNormAct2d``
    do more than normalise). A convolution whose output another module also reads would
    be folded wrongly; no network here has one, and the tests compare outputs.
    """
    names = {module: name for name, module in network.named_modules()}
    outputs: dict[int, tuple[torch.Tensor, str]] = {}  # id -> (output kept alive, conv name)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()

    def after_conv(module, inputs, output):
        outputs[id(output)] = (output, names[module])

    def before_bn(module, inputs):
        found = outputs.get(id(inputs[0]))
        if found is not None and found[0] is inputs[0] and names[module] not in seen:
            seen.add(names[module])
            pairs.append((found[1], names[module]))

    handles = []
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv))
        elif type(module) is nn.BatchNorm2d:
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.inference_mode():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def fold_batchnorm(network: nn.Module, example: torch.Tensor | None = None) -> int:
    """Fold every BatchNorm that follows a convolution into it (in place; eval mode).

    Args:
        network: any network taking ``(B, 3, H, W)`` images.
        example: the input used to find the pairs (default: one random 64x64 image on
            the network's device).

    Returns:
        The number of BatchNorms folded.
    """
    network.eval()
    if example is None:
        parameter = next(network.parameters())
        example = torch.rand(1, 3, 64, 64, device=parameter.device, dtype=parameter.dtype)
    pairs = conv_bn_pairs(network, example)
    modules = dict(network.named_modules())
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            fused = fuse_conv_bn_eval(modules[conv_name], modules[bn_name])
            _set_module(network, conv_name, fused)
            _set_module(network, bn_name, nn.Identity())
    return len(pairs)


def prepare_for_inference(network: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """Eval mode, BatchNorms folded (:func:`fold_batchnorm`), weights ``channels_last``;
    returns ``network`` itself (changed in place)."""
    fold_batchnorm(network, example)
    network.to(memory_format=torch.channels_last)
    return network


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
