"""Inference: a restorer (or none) in front of a localizer.

``Pipeline(restorer, localizer)`` composes any restorer with any localizer, the paper's
transferability; ``restorer=None`` localizes the input as it is. The restored image is
clamped to [0, 1] before localization (the released SCUNet does not clamp its output).

:meth:`Pipeline.predict` runs one image of any size in sliding windows of ``window``
pixels every ``stride`` pixels, or in one whole-image pass (:attr:`Pipeline.whole_image_pixels`:
images up to that many pixels, when the caller names no window). Window origins lie on
the image's 8-px JPEG grid (:data:`GRID`), so every window sees the blocks in the phase
the models were trained on; the last window on each side reaches the far edge (its few
pixels past it are filled by replication). Overlapping windows are blended with a
tapered weight (``blend="taper"``, the default: no seams where windows meet) or averaged
uniformly (``blend="mean"``); the paper's protocol is both ``blend="mean"`` and ``grid=1``
(last windows flush with the far sides, :data:`PAPER_TILING`). By default each window is
restored and localized in turn (the paper's protocol); a pipeline given a
``restore_window`` restores the image in windows of that size first, stitches it, and
localizes the restored image in its own windows: a localizer trained on small crops then
runs in small windows while the restorer, whose cost is per pixel, does not redo the
overlaps (in 64-px windows every 32 px the restorer would run on four times the pixels).

Speed on the CPU (measured in ``benchmarks/speed.py``; none of it changes values beyond
float rounding):

- the localizer gets its input in ``channels_last`` memory (faster oneDNN convolutions);
- ``predict`` runs one window per forward pass by default (``batch_size=None``):
  batching 512-px windows was 1.3x slower on the CPU (the working set leaves the
  cache) and multiplied the peak memory by 2.5;
- :func:`retain_freed_memory` asks glibc's malloc to keep freed memory for reuse: every
  large activation would otherwise be a fresh ``mmap`` whose pages the kernel zero-fills
  again, which cost about a third of the time. It changes the whole process, so nothing
  in the library calls it: the application decides (``reloc localize``, ``reloc eval`` and
  ``reloc train`` call it unless ``--no-keep-freed-memory``; a 30-step training epoch of
  8 x 256-px DFCN crops at one thread took 93 s with it instead of 126 s, same losses).

``torch.compile`` of :meth:`Pipeline.run` was measured too and is not used: with the
above it was no faster than eager (2% slower), after seconds of compilation.

Two choices are the caller's: ``precision`` (``fp32``, ``bf16``, ``fp16`` or ``auto``, see
:mod:`reloc.precision`; reduced precision runs under autocast and changes values by its
rounding), and :meth:`Pipeline.prepare`, which folds the localizer's BatchNorms into its
convolutions and stores its weights ``channels_last`` (:mod:`reloc.models.fusion`; the
same values within float rounding, for inference only). :func:`pipeline_from_weights`
(a pipeline rebuilt from weights files: what ``localize``, ``eval``, ``serve`` and the release
recipe run) and ``reloc eval`` do both.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reloc.models import segmentation_logits
from reloc.models.fusion import prepare_for_inference
from reloc.models.weights import WeightsError, load_network, read_spec, read_whole_image_pixels, read_window
from reloc.precision import PRECISIONS, autocast, resolve_precision

_MALLOC_TUNED: bool | None = None
#: Pixels per forward pass on the CPU when ``predict(batch_size=None)``: windows of 128 px
#: and more run one at a time (batching them was slower: the working set leaves the cache).
CPU_PIXELS_PER_PASS = 128 * 128
#: Windows per forward pass on an accelerator when ``predict(batch_size=None)``.
ACCELERATOR_BATCH = 4


def retain_freed_memory(threshold: int = 1 << 30) -> bool:
    """Make glibc's malloc serve and keep large blocks in its heap (process-wide, once).

    By default glibc returns every block above a (dynamic, at most 32 MB) threshold to
    the kernel on ``free`` and maps a fresh one on the next allocation, whose pages the
    kernel zero-fills on first touch; the activations of a 512-px SCUNet window are tens
    to hundreds of MB, so that page faulting cost about a third of the inference time.
    With ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` at ``threshold`` the memory is
    reused instead; the price is that the process keeps its peak heap after inference.
    Process-wide: call it once at the start of an inference application, not in a library.

    Returns:
        ``True`` if set (now or before), ``False`` where not glibc (nothing changed).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
                _MALLOC_TUNED = bool(libc.mallopt(m_mmap_threshold, threshold)) and bool(
                    libc.mallopt(m_trim_threshold, threshold)
                )
            except (OSError, AttributeError):
                pass
    return _MALLOC_TUNED


#: The sliding-window side :meth:`Pipeline.predict` uses unless the pipeline or the caller names one.
DEFAULT_WINDOW = 512


def default_batch_size(device: torch.device, window_pixels: int) -> int:
    """Windows per forward pass for ``predict(batch_size=None)``: on the CPU as many as
    hold :data:`CPU_PIXELS_PER_PASS` pixels (1 for windows of 128 px and more), else 4."""
    if device.type == "cpu":
        return max(1, CPU_PIXELS_PER_PASS // max(window_pixels, 1))
    return ACCELERATOR_BATCH


GRID = 8
"""The JPEG block side: window origins are multiples of it (when the stride allows)."""
BLENDS = ("taper", "mean")
"""How :meth:`Pipeline.predict` merges overlapping windows: tapered weights, or the plain mean."""
PAPER_TILING = {"blend": "mean", "grid": 1}
"""The paper's sliding-window protocol as :class:`Pipeline` settings: the last window flush
with each far side, overlapping probabilities averaged."""


def window_origins(length: int, window: int, stride: int, grid: int = GRID) -> list[int]:
    """Start offsets of the sliding windows along one side of an image.

    With ``stride >= grid`` the origins are multiples of ``grid`` (the stride rounded
    down to one): ``0, s, 2s, ...`` while a window fits, plus one last window that
    reaches the far end, starting at the smallest multiple of ``grid`` that lets it
    (it may pass the end by up to ``grid - 1`` pixels, which :meth:`Pipeline.predict`
    fills by replication). With a smaller stride, or ``grid=1`` (the paper's protocol),
    the last window is flush with the end. A side no longer than ``window`` gives
    ``[0]``: the image runs whole along that side.

    Args:
        length: the side, in pixels (>= 1).
        window: window side, in pixels (>= 1).
        stride: step between windows, in pixels, 1 <= ``stride`` <= ``window`` (a larger
            stride would skip pixels).
        grid: the block the origins align to (>= 1): :data:`GRID`, or 1 for none.

    Raises:
        ValueError: for a non-positive argument or ``stride > window``.
    """
    if length < 1 or window < 1 or stride < 1 or grid < 1:
        raise ValueError(f"length, window, stride and grid must be >= 1, got {length}, {window}, {stride}, {grid}")
    if stride > window:
        raise ValueError(f"stride {stride} > window {window} would leave pixels out of every window")
    if length <= window:
        return [0]
    grid = grid if stride >= grid else 1
    step = stride - stride % grid
    last = -(-(length - window) // grid) * grid  # the first grid origin whose window reaches the end
    return [*range(0, last, step), last]


def taper(side: int, stride: int) -> torch.Tensor:
    """Blending weights ``(side,)`` of one window along one axis: 1 in the middle, falling
    linearly over ``side - stride`` pixels (at least :data:`GRID`, at most half the side)
    towards each end, never 0. Overlapping windows are weighted by its outer product."""
    ramp = min(max(side - stride, GRID), max(side // 2, 1))
    position = torch.arange(side, dtype=torch.float32) + 0.5
    return torch.minimum(position, side - position).div(ramp).clamp(max=1.0)


class Pipeline(nn.Module):
    """Restore then localize.

    Args:
        restorer: image ``(B, 3, H, W)`` -> restored image, or ``None`` for no restoration.
        localizer: image -> logits ``(B, 1, H, W)`` (or MVSS-Net's ``(edge, seg)``).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (:func:`reloc.precision.resolve_precision`
            on the pipeline's device, decided at each call); outputs are float32 whatever it is.
        window: ``(side, stride)`` of the sliding windows :meth:`predict` uses when given
            none, e.g. the window a localizer's weights record
            (:func:`reloc.models.weights.read_window`); default :data:`DEFAULT_WINDOW`
            without overlap.
        restore_window: ``(side, stride)`` of the windows the restorer runs in before the
            localizer runs in ``window`` on the stitched restored image (e.g. the window a
            restorer's weights record); ``None``: the restorer runs in the localizer's
            windows, window by window (the paper's protocol).
        whole_image_pixels: images of at most this many pixels run in one whole-image
            pass of the localizer when :meth:`predict` is given no window (larger ones in
            ``window``'s tiles: the memory budget of a whole pass); 0: always tiles.
        blend: how overlapping windows merge, one of :data:`BLENDS`.
        grid: window origins are multiples of it (:func:`window_origins`): :data:`GRID`,
            or 1 for the paper's protocol (with ``blend="mean"``: :data:`PAPER_TILING`).

    Raises:
        ValueError: an unknown ``precision`` or ``blend``, or a window with ``stride > side``.
    """

    def __init__(
        self,
        restorer: nn.Module | None,
        localizer: nn.Module,
        precision: str = "fp32",
        window: tuple[int, int] | None = None,
        restore_window: tuple[int, int] | None = None,
        whole_image_pixels: int = 0,
        blend: str = "taper",
        grid: int = GRID,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        if whole_image_pixels < 0:
            raise ValueError(f"whole_image_pixels must be >= 0, got {whole_image_pixels}")
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.restorer = restorer
        self.localizer = localizer
        side, stride = window or (DEFAULT_WINDOW, DEFAULT_WINDOW)
        window_origins(1, side, stride)  # checks the pair
        #: the default ``(side, stride)`` of :meth:`predict`
        self.window = (side, stride)
        if restore_window is not None:
            window_origins(1, *restore_window)
        #: ``(side, stride)`` of the restorer's own windows, or ``None`` (the localizer's)
        self.restore_window = None if restore_window is None else tuple(restore_window)
        #: the files the networks were loaded from, by role (set by ``pipeline_from_weights``)
        self.weights_files: dict[str, str | None] = {}
        self.precision = precision
        #: images up to this many pixels run whole when :meth:`predict` is given no window
        self.whole_image_pixels = whole_image_pixels
        self.blend = blend
        self.grid = grid

    def compute_dtype(self) -> torch.dtype:
        """The dtype the networks compute in on the pipeline's device (``precision`` resolved)."""
        return resolve_precision(self.precision, next(self.parameters()).device)

    def prepare(self) -> Pipeline:
        """Eval mode, and the localizer rewritten for inference (BatchNorms folded into its
        convolutions, weights ``channels_last``; :func:`reloc.models.fusion.prepare_for_inference`).
        In place: the localizer is no longer trainable as it was. Returns ``self``."""
        self.eval()
        prepare_for_inference(self.localizer)
        return self

    def restore(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> restored ``(B, 3, H, W)`` clamped to [0, 1]."""
        if self.restorer is None:
            return image
        return self.restorer(image).clamp(0.0, 1.0)

    def run(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> (restored ``(B, 3, H, W)``, probabilities ``(B, 1, H, W)``),
        both float32, computed in the pipeline's precision."""
        with autocast(image.device, self.compute_dtype()):
            restored = self.restore(image)
            probabilities = self._localize(restored)
        return restored.float(), probabilities

    def _localize(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> float32 probabilities ``(B, 1, H, W)`` (inside the caller's autocast)."""
        if image.device.type == "cpu" and image.ndim == 4:
            image = image.contiguous(memory_format=torch.channels_last)  # faster CPU convolutions, same values
        return torch.sigmoid(segmentation_logits(self.localizer(image)).float())

    def _restore_only(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> restored float32 ``(B, 3, H, W)`` in the pipeline's precision."""
        with autocast(image.device, self.compute_dtype()):
            return self.restore(image).float()

    def _localize_only(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> float32 probabilities ``(B, 1, H, W)`` in the pipeline's precision."""
        with autocast(image.device, self.compute_dtype()):
            return self._localize(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> tamper probabilities ``(B, 1, H, W)``."""
        return self.run(image)[1]

    @property
    def min_side(self) -> int:
        """The smallest window side the networks accept (``MIN_SIDE`` of each, default 1):
        windows smaller than it are padded by replication and their output cropped back."""
        return max(
            getattr(network, "MIN_SIDE", 1) for network in (self.restorer, self.localizer) if network is not None
        )

    def plan(
        self, height: int, width: int, window: int | None = None, stride: int | None = None
    ) -> tuple[int, int, bool]:
        """``(side, stride, whole)``: how :meth:`predict` runs an ``height x width`` image
        for these arguments. Without a ``window``, an image of at most
        :attr:`whole_image_pixels` pixels runs whole (``side`` its longer side,
        ``whole=True``); otherwise :meth:`windows`. ``whole`` is also true when the image
        fits in one window."""
        if window is None and stride is None and 0 < height * width <= self.whole_image_pixels:
            side = max(height, width)
            return side, side, True
        side, stride = self.windows(window, stride)
        return side, stride, height <= side and width <= side

    def network_input(self, height: int, width: int, window: int) -> tuple[int, int]:
        """The ``(h, w)`` each window of an ``height x width`` image runs at in :meth:`predict`
        (after padding to :attr:`min_side`, if needed)."""
        return max(min(window, height), self.min_side), max(min(window, width), self.min_side)

    def windows(self, window: int | None = None, stride: int | None = None) -> tuple[int, int]:
        """The ``(side, stride)`` :meth:`predict` runs with for these arguments: ``window``
        (stride ``stride``, default ``window``) when given, else the pipeline's own
        :attr:`window` (its stride unless ``stride`` is given)."""
        if window is None:
            side, own_stride = self.window
            return side, own_stride if stride is None else stride
        return window, window if stride is None else stride

    def predict(
        self,
        image: torch.Tensor,
        window: int | None = None,
        stride: int | None = None,
        batch_size: int | None = None,
        return_restored: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Tamper probabilities of one image of any size, by sliding windows or whole.

        :meth:`plan` decides: one whole-image pass, or windows of ``min(window, H) x
        min(window, W)`` pixels cut from ``image`` at the origins of
        :func:`window_origins` on each side, restored and localized ``batch_size`` at a
        time under ``torch.inference_mode()`` on the device of the pipeline's first
        parameter; each pixel gets the :attr:`blend` of the windows covering it (tapered
        weights, or the plain mean). A window that passes the image's far edge (grid-aligned
        origins), or has a side under :attr:`min_side` (a tiny image, or a tiny
        ``window``), is padded on the bottom/right by replication and its output cropped
        back. With a
        :attr:`restore_window` (and a restorer) the restorer first runs alone in windows of
        that size, stitched the same way, and the localizer then slides over the restored
        image (float32, 12 bytes per pixel more memory). Only one
        batch of windows is on the device at a time; the sums are accumulated in float32
        maps on the CPU (the window counts are separable, so no count map is kept). Put
        the pipeline in eval mode first.

        Args:
            image: ``(3, H, W)``, float in [0, 1] or uint8 in [0, 255] (divided by 255 per
                window, which gives the same floats as decoding to float first; a uint8
                image takes a quarter of the memory), already distorted (e.g.
                JPEG-compressed), on any device; it may be a non-contiguous view.
            window: window side in pixels; an image smaller than it on both sides runs
                whole; ``None``: whole up to :attr:`whole_image_pixels`, else the
                pipeline's :attr:`window` (see :meth:`plan`).
            stride: step between windows, ``1 <= stride <= window``; ``None``: see :meth:`windows`.
            batch_size: windows per forward pass; ``None``: :func:`default_batch_size`
                (one window at a time on the CPU, which is fastest there, 4 on a GPU).
            return_restored: also stitch and return the restored image.
            progress: called as ``progress(done, total)`` with the windows done so far out
                of the image's total (the restorer's and the localizer's, with a
                :attr:`restore_window`): with ``done=0`` before the first forward pass,
                then after each batch (e.g. a web page's progress bar).

        Returns:
            probabilities ``(H, W)`` float32 on the CPU, and with ``return_restored`` also
            the restored image ``(3, H, W)`` float32 in [0, 1] (overlaps averaged the same way).

        Raises:
            ValueError: ``image`` is not ``(3, H, W)``, or a bad window, stride or batch size.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an image (3, H, W), got shape {tuple(image.shape)}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        height, width = image.shape[1:]
        window, stride, _ = self.plan(height, width, window, stride)
        if self.restorer is None or self.restore_window is None:

            def restore_and_localize(batch: torch.Tensor) -> torch.Tensor:
                restored, probabilities = self.run(batch)
                return torch.cat([probabilities, restored], dim=1) if return_restored else probabilities

            channels = 4 if return_restored else 1
            sums = self._slide(image, (window, stride), batch_size, channels, restore_and_localize, progress)
            return (sums[0], sums[1:]) if return_restored else sums[0]
        first = _window_count(height, width, *self.restore_window, self.grid)
        total = first + _window_count(height, width, window, stride, self.grid)

        def restoring(done: int, _: int) -> None:
            if progress is not None:
                progress(done, total)

        def localizing(done: int, _: int) -> None:
            if progress is not None:
                progress(first + done, total)

        restored = self.restore_image(image, batch_size, restoring)
        probabilities = self._slide(restored, (window, stride), batch_size, 1, self._localize_only, localizing)[0]
        return (probabilities, restored) if return_restored else probabilities

    def restore_image(
        self,
        image: torch.Tensor,
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """The restored image alone: the restorer over ``image`` ``(3, H, W)`` (float in
        [0, 1] or uint8) in windows of :attr:`restore_window` (none: the pipeline's
        :attr:`window`), stitched as :meth:`predict` stitches them; float32 ``(3, H, W)`` in
        [0, 1] on the CPU (the image itself, as float32, without a restorer). ``batch_size``
        and ``progress`` as :meth:`predict`'s, over the restorer's windows."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an image (3, H, W), got shape {tuple(image.shape)}")
        if self.restorer is None:
            return image.to("cpu", torch.float32) / (255.0 if image.dtype == torch.uint8 else 1.0)
        window = self.restore_window or self.window
        return self._slide(image, window, batch_size, 3, self._restore_only, progress)

    def _slide(
        self,
        image: torch.Tensor,
        window: tuple[int, int],
        batch_size: int | None,
        channels: int,
        compute: Callable[[torch.Tensor], torch.Tensor],
        progress: Callable[[int, int], None] | None,
    ) -> torch.Tensor:
        """``compute`` over the ``(side, stride)`` windows of ``image`` ``(3, H, W)``, stitched:
        float32 ``(channels, H, W)`` on the CPU, each pixel the :attr:`blend` of its windows
        (a weighted mean; the weights of a window are separable, so are their sums)."""
        side, stride = window
        height, width = image.shape[1:]
        rows, columns = window_origins(height, side, stride, self.grid), window_origins(width, side, stride, self.grid)
        boxes = [(top, left) for top in rows for left in columns]
        size = (min(side, height), min(side, width))
        row_weight, column_weight = (
            (taper(size[0], stride), taper(size[1], stride))
            if self.blend == "taper"
            else (torch.ones(size[0]), torch.ones(size[1]))
        )
        device = next(self.parameters()).device
        if batch_size is None:
            batch_size = default_batch_size(device, size[0] * size[1])
        sums = torch.zeros(channels, height, width)
        if progress is not None:
            progress(0, len(boxes))
        with torch.inference_mode():
            for start in range(0, len(boxes), batch_size):
                chunk = boxes[start : start + batch_size]
                outputs = self._run_windows(image, chunk, size, device, compute)
                for (top, left), output in zip(chunk, outputs):
                    rows_in, columns_in = min(size[0], height - top), min(size[1], width - left)
                    weight = row_weight[:rows_in, None] * column_weight[None, :columns_in]
                    sums[:, top : top + rows_in, left : left + columns_in] += output[:, :rows_in, :columns_in] * weight
                if progress is not None:
                    progress(start + len(chunk), len(boxes))
        row_sums, column_sums = _coverage(rows, row_weight, height), _coverage(columns, column_weight, width)
        for top in range(0, height, _DIVIDE_ROWS):  # the weighted means, in place, a band of rows at a time
            band = slice(top, top + _DIVIDE_ROWS)
            sums[:, band] /= row_sums[band, None] * column_sums[None, :]
        return sums

    def _run_windows(
        self,
        image: torch.Tensor,
        origins: list[tuple[int, int]],
        size: tuple[int, int],
        device: torch.device,
        compute: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``compute`` on the windows of ``image`` ``(3, H, W)`` at ``origins`` (top, left);
        a window passing the image's far edge is filled by replication.

        Returns:
            float32 ``(N, C, h, w)`` on the CPU, ``(h, w) = size``, the channels ``compute``'s.
        """
        height, width = size
        crops = []
        for top, left in origins:
            crop = image[:, top : top + height, left : left + width].to(device)
            crop = crop.to(torch.float32) / 255.0 if crop.dtype == torch.uint8 else crop.to(torch.float32)
            missing_rows, missing_columns = height - crop.shape[1], width - crop.shape[2]
            if missing_rows or missing_columns:
                crop = F.pad(crop[None], (0, missing_columns, 0, missing_rows), mode="replicate")[0]
            crops.append(crop)
        batch = torch.stack(crops)
        padded_height, padded_width = max(height, self.min_side), max(width, self.min_side)
        if (padded_height, padded_width) != (height, width):
            batch = F.pad(batch, (0, padded_width - width, 0, padded_height - height), mode="replicate")
        return compute(batch)[:, :, :height, :width].to("cpu", torch.float32)


def _window_count(height: int, width: int, side: int, stride: int, grid: int) -> int:
    """How many sliding windows of ``(side, stride)`` on ``grid`` an ``height x width`` image has."""
    return len(window_origins(height, side, stride, grid)) * len(window_origins(width, side, stride, grid))


_DIVIDE_ROWS = 256
"""Rows per band when :meth:`Pipeline.predict` divides its sums by the summed window weights."""


def _coverage(origins: list[int], weight: torch.Tensor, length: int) -> torch.Tensor:
    """The summed ``weight`` ``(side,)`` of the windows starting at ``origins`` at each of
    ``length`` positions (windows passing the end are cut), float32 ``(length,)``."""
    sums = torch.zeros(length)
    for origin in origins:
        covered = min(len(weight), length - origin)
        sums[origin : origin + covered] += weight[:covered]
    return sums


def pipeline_from_weights(
    localizer_path: str | os.PathLike,
    restorer_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> Pipeline:
    """Rebuild a pipeline from weights files written by :func:`reloc.models.weights.save_network`.

    Each file alone rebuilds its network (the spec is in its metadata); the pipeline's
    default sliding window is the one the localizer's file records, if any
    (:func:`reloc.models.weights.read_window`), with its whole-image budget
    (:func:`reloc.models.weights.read_whole_image_pixels`), and the restorer runs in the
    window its file records, if any (:attr:`Pipeline.restore_window`; else in the localizer's).

    Args:
        localizer_path: the localizer's safetensors file.
        restorer_path: the restorer's, or ``None`` to localize the images as they are.
        device: where the pipeline runs.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :mod:`reloc.precision`).

    Returns:
        The pipeline on ``device``, prepared for inference (:meth:`Pipeline.prepare`).

    Raises:
        WeightsError: a file is unreadable, has no spec, or holds a network of the wrong role.
    """
    restorer = None if restorer_path is None else _load_role(restorer_path, "restorer", device)
    localizer = _load_role(localizer_path, "localizer", device)
    restore_window = None if restorer_path is None else read_window(restorer_path)
    pipeline = Pipeline(
        restorer,
        localizer,
        precision=precision,
        window=read_window(localizer_path),
        restore_window=restore_window,
        whole_image_pixels=read_whole_image_pixels(localizer_path),
    ).prepare()
    pipeline.weights_files = {
        "localizer": str(localizer_path),
        "restorer": None if restorer_path is None else str(restorer_path),
    }
    return pipeline


def _load_role(path: str | os.PathLike, role: str, device: str | torch.device) -> torch.nn.Module:
    """The network stored in ``path``, checked to be a ``role`` network."""
    spec = read_spec(path)
    if spec.kind != role:
        raise WeightsError(f"{path}: holds the {spec.kind} {spec.name!r}, not a {role}")
    return load_network(path, map_location=device)
