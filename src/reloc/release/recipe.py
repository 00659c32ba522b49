"""The release recipe file (``configs/release/recipe.yaml``): its presets, parts and their order.

The recipe names the photos, the held-out test photos, the generator's settings (``synth``
and ``extra_data``), the training parts (``models``: which config makes which model, which
part each starts from) and the inference choice's settings; a preset sizes it for a machine.
"""

from __future__ import annotations

from pathlib import Path

import yaml

#: The source checkout the recipe runs in: its ``configs/release/`` and ``src/reloc/pretrained/``
#: (the recipe makes the package's data, so it runs from a checkout, e.g. an editable install).
ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "configs" / "release" / "recipe.yaml"
#: The recipe key naming the part each network of a training part starts from.
START_KEYS = {"localizer": "start", "restorer": "restorer_start"}


def auto_preset() -> str:
    """The CPU preset for this processor: ``cpu-2h`` where it computes bf16 natively (AMX or
    ``avx512_bf16``: the whole recipe took 97 min on a 2-core AMD EPYC with avx512_bf16),
    ``cpu-fp32`` anywhere else (the smaller sizing meant to fit the 2 hours in fp32)."""
    from reloc.precision import cpu_has_bf16

    return "cpu-2h" if cpu_has_bf16() else "cpu-fp32"


def load_recipe(preset: str, path: Path = RECIPE) -> dict:
    """The recipe with ``presets[preset]`` applied (``auto``: :func:`auto_preset`): ``synth``,
    ``extra_data`` and ``inference`` merged; a model the preset marks ``skip: true`` is
    dropped, and the preset's ``start`` or ``data`` of a model replace the recipe's; each
    model's ``overrides`` are the preset's for every model (``set``), then the model's own
    (``models.NAME.set`` of the recipe), then the preset's for that model (later ones win);
    ``threads`` set. Every ``start`` and ``restorer_start`` must name an earlier model that
    is not skipped, and a shipped model's parts none that is an experiment
    (:func:`is_experiment`), which names no ``ships_as``."""
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: cannot read the recipe {path}: {exc}") from exc
    if not isinstance(recipe, dict) or "presets" not in recipe:
        raise SystemExit(f"error: {path} is not a release recipe (no 'presets')")
    presets = recipe.pop("presets")
    if preset == "auto":
        preset = auto_preset()
    if preset not in presets:
        raise SystemExit(f"error: unknown preset {preset!r}; known: auto, {', '.join(presets)}")
    chosen = presets[preset] or {}
    unknown = set(chosen.get("models", {})) - set(recipe["models"])
    if unknown:
        raise SystemExit(f"error: preset {preset!r} sets unknown models: {', '.join(sorted(unknown))}")
    recipe["synth"] = {**recipe["synth"], **{k: v for k, v in chosen.get("synth", {}).items()}}
    extra = recipe.get("extra_data") or {}
    for name, spec in (chosen.get("extra_data") or {}).items():
        if name not in extra:
            raise SystemExit(f"error: preset {preset!r} sets unknown extra data set {name!r}")
        extra[name] = {**extra[name], **spec}
    recipe["extra_data"] = extra
    recipe["inference"] = {**recipe["inference"], **(chosen.get("inference") or {})}
    recipe["summaries"] = chosen.get("summaries") or {}
    for name, spec in (chosen.get("models") or {}).items():
        spec = spec or {}
        if spec.get("skip"):
            del recipe["models"][name]
        for key in ("start", "restorer_start", "data"):
            if key in spec:
                recipe["models"][name][key] = spec[key]
    earlier: set[str] = set()
    for name, model in recipe["models"].items():
        if model.get("data") is not None and model["data"] not in extra:
            raise SystemExit(f"error: model {name!r} trains on data set {model['data']!r}, not in extra_data")
        for key, start in start_parts(model).items():
            if start not in earlier:
                raise SystemExit(f"error: model {name!r} {key}: {start!r} is not listed before it")
            if is_experiment(recipe, start) and not is_experiment(recipe, name):
                raise SystemExit(f"error: model {name!r} {key}: {start!r} is an experiment, which never ships")
        if is_experiment(recipe, name) and "ships_as" in model:
            raise SystemExit(f"error: model {name!r} is an experiment, which never ships: drop its ships_as")
        earlier.add(name)
        own = (chosen.get("models", {}).get(name) or {}).get("set", [])
        model["overrides"] = [*chosen.get("set", []), *model.get("set", []), *own]
        if "threads" in chosen:
            model["threads"] = chosen["threads"]
    recipe["preset"] = preset
    return recipe


def data_parts(recipe: dict) -> dict[str, dict]:
    """``{data part: its synth spec}``: ``data`` (the recipe's ``synth``), then ``data-NAME``
    for each of ``extra_data`` (``synth`` with that set's keys replaced, ``settings`` merged
    key by key); only those some training part trains on. Each part writes the folder of
    its name in the work folder."""
    parts = {"data": recipe["synth"]}
    for name, spec in recipe.get("extra_data", {}).items():
        merged = {**recipe["synth"], **{k: v for k, v in spec.items() if k != "settings"}}
        merged["settings"] = {**recipe["synth"].get("settings", {}), **spec.get("settings", {})}
        parts[f"data-{name}"] = merged
    used = {data_of(recipe, name) for name in recipe["models"]}
    return {part: spec for part, spec in parts.items() if part in used}


def data_of(recipe: dict, part: str) -> str:
    """The data part training part ``part`` trains and validates on (``data``, or
    ``data-NAME`` for a part with ``data: NAME``)."""
    name = recipe["models"][part].get("data")
    return "data" if name is None else f"data-{name}"


def ships_as(recipe: dict, part: str) -> str:
    """The package model training part ``part`` makes (``ships_as``, default its own name)."""
    return recipe["models"][part].get("ships_as", part)


def is_experiment(recipe: dict, part: str) -> bool:
    """Whether training part ``part`` is an experiment (``experiment: true``): trained only
    when named (``reloc release run --part NAME``), never shipped (no inference choice, no
    ``ship``), whatever the preset."""
    return bool(recipe["models"][part].get("experiment"))


def shipped_parts(recipe: dict) -> dict[str, str]:
    """``{package model: the training part that makes it}``: each model's last listed part
    (:func:`ships_as`) that is not an experiment, in the order the models first appear."""
    shipped: dict[str, str] = {}
    for name in recipe["models"]:
        if not is_experiment(recipe, name):
            shipped[ships_as(recipe, name)] = name
    return shipped


def start_parts(model: dict) -> dict[str, str]:
    """The parts a training part's networks start from, by recipe key (:data:`START_KEYS`
    values, e.g. ``{"start": "plain-8k", "restorer_start": "reloc"}``); keys not set are left out."""
    return {key: model[key] for key in START_KEYS.values() if model.get(key) is not None}


def stages_of(recipe: dict, part: str) -> list[str]:
    """The training parts that lead to ``part`` through ``start`` or ``restorer_start``, in
    the recipe's order, ``part`` last (``plain``, ``plain-256``)."""
    leading, waiting = {part}, [part]
    while waiting:
        for earlier in start_parts(recipe["models"][waiting.pop()]).values():
            if earlier not in leading:
                leading.add(earlier)
                waiting.append(earlier)
    return [name for name in recipe["models"] if name in leading]


def photo_split(recipe: dict) -> tuple[Path, list[Path], list[Path]]:
    """``(photo root, training photos, held-out photos)``; every held-out name must exist."""
    from reloc.data.photos import list_photos

    root = (ROOT / recipe["photos"]).resolve()
    if not root.is_dir():
        raise SystemExit(f"error: photo folder {root} not found (the recipe's photos, or --photos)")
    held_out = [root / name for name in recipe["held_out"]]
    missing = [str(p) for p in held_out if not p.is_file()]
    if missing:
        raise SystemExit(f"error: held-out photos not found: {', '.join(missing)}")
    held = {p.resolve() for p in held_out}
    training = [
        p
        for folder in sorted(d for d in root.iterdir() if d.is_dir())
        for p in list_photos(folder)
        if p.resolve() not in held
    ]
    return root, training, held_out
