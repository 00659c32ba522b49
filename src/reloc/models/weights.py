"""Saving and loading network weights.

Our own format is safetensors with the network's spec (role, registry name, builder
arguments) in the file's metadata, so a weights file alone rebuilds its network:

>>> import tempfile
>>> from reloc.models import create_localizer
>>> folder = tempfile.TemporaryDirectory()
>>> path = save_network(create_localizer("dfcn", width=0.5), Path(folder.name) / "dfcn.safetensors")
>>> same = load_network(path)                      # the file alone rebuilds the network
>>> same.spec.name, same.spec.kwargs
('dfcn', {'width': 0.5})
>>> folder.cleanup()

Foreign checkpoints (the public SCUNet ``.pth`` files, the ReLoc authors' localizer
weights) are matched to a network by key name, through the network's key map where the
reference names differ, never by order; :func:`load_foreign_weights` reports every
missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from reloc import __version__
from reloc.io_utils import atomic_path, parse_json
from reloc.models import FOREIGN_KEY_MAPS, NetworkSpec
from reloc.models.state_dicts import LoadReport, WeightsError, match_state_dict, read_state_dict

__all__ = [
    "LoadReport",
    "WeightsError",
    "load_foreign_weights",
    "load_network",
    "check_spec_fits",
    "read_spec",
    "read_whole_image_pixels",
    "record_window",
    "read_window",
    "save_network",
]

SPEC_KEY = "reloc.network"
VERSION_KEY = "reloc.version"
#: metadata key of the sliding window a localizer is meant to run with (JSON ``{"window", "stride"}``)
WINDOW_KEY = "reloc.window"
#: Metadata key of the threshold folded into a localizer's logits (:mod:`reloc.models.calibration`).
CALIBRATION_KEY = "reloc.calibration"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def save_network(
    network: nn.Module,
    path: str | Path,
    spec: NetworkSpec | None = None,
    window: tuple[int, int] | None = None,
    calibration: dict | None = None,
    whole_image_pixels: int = 0,
) -> Path:
    """Write ``network``'s state dict (buffers included) to a safetensors file, atomically.

    Args:
        network: a network made by :func:`reloc.models.create_network` (it carries
            ``network.spec``), or any module when ``spec`` is given.
        path: destination file.
        spec: overrides ``network.spec``.
        window: ``(side, stride)`` of the sliding windows a localizer is meant to run with
            (e.g. the crop it was trained on), recorded for :func:`read_window`; ``None``:
            none recorded (any window).
        whole_image_pixels: images up to this many pixels run in one whole-image pass
            (:attr:`reloc.engine.inference.Pipeline.whole_image_pixels`), recorded with
            ``window`` (which it needs); 0: always ``window``'s tiles.
        calibration: how the file's logits were calibrated, e.g. ``{"threshold": 0.7,
            "chosen_on": "..."}`` (:func:`reloc.models.calibration.calibrate` applied before
            saving), recorded as JSON for provenance; ``None``: none recorded.

    Returns:
        The path written.
    """
    spec = spec or getattr(network, "spec", None)
    if spec is None:
        raise WeightsError(f"{path}: the network has no spec; build it with reloc.models.create_network or pass spec=")
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in network.state_dict().items()}
    metadata = {SPEC_KEY: spec.to_json(), VERSION_KEY: __version__}
    if window is not None:
        metadata[WINDOW_KEY] = _window_record(window, whole_image_pixels, path)
    elif whole_image_pixels:
        raise ValueError(f"{path}: whole_image_pixels is recorded with a window; give window= too")
    if calibration is not None:
        metadata[CALIBRATION_KEY] = json.dumps(calibration)
    _atomic_save(tensors, Path(path), metadata)
    return Path(path)


def read_window(path: str | Path) -> tuple[int, int] | None:
    """``(side, stride)`` of the sliding windows the file's network is meant to run with
    (:func:`save_network`'s ``window``), or ``None`` when the file records none.

    Raises:
        WeightsError: unreadable file, or a malformed record.
    """
    record = _read_window_record(path)
    if record is None:
        return None
    try:
        return _checked_window((record["window"], record["stride"]), path)
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{path}: malformed '{WINDOW_KEY}' metadata ({error})") from None


def record_window(path: str | Path, window: tuple[int, int], whole_image_pixels: int = 0) -> Path:
    """Record a new sliding window and whole-image budget in a weights file, in place and
    atomically; the tensors and every other metadata entry stay as they are.

    Returns:
        The path written.

    Raises:
        WeightsError: unreadable file.
        ValueError: a bad window or budget.
    """
    path = Path(path)
    metadata = {**_read_metadata(path), WINDOW_KEY: _window_record(window, whole_image_pixels, path)}
    _atomic_save(load_file(str(path)), path, metadata)
    return path


def read_whole_image_pixels(path: str | Path) -> int:
    """The largest image (in pixels) the file's network runs on in one whole-image pass
    (:func:`save_network`'s ``whole_image_pixels``); 0 when the file records none.

    Raises:
        WeightsError: unreadable file, or a malformed record.
    """
    record = _read_window_record(path)
    if record is None:
        return 0
    try:
        return _checked_pixels(record.get("whole_image_pixels", 0), path)
    except ValueError as error:
        raise WeightsError(f"{path}: malformed '{WINDOW_KEY}' metadata ({error})") from None


def _window_record(window: tuple[int, int], whole_image_pixels: int, path: str | Path) -> str:
    """The JSON of :data:`WINDOW_KEY` for a window and a whole-image budget (checked)."""
    side, stride = _checked_window(window, path)
    record = {"window": side, "stride": stride}
    if whole_image_pixels:
        record["whole_image_pixels"] = _checked_pixels(whole_image_pixels, path)
    return json.dumps(record)


def _read_window_record(path: str | Path) -> dict | None:
    """The parsed :data:`WINDOW_KEY` record of a file, or ``None`` when it records none.

    Raises:
        WeightsError: unreadable file, or a record that is not a JSON object.
    """
    metadata = _read_metadata(path)
    if WINDOW_KEY not in metadata:
        return None
    try:
        record = parse_json(metadata[WINDOW_KEY])
    except ValueError as error:
        raise WeightsError(f"{path}: malformed '{WINDOW_KEY}' metadata ({error})") from None
    if not isinstance(record, dict):
        raise WeightsError(f"{path}: malformed '{WINDOW_KEY}' metadata (not a JSON object)")
    return record


def _checked_pixels(pixels: object, path: str | Path) -> int:
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
        raise ValueError(f"{path}: whole_image_pixels must be an integer >= 0, got {pixels!r}")
    return pixels


def _read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (``{}`` when it has none)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error


def _checked_window(window: tuple[int, int], path: str | Path) -> tuple[int, int]:
    if not all(isinstance(value, numbers.Integral) and not isinstance(value, bool) for value in window):
        raise ValueError(f"{path}: a window's side and stride are whole numbers, got {list(window)!r}")
    side, stride = (int(value) for value in window)
    if not 1 <= stride <= side:
        raise ValueError(f"{path}: a window needs 1 <= stride <= side, got side {side}, stride {stride}")
    return side, stride


def read_spec(path: str | Path) -> NetworkSpec:
    """The network spec stored in one of our safetensors files."""
    path = Path(path)
    metadata = _read_metadata(path)
    if SPEC_KEY not in metadata:
        raise WeightsError(
            f"{path}: no '{SPEC_KEY}' metadata, so the network cannot be rebuilt from the file; "
            "load it into a network you build with load_foreign_weights"
        )
    try:
        spec = NetworkSpec.from_json(metadata[SPEC_KEY])
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{path}: malformed '{SPEC_KEY}' metadata ({type(error).__name__}: {error})") from error
    if not isinstance(spec.kwargs, dict) or not all(isinstance(value, str) for value in (spec.kind, spec.name)):
        raise WeightsError(f"{path}: malformed '{SPEC_KEY}' metadata (kind, name and an object of arguments expected)")
    return spec


def check_spec_fits(path: str | Path, spec: NetworkSpec | None = None) -> NetworkSpec:
    """Check that the tensors in ``path`` are exactly those of the network its spec declares,
    without allocating the network: it is built on the ``meta`` device (shapes only) and
    compared with the shapes in the file's header (no tensor is read).

    So a file whose metadata declares a network other than (e.g. far larger than) the
    tensors it holds is refused before any memory is spent on it.

    Returns:
        The spec.

    Raises:
        WeightsError: unreadable file or spec, a spec that cannot be built, or tensors that
            do not match the declared network (missing, unexpected or of another shape).
    """
    spec = spec or read_spec(path)
    try:
        with torch.device("meta"):
            skeleton = spec.build()
    except Exception as error:  # noqa: BLE001 - a crafted spec may fail in any builder
        raise WeightsError(
            f"{path}: its spec {spec.to_json()} cannot be built ({type(error).__name__}: {error})"
        ) from error
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    missing = [key for key in expected if key not in shapes]
    unexpected = [key for key in shapes if key not in expected]
    wrong = [
        f"{key} {shapes[key]} vs {expected[key]}" for key in expected if key in shapes and shapes[key] != expected[key]
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{title} {len(keys)} (e.g. {keys[0]})"
            for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise WeightsError(
            f"{path}: its tensors do not fit the declared {spec.kind} {spec.name!r} {spec.kwargs}: "
            + ", ".join(parts)
            + "; nothing was built"
        )
    return spec


def load_network(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a network from a safetensors file written by :func:`save_network`.

    The declared network is checked against the file's tensors first
    (:func:`check_spec_fits`), so no network is built for a file that does not fit it.

    Returns:
        The network in eval mode on ``map_location``, with its ``spec`` set.
    """
    spec = check_spec_fits(path)
    network = spec.build()
    state = load_file(str(path), device=str(map_location))
    report = match_state_dict(network, state)
    if not report.ok:
        raise WeightsError(f"{path}: weights do not fit {spec.kind} {spec.name!r}:\n{report}")
    network.load_state_dict(report.matched, strict=True)
    return network.to(map_location).eval()


def load_foreign_weights(network: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a reference-layout checkpoint into ``network`` by key name.

    The key map of the network's registry name (``network.spec.name``) translates the
    reference names where ours differ. With ``strict``, any missing, unexpected or
    mis-shaped key raises :class:`WeightsError` with the full report and nothing is
    loaded; otherwise the matched tensors are loaded and the report returned.
    """
    spec = getattr(network, "spec", None)
    key_map = FOREIGN_KEY_MAPS.get(spec.name) if spec else None
    report = match_state_dict(network, read_state_dict(path), key_map)
    if strict and not report.ok:
        raise WeightsError(f"{path}: does not fit {spec.name if spec else type(network).__name__}:\n{report}")
    network.load_state_dict(report.matched, strict=False)
    return report
