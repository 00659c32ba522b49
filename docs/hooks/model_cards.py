"""MkDocs hook: the model pages, generated from the package's model cards and the results files.

``src/reloc/pretrained/cards.json`` (what each shipped model is, how it was trained, its
figures) and the results file it names (``figures_from``: ``benchmarks/results/release/pretrained.json``,
intervals, per-type figures, the test set's protocol) are rendered through the Jinja2
templates in ``docs/templates/`` into ``models/index.md`` (the zoo) and ``models/<name>.md``
(one card per model), so the cards cannot drift from the data. ``scripts/render_readme.py``
renders the README's model table from the same data with :func:`readme_table`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parents[2]
CARDS = ROOT / "src" / "reloc" / "pretrained" / "cards.json"
REAL = ROOT / "benchmarks" / "results" / "real" / "real.json"
"""The real-world benchmark (``benchmarks/real.py``): casia1-dev and camera-size rows, shown first."""
FUSION = ROOT / "benchmarks" / "results" / "fusion" / "fusion.json"
"""The fused maps' benchmark (``benchmarks/fusion.py``): the default map's casia1-dev rows."""
RESTORATION = ROOT / "benchmarks" / "results" / "restoration" / "restoration.json"
"""The restoration benchmark (``benchmarks/restoration.py``): a restorer's PSNR / SSIM gain per JPEG quality."""
ROUTING = ROOT / "src" / "reloc" / "pretrained" / "routing.json"
DETECTION = ROOT / "src" / "reloc" / "pretrained" / "detection.json"
"""The packaged image-level calibration (``benchmarks/detection.py --calibrate``)."""
CAMERA_AUTHENTIC = ROOT / "benchmarks" / "results" / "detection" / "camera-authentic.json"
"""The camera-size authentic photos under the packaged thresholds (``benchmarks/detection.py --camera-authentic``)."""
TEMPLATES = ROOT / "docs" / "templates"
HEADLINE = ("none", "jpeg:75", "jpeg:90")
"""The distortions of the README's model table (and the zoo's first table)."""
REQUIRED = ("summary", "roles", "trained_on", "window", "threshold", "figures", "recipe")
"""Fields every card must have: a card without one fails the docs build."""


class CardError(ValueError):
    """A model card or results file lacks what the generated pages need."""


def load(cards_path: Path = CARDS) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(cards.json, the results file it names)`` as dictionaries."""
    cards = json.loads(cards_path.read_text(encoding="utf-8"))
    results_path = ROOT / cards.get("figures_from", "")
    if not results_path.is_file():
        raise CardError(f"{cards_path}: figures_from {cards.get('figures_from')!r} is not a file")
    return cards, json.loads(results_path.read_text(encoding="utf-8"))


def _files(name: str, roles: list[str]) -> list[dict[str, Any]]:
    """The packaged weights files of a model: role, path, size in MB and SHA-256 of the bytes."""
    rows = []
    for role in roles:
        path = CARDS.parent / name / f"{role}.safetensors"
        if not path.is_file():
            raise CardError(f"pretrained:{name} lists role {role!r} but {path} is missing")
        data = path.read_bytes()
        rows.append(
            {
                "role": role,
                "path": path.relative_to(ROOT).as_posix(),
                "mb": len(data) / 1e6,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return rows


def _best_rows(models: dict[str, Any]) -> dict[str, list[str]]:
    """For each model, the distortions at which its per-image AUC is the best of the shipped models."""
    best: dict[str, list[str]] = {name: [] for name in models}
    distortions = [key for key in next(iter(models.values()))["figures"]]
    for distortion in distortions:
        scored = {name: card["figures"].get(distortion, {}).get("auc") for name, card in models.items()}
        scored = {name: value for name, value in scored.items() if value is not None}
        if scored:
            best[max(scored, key=scored.get)].append(distortion)
    return best


def real_rows(real: dict[str, Any], name: str) -> dict[str, Any]:
    """One model's rows of the real-world benchmark: ``{"casia": {kind: summaries},
    "camera": {distortion: summaries}}`` (``name`` may be ``auto``)."""
    parts = real.get("parts", {})
    casia = parts.get("casia", {}).get("table", {}).get(name, {})
    camera = {
        spec: modes["default"][name]
        for spec, modes in parts.get("camera", {}).get("table", {}).items()
        if name in modes.get("default", {})
    }
    return {"casia": {kind: casia[kind] for kind in ("all", "splice", "copy-move") if kind in casia}, "camera": camera}


def fused_rows(fusion: dict[str, Any]) -> dict[str, Any]:
    """The casia1-dev rows of the map ``reloc localize`` shows by default (``--model auto``,
    the default fusion at the shipped weight, :func:`reloc.evidence.fuse`) from ``benchmarks/fusion.py``'s results."""
    from reloc.evidence import DQ_WEIGHT

    rule = f"clones+dq-{DQ_WEIGHT}"
    if rule not in fusion.get("casia", {}):
        raise CardError(f"{FUSION}: no row {rule!r} (python benchmarks/fusion.py)")
    rows = fusion["casia"][rule]
    camera = {
        spec: {"learned": rules["learned"], "fused": rules[rule]} for spec, rules in fusion.get("camera", {}).items()
    }
    return {"rule": rule, "casia": {kind: rows[kind] for kind in ("all", "splice", "copy-move")}, "camera": camera}


def results_file(path: Path, what: str, command: str) -> dict[str, Any]:
    """A benchmark's results file as a dictionary; :class:`CardError` naming ``command`` when it is missing."""
    if not path.is_file():
        raise CardError(f"{path}: {what} results are missing ({command})")
    return json.loads(path.read_text(encoding="utf-8"))


def image_level(calibration_path: Path, camera_path: Path) -> dict[str, Any]:
    """Each model's packaged image-level calibration (whether a band is shown, by the
    engine's own rule) and its camera-size authentic photos flagged under it."""
    from reloc.engine.detection import read_calibration

    calibration = read_calibration(calibration_path)
    camera = results_file(
        camera_path, "the camera-size authentic photos'", "python benchmarks/detection.py --camera-authentic ..."
    )
    models = {}
    for name, model in calibration.models.items():
        rows = [row for row in camera["rows"] if row["model"] == name]
        models[name] = {
            "figures": model,
            "band_shown": model.informative,
            "camera_photos": len(rows),
            "camera_flagged": sum(row["flagged"] for row in rows),
        }
    return {"aggregation": calibration.aggregation.label, "models": models, "camera_folder": camera["folder"]}


def context(cards_path: Path = CARDS) -> dict[str, Any]:
    """Everything the templates show, checked: a card missing a required field raises :class:`CardError`."""
    cards, results = load(cards_path)
    real = results_file(REAL, "the real-world benchmark's", "python benchmarks/real.py")
    fused = fused_rows(results_file(FUSION, "the fused maps'", "python benchmarks/fusion.py"))
    routing = json.loads(ROUTING.read_text(encoding="utf-8"))
    restoration = results_file(RESTORATION, "the restoration benchmark's", "python benchmarks/restoration.py")
    detection = image_level(DETECTION, CAMERA_AUTHENTIC)
    models = cards.get("models") or {}
    if not models:
        raise CardError(f"{cards_path}: no models")
    for name, card in models.items():
        missing = [key for key in REQUIRED if not card.get(key)]
        if missing:
            raise CardError(f"{cards_path}: the card of {name!r} lacks {', '.join(missing)}")
    best = _best_rows(models)
    measured = results.get("models", {})
    out = []
    for name, card in models.items():
        rows = []
        for distortion, values in card["figures"].items():
            interval = measured.get(name, {}).get(distortion, {}).get("ci95", {})
            rows.append({"distortion": distortion, **values, "ci95": interval})
        datasets = {"data": cards["data"], **cards.get("extra_data", {})}
        used = list(dict.fromkeys(stage["data"] for stage in card["recipe"]["stages"]))
        out.append(
            {
                "name": name,
                "card": card,
                "rows": rows,
                "best": best[name],
                "files": _files(name, card["roles"]),
                "datasets": {key: datasets[key] for key in used if key in datasets},
                "train_hours": sum(stage.get("train_seconds") or 0 for stage in card["recipe"]["stages"]) / 3600,
                "recipe_settings": results.get("recipe_settings_test", {}).get("models", {}).get(name, {}),
                "real": real_rows(real, name),
                "restoration": restoration["restorers"].get(name, {}).get("summary", {}),
                "detection": detection["models"].get(name),
            }
        )
    return {
        "cards": cards,
        "results": results,
        "models": out,
        "headline": HEADLINE,
        "situations": results.get("table3_qf75", {}),
        "source": CARDS.relative_to(ROOT).as_posix(),
        "figures_from": cards["figures_from"],
        "real": real,
        "real_auto": real_rows(real, "auto"),
        "real_fused": fused,
        "real_from": REAL.relative_to(ROOT).as_posix(),
        "routing": routing,
        "restoration": restoration,
        "detection": detection,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["f3"] = lambda value: "-" if value is None else f"{value:.3f}"
    env.filters["code"] = lambda value: f"`{value}`".replace("|", "\\|")
    env.filters["cell"] = lambda value: str(value).replace("|", "\\|")
    env.filters["interval"] = lambda row: (
        "-" if not row or row.get("mean") is None else f"{row['mean']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"
    )
    return env


def render_card(name: str, data: dict[str, Any] | None = None) -> str:
    """The Markdown of ``models/<name>.md``."""
    data = data or context()
    model = next((model for model in data["models"] if model["name"] == name), None)
    if model is None:
        raise CardError(f"no card for {name!r}")
    return _environment().get_template("model_card.md.j2").render(model=model, **data)


def render_index(data: dict[str, Any] | None = None) -> str:
    """The Markdown of ``models/index.md``: every shipped model side by side."""
    return _environment().get_template("models_index.md.j2").render(**(data or context()))


def readme_table(data: dict[str, Any] | None = None) -> str:
    """The README's model table (the block between ``<!-- models:start -->`` and ``<!-- models:end -->``)."""
    return _environment().get_template("readme_models.md.j2").render(**(data or context())).strip() + "\n"


def on_files(files, config):  # noqa: ANN001 (MkDocs hook signature)
    """Add the generated model pages to the site."""
    from mkdocs.structure.files import File

    data = context()
    files.append(File.generated(config, "models/index.md", content=render_index(data)))
    for model in data["models"]:
        files.append(File.generated(config, f"models/{model['name']}.md", content=render_card(model["name"], data)))
    return files
