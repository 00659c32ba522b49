"""Experiment configuration: typed pydantic models, YAML in and out, command-line overrides.

Precedence: model defaults < YAML file < ``--set section.key=value`` overrides, merged
**deeply**: ``--set model.localizer_args={highpass: true}`` on top of a YAML holding
``localizer_args: {width: 0.5}`` gives ``{width: 0.5, highpass: true}``, and
``--set model.localizer_args.width=0.25`` changes one builder argument. Every value is
type-checked when it is read (an error names the key and where it came from: the YAML
file or the ``--set`` item); an unknown key is refused with the closest known one. The
resolved configuration is written to ``RUN_DIR/config.yaml``; running that file again
reproduces the run.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reloc.limits import MAX_SIDE

TASKS = ("plain", "finetune", "reloc", "joint")
SCHEDULES = ("plateau", "cosine")
#: what ``weights/best`` is chosen by (see ``reloc.engine.trainer.SELECTION``)
SELECT_BY = ("f1", "auc", "loss", "psnr")
LOSS_TERMS = ("mae", "gan", "localization")
#: tasks that must start from a trained localizer (Algorithm 1 initialises L from M^P)
NEEDS_LOCALIZER_WEIGHTS = ("finetune", "reloc")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and its origin."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from, how they are split and how training crops are made.

    Attributes:
        dataset: a Tp/Gt folder, an IMDL-BenCo JSON list, or a ``reloc synth`` folder.
        crop: side of the square training crops (the paper: 128).
        batch_size: crops per step per process (the paper: 56 DFCN, 40 SCSE-Unet, 48 MVSS-Net).
        distortion: distortion spec of the distorted view (``jpeg:75``, ``jpeg:70-100``, ...),
            applied after cropping in training and to whole images in evaluation.
        tamper_bias: probability that a crop is centred on a tampered pixel.
        test_fraction, val_fraction: shares of source photos held out (when the dataset
            records no split of its own).
        split_seed: seed of the source-disjoint split (independent of ``train.seed``, so
            runs with different training seeds can share one split). The split is written
            to ``RUN/split.json`` and ``reloc eval`` uses that file.
        steps_per_epoch: cap on steps per epoch (``null``: one pass over the training set).
        workers: DataLoader worker processes.
        cache_mb: memory budget (MB, per process) for decoded training / validation images
            (0: read every crop's files afresh).
        mask_resize: ``null`` (default): samples whose mask size differs from the image's
            are skipped with a warning; ``nearest``: such masks are resized instead.
    """

    dataset: str = ""
    crop: int = Field(128, gt=0, le=MAX_SIDE)
    batch_size: int = Field(56, gt=0)
    distortion: str = "jpeg:75"
    tamper_bias: float = Field(0.0, ge=0.0, le=1.0)
    test_fraction: float = Field(0.25, ge=0.0, lt=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)
    steps_per_epoch: int | None = Field(None, gt=0)
    workers: int = Field(0, ge=0)
    cache_mb: int = Field(0, ge=0)
    mask_resize: Literal["nearest"] | None = None

    @field_validator("distortion")
    @classmethod
    def _known_distortion(cls, value: str) -> str:
        from reloc.data.distortions import parse_distortion

        parse_distortion(value)  # raises ValueError naming the bad token
        return value


class ModelConfig(_Section):
    """Which networks, with which builder arguments and starting weights.

    Attributes:
        localizer, restorer, discriminator: registry names.
        localizer_args, restorer_args, discriminator_args: builder keyword arguments.
        localizer_weights: starting localizer: a weights file, a run folder whose best
            localizer is taken, or ``pretrained:NAME``. Required by ``finetune`` and
            ``reloc`` (both start from a ``plain`` run, M^P); optional for ``joint``
            (Table II's joint training; random when unset).
        restorer_weights: starting restorer (a file, run folder or ``pretrained:NAME``);
            ``null`` = random init.
    """

    localizer: str = "dfcn"
    localizer_args: dict[str, Any] = Field(default_factory=dict)
    restorer: str = "scunet"
    restorer_args: dict[str, Any] = Field(default_factory=lambda: {"preset": "paper"})
    discriminator: str = "dcgan"
    discriminator_args: dict[str, Any] = Field(default_factory=dict)
    localizer_weights: str | None = None
    restorer_weights: str | None = None

    @field_validator("localizer", "restorer", "discriminator")
    @classmethod
    def _registered(cls, value: str, info) -> str:
        from reloc.models import REGISTRIES

        known = sorted(REGISTRIES[info.field_name])
        if value not in known:
            raise ValueError(f"unknown {info.field_name} {value!r}{_suggestion(value, known)}; known: {known}")
        return value


class OptimConfig(_Section):
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

    lr: float = Field(1e-4, gt=0.0)
    restorer_lr: float | None = Field(None, gt=0.0)
    discriminator_lr: float = Field(1e-4, gt=0.0)
    discriminator_betas: tuple[float, float] = (0.5, 0.999)
    schedule: Literal["plateau", "cosine"] = "plateau"
    plateau_factor: float = Field(0.8, gt=0.0, lt=1.0)
    plateau_patience: int = Field(2, ge=0)
    cosine_min_factor: float = Field(0.0, ge=0.0, le=1.0)


class TrainConfig(_Section):
    """The training situation and loop.

    Attributes:
        task: ``plain`` (M^P), ``finetune`` (M^{D|P}), ``reloc`` (Algorithm 1) or ``joint``.
        epochs: number of epochs.
        seed: seed of initialisation, crops, distortions and shuffling (the split has
            its own, ``data.split_seed``).
        loss: loss-weight preset (``paper``, ``paper-document``, ``official``).
        loss_terms: restoration-loss terms switched on (Table I ablations); must hold ``mae``.
        alternate_every: 0 alternates restorer/localizer epochs (Algorithm 1); K > 0
            alternates every K steps instead.
        restorer_warmup_epochs: ``reloc``/``joint`` only, not the paper's: the first N
            epochs train only the restorer with only the MAE term (no discriminator, no GAN
            or localization term, localizer untouched); Algorithm 1 (or joint training)
            starts after them, its first epoch a restoration epoch. 0 = as published.
            ``N = epochs`` pre-trains the restorer alone (a JPEG-artifact remover): the
            localizer's weights go through the run unchanged.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        amp: ``false`` forces fp32 whatever ``precision`` says (the switch that came
            before ``precision``; kept so older run configs load).
        precision: ``auto`` (bf16 autocast where the CPU or GPU has native bf16, fp16 with
            grad scaling on other GPUs, else fp32), ``fp32``, ``bf16`` or ``fp16`` (CUDA);
            see :mod:`reloc.precision`.
        threshold: probability threshold of the validation F1 / IoU.
        select_by: which epoch's weights ``weights/best`` keeps: highest validation
            ``f1`` (default), highest ``auc``, lowest localization ``loss``, or (``reloc``
            and ``joint``) highest ``psnr`` of the restored crops against the plain ones.
        log_every: TensorBoard scalar interval in steps.
    """

    task: Literal["plain", "finetune", "reloc", "joint"] = "plain"
    epochs: int = Field(60, gt=0)
    seed: int = Field(0, ge=0)
    loss: str = "paper"
    loss_terms: list[Literal["mae", "gan", "localization"]] = Field(default_factory=lambda: list(LOSS_TERMS))
    alternate_every: int = Field(0, ge=0)
    restorer_warmup_epochs: int = Field(0, ge=0)
    device: str = "auto"
    amp: bool = True
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    select_by: Literal["f1", "auc", "loss", "psnr"] = "f1"
    log_every: int = Field(10, gt=0)

    @field_validator("loss")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        from reloc.losses import LOSS_PRESETS

        if value not in LOSS_PRESETS:
            raise ValueError(
                f"unknown preset {value!r}{_suggestion(value, LOSS_PRESETS)}; known: {sorted(LOSS_PRESETS)}"
            )
        return value

    @field_validator("loss_terms")
    @classmethod
    def _mae_always(cls, value: list[str]) -> list[str]:
        if "mae" not in value:
            raise ValueError("must include 'mae' (Table I's ablations drop gan and/or localization only)")
        return value


class Config(_Section):
    """One experiment."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def check(self) -> Config:
        """Check what a run needs beyond each value's type (cross-key rules, a dataset,
        starting weights); returns ``self``.

        Raises:
            ConfigError: listing every problem, each naming its keys.
        """
        problems = []
        warmup = self.train.restorer_warmup_epochs
        if warmup and self.train.task not in ("reloc", "joint"):
            problems.append("train.restorer_warmup_epochs applies to train.task=reloc or joint only")
        elif warmup > self.train.epochs:
            problems.append("train.restorer_warmup_epochs must not exceed train.epochs")
        if self.train.select_by == "psnr" and self.train.task not in ("reloc", "joint"):
            problems.append("train.select_by=psnr needs a restorer: train.task=reloc or joint")
        if self.data.test_fraction + self.data.val_fraction >= 1:
            problems.append("data.test_fraction + data.val_fraction must be below 1")
        if self.train.task in NEEDS_LOCALIZER_WEIGHTS and not self.model.localizer_weights:
            problems.append(
                f"train.task={self.train.task} needs model.localizer_weights (a plain run, a weights file "
                "or pretrained:NAME): it starts from M^P"
            )
        if not self.data.dataset:
            problems.append("data.dataset is empty")
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values (tuples as lists)."""
        return self.model_dump(mode="json")

    def with_absolute_paths(self, base: str | Path | None = None) -> Config:
        """A copy whose dataset and starting-weights paths (:data:`PATH_KEYS`) are absolute.

        Relative paths are resolved against ``base`` (default: the working directory);
        empty values and ``pretrained:NAME`` are kept as they are. A run stores its
        configuration this way, so it reads the same files from any working directory.
        """
        base = Path.cwd() if base is None else Path(base)
        updates: dict[str, dict[str, Any]] = {}
        for section, key in PATH_KEYS:
            value = getattr(getattr(self, section), key)
            if value and not str(value).startswith("pretrained:") and not Path(value).is_absolute():
                updates.setdefault(section, {})[key] = str((base / value).resolve())
        return self.model_copy(
            update={section: getattr(self, section).model_copy(update=keys) for section, keys in updates.items()}
        )

    def given_paths(self) -> dict[str, str]:
        """The dotted :data:`PATH_KEYS` that are set, with their values as written."""
        found = {}
        for section, key in PATH_KEYS:
            value = getattr(getattr(self, section), key)
            if value:
                found[f"{section}.{key}"] = str(value)
        return found

    def to_yaml(self, path: str | Path, comment: str | None = None) -> None:
        """Write the configuration as YAML, atomically; ``comment`` lines go first, as ``#`` comments."""
        from reloc.io_utils import write_text_atomic

        header = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
        write_text_atomic(path, header + yaml.safe_dump(self.to_dict(), sort_keys=False))


#: The (section, key) pairs of :class:`Config` that name files or folders.
PATH_KEYS: tuple[tuple[str, str], ...] = (
    ("data", "dataset"),
    ("model", "localizer_weights"),
    ("model", "restorer_weights"),
)


def parse_override(item: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}`` (the value parsed as YAML).

    Raises:
        ConfigError: not ``key=value``, or a value that is not YAML.
    """
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(error)})") from None
    nested: dict[str, Any] = {}
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part.strip(), {})
    cursor[parts[-1].strip()] = parsed
    return nested


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``changes`` applied; mappings present in both are merged
    key by key (recursively), anything else in ``changes`` replaces the value."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then each ``section.key=value`` override.

    Raises:
        ConfigError: a missing file, a YAML syntax error (file, line and column), a value
            of the wrong type or range, or an unknown key (with the closest known one);
            each message says which file or ``--set`` item caused it.
    """
    values = Config().to_dict()
    if path is not None:
        values = deep_merge(values, _read_yaml(Path(path)))
        _validate(values, str(path))
    for item in overrides or []:
        values = deep_merge(values, parse_override(item))
        _validate(values, f"--set {item}")
    return _validate(values, "configuration")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: YAML syntax error: {_yaml_problem(error)}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (data, model, optim, train), got {type(values).__name__}"
        )
    return values


def _validate(values: dict[str, Any], origin: str) -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as error:
        lines = [_describe(problem) for problem in error.errors()]
        raise ConfigError(f"{origin}: " + "; ".join(lines)) from None


def _describe(problem: dict[str, Any]) -> str:
    """One pydantic error as ``section.key: what is wrong (got VALUE)``."""
    location = [str(part) for part in problem["loc"]]
    key = ".".join(location)
    if problem["type"] == "extra_forbidden":
        known = _known_keys(location[:-1])
        return f"unknown setting {key}{_suggestion(location[-1], known, '.'.join(location[:-1]))}; known: {known}"
    message = problem["msg"].removeprefix("Value error, ")
    return f"{key}: {message} (got {problem.get('input')!r})"


def _known_keys(section: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _suggestion(word: str, known, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    if not close:
        return ""
    return f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?"


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
