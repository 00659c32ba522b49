"""The models a ``reloc serve`` instance offers, loaded once at start-up.

Each :class:`ServedModel` is a pipeline (restorer or none, localizer) under a name the
page and the API use. ``auto`` is not a network: it is the ``--model auto`` rule of
:func:`reloc.pretrained.choose`, which picks ``pretrained:plain``, ``robust`` or ``reloc``
per file from its estimated JPEG quality, so it is offered only when those three are.

>>> models = load_models(models=["auto"], runs=[], localizer=None, restorer=None)
>>> served, reason = models.resolve("auto", jpeg_quality=75)
>>> served.name, reason
('pretrained:reloc', "auto: JPEG quality 75: reloc measured best at QF 75 (casia1-dev's forgeries saved at QF 75)")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reloc import pretrained
from reloc.engine.inference import Pipeline, pipeline_from_weights
from reloc.engine.model_choice import model_source
from reloc.models.weights import WeightsError, read_spec

AUTO = "auto"


class ModelError(ValueError):
    """A model option that cannot be served (unknown name, missing weights, a clash of names)."""


@dataclass
class ServedModel:
    """One pipeline the server runs.

    Attributes:
        name: what the page and the API call it (``pretrained:reloc``, a run folder's name,
            a weights file's stem).
        pipeline: the networks, in eval mode on the serving device.
        source: where the weights came from (a run folder or the weights files).
        networks: ``{"localizer": "dfcn(width=0.5)", "restorer": ...}`` from the files' specs.
        card: the pretrained model's card (summary, figures), or ``None``.
    """

    name: str
    pipeline: Pipeline = field(repr=False)
    source: str
    networks: dict[str, str]
    card: dict[str, Any] | None = None

    @property
    def has_restorer(self) -> bool:
        return self.pipeline.restorer is not None

    def describe(self) -> dict[str, Any]:
        """The JSON the API lists for this model."""
        return {
            "name": self.name,
            "source": self.source,
            "networks": self.networks,
            "restorer": self.has_restorer,
            "window": list(self.pipeline.window),
            "card": self.card,
        }


@dataclass
class ModelSet:
    """The served models, in the order given, and whether ``auto`` is on offer."""

    models: dict[str, ServedModel]
    auto: bool

    @property
    def default(self) -> str:
        """``auto`` when offered, else the first model."""
        return AUTO if self.auto else next(iter(self.models))

    def names(self) -> list[str]:
        return ([AUTO] if self.auto else []) + list(self.models)

    def resolve(self, name: str | None, jpeg_quality: int | None) -> tuple[ServedModel, str]:
        """The model to run for a file and why.

        Args:
            name: a name of :meth:`names`, or ``None`` for :attr:`default`.
            jpeg_quality: the file's estimated JPEG quality (``None``: not a JPEG), for ``auto``.

        Raises:
            ModelError: ``name`` is not served.
        """
        name = name or self.default
        if name == AUTO and self.auto:
            choice = pretrained.choose(jpeg_quality)
            return self.models[pretrained.PREFIX + choice.name], f"auto: {choice.reason}"
        if name not in self.models:
            raise ModelError(f"model {name!r} is not served here; choose one of: {', '.join(self.names())}")
        return self.models[name], "chosen"


def load_models(
    models: list[str],
    runs: list[str],
    localizer: str | None,
    restorer: str | None,
    device: str | torch.device = "cpu",
) -> ModelSet:
    """Load the models of ``reloc serve``'s options; none at all means ``--model auto``.

    Names, run folders and files are resolved by :func:`reloc.engine.model_choice.model_source`
    (as ``reloc localize`` does); every pipeline is built now, so a bad file fails at start-up.

    Args:
        models: ``auto`` or pretrained names (``reloc`` or ``pretrained:reloc``).
        runs: run folders (their best localizer, and restorer when they have one).
        localizer, restorer: weights files of one more model.
        device: where the pipelines run.

    Raises:
        ModelError: an unknown name, missing or unreadable weights (the message says
            which option), a ``--restorer`` without ``--localizer``, or two models of one name.
    """
    if restorer is not None and localizer is None:
        raise ModelError("--restorer needs --localizer")
    if not (models or runs or localizer):
        models = [AUTO]
    auto = AUTO in models
    wanted: list[tuple[str, str, str | None]] = []  # (option, spec, restorer)
    for name in models:
        if name != AUTO:
            try:
                wanted.append(("--model", pretrained.qualified(name), None))
            except pretrained.PretrainedError as exc:
                raise ModelError(f"--model {name}: {exc} (or 'auto')") from exc
    if auto:
        wanted += [("--model", pretrained.qualified(name), None) for name in pretrained.NAMES]
    wanted += [("--run", run, None) for run in runs]
    if localizer is not None:
        wanted.append(("--localizer", localizer, restorer))
    served: dict[str, ServedModel] = {}
    for option, spec, extra in dict.fromkeys(wanted):
        model = _build(option, spec, extra, device)
        if model.name in served:
            raise ModelError(f"two served models would be called {model.name!r}; serve it once")
        served[model.name] = model
    return ModelSet(served, auto)


def _build(option: str, spec: str, restorer: str | None, device: str | torch.device) -> ServedModel:
    """Resolve and load one model given by ``option`` (for the error message)."""
    try:
        source = model_source(spec, restorer)
        card = pretrained.card(spec) if pretrained.is_pretrained(spec) else None
    except (pretrained.PretrainedError, FileNotFoundError) as exc:
        hint = ""
        if pretrained.is_pretrained(spec):
            hint = ". The packaged weights are not there: serve your own with --run RUN or --localizer W [--restorer W]"
        raise ModelError(f"{option} {spec}: {exc}{hint}") from exc
    try:
        pipeline = pipeline_from_weights(source.localizer, source.restorer, device)
        specs = {"localizer": read_spec(source.localizer)}
        if source.restorer:
            specs["restorer"] = read_spec(source.restorer)
    except (WeightsError, OSError) as exc:
        raise ModelError(f"{option} {spec}: {exc}") from exc
    if pretrained.is_pretrained(spec):
        name, where = spec, f"packaged {spec}"
    elif option == "--run":
        name, where = Path(spec).name, spec
    else:
        name = Path(spec).stem + (f"+{Path(restorer).stem}" if restorer else "")
        where = spec + (f" + {restorer}" if restorer else "")
    networks = {role: _label(network) for role, network in specs.items()}
    return ServedModel(name, pipeline, where, networks, card)


def _label(spec: Any) -> str:
    """``dfcn(width=0.5)`` from a weights file's spec."""
    arguments = ", ".join(f"{key}={value}" for key, value in sorted(spec.kwargs.items()))
    return f"{spec.name}({arguments})" if arguments else spec.name
