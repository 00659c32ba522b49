"""The recipe's ``inference`` part: per shipped model, the sliding window, the restorer window
and the decision threshold it runs with, chosen on validation images."""

from __future__ import annotations

import time
from pathlib import Path

from reloc.release.recipe import data_of, shipped_parts


def pick_candidate(rows: list[dict], tolerance: float = 0.0) -> dict:
    """The first of ``rows`` (in the recipe's listing order, cheapest first) whose per-image
    ``auc`` is within ``tolerance`` of the best: smaller differences are ties."""
    floor = round(max(row["auc"] for row in rows) - tolerance, 6)  # the AUCs are recorded to 4 decimals
    return next(row for row in rows if row["auc"] >= floor)


def choose_inference(recipe: dict, work: Path) -> dict:
    """Per shipped model whose last part has a trained run (:func:`shipped_parts`): the
    sliding window, the restorer window (models with a restorer) and the decision threshold
    it runs with, chosen on validation images (every candidate's per-image AUC and F1 at
    every threshold; on the GPU where there is one, in fp32); models with no such run are
    left out."""
    import torch

    from reloc import runs
    from reloc.data.datasets import WholeImages
    from reloc.engine.evaluate import evaluation_samples
    from reloc.engine.inference import pipeline_from_weights
    from reloc.metrics import LocalizationMetrics

    settings = recipe["inference"]
    chosen = {}
    for name, part in shipped_parts(recipe).items():
        run = work / part
        if not runs.weights_path(run, "localizer").is_file():
            print(f"inference {name}: {part} has no trained run in {work}, left as it is")
            continue
        started = time.perf_counter()
        refs = evaluation_samples(work / data_of(recipe, part), "val", [run])[: settings["images"]]
        restorer = runs.weights_path(run, "restorer")
        pipeline = pipeline_from_weights(
            runs.weights_path(run, "localizer"),
            restorer if restorer.is_file() else None,
            precision="fp32",
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        restore_windows = settings["restore_windows"] if pipeline.restorer is not None else [None]
        distortion = settings["distortion"][name]
        images = WholeImages(refs, None if distortion == "none" else distortion, seed=settings["seed"])
        view = "plain" if distortion == "none" else "distorted"
        rows = []
        for restore_window in restore_windows:
            pipeline.restore_window = tuple(restore_window) if restore_window else None
            for side, stride in settings["candidates"]:
                tick = time.perf_counter()
                metrics = {t: LocalizationMetrics(threshold=t, pooled_auc=False) for t in settings["thresholds"]}
                for index in range(len(images)):
                    sample = images[index]
                    with torch.inference_mode():
                        probabilities = pipeline.predict(sample[view], window=side, stride=stride).numpy()
                    mask = sample["mask"][0].numpy() > 0.5
                    for metric in metrics.values():
                        metric.update(probabilities, mask, sample["name"])
                summaries = {t: metric.summary()["per-image"] for t, metric in metrics.items()}
                rows.append(
                    {
                        "window": [side, stride],
                        "restore_window": restore_window,
                        "auc": round(next(iter(summaries.values()))["auc"], 4),
                        "f1": {str(t): round(values["f1"], 4) for t, values in summaries.items()},
                        "seconds": round(time.perf_counter() - tick, 1),
                    }
                )
                best_f1 = max(rows[-1]["f1"].items(), key=lambda item: item[1])
                restoring = "" if pipeline.restorer is None else f", restorer {restore_window or 'window by window'}"
                print(
                    f"inference {name}: {side}/{stride}{restoring} at {distortion}: AUC {rows[-1]['auc']:.3f}, "
                    f"F1 {rows[-1]['f1'].get('0.5', float('nan')):.3f} at 0.5, best {best_f1[1]:.3f} at {best_f1[0]}"
                )
        best = pick_candidate(rows, settings.get("auc_tolerance", 0.0))
        threshold, f1 = max(best["f1"].items(), key=lambda item: item[1])
        chosen[name] = {
            "part": part,
            "chosen": best["window"],
            "restore_window": best["restore_window"],
            "threshold": float(threshold),
            "validation_f1": f1,
            "distortion": distortion,
            "images": len(refs),
            "candidates": rows,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
    return chosen
