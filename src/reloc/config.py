"""Experiment configuration: typed dataclasses, YAML in and out, command-line overrides.

Precedence: dataclass defaults < YAML file < ``--set section.key=value`` overrides. The
resolved configuration is written to ``RUN_DIR/config.yaml``; running that file again
reproduces the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASKS = ("plain", "finetune", "reloc", "joint")
SCHEDULES = ("plateau", "cosine")
#: what ``weights/best`` is chosen by (see ``reloc.engine.trainer.SELECTION``)
SELECT_BY = ("f1", "auc", "loss")
LOSS_TERMS = ("mae", "gan", "localization")


@dataclass
class DataConfig:
    """Where the images come from and how training crops are made.

    Attributes:
        dataset: a Tp/Gt folder, an IMDL-BenCo JSON list, or a ``reloc synth`` folder.
        crop: side of the square training crops (the paper: 128).
        batch_size: crops per step per process (the paper: 56 DFCN, 40 SCSE-Unet, 48 MVSS-Net).
        distortion: distortion spec of the distorted view (``jpeg:75``, ``jpeg:70-100``, ...),
            applied after cropping in training and to whole images in evaluation.
        tamper_bias: probability that a crop is centred on a tampered pixel.
        test_fraction, val_fraction: shares of source photos held out (when the dataset
            records no split of its own).
        steps_per_epoch: cap on steps per epoch (``null``: one pass over the training set).
        workers: DataLoader worker processes.
        cache_mb: memory budget (MB, per process) for decoded training / validation images
            (0: read every crop's files afresh).
    """

    dataset: str = ""
    crop: int = 128
    batch_size: int = 56
    distortion: str = "jpeg:75"
    tamper_bias: float = 0.0
    test_fraction: float = 0.25
    val_fraction: float = 0.1
    steps_per_epoch: int | None = None
    workers: int = 0
    cache_mb: int = 0


@dataclass
class ModelConfig:
    """Which networks, with which builder arguments and starting weights.

    Attributes:
        localizer, restorer, discriminator: registry names.
        localizer_args, restorer_args, discriminator_args: builder keyword arguments.
        localizer_weights: starting localizer: a weights file, or a run folder whose best
            localizer is taken (``finetune`` and ``reloc`` start from a ``plain`` run).
        restorer_weights: starting restorer (a file or run folder); ``null`` = random init.
    """

    localizer: str = "dfcn"
    localizer_args: dict[str, Any] = field(default_factory=dict)
    restorer: str = "scunet"
    restorer_args: dict[str, Any] = field(default_factory=lambda: {"preset": "paper"})
    discriminator: str = "dcgan"
    discriminator_args: dict[str, Any] = field(default_factory=dict)
    localizer_weights: str | None = None
    restorer_weights: str | None = None


@dataclass
class OptimConfig:
    """Adam and ReduceLROnPlateau as published (minus the restorer's never-decaying rate).

    Attributes:
        lr: learning rate of the localizer (and of the restorer unless ``restorer_lr``).
        restorer_lr: learning rate of the restorer; ``None``: ``lr`` (as published, 1e-4
            for every network).
        discriminator_lr: learning rate of the discriminator.
        discriminator_betas: Adam betas of the discriminator.
        schedule: ``plateau`` (as published: ReduceLROnPlateau on the validation loss,
            stepped after the epochs that trained the network) or ``cosine`` (not the
            paper's: the rate of the restorer and the localizer follows
            ``lr * (m + (1 - m) * (1 + cos(pi * e / E)) / 2)`` after epoch ``e`` of ``E``,
            whatever the phase; the discriminator's stays constant).
        plateau_factor, plateau_patience: ReduceLROnPlateau on the validation loss.
        cosine_min_factor: ``m``, the final rate of ``cosine`` as a fraction of ``lr``.
    """

    lr: float = 1e-4
    restorer_lr: float | None = None
    discriminator_lr: float = 1e-4
    discriminator_betas: tuple[float, float] = (0.5, 0.999)
    schedule: str = "plateau"
    plateau_factor: float = 0.8
    plateau_patience: int = 2
    cosine_min_factor: float = 0.0


@dataclass
class TrainConfig:
    """The training situation and loop.

    Attributes:
        task: ``plain`` (M^P), ``finetune`` (M^{D|P}), ``reloc`` (Algorithm 1) or ``joint``.
        epochs: number of epochs.
        seed: seed of initialisation, crops, distortions and shuffling.
        loss: loss-weight preset (``paper``, ``paper-document``, ``official``).
        loss_terms: restoration-loss terms switched on (Table I ablations).
        alternate_every: 0 alternates restorer/localizer epochs (Algorithm 1); K > 0
            alternates every K steps instead.
        restorer_warmup_epochs: ``reloc``/``joint`` only, not the paper's: the first N
            epochs train only the restorer with only the MAE term (no discriminator, no GAN
            or localization term, localizer untouched); Algorithm 1 (or joint training)
            starts after them, its first epoch a restoration epoch. 0 = as published.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        amp: mixed precision on CUDA (ignored on CPU).
        threshold: probability threshold of the validation F1 / IoU.
        select_by: which epoch's weights ``weights/best`` keeps: highest validation
            ``f1`` (default), highest ``auc``, or lowest localization ``loss``.
        log_every: TensorBoard scalar interval in steps.
    """

    task: str = "plain"
    epochs: int = 60
    seed: int = 0
    loss: str = "paper"
    loss_terms: list[str] = field(default_factory=lambda: list(LOSS_TERMS))
    alternate_every: int = 0
    restorer_warmup_epochs: int = 0
    device: str = "auto"
    amp: bool = True
    threshold: float = 0.5
    select_by: str = "f1"
    log_every: int = 10


@dataclass
class Config:
    """One experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        """Check values that would otherwise fail deep inside the run; returns ``self``."""
        from reloc.losses import LOSS_PRESETS

        problems = []
        if self.train.task not in TASKS:
            problems.append(f"train.task must be one of {TASKS}, got {self.train.task!r}")
        if self.train.loss not in LOSS_PRESETS:
            problems.append(f"train.loss must be one of {sorted(LOSS_PRESETS)}, got {self.train.loss!r}")
        unknown_terms = set(self.train.loss_terms) - set(LOSS_TERMS)
        if unknown_terms or "mae" not in self.train.loss_terms:
            problems.append(f"train.loss_terms must include 'mae' and be within {LOSS_TERMS}")
        if self.optim.schedule not in SCHEDULES:
            problems.append(f"optim.schedule must be one of {SCHEDULES}, got {self.optim.schedule!r}")
        if self.optim.lr <= 0 or (self.optim.restorer_lr is not None and self.optim.restorer_lr <= 0):
            problems.append("optim.lr and optim.restorer_lr must be positive")
        if self.train.select_by not in SELECT_BY:
            problems.append(f"train.select_by must be one of {SELECT_BY}, got {self.train.select_by!r}")
        if not 0.0 <= self.optim.cosine_min_factor <= 1.0:
            problems.append("optim.cosine_min_factor must be within [0, 1]")
        if self.train.restorer_warmup_epochs < 0:
            problems.append("train.restorer_warmup_epochs must be >= 0")
        elif self.train.restorer_warmup_epochs and self.train.task not in ("reloc", "joint"):
            problems.append("train.restorer_warmup_epochs applies to train.task=reloc or joint only")
        elif self.train.restorer_warmup_epochs >= self.train.epochs:
            problems.append("train.restorer_warmup_epochs must be smaller than train.epochs")
        if self.train.epochs < 1 or self.data.batch_size < 1 or self.data.crop < 1:
            problems.append("train.epochs, data.batch_size and data.crop must be positive")
        if self.train.task in ("finetune",) and not self.model.localizer_weights:
            problems.append("train.task=finetune needs model.localizer_weights (a plain run or weights file)")
        if not self.data.dataset:
            problems.append("data.dataset is empty")
        if problems:
            raise ValueError("invalid configuration:\n  " + "\n  ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["optim"]["discriminator_betas"] = list(self.optim.discriminator_betas)
        return data

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _merge(instance: Any, values: dict[str, Any], where: str) -> Any:
    """A copy of dataclass ``instance`` with ``values`` applied (nested dataclasses recursively)."""
    known = {f.name: f for f in dataclasses.fields(instance)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown setting {where}{key!r}; known: {sorted(known)}")
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"setting {where}{key} must be a mapping")
            changes[key] = _merge(current, value, f"{where}{key}.")
        elif isinstance(current, tuple) and isinstance(value, list):
            changes[key] = tuple(value)
        else:
            changes[key] = value
    return dataclasses.replace(instance, **changes)


def parse_override(item: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}`` (the value parsed as YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected section.key=value, got {item!r}")
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = yaml.safe_load(value)
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then each ``section.key=value`` override."""
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: configuration file not found")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
        config = _merge(config, values, "")
    for item in overrides or []:
        config = _merge(config, parse_override(item), "")
    return config
