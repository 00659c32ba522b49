"""Which model localizes a file: a fixed one, or the ``--model auto`` rule over the pretrained models.

>>> import io
>>> from PIL import Image
>>> suspect = io.BytesIO()
>>> Image.new("RGB", (64, 64), "gray").save(suspect, "JPEG", quality=75)
>>> chooser = ModelChooser.from_option("auto", device="cpu")
>>> pipeline, facts = chooser.choose(suspect.getvalue())      # a path or the file's bytes
>>> facts
{'model': 'pretrained:reloc', 'jpeg_quality': 75, 'model_reason': "--model auto: JPEG quality 75: reloc measured ...",
 'restorer_used': True}

A model is named by ``pretrained:NAME`` (or just ``NAME``), a run folder (its best
localizer and, when it has one, its restorer) or a localizer weights file. ``auto``
estimates each file's JPEG quality from its quantisation tables
(:func:`reloc.data.distortions.jpeg_quality_from_file`) and applies
:func:`reloc.pretrained.choose`. Pipelines are built once, on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from reloc import pretrained
from reloc.data.distortions import jpeg_quality_from_file
from reloc.data.io import ImageError
from reloc.engine.inference import Pipeline, pipeline_from_weights
from reloc.runs import optional_weights, resolve_weights

AUTO = "auto"


@dataclass(frozen=True)
class ModelSource:
    """The weights of one model.

    Attributes:
        label: how the model is named in outputs (``pretrained:reloc``, a path).
        localizer: the localizer's weights file.
        restorer: the restorer's weights file, or ``None``.
    """

    label: str
    localizer: str
    restorer: str | None = None


def model_source(
    spec: str | os.PathLike, restorer: str | os.PathLike | None = None, restore: bool = True
) -> ModelSource:
    """Resolve a model name, run folder or localizer file (plus an optional restorer file).

    Args:
        spec: ``pretrained:NAME``, a pretrained ``NAME``, a run folder, or a localizer file.
        restorer: a restorer file or ``pretrained:NAME`` overriding the model's own.
        restore: use the model's restorer when it has one (``False``: localizer alone).

    Raises:
        PretrainedError, FileNotFoundError: unknown name or missing weights.
    """
    text = str(spec)
    if text in pretrained.NAMES:  # a bare name is a pretrained model, never a relative path
        text = pretrained.qualified(text)
    localizer = resolve_weights(text, "localizer")
    own_restorer = optional_weights(text, "restorer") if pretrained.is_pretrained(text) or Path(text).is_dir() else None
    chosen = resolve_weights(str(restorer), "restorer") if restorer is not None else own_restorer
    return ModelSource(text, localizer, chosen if restore else None)


def estimate_jpeg_quality(path: str | os.PathLike | bytes) -> int | None:
    """The file's IJG quality estimated from its quantisation tables; ``None`` when it is not a JPEG."""
    try:
        return jpeg_quality_from_file(path)
    except ImageError:
        return None


class ModelChooser:
    """Gives the pipeline for each file: always the same model, or the ``auto`` rule.

    Args:
        sources: the models by label; with ``auto``, the three pretrained models.
        auto: apply :func:`reloc.pretrained.choose` per file (else the single source).
        device: where the pipelines run.
        precision: their precision (``fp32``, ``bf16``, ``fp16``, ``auto``; see :mod:`reloc.precision`).
    """

    def __init__(
        self, sources: dict[str, ModelSource], auto: bool, device: str | torch.device = "cpu", precision: str = "auto"
    ) -> None:
        if not sources:
            raise ValueError("ModelChooser needs at least one model")
        if not auto and len(sources) != 1:
            raise ValueError("a fixed ModelChooser takes exactly one model")
        self.sources, self.auto, self.device = dict(sources), auto, torch.device(device)
        self.precision = precision
        self._pipelines: dict[str, Pipeline] = {}

    @classmethod
    def from_option(
        cls,
        model: str | os.PathLike = AUTO,
        device: str | torch.device = "cpu",
        restorer: str | os.PathLike | None = None,
        restore: bool = True,
        precision: str = "auto",
    ) -> ModelChooser:
        """From a ``--model`` value: ``auto``, ``pretrained:NAME``, ``NAME``, a run folder or a weights file."""
        if str(model) == AUTO:
            if restorer is not None:
                raise ValueError("--restorer needs a fixed model, not --model auto")
            sources = {name: model_source(pretrained.qualified(name), restore=restore) for name in pretrained.NAMES}
            return cls(sources, auto=True, device=device, precision=precision)
        source = model_source(model, restorer, restore)
        return cls({source.label: source}, auto=False, device=device, precision=precision)

    def pipeline(self, label: str) -> Pipeline:
        """The pipeline of one source, built on first use."""
        if label not in self._pipelines:
            source = self.sources[label]
            self._pipelines[label] = pipeline_from_weights(
                source.localizer, source.restorer, self.device, self.precision
            )
        return self._pipelines[label]

    def choose(self, path: str | os.PathLike | bytes) -> tuple[Pipeline, dict[str, object]]:
        """``(pipeline, facts)`` for one file (a path or its bytes); ``facts`` holds ``model``,
        ``jpeg_quality`` (``None`` for a non-JPEG) and ``model_reason``."""
        quality = estimate_jpeg_quality(path)
        if self.auto:
            choice = pretrained.choose(quality)
            label = choice.name
            facts = {
                "model": pretrained.PREFIX + label,
                "jpeg_quality": quality,
                "model_reason": f"--model auto: {choice.reason}",
            }
        else:
            label = next(iter(self.sources))
            facts = {"model": label, "jpeg_quality": quality, "model_reason": "the model given on the command line"}
        facts["restorer_used"] = self.sources[label].restorer is not None
        return self.pipeline(label), facts
