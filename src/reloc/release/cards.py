"""The card writer: the measured rows (:mod:`reloc.release.measure`) merged into
``benchmarks/results/release/pretrained.json`` and the figures of the package's ``cards.json``
(``--model auto`` reads them)."""

from __future__ import annotations

from pathlib import Path

from reloc.io_utils import write_json_atomic, write_text_atomic
from reloc.release.measure import (
    METRICS,
    MODELS,
    PER_PHOTO,
    RECIPE_PER_PHOTO,
    RECIPE_SPECS,
    SEED,
    SIZE,
    SPECS,
    evaluate_model,
    test_photo_names,
    weights_digest,
)
from reloc.release.provenance import git_commit, read_results
from reloc.release.recipe import ROOT

RESULTS = ROOT / "benchmarks" / "results" / "release" / "pretrained.json"
COMMAND = "reloc release cards"
#: Where the test sets and the measured parts go by default.
WORK = ROOT / "runs" / "pretrained-bench"


def aggregate(work: Path, command: str) -> dict:
    """Merge the part files into ``benchmarks/results/release/pretrained.json`` and the cards' figures."""
    import torch

    from reloc import pretrained

    digests = {name: weights_digest(name) for name in MODELS}
    previous = read_results(RESULTS, {})

    def collect(folder: str, specs: tuple[str, ...], earlier: dict[str, dict]) -> dict[str, dict]:
        """Each model's rows: its part files in ``work/folder``, else the row of the results
        file being replaced (``earlier``) where it was made with the same weights (a fresh
        machine re-measures only the models that changed)."""
        found: dict[str, dict] = {}
        for name in MODELS:
            paths = {spec: work / folder / f"{name}__{spec.replace(':', '-')}.json" for spec in specs}
            found[name] = {spec: read_results(path) for spec, path in paths.items() if path.is_file()}
            stale = [
                str(paths[spec]) for spec, row in found[name].items() if row.get("weights_sha256") != digests[name]
            ]
            if stale:
                raise SystemExit(
                    f"{len(stale)} part(s) of {name} were made with other weights than the shipped "
                    f"pretrained:{name} ({', '.join(stale[:3])}...): run `reloc release cards --model {name}`"
                )
            kept = {
                spec: row
                for spec, row in earlier.get(name, {}).items()
                if spec in specs and spec not in found[name] and row.get("weights_sha256") == digests[name]
            }
            if kept:
                print(f"{name}: {len(kept)} row(s) of {folder} kept from {RESULTS.name} (the same weights)")
            rows = {**kept, **found[name]}
            found[name] = {spec: rows[spec] for spec in specs if spec in rows}  # in the order of specs
        return found

    cards_path = Path(str(pretrained._root())) / "cards.json"
    cards = read_results(cards_path)
    models = collect("parts", SPECS, previous.get("models", {}))
    in_distribution = collect(
        "parts-recipe-settings", RECIPE_SPECS, previous.get("recipe_settings_test", {}).get("models", {})
    )
    table3 = {
        label: models.get(model, {}).get(spec)
        for label, model, spec in (
            ("P{P}", "plain", "none"),
            ("P{D}", "plain", "jpeg:75"),
            ("D|P{D}", "robust", "jpeg:75"),
            ("ReLoc{D}", "reloc", "jpeg:75"),
        )
    }
    winner = {}
    for spec in SPECS:
        if spec.startswith("jpeg:") and all(spec in models[n] for n in ("robust", "reloc")):
            winner[spec] = max(
                ("robust", "reloc"), key=lambda n: (models[n][spec]["auc"] or 0, models[n][spec]["f1"] or 0)
            )
    result = {
        "models": models,
        "table3_qf75": table3,
        "recipe_settings_test": {
            "models": in_distribution,
            "per_photo": RECIPE_PER_PHOTO,
            "note": "the same test photos edited with the release recipe's generator settings "
            "(the training distribution), for comparison with the default-settings rows",
        },
        "jpeg_winner": winner,
        "test_photos": test_photo_names(),
        "test_set": {
            "per_photo": PER_PHOTO,
            "size": SIZE,
            "seed": SEED,
            "generator": "SynthSettings defaults",
            "protocol": "each model's recorded sliding window (its weights' reloc.window: side, stride; "
            "per row under 'window'; a restorer in its own recorded window, 'restore_window'), "
            "threshold 0.5 of each shipped network (the recipe's validation-chosen threshold folded "
            "into its logits: 'thresholds'), per-image means",
        },
        "thresholds": {name: card.get("threshold") for name, card in cards["models"].items()},
        "training_seeds": 1,
        "intervals": "95% bootstrap over test images; one training seed per model, so no seed-level interval",
        "shipped_weights": cards.get("commit"),
        "weights_sha256": digests,
        "command": command,
        "commit": git_commit(),
        "torch": torch.__version__,
    }
    write_json_atomic(RESULTS, result)
    write_text_atomic(RESULTS.with_suffix(".md"), markdown(result))
    for name, rows in models.items():
        cards["models"][name]["figures"] = {spec: {m: row[m] for m in METRICS} for spec, row in rows.items()}
    cards["figures_from"] = "benchmarks/results/release/pretrained.json"
    write_json_atomic(cards_path, cards)
    print(f"wrote {RESULTS} and the figures of {cards_path}")
    return result


def markdown(result: dict) -> str:
    """The README / model-card tables: per model and distortion, F1 / IoU / AUC (per-image means)."""

    def cell(row: dict | None) -> str:
        if not row:
            return "–"
        return " / ".join("–" if row.get(m) is None else f"{row[m]:.3f}" for m in METRICS)

    lines = [
        "| distortion | " + " | ".join(f"`{n}` F1 / IoU / AUC" for n in MODELS) + " |",
        "| --- |" + " ---: |" * len(MODELS),
    ]
    for spec in SPECS:
        lines.append(f"| {spec} | " + " | ".join(cell(result["models"].get(n, {}).get(spec)) for n in MODELS) + " |")
    lines += [
        "",
        "| situation (QF 75) | F1 | IoU | AUC | 95% interval of F1 (images) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for label, row in result["table3_qf75"].items():
        if row:
            low_high = row["ci95"]["f1"]
            interval = f"{low_high[0]:.3f} - {low_high[1]:.3f}" if low_high else "–"
            lines.append(
                f"| {label.replace('|', chr(92) + '|')} | {row['f1']:.3f} | {row['iou']:.3f} | {row['auc']:.3f} "
                f"| {interval} |"
            )
    lines += [
        "",
        "Same test photos edited with the recipe's generator settings (the training distribution):",
        "",
        "| distortion | " + " | ".join(f"`{n}` F1 / IoU / AUC" for n in MODELS) + " |",
        "| --- |" + " ---: |" * len(MODELS),
    ]
    for spec in RECIPE_SPECS:
        rows = result["recipe_settings_test"]["models"]
        lines.append(f"| {spec} | " + " | ".join(cell(rows.get(n, {}).get(spec)) for n in MODELS) + " |")
    return "\n".join(lines) + "\n"


def run(
    models: list[str] | None = None, specs: list[str] | None = None, work: Path = WORK, only_aggregate: bool = False
) -> None:
    """Evaluate ``models`` (default all) at ``specs`` (default all), then, unless only some
    models were asked for, :func:`aggregate`; ``only_aggregate``: merge the parts only."""
    if not only_aggregate:
        for name in models or MODELS:
            evaluate_model(name, work, specs)
    if only_aggregate or not models:
        aggregate(work, COMMAND)
