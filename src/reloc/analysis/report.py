"""Evaluation records and run logs -> ``report.md`` with tables laid out like the paper's,
plus figures: loss curves (Fig. 4) and a qualitative grid (Fig. 5).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

#: Row order of the paper's Table III; other situations follow in the order met.
CANONICAL_ORDER = ("P{P}", "P{D}", "D|P{D}", "ReLoc{D}")
METRICS = ("f1", "iou", "auc")
METRIC_NAMES = {"f1": "F1", "iou": "IoU", "auc": "AUC"}


def _cell(text: str) -> str:
    """A Markdown table cell: ``|`` (as in ``D|P{D}``) escaped."""
    return text.replace("|", "\\|")


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def ordered_situations(records: list[dict]) -> list[str]:
    names = list(dict.fromkeys(r["situation"] for r in records))
    return [n for n in CANONICAL_ORDER if n in names] + [n for n in names if n not in CANONICAL_ORDER]


def distortions_of(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["distortion"] for r in records if r["distortion"] != "none"))


def metrics_table(records: list[dict], averaging: str = "per-image") -> str:
    """Markdown table: a row per situation, F1 / IoU / AUC per distortion (Table III/IV layout).

    A plain-image situation (``P{P}``) has no distortion; its numbers fill every column
    group, as the paper's upper-bound row.
    """
    distortions = distortions_of(records) or ["none"]
    by_key = {(r["situation"], r["distortion"]): r for r in records}
    header = (
        "| situation | " + " | ".join(f"{d} {METRIC_NAMES[m]}" for d in distortions for m in METRICS) + " | images |"
    )
    lines = [header, "|" + " --- |" * (2 + 3 * len(distortions))]
    for name in ordered_situations(records):
        cells, images = [], ""
        for distortion in distortions:
            record = by_key.get((name, distortion)) or by_key.get((name, "none"))
            values = record["metrics"][averaging] if record else {}
            cells += [_fmt(values.get(m)) for m in METRICS]
            images = str(record["images"]) if record else images
        lines.append(f"| {_cell(name)} | " + " | ".join(cells) + f" | {images} |")
    return "\n".join(lines)


def counts_note(records: list[dict]) -> str:
    single = sorted({(r["situation"], r["single_class"], r["images"]) for r in records if r.get("single_class")})
    if not single:
        return "Every test mask holds both classes, so every image counts in the per-image AUC."
    return "; ".join(
        f"{name}: {count} of {images} images have a one-class mask and are left out of the per-image AUC"
        for name, count, images in single
    )


def read_metrics_csv(run: Path) -> list[dict[str, str]]:
    from reloc.runs import METRICS

    path = Path(run) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no {METRICS}")
    with path.open() as handle:
        return list(csv.DictReader(handle))


def loss_curves_figure(runs: list[Path], out: Path) -> Path:
    """Fig. 4: training restoration and localization losses per epoch of each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        rows = read_metrics_csv(run)
        for axis, key in zip(axes, ("train_restoration", "train_localization")):
            points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
            if points:
                axis.plot(*zip(*points), marker="o", label=Path(run).name)
    for axis, title in zip(axes, ("restoration loss L_R", "localization loss L_L")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def _maps_folder(record: dict, eval_dirs: list[Path]) -> Path | None:
    from reloc.engine.evaluate import record_filename

    stem = record_filename(record["situation"], record["distortion"])[: -len(".json")]
    return next((d / "maps" / stem for d in eval_dirs if (d / "maps" / stem).is_dir()), None)


def qualitative_figure(records: list[dict], eval_dirs: list[Path], out: Path, rows: int = 4) -> Path | None:
    """Fig. 5: distorted image, ground truth and each situation's map for the first images.

    Returns ``None`` when no maps were saved (``reloc eval --save-maps 0``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reloc.data.catalog import load_dataset
    from reloc.data.datasets import WholeImages

    distortion = (distortions_of(records) or ["none"])[0]
    columns = []
    for name in ordered_situations(records):
        record = next((r for r in records if r["situation"] == name and r["distortion"] in (distortion, "none")), None)
        folder = _maps_folder(record, eval_dirs) if record else None
        if folder is not None:
            columns.append((name, folder))
    if not columns or not records[0].get("dataset"):
        return None
    names = sorted(p.stem for p in columns[0][1].glob("*.png"))[:rows]
    refs = {ref.name: ref for ref in load_dataset(records[0]["dataset"])}
    evaluated = [refs[r["name"]] for r in records[0]["per_image"]]  # the distortion of image i depends on i
    images = WholeImages(evaluated, None if distortion == "none" else distortion, seed=records[0]["protocol"]["seed"])
    position = {ref.name: i for i, ref in enumerate(evaluated)}
    width = 2 + len(columns)
    figure, axes = plt.subplots(len(names), width, figsize=(2.2 * width, 2.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        item = images[position[name]]
        shown = item.get("distorted", item["plain"]).permute(1, 2, 0).numpy()
        panels = [(shown, f"{name}\n{distortion}"), (item["mask"][0].numpy(), "ground truth")]
        panels += [(read_map(folder / f"{name}.png"), label) for label, folder in columns]
        for column, (image, title) in enumerate(panels):
            axis = axes[row][column]
            axis.imshow(image, cmap=None if image.ndim == 3 else "inferno", vmin=0, vmax=1)
            axis.set_axis_off()
            if row == 0 or column == 0:
                axis.set_title(title, fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def read_map(path: Path) -> np.ndarray:
    """A probability map saved as an 8-bit PNG, back to floats in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def situations_of(records: list[dict]):
    """The evaluated situations at the first distortion (plain-image ones included)."""
    from reloc.engine.evaluate import Situation

    distortion = (distortions_of(records) or ["none"])[0]
    chosen = []
    for name in ordered_situations(records):
        record = next((r for r in records if r["situation"] == name and r["distortion"] in (distortion, "none")), None)
        if record is not None:
            chosen.append(Situation(name, record["localizer"], record["restorer"], record["distortion"] != "none"))
    return chosen, distortion


def feature_section(records: list[dict], out: Path, pixels: int) -> list[str]:
    """Fig. 2 (t-SNE of encoder features of tampered vs original pixels, with EMD) as report lines."""
    from reloc.analysis.features import feature_figure
    from reloc.data.catalog import load_dataset
    from reloc.devices import pick_device

    situations, distortion = situations_of(records)
    refs = {ref.name: ref for ref in load_dataset(records[0]["dataset"])}
    evaluated = [refs[r["name"]] for r in records[0]["per_image"]]
    path = out / "figures" / "features.png"
    distances = feature_figure(
        situations, evaluated, distortion, path, pick_device("auto"), pixels, records[0]["protocol"]["seed"]
    )
    rows = [f"| {_cell(name)} | {value:.2f} |" for name, value in distances.items()]
    return [
        "## Feature analysis (Fig. 2)",
        "",
        f"Encoder features of {pixels} tampered and {pixels} original test pixels per situation, projected "
        f"with t-SNE; the earth mover's distance (EMD) between the two projected sets (larger = better separated).",
        "",
        f"![feature analysis]({path.relative_to(out)})",
        "",
        "| situation | EMD |",
        "| --- | ---: |",
        *rows,
        "",
    ]


def write_report(
    records: list[dict],
    out: Path,
    eval_dirs: list[Path],
    runs: list[Path],
    title: str = "reloc report",
    feature_pixels: int = 0,
) -> Path:
    """Write ``out/report.md`` (tables) and ``out/figures/*.png``; returns the report's path.

    ``feature_pixels`` > 0 adds the feature analysis (Fig. 2) with that many pixels per class.
    """
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    if records:
        protocol = records[0]["protocol"]
        lines += [
            f"Test images: {records[0]['images']} from `{records[0].get('dataset', '?')}`; sliding windows "
            f"{protocol['window']} px, stride {protocol['stride']}; F1 and IoU at threshold {protocol['threshold']}.",
            "",
            "## Per-image means (the paper's protocol)",
            "",
            metrics_table(records, "per-image"),
            "",
            "## Pooled over all pixels",
            "",
            metrics_table(records, "pooled"),
            "",
            counts_note(records),
            "",
        ]
    if runs:
        figure = loss_curves_figure(runs, out / "figures" / "loss-curves.png")
        lines += ["## Training losses (Fig. 4)", "", f"![loss curves]({figure.relative_to(out)})", ""]
    grid = qualitative_figure(records, eval_dirs, out / "figures" / "qualitative.png") if records else None
    if grid is not None:
        lines += ["## Qualitative results (Fig. 5)", "", f"![qualitative results]({grid.relative_to(out)})", ""]
    if records and feature_pixels > 0:
        lines += feature_section(records, out, feature_pixels)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
