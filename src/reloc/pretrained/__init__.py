"""Pretrained models shipped inside the package, addressed as ``pretrained:NAME``.

Each model is a folder ``reloc/pretrained/<NAME>/`` holding ``localizer.safetensors`` and,
for a ReLoc model, ``restorer.safetensors`` (each file rebuilds its network, see
:func:`reloc.models.weights.load_network`); ``cards.json`` beside them holds each model's
card (what it was trained on, by which command, and its measured figures). The weights
are made by ``benchmarks/pretrain.py`` (the recipe in ``configs/release/``).

>>> from reloc import pretrained
>>> pretrained.names()
['plain', 'robust', 'reloc']
>>> pretrained.weights_file("reloc", "restorer").name     # a Path inside the installed package
'restorer.safetensors'
>>> pretrained.choose(jpeg_quality=75)                      # the --model auto rule
Choice(name='robust', jpeg_quality=75, reason='JPEG quality 75: robust has the best card figures at QF 75')

Every option that takes a run folder or a weights file also takes ``pretrained:NAME``;
they all go through :func:`reloc.engine.tasks.resolve_weights`, which calls
:func:`weights_file` here.
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
PLAIN_QUALITY = 98
"""``--model auto``: a JPEG of at least this estimated quality counts as uncompressed."""


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


def choose(jpeg_quality: int | None) -> Choice:
    """The ``--model auto`` rule for a file whose estimated JPEG quality is ``jpeg_quality``.

    Uncompressed files (``None``) and JPEGs of quality >= :data:`PLAIN_QUALITY` go to
    ``plain``; other JPEGs to the model whose card shows the best figures (higher
    per-image AUC, then F1) at the nearest measured JPEG quality. The JPEG models
    ``robust`` and ``reloc`` are the intended candidates, but ``plain`` competes too: a
    JPEG-trained model is not always better on JPEGs (see the card), and the rule should
    send each file to the model measured best for it.
    """
    if jpeg_quality is None:
        return Choice("plain", None, "not a JPEG (no quantisation tables): the plain-image model")
    if jpeg_quality >= PLAIN_QUALITY:
        return Choice("plain", jpeg_quality, f"JPEG quality {jpeg_quality} >= {PLAIN_QUALITY}: as good as uncompressed")
    best, measured = _best_jpeg_model(jpeg_quality)
    if measured is None:
        return Choice(best, jpeg_quality, f"JPEG quality {jpeg_quality}: the JPEG model (no card figures to compare)")
    return Choice(best, jpeg_quality, f"JPEG quality {jpeg_quality}: {best} has the best card figures at QF {measured}")


def _best_jpeg_model(quality: int) -> tuple[str, int | None]:
    """``(name, measured QF)`` of the model with the best card figures nearest ``quality``."""
    figures = {name: card(name).get("figures", {}) for name in ("robust", "reloc", "plain") if name in cards()}
    measured = sorted(
        {int(key.split(":")[1]) for values in figures.values() for key in values if key.startswith("jpeg:")}
    )
    if not measured:
        return ("reloc" if "reloc" in figures else "robust"), None
    nearest = min(measured, key=lambda q: (abs(q - quality), q))
    key = f"jpeg:{nearest}"

    def merit(name: str) -> tuple[float, float]:
        values = figures[name].get(key) or {}
        return (values.get("auc") or 0.0, values.get("f1") or 0.0)

    return max((name for name in figures if key in figures[name]), key=merit), nearest
