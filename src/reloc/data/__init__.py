"""Data layer: image I/O, seeded distortions and datasets."""

from reloc.data.catalog import DatasetError, SampleRef, load_dataset, split_by_source, validate
from reloc.data.datasets import TrainCrops, WholeImages
from reloc.data.distortions import Distortion, DistortionMix, distort_tensor, parse_distortion
from reloc.data.io import ImageError, read_image, read_mask, to_numpy, to_tensor, write_png

__all__ = [
    "DatasetError",
    "Distortion",
    "DistortionMix",
    "ImageError",
    "SampleRef",
    "TrainCrops",
    "WholeImages",
    "distort_tensor",
    "load_dataset",
    "parse_distortion",
    "read_image",
    "read_mask",
    "split_by_source",
    "to_numpy",
    "to_tensor",
    "validate",
    "write_png",
]
