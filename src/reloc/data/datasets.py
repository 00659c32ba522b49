"""Torch datasets over :class:`~reloc.data.catalog.SampleRef` lists: training crops and whole images.

Every sample becomes the record ``{"plain": (3, H, W), "mask": (1, H, W), "name": str}``
(float32 tensors, plain in [0, 1], mask in {0, 1}), plus ``"distorted"`` (3, H, W) when a
distortion is given. Listing, validating and splitting datasets is :mod:`reloc.data.catalog`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from reloc.data.catalog import SampleRef, load_pair
from reloc.data.distortions import AnyDistortion, parse_distortion
from reloc.data.io import to_tensor


class TrainCrops(Dataset):
    """Random training crops, reproducible per (seed, epoch, index).

    Each item reads its files afresh unless ``cache_mb`` > 0: then decoded pairs are kept
    in memory up to that many megabytes (first come, first kept; as uint8 where the pixels
    are exactly ``uint8 / 255``, as 8-bit files give, a quarter of float32's bytes; each
    DataLoader worker has its own cache unless :meth:`preload` filled it before they
    started), which takes decoding off the critical path when crops are much
    smaller than the images. Images smaller than the crop
    are padded by reflection on the bottom/right (the mask likewise). A crop is centred on
    a random tampered pixel with probability ``tamper_bias`` (when the mask has any),
    otherwise placed uniformly. The distortion is applied to the crop, so a JPEG's 8x8
    grid starts at the crop's corner. Call :meth:`set_epoch` before each epoch (with
    non-persistent DataLoader workers) to get new crops; resuming at the same epoch
    reproduces them exactly.

    Args:
        refs: the samples.
        crop: crop side in pixels.
        distortion: a :class:`~reloc.data.distortions.Distortion` or mix, a spec string, or ``None`` for no
            ``"distorted"`` entry.
        seed: base seed, >= 0.
        tamper_bias: probability in [0, 1] of centring the crop on a tampered pixel.
        cache_mb: memory budget of the decoded-image cache in MB (0: no cache).
        mask_resize: ``None`` or ``"nearest"``: what to do with a mask of another size
            than its image (see :func:`reloc.data.io.read_mask`).
    """

    def __init__(
        self,
        refs: list[SampleRef],
        crop: int = 128,
        distortion: AnyDistortion | str | None = None,
        seed: int = 0,
        tamper_bias: float = 0.0,
        cache_mb: int = 0,
        mask_resize: str | None = None,
    ) -> None:
        if crop < 1:
            raise ValueError(f"crop must be positive, got {crop}")
        if not 0 <= tamper_bias <= 1:
            raise ValueError(f"tamper_bias must be in [0, 1], got {tamper_bias}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.refs = list(refs)
        self.crop = int(crop)
        self.distortion = _as_distortion(distortion)
        self.seed = int(seed)
        self.tamper_bias = float(tamper_bias)
        self.mask_resize = mask_resize
        self.epoch = 0
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self.cache_bytes = int(cache_mb) * 2**20
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and distortions the items will produce.

        Args:
            epoch: epoch number, >= 0.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Return ``{"plain": (3, c, c), ["distorted": (3, c, c)], "mask": (1, c, c), "name"}``."""
        index = range(len(self.refs))[index]
        ref = self.refs[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, mask = self._pair(index)
        pad = ((0, max(0, self.crop - mask.shape[0])), (0, max(0, self.crop - mask.shape[1])))
        image = np.pad(image, (*pad, (0, 0)), mode="reflect")
        mask = np.pad(mask, pad, mode="reflect")
        top, left = self._origin(mask, rng)
        window = np.s_[top : top + self.crop, left : left + self.crop]
        image, mask = _as_float(image[window]), _as_float(mask[window])
        return _record(ref, image, mask, self.distortion, rng)

    def preload(self, threads: int | None = None) -> int:
        """Decode samples into the cache, in order, until its budget is spent (``threads``
        decoding side by side, default one per processor); returns how many it holds. Called
        before a DataLoader starts its worker processes, it gives every worker the filled
        cache (forked workers share its memory) instead of each filling its own every epoch."""
        threads = threads or os.cpu_count() or 1
        with ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(self.refs), 4 * threads):
                if self._cached_bytes >= self.cache_bytes:
                    break
                chunk = [i for i in range(start, min(start + 4 * threads, len(self.refs))) if i not in self._cache]
                for index, pair in zip(chunk, pool.map(self._packed, chunk), strict=True):
                    self._keep(index, pair)
        return len(self._cache)

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded ``(image, mask)`` of sample ``index`` (uint8 or float32, see
        :func:`_as_uint8`), from the cache when it holds it."""
        if index in self._cache:
            return self._cache[index]
        if not self.cache_bytes:
            return load_pair(self.refs[index], self.mask_resize)
        pair = self._packed(index)
        self._keep(index, pair)
        return pair

    def _packed(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``'s pair read and packed for the cache (:func:`_as_uint8`)."""
        image, mask = load_pair(self.refs[index], self.mask_resize)
        return _as_uint8(image), _as_uint8(mask)

    def _keep(self, index: int, pair: tuple[np.ndarray, np.ndarray]) -> None:
        """Cache sample ``index``'s packed pair if the budget has room for it."""
        size = pair[0].nbytes + pair[1].nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            for array in pair:
                array.setflags(write=False)  # items copy what they change, never the cached arrays
            self._cache[index] = pair
            self._cached_bytes += size

    def _origin(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of the crop in a mask at least ``crop`` on each side."""
        height, width = mask.shape
        if rng.random() < self.tamper_bias and mask.any():
            tampered = np.flatnonzero(mask)
            centre_y, centre_x = divmod(int(tampered[rng.integers(len(tampered))]), width)
            top = min(max(centre_y - self.crop // 2, 0), height - self.crop)
            left = min(max(centre_x - self.crop // 2, 0), width - self.crop)
            return top, left
        top = int(rng.integers(height - self.crop, endpoint=True))
        left = int(rng.integers(width - self.crop, endpoint=True))
        return top, left


class WholeImages(Dataset):
    """Whole images for evaluation; the distortion covers the whole image and is
    reproducible per (seed, index). Sizes differ, so batch with ``batch_size=1``.

    Args:
        refs: the samples.
        distortion: a :class:`~reloc.data.distortions.Distortion` or mix, a spec string, or ``None`` for no
            ``"distorted"`` entry.
        seed: base seed, >= 0.
        mask_resize: ``None`` or ``"nearest"`` (see :class:`TrainCrops`).
    """

    def __init__(
        self,
        refs: list[SampleRef],
        distortion: AnyDistortion | str | None = None,
        seed: int = 0,
        mask_resize: str | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.refs = list(refs)
        self.distortion = _as_distortion(distortion)
        self.seed = int(seed)
        self.mask_resize = mask_resize

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Return ``{"plain": (3, H, W), ["distorted": (3, H, W)], "mask": (1, H, W), "name"}``."""
        index = range(len(self.refs))[index]
        ref = self.refs[index]
        image, mask = load_pair(ref, self.mask_resize)
        rng = np.random.default_rng([self.seed, index])
        return _record(ref, image, mask, self.distortion, rng)


def _record(
    ref: SampleRef,
    image: np.ndarray,
    mask: np.ndarray,
    distortion: AnyDistortion | None,
    rng: np.random.Generator,
) -> dict[str, torch.Tensor | str]:
    """Build the sample record from channel-last arrays."""
    record: dict[str, torch.Tensor | str] = {"plain": to_tensor(image)}
    if distortion is not None:
        record["distorted"] = to_tensor(distortion(image, rng))
    record["mask"] = to_tensor(mask)
    record["name"] = ref.name
    return record


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """``array`` (float32 in [0, 1]) as uint8 when :func:`_as_float` gives it back exactly, else as it is."""
    packed = np.rint(array * 255.0).astype(np.uint8)
    return packed if np.array_equal(_as_float(packed), array) else array


def _as_float(array: np.ndarray) -> np.ndarray:
    """A cached uint8 array as the float32 ``uint8 / 255`` the readers give (a contiguous copy
    either way, so items never share memory with the cache)."""
    return array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else np.ascontiguousarray(array)


def _as_distortion(distortion: AnyDistortion | str | None) -> AnyDistortion | None:
    return parse_distortion(distortion) if isinstance(distortion, str) else distortion
