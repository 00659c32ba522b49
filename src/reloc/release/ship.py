"""The recipe's ``ship`` part: the shipped models' weights and cards written into the package."""

from __future__ import annotations

from pathlib import Path

from reloc.io_utils import write_json_atomic
from reloc.release.provenance import read_results
from reloc.release.recipe import ROOT, data_of, data_parts, shipped_parts, stages_of

PACKAGE = ROOT / "src" / "reloc" / "pretrained"
SUMMARIES = {
    "plain": "DFCN x0.5 with the SRM high-pass front end, trained on uncompressed images (M^P), "
    "128-px crops, then 256 and 384, then 320 and 256 of photos never enlarged (1100, then 4000 samples)",
    "robust": "plain fine-tuned on JPEG crops of quality 50-100 (M^{D|P}, mixed quality), 128-px crops, "
    "then 256 and 384, then 384 and 320 (photos never enlarged) on a mix of JPEG, plain, resized and "
    "blurred crops, then 256 on 4000 samples of photos never enlarged",
    "reloc": "small SCUNet restorer + DFCN x0.5 trained by ReLoc's Algorithm 1 on JPEG 50-100, localizer from plain",
}


def ship(recipe: dict, work: Path, results: dict, package: Path) -> None:
    """Write the best weights of each shipped model's last part into the package (the
    localizer with its chosen window recorded and its chosen threshold folded into its
    logits) and the cards (figures reset). A model whose last part has no trained run in
    ``work`` keeps its shipped files and card (a run of only some parts)."""
    import torch

    from reloc import runs
    from reloc.models.calibration import calibrate
    from reloc.models.weights import load_network, save_network

    cards_file = package / "cards.json"
    shipped_cards = read_results(cards_file, {"models": {}})["models"]
    cards, kept = {}, []
    for name, last in shipped_parts(recipe).items():
        best = {role: runs.weights_path(work / last, role) for role in ("localizer", "restorer")}
        roles = [role for role, path in best.items() if path.is_file()]
        target = package / name
        if "localizer" not in roles:
            if name in shipped_cards and (target / "localizer.safetensors").is_file():
                cards[name] = shipped_cards[name]
                kept.append(name)
                continue
            raise SystemExit(f"error: {best['localizer']} is missing; train {last} first")
        inference = results["parts"].get("inference", {}).get(name)
        if inference is None or inference.get("part", last) != last:
            raise SystemExit(f"error: no window and threshold chosen for {name} ({last}); run the inference part first")
        target.mkdir(parents=True, exist_ok=True)
        for role in ("localizer", "restorer"):
            (target / f"{role}.safetensors").unlink(missing_ok=True)
        window, threshold = inference["chosen"], inference["threshold"]
        large = recipe["inference"].get("large_images") or {}  # the tiling chosen on camera-size photos
        window = list(large.get("window") or window)
        whole_image_pixels = int(large.get("whole_image_pixels") or 0)
        restore_window = tuple(inference["restore_window"]) if inference.get("restore_window") else None
        for role in roles:
            if role == "localizer":  # the window recorded, the threshold folded into the logits
                localizer = calibrate(load_network(best[role]), threshold)
                calibration = {"threshold": threshold, "chosen_on": f"{inference['images']} validation images"}
                save_network(
                    localizer,
                    target / f"{role}.safetensors",
                    window=tuple(window),
                    calibration=calibration,
                    whole_image_pixels=whole_image_pixels,
                )
            else:  # the same tensors, with the restorer's window recorded
                save_network(load_network(best[role]), target / f"{role}.safetensors", window=restore_window)
        stages = []
        for part_name in stages_of(recipe, last):
            part = results["parts"].get(part_name, {})
            stages.append(
                {
                    "part": part_name,
                    "data": data_of(recipe, part_name),
                    "config": recipe["models"][part_name]["config"],
                    "set": recipe["models"][part_name]["overrides"],
                    "started_from": part.get("started_from"),
                    "restorer_started_from": part.get("restorer_started_from"),
                    "epochs": part.get("epochs"),
                    "seed": part.get("seed"),
                    "train_seconds": part.get("train_seconds"),
                    "commit": part.get("commit"),
                }
            )
        cards[name] = {
            "summary": recipe.get("summaries", {}).get(name, SUMMARIES[name]),
            "roles": roles,
            "trained_on": results["parts"].get(last, {}).get("config", {}).get("data", {}).get("distortion"),
            "window": window,
            "whole_image_pixels": whole_image_pixels,
            "threshold": threshold,
            "restore_window": inference.get("restore_window"),
            "recipe": {"preset": recipe["preset"], "stages": stages},
            "figures": {},
        }
    document = {
        "recipe": f"reloc release run --preset {recipe['preset']}",
        "preset": recipe["preset"],
        "commit": results.get("commit"),
        "torch": torch.__version__,
        "data": results["parts"].get("data", {}),
        "extra_data": {part: results["parts"].get(part, {}) for part in data_parts(recipe) if part != "data"},
        "models": cards,
    }
    write_json_atomic(cards_file, document)
    print(
        f"shipped {', '.join(n for n in cards if n not in kept)} -> {package}"
        + (f" (kept: {', '.join(kept)})" if kept else "")
    )
