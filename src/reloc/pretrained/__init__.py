"""Pretrained models shipped inside the package, addressed as ``pretrained:NAME``.

Each model is a folder ``reloc/pretrained/<NAME>/`` holding ``localizer.safetensors`` and,
for a ReLoc model, ``restorer.safetensors`` (each file rebuilds its network, see
:func:`reloc.models.weights.load_network`); ``cards.json`` beside them holds each model's
card (what it was trained on, by which command, and its measured figures), and
``routing.json`` the ``--model auto`` rule measured on real forgeries and camera-size
photos by ``benchmarks/real.py`` (:func:`choose`). The weights
are made by ``reloc release run`` (:mod:`reloc.release`, the recipe in ``configs/release/``).

>>> from reloc import pretrained
>>> pretrained.names()
['plain', 'robust', 'reloc']
>>> pretrained.weights_file("reloc", "restorer").name     # a Path inside the installed package
'restorer.safetensors'
>>> pretrained.choose(jpeg_quality=75)                      # the --model auto rule
Choice(name='reloc', jpeg_quality=75, reason="JPEG quality 75: reloc measured best at QF 75 (casia1-dev's ...)")

Every option that takes a run folder or a weights file also takes ``pretrained:NAME``;
they all go through :func:`reloc.runs.resolve_weights`, which calls :func:`weights_file`
here; a model option (``--model``) goes through :func:`reloc.engine.model_choice.model_source`,
which also takes a bare ``NAME``. Names are read by :func:`parse` and :func:`qualified` alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

PREFIX = "pretrained:"
"""What marks a pretrained model where a path is expected: ``pretrained:reloc``."""
NAMES: tuple[str, ...] = ("plain", "robust", "reloc")
"""The models, in the order ``reloc models`` lists them."""
ROLES: tuple[str, ...] = ("localizer", "restorer")


class PretrainedError(ValueError):
    """An unknown pretrained name, a model without the asked role, or a missing / corrupt packaged file."""


@dataclass(frozen=True)
class Choice:
    """What ``--model auto`` picked for one file, and why."""

    name: str
    jpeg_quality: int | None
    reason: str


def _root() -> Path:
    return Path(str(resources.files("reloc.pretrained")))


def is_pretrained(spec: object) -> bool:
    """Whether ``spec`` (a path or string) names a pretrained model (``pretrained:NAME``)."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse(spec: str) -> str:
    """``"pretrained:reloc"`` -> ``"reloc"``; :class:`PretrainedError` for an unknown name."""
    name = spec[len(PREFIX) :] if is_pretrained(spec) else spec
    if name not in NAMES:
        raise PretrainedError(f"unknown pretrained model {spec!r}; known: {', '.join(PREFIX + n for n in NAMES)}")
    return name


def qualified(spec: str) -> str:
    """``"reloc"`` or ``"pretrained:reloc"`` -> ``"pretrained:reloc"``; :class:`PretrainedError` for an unknown name."""
    return PREFIX + parse(spec)


def names() -> list[str]:
    """The pretrained model names."""
    return list(NAMES)


@lru_cache(maxsize=1)
def cards() -> dict[str, dict[str, Any]]:
    """Every model's card (``cards.json``): ``{name: {"summary", "roles", "figures", ...}}``."""
    path = _root() / "cards.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PretrainedError(f"the packaged model cards are missing ({path}); reinstall reloc") from exc
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"the packaged model cards {path} cannot be read: {exc}; reinstall reloc") from exc
    return data.get("models", {})


def card(name: str) -> dict[str, Any]:
    """The card of one model (``name`` or ``pretrained:name``)."""
    name = parse(name)
    try:
        return cards()[name]
    except KeyError:
        raise PretrainedError(
            f"pretrained model {name!r} has no card in the installed package; reinstall reloc"
        ) from None


def roles(name: str) -> list[str]:
    """The roles (``localizer``, ``restorer``) a model ships weights for."""
    return list(card(name).get("roles", ["localizer"]))


def weights_file(name: str, role: str) -> Path:
    """The packaged weights file of ``role`` of model ``name`` (or ``pretrained:name``).

    Raises:
        PretrainedError: unknown name, a role the model does not have, or the file is
            missing from the installed package.
    """
    name = parse(name)
    if role not in ROLES:
        raise PretrainedError(f"pretrained models have no {role!r} weights (roles: {', '.join(ROLES)})")
    if role not in roles(name):
        raise PretrainedError(f"pretrained:{name} has no {role} (it ships: {', '.join(roles(name))})")
    path = _root() / name / f"{role}.safetensors"
    if not path.is_file():
        raise PretrainedError(f"pretrained:{name}: packaged file {path} is missing; reinstall reloc")
    return path


@lru_cache(maxsize=1)
def routing() -> dict[str, Any]:
    """The ``--model auto`` rule (``routing.json``): ``{"no_jpeg": {"model", "measured_on"},
    "jpeg": [{"quality", "model", "measured_on", ...}, ...], "chosen_on", ...}``."""
    path = _root() / "routing.json"
    try:
        rule = json.loads(path.read_text(encoding="utf-8"))
        entries = [rule["no_jpeg"], *rule["jpeg"]]
        valid = bool(rule["jpeg"]) and all(entry["model"] in NAMES for entry in entries)
        valid = valid and all(isinstance(entry["quality"], int) for entry in rule["jpeg"])
    except FileNotFoundError as exc:
        raise PretrainedError(f"the packaged --model auto rule is missing ({path}); reinstall reloc") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PretrainedError(f"the packaged --model auto rule {path} cannot be read: {exc}; reinstall reloc") from exc
    if not valid:
        raise PretrainedError(f"the packaged --model auto rule {path} names no JPEG quality or an unknown model")
    return rule


def choose(jpeg_quality: int | None) -> Choice:
    """The ``--model auto`` rule for a file whose estimated JPEG quality is ``jpeg_quality``.

    A file with no JPEG tables (``None``) goes to the model :func:`routing` measured best
    on such files; a JPEG to the model measured best at the nearest measured quality
    (per-image AUC on real forgeries and camera-size photos, ``benchmarks/real.py``).
    """
    rule = routing()
    if jpeg_quality is None:
        entry = rule["no_jpeg"]
        reason = f"not a JPEG (no quantisation tables): {entry['model']} measured best on {entry['measured_on']}"
        return Choice(entry["model"], None, reason)
    entry = min(rule["jpeg"], key=lambda item: (abs(item["quality"] - jpeg_quality), -item["quality"]))
    reason = (
        f"JPEG quality {jpeg_quality}: {entry['model']} measured best at QF {entry['quality']} ({entry['measured_on']})"
    )
    return Choice(entry["model"], jpeg_quality, reason)
