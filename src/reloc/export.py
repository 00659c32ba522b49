"""ONNX export of reloc networks (``reloc export WEIGHTS.safetensors --out model.onnx``).

>>> from reloc.export import export_onnx, check_onnx
>>> export_onnx(load_network("restorer.safetensors"), "restorer.onnx", 512, 512)
>>> check_onnx(network, "restorer.onnx", torch.rand(1, 3, 300, 200))   # max |onnx - torch|

The network is traced by ``torch.export`` (PyTorch's ONNX exporter with ``dynamo=True``,
which needs the ``onnxscript`` package) on a ``(1, 3, height, width)`` example. By
default batch, height and width are **dynamic**: one ``.onnx`` file takes any size, as
the PyTorch network does. Two adjustments make that traceable; neither changes values:

- networks that pad their input to a multiple of ``k`` (their ``pad_multiple``: SCUNet
  64, SCSE-Unet 32, MVSS-Net 16) are wrapped so the padding (replication, bottom/right) is computed from
  symbolic sizes outside the network, and the output cropped back; inside, the network's
  own padding is then a no-op;
- SCUNet is exported in the release's formulation (:func:`reloc.models.scunet.use_reference_path`):
  its fast path gathers tokens through index tensors cached per map size, which would be
  frozen to the example's size.

With ``dynamic=False`` the file takes exactly ``(1, 3, height, width)``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reloc.models.mvssnet import MVSSNet
from reloc.models.scunet import use_reference_path

#: Default ONNX opset (the exporter's own default may be newer; 18 runs on onnxruntime >= 1.14).
DEFAULT_OPSET = 18


def latest_opset() -> int:
    """The newest ONNX opset the installed ``onnx`` knows (:data:`DEFAULT_OPSET` without it)."""
    try:
        import onnx
    except ImportError:
        return DEFAULT_OPSET
    return int(onnx.defs.onnx_opset_version())


class _PaddedForExport(nn.Module):
    """Pads by replication to a multiple of ``multiple`` (bottom/right), runs ``network``,
    crops every output back to the input size."""

    def __init__(self, network: nn.Module, multiple: int) -> None:
        super().__init__()
        self.network = network
        self.multiple = multiple

    def forward(self, image: torch.Tensor):
        height, width = image.shape[-2:]
        m = self.multiple
        padded = F.pad(image, (0, (width + m - 1) // m * m - width, 0, (height + m - 1) // m * m - height), "replicate")
        output = self.network(padded)
        if isinstance(output, tuple):
            return tuple(o[..., :height, :width] for o in output)
        return output[..., :height, :width]


def pad_multiple(network: nn.Module) -> int | None:
    """The side multiple ``network`` pads its input to (its ``pad_multiple`` attribute), or
    ``None`` for a network that takes any side as it is."""
    multiple = getattr(network, "pad_multiple", 1)
    return multiple if multiple > 1 else None


def exportable(network: nn.Module) -> nn.Module:
    """A copy of ``network`` in eval mode, ready for ``torch.export`` (see the module doc)."""
    module = use_reference_path(copy.deepcopy(network).eval())
    multiple = pad_multiple(network)
    return _PaddedForExport(module, multiple).eval() if multiple else module


def output_names(network: nn.Module) -> list[str]:
    if isinstance(network, MVSSNet):
        return ["edge_logits", "seg_logits"]
    kind = getattr(getattr(network, "spec", None), "kind", None)
    return {"restorer": ["restored"], "localizer": ["logits"], "discriminator": ["logit"]}.get(kind, ["output"])


def export_onnx(
    network: nn.Module,
    path: str | Path,
    height: int = 512,
    width: int = 512,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
) -> Path:
    """Write ``network`` as an ONNX model with one input ``image`` ``(B, 3, H, W)``.

    Args:
        network: any reloc network (restorer, localizer, discriminator); not modified.
        path: destination ``.onnx`` file (weights inside the file).
        height, width: size of the example input that is traced and the only size
            accepted when ``dynamic=False``; with ``dynamic=True`` any size is accepted
            and a padding network is traced on at least two multiples of its padding
            (the example has batch 2).
        opset: ONNX opset version.
        dynamic: batch, height and width dynamic (the discriminator, whose linear layer
            fixes the size, should be exported with ``dynamic=False``).

    Returns:
        ``path``.

    Raises:
        ImportError: ``onnx`` / ``onnxscript`` missing (``pip install 'reloc[export]'``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = exportable(network)
    shape = (1, 3, height, width)
    multiple = pad_multiple(network)
    if dynamic:  # trace away from sizes 1 (batch) and one window (rows), which torch.export specializes
        floor = 2 * multiple if multiple else 1
        shape = (2, 3, max(height, floor), max(width, floor))
    example = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    dynamic_shapes = None
    if dynamic:
        dims = {0: torch.export.Dim("batch", min=1, max=1024)}
        dims[2] = torch.export.Dim("height", min=1, max=16384)
        dims[3] = torch.export.Dim("width", min=1, max=16384)
        dynamic_shapes = {"image": dims}
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["image"],
            output_names=output_names(network),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    return path


def check_onnx(network: nn.Module, path: str | Path, image: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's outputs and ``network``'s on ``image``.

    Args:
        network: the PyTorch network (run in eval mode under ``no_grad``).
        path: an ``.onnx`` file written by :func:`export_onnx`.
        image: ``(B, 3, H, W)`` float32.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"image": image.detach().cpu().numpy()})
    was_training = network.training
    network.eval()
    with torch.no_grad():
        expected = network(image)
    network.train(was_training)
    expected = expected if isinstance(expected, tuple) else (expected,)
    if len(outputs) != len(expected):
        raise ValueError(f"{path}: onnxruntime returned {len(outputs)} output(s), PyTorch {len(expected)}")
    return max(float((torch.from_numpy(o) - e.cpu()).abs().max()) for o, e in zip(outputs, expected, strict=True))
