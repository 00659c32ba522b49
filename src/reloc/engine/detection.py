"""Image-level detection: one "was this image edited?" score per probability map, and what
that score means, measured.

The score aggregates a map ``(H, W)`` of tamper probabilities (:func:`image_score`). The
aggregation in use, each pretrained model's decision threshold and its evidence bands are
data: ``reloc/pretrained/detection.json``, written by ``benchmarks/detection.py``, which
compares the aggregations of :data:`AGGREGATIONS` by image AUC on casia1-dev (tampered
``Tp/`` against authentic ``Au/``) and sets each model's thresholds at measured false-alarm
rates on its authentic photos.

Bands (:func:`assess`), for a model with a calibration:

- ``no evidence found``: score at or below the threshold (``threshold``, set so that
  about 5% of authentic photos score above it);
- ``weak evidence``: above the threshold, at or below the strict threshold (about 1%);
- ``strong evidence``: above the strict threshold.

The score is evidence for a person to weigh, not a verdict: the thresholds come from one
development set (CASIA v1 photos, 384 x 256 JPEGs), and another camera, size or compression
can move the false-alarm rate either way. Models without a calibration (run folders,
weights files) get the score alone and ``band: null``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reloc import pretrained
from reloc.image_metrics import image_level_summary

CALIBRATION_FILE = "detection.json"
BANDS = ("no evidence found", "weak evidence", "strong evidence")
DEFAULT_THRESHOLD = 0.5
"""Decision threshold on the score for weights without a calibration (``reloc eval`` of a run)."""
CAVEAT = (
    "evidence, not a verdict: the band says how rarely authentic development photos scored this high "
    "(casia1-dev, CASIA v1 JPEGs); other cameras, sizes and compression can change that rate"
)


def top_mean(probabilities: np.ndarray, fraction: float) -> float:
    """Mean of the ``fraction`` most suspicious pixels (at least one)."""
    flat = np.asarray(probabilities).ravel()
    top = max(1, math.ceil(fraction * flat.size))
    return float(np.partition(flat, flat.size - top)[flat.size - top :].mean(dtype=np.float64))


def smoothed_max(probabilities: np.ndarray, sigma: float) -> float:
    """Maximum of the map blurred by a Gaussian of ``sigma`` pixels (edges reflected)."""
    blurred = cv2.GaussianBlur(np.asarray(probabilities, dtype=np.float32), (0, 0), sigma)
    return float(blurred.max())


def area_above(probabilities: np.ndarray, threshold: float) -> float:
    """Share of pixels with probability above ``threshold``."""
    flat = np.asarray(probabilities).ravel()
    return float(np.count_nonzero(flat > threshold) / flat.size)


AGGREGATIONS = {"top-mean": top_mean, "smoothed-max": smoothed_max, "area-above": area_above}
"""Aggregation name -> ``function(map, parameter) -> score``; the parameter is the fraction
of pixels (``top-mean``), the Gaussian's sigma in pixels (``smoothed-max``) or the pixel
probability threshold (``area-above``)."""


@dataclass(frozen=True)
class Aggregation:
    """How a map becomes an image score: an :data:`AGGREGATIONS` name and its parameter."""

    name: str = "top-mean"
    parameter: float = 0.01

    def __post_init__(self) -> None:
        if self.name not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.name!r}; known: {', '.join(AGGREGATIONS)}")

    def __call__(self, probabilities: np.ndarray) -> float:
        """The score of one map ``(H, W)`` in [0, 1]."""
        return AGGREGATIONS[self.name](probabilities, self.parameter)

    @property
    def label(self) -> str:
        """e.g. ``top-mean:0.01``."""
        return f"{self.name}:{self.parameter:g}"

    def describe(self) -> str:
        """One phrase for reports."""
        if self.name == "top-mean":
            return f"mean probability of the top {self.parameter:.3g} of pixels"
        if self.name == "smoothed-max":
            return f"maximum of the map blurred by a Gaussian of sigma {self.parameter:g} px"
        return f"share of pixels with probability above {self.parameter:g}"

    @classmethod
    def parse(cls, label: str) -> Aggregation:
        """``"smoothed-max:4"`` -> ``Aggregation("smoothed-max", 4.0)``."""
        name, _, parameter = label.partition(":")
        try:
            return cls(name, float(parameter))
        except ValueError:
            raise ValueError(
                f"aggregation {label!r}: expected NAME:NUMBER, NAME one of {', '.join(AGGREGATIONS)}"
            ) from None


@dataclass(frozen=True)
class ModelCalibration:
    """A model's decision thresholds on the image score, and the rates measured with them.

    Attributes:
        threshold: score above which an image shows (weak) evidence of editing.
        strong_threshold: score above which the evidence is strong.
        false_alarm_rate: share of the authentic calibration photos scoring above ``threshold``.
        strong_false_alarm_rate: the same above ``strong_threshold``.
        tampered_recall: share of the tampered calibration images above ``threshold``.
        strong_tampered_recall: the same above ``strong_threshold``.
        image_auc: image AUC on the calibration set.
        image_auc_ci95: its 95% bootstrap interval over images.
        measured_on: the images these figures come from.
    """

    threshold: float
    strong_threshold: float
    false_alarm_rate: float
    strong_false_alarm_rate: float
    tampered_recall: float
    strong_tampered_recall: float
    image_auc: float
    image_auc_ci95: tuple[float, float]
    measured_on: str

    @property
    def informative(self) -> bool:
        """Whether the score separated tampered from authentic images on the calibration set
        (the AUC interval lies above 0.5); a band is given only then."""
        return self.image_auc_ci95[0] > 0.5


@dataclass(frozen=True)
class Calibration:
    """The contents of ``detection.json``: the aggregation and the per-model calibrations."""

    aggregation: Aggregation
    models: dict[str, ModelCalibration]

    def for_model(self, label: str | None) -> ModelCalibration | None:
        """The calibration of ``pretrained:NAME`` (or ``NAME``); ``None`` for any other model."""
        name = (label or "")[len(pretrained.PREFIX) :] if pretrained.is_pretrained(label) else label
        return self.models.get(name or "")


def read_calibration(path: str | Path) -> Calibration:
    """Parse a ``detection.json``.

    Raises:
        PretrainedError: the file is missing, not JSON, or lacks a field (names the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        aggregation = Aggregation(**data["aggregation"])
        fields = ModelCalibration.__dataclass_fields__
        models = {
            name: ModelCalibration(
                **{key: entry[key] for key in fields} | {"image_auc_ci95": tuple(entry["image_auc_ci95"])}
            )
            for name, entry in data["models"].items()
        }
        return Calibration(aggregation, models)
    except FileNotFoundError:
        raise pretrained.PretrainedError(f"the detection calibration {path} is missing; reinstall reloc") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise pretrained.PretrainedError(
            f"the detection calibration {path} cannot be read ({type(error).__name__}: {error}); reinstall reloc"
        ) from None


@lru_cache(maxsize=1)
def calibration() -> Calibration:
    """The packaged calibration (``reloc/pretrained/detection.json``)."""
    return read_calibration(Path(str(resources.files("reloc.pretrained"))) / CALIBRATION_FILE)


def image_score(probabilities: np.ndarray) -> float:
    """The image score of one map ``(H, W)`` by the packaged aggregation."""
    return calibration().aggregation(probabilities)


def pretrained_label(localizer: str | Path | None = None, restorer: str | Path | None = None) -> str | None:
    """``pretrained:NAME`` when the two weights files are exactly a pretrained model's (its
    localizer, and its restorer or none), else ``None`` (also for no localizer file: a
    network built in memory)."""
    if localizer is None:
        return None
    for name in pretrained.NAMES:
        own = pretrained.weights_file(name, "localizer")
        own_restorer = pretrained.weights_file(name, "restorer") if "restorer" in pretrained.roles(name) else None
        same_restorer = (restorer is None) == (own_restorer is None) and (
            restorer is None or Path(restorer).resolve() == own_restorer.resolve()
        )
        if Path(localizer).resolve() == own.resolve() and same_restorer:
            return pretrained.PREFIX + name
    return None


def image_level(per_image: list[dict[str, Any]], localizer: str | Path, restorer: str | Path | None) -> dict[str, Any]:
    """The image-level figures of an evaluation (:func:`reloc.image_metrics.image_level_summary`)
    from its per-image records (``image_score``; ``authentic`` marks the negatives).

    The decision threshold is the model's calibrated one when the weights are a pretrained
    model's, else :data:`DEFAULT_THRESHOLD` (``threshold_source`` says which).
    """
    scores = np.array([record["image_score"] for record in per_image], dtype=np.float64)
    tampered = np.array([not record.get("authentic") for record in per_image], dtype=bool)
    label = pretrained_label(localizer, restorer)
    model = calibration().for_model(label)
    threshold = model.threshold if model else DEFAULT_THRESHOLD
    summary = image_level_summary(scores, tampered, threshold)
    summary["aggregation"] = calibration().aggregation.label
    summary["threshold_source"] = (
        f"{label}'s calibrated threshold" if model else f"{DEFAULT_THRESHOLD} (no calibration for these weights)"
    )
    return summary


def band(score: float, model: ModelCalibration) -> str:
    """The :data:`BANDS` entry of ``score`` under a model's thresholds."""
    if score > model.strong_threshold:
        return BANDS[2]
    return BANDS[1] if score > model.threshold else BANDS[0]


def assess(score: float, model_label: str | None) -> dict[str, Any]:
    """The ``detection`` part of a localize record: the score's band and how it was measured.

    Args:
        score: the image score (:func:`image_score`).
        model_label: the model that made the map (``pretrained:NAME`` or a path).

    Returns:
        ``{"score", "aggregation", "band", "threshold", "strong_threshold",
        "false_alarm_rate", "strong_false_alarm_rate", "tampered_recall",
        "strong_tampered_recall", "image_auc", "measured_on", "caveat"}``. The band is
        ``None`` for a model without a calibration (its figures ``None`` too) and for one
        whose score did not separate tampered from authentic images where it was measured
        (:attr:`ModelCalibration.informative`; its figures kept); ``caveat`` says why.
    """
    packaged = calibration()
    model = packaged.for_model(model_label)
    record: dict[str, Any] = {"score": score, "aggregation": packaged.aggregation.label}
    if model is None:
        figures = dict.fromkeys(ModelCalibration.__dataclass_fields__)
        figures.pop("image_auc_ci95")
        return (
            record
            | figures
            | {
                "band": None,
                "caveat": "no band: no false-alarm rate has been measured for this model (measured: "
                + ", ".join(pretrained.PREFIX + name for name in packaged.models)
                + ")",
            }
        )
    figures = {key: getattr(model, key) for key in ModelCalibration.__dataclass_fields__ if key != "image_auc_ci95"}
    if not model.informative:
        caveat = (
            f"no band: this model's image score did not separate tampered from authentic photos where it was "
            f"measured (image AUC {model.image_auc:.2f}, 95% interval {model.image_auc_ci95[0]:.2f} - "
            f"{model.image_auc_ci95[1]:.2f}), so a high score is no evidence either way"
        )
        return record | figures | {"band": None, "caveat": caveat}
    return record | figures | {"band": band(score, model), "caveat": CAVEAT}


def evidence_text(detection: dict[str, Any]) -> str:
    """A plain-language sentence for a :func:`assess` record (case report, page)."""
    score = f"image score {detection['score']:.3f}"
    if detection["band"] is None:
        return f"{score}; {detection['caveat']}."
    if detection["band"] == BANDS[2]:
        cut, authentic, tampered = (
            detection[k] for k in ("strong_threshold", "strong_false_alarm_rate", "strong_tampered_recall")
        )
    else:
        cut, authentic, tampered = (detection[k] for k in ("threshold", "false_alarm_rate", "tampered_recall"))
    side = "at or below" if detection["band"] == BANDS[0] else "above"
    return (
        f"{detection['band']}: {score}, {side} {cut:.3f}; above it scored {authentic:.1%} of authentic and "
        f"{tampered:.1%} of tampered images ({detection['measured_on']}). This is {detection['caveat']}."
    )


def detection_lines() -> str:
    """The packaged calibration for ``reloc models``: per model, image AUC, threshold and rates."""
    try:
        packaged = calibration()
    except pretrained.PretrainedError as error:
        return f"image-level detection: unavailable ({error})"
    lines = [f"image-level detection ({packaged.aggregation.describe()}; docs: guide/detection.md):"]
    for name, model in packaged.models.items():
        lines.append(
            f"  {pretrained.PREFIX + name:<20} image AUC {model.image_auc:.2f}; above {model.threshold:.3f}: "
            f"{model.false_alarm_rate:.1%} of authentic, {model.tampered_recall:.1%} of tampered"
            + ("" if model.informative else " (does not separate them: no band is given)")
        )
    return "\n".join(lines)
