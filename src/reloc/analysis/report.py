"""Evaluation records and run logs -> ``report.md`` with tables laid out like the paper's,
plus figures: loss curves (Fig. 4), a qualitative grid (Fig. 5) and, for records of a
robustness grid (``reloc eval --grid``), severity curves ``figures/robustness-<grid>.png``
with their table. Every table names its metric protocol (:mod:`reloc.metrics`).
"""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

import numpy as np

from reloc.analysis.image_level import image_level_section

#: Row order of the paper's Table III; other situations follow in the order met.
CANONICAL_ORDER = ("P{P}", "P{D}", "D|P{D}", "ReLoc{D}")
METRICS = ("f1", "iou", "auc")
METRIC_NAMES = {"f1": "F1", "iou": "IoU", "auc": "AUC"}


def _text(text: object) -> str:
    """Text from a record or an option as Markdown inline text: HTML escaped, line breaks and
    runs of spaces as one space."""
    return html.escape(" ".join(str(text).split()), quote=False)


def _cell(text: object) -> str:
    """:func:`_text` in a Markdown table cell: ``|`` (as in ``D|P{D}``) escaped too."""
    return _text(text).replace("|", "\\|")


def _code(text: object) -> str:
    """Text as a Markdown code span (shown as written): one line, no backtick, ``|`` escaped."""
    return "`" + " ".join(str(text).replace("`", "'").split()).replace("|", "\\|") + "`"


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
        "| situation | "
        + " | ".join(f"{_cell(d)} {METRIC_NAMES[m]}" for d in distortions for m in METRICS)
        + " | images |"
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
        f"{_text(name)}: {count} of {images} images have a one-class mask and are left out of the per-image AUC"
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
    from reloc.engine.evaluate import protocol_label, record_filename

    stem = record_filename(record["situation"], record["distortion"], protocol_label(record.get("protocol", {})))[
        : -len(".json")
    ]
    return next((d / "maps" / stem for d in eval_dirs if (d / "maps" / stem).is_dir()), None)


def qualitative_figure(records: list[dict], eval_dirs: list[Path], out: Path, rows: int = 4) -> Path | None:
    """Fig. 5: distorted image, ground truth and each situation's map for the first images.

    Returns ``None`` when no maps were saved (``reloc eval --save-maps 0``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    evaluated = evaluated_refs(records[0])
    protocol = records[0]["protocol"]
    images = WholeImages(
        evaluated,
        None if distortion == "none" else distortion,
        seed=protocol["seed"],
        mask_resize=protocol.get("mask_resize"),
    )
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


def evaluated_refs(record: dict):
    """The samples a record was computed over, skipped ones included, in evaluation order
    (the distortion of image i is seeded by i, so the order matters)."""
    from reloc.data.catalog import load_dataset

    names = {r["name"] for r in record["per_image"]} | {r["name"] for r in record.get("skipped_samples", [])}
    return [ref for ref in load_dataset(record["dataset"]) if ref.name in names]


def situations_of(records: list[dict]):
    """The evaluated network situations at the first distortion (plain-image ones included;
    classical methods and fusions, which have no features of their own, left out)."""
    from reloc.engine.evaluate import Situation

    distortion = (distortions_of(records) or ["none"])[0]
    chosen = []
    for name in ordered_situations(records):
        record = next((r for r in records if r["situation"] == name and r["distortion"] in (distortion, "none")), None)
        if record is not None and record.get("localizer") and not record.get("evidence"):
            chosen.append(Situation(name, record["localizer"], record["restorer"], record["distortion"] != "none"))
    return chosen, distortion


def feature_section(records: list[dict], out: Path, pixels: int) -> list[str]:
    """Fig. 2 (t-SNE of encoder features of tampered vs original pixels, with EMD) as report lines."""
    from reloc.analysis.features import feature_figure
    from reloc.devices import pick_device

    situations, distortion = situations_of(records)
    evaluated = evaluated_refs(records[0])
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


def protocol_of(record: dict) -> tuple[str, float, int]:
    """``(metric, threshold, exclude_border)`` of a record (older records: the paper's)."""
    protocol = record.get("protocol", {})
    return protocol.get("metric", "paper"), protocol.get("threshold", 0.5), protocol.get("exclude_border", 0)


def grid_names(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["grid"]["name"] for r in records if r.get("grid")))


def _grid_columns(chosen: list[dict], grid: str) -> list[tuple[str, float]]:
    """The (family, strength) points of a grid's records, in the grid's order."""
    from reloc.engine.grids import GRIDS

    points = list(dict.fromkeys((r["grid"]["family"], r["grid"]["strength"]) for r in chosen))
    families = GRIDS[grid].families() if grid in GRIDS else []
    families += [family for family, _ in points if family not in families]
    return sorted(points, key=lambda point: (families.index(point[0]), point[1]))


def robustness_table(records: list[dict], grid: str, averaging: str = "per-image") -> str:
    """Markdown table: a row per grid point (family, strength, spec), F1 and AUC per situation."""
    chosen = [r for r in records if r.get("grid", {}).get("name") == grid]
    by_key = {(r["situation"], r["grid"]["family"], r["grid"]["strength"]): r for r in chosen}
    names = ordered_situations(chosen)
    header = "| family | strength | distortion | " + " | ".join(f"{_cell(n)} F1 | {_cell(n)} AUC" for n in names) + " |"
    lines = [header, "|" + " --- |" * (3 + 2 * len(names))]
    for family, strength in _grid_columns(chosen, grid):
        cells, spec = [], ""
        for name in names:
            record = by_key.get((name, family, strength))
            values = record["metrics"][averaging] if record else {}
            spec = record["distortion"] if record else spec
            cells += [_fmt(values.get("f1")), _fmt(values.get("auc"))]
        lines.append(f"| {_cell(family)} | {strength:g} | {_code(spec)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robustness_figure(records: list[dict], grid: str, out: Path, averaging: str = "per-image") -> Path:
    """Severity curves of one grid: F1 (top) and AUC (bottom) against strength, a column per
    family, a line per situation; plain-image situations (``P{P}``) as dashed levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reloc.engine.grids import GRIDS

    chosen = [r for r in records if r.get("grid", {}).get("name") == grid]
    families = list(dict.fromkeys(r["grid"]["family"] for r in chosen))
    axis_names = GRIDS[grid].axis if grid in GRIDS else {}
    plain = [r for r in records if r["distortion"] == "none" and not r.get("grid")]
    figure, axes = plt.subplots(2, len(families), figsize=(3.6 * len(families), 5.6), squeeze=False)
    for column, family in enumerate(families):
        for row, metric in enumerate(("f1", "auc")):
            axis = axes[row][column]
            for name in ordered_situations(chosen):
                points = sorted(
                    (r["grid"]["strength"], r["metrics"][averaging][metric])
                    for r in chosen
                    if r["situation"] == name
                    and r["grid"]["family"] == family
                    and r["metrics"][averaging][metric] is not None
                )
                if points:
                    axis.plot(*zip(*points), marker="o", label=name)
            for record in plain:
                value = record["metrics"][averaging][metric]
                if value is not None:
                    axis.axhline(
                        value, linestyle="--", color="gray", linewidth=1, label=f"{record['situation']} (plain)"
                    )
            axis.set_xlabel(axis_names.get(family, family))
            axis.set_ylabel(METRIC_NAMES[metric])
            axis.set_title(f"{family}: {METRIC_NAMES[metric]}", fontsize=9)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"robustness grid '{grid}' ({averaging} means)", fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def robustness_section(records: list[dict], out: Path) -> list[str]:
    """Report lines: for each grid, its severity curves and table."""
    from reloc.engine.grids import GRIDS

    lines = []
    for grid in grid_names(records):
        figure = robustness_figure(records, grid, out / "figures" / f"robustness-{grid}.png")
        description = GRIDS[grid].description if grid in GRIDS else ""
        lines += [
            f"### Robustness grid `{grid}`",
            "",
            description + (". " if description else "") + "Per-image means.",
            "",
            f"![severity curves of {grid}]({figure.relative_to(out)})",
            "",
            robustness_table(records, grid),
            "",
        ]
    return lines


def windows_sentence(records: list[dict]) -> str:
    """The sliding windows the records ran in: one for all (``sliding windows 128 px, stride
    64``) or, where situations differ (each model in its recorded window), one per situation;
    classical methods alone run in no window."""
    windows = {r["situation"]: (r["protocol"]["window"], r["protocol"]["stride"]) for r in records}
    windows = {name: tiles for name, tiles in windows.items() if tiles[0] is not None}
    if not windows:
        return "classical methods only, on whole images"
    if len(set(windows.values())) == 1:
        window, stride = next(iter(windows.values()))
        return f"sliding windows {window} px, stride {stride}"
    return "sliding windows (side / stride, px): " + ", ".join(
        f"{_text(name)} {window} / {stride}" for name, (window, stride) in windows.items()
    )


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
    from reloc.metrics import describe_protocol

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {_text(title)}", ""]
    if records:
        skipped = max(r.get("skipped", 0) for r in records)
        lines += [
            f"Test images: {records[0]['images']} from {_code(records[0].get('dataset', '?'))}"
            + (f" ({skipped} unreadable or mis-sized samples skipped)" if skipped else "")
            + f"; {windows_sentence(records)}.",
            "",
        ]
    protocols = list(dict.fromkeys(protocol_of(r) for r in records))
    for metric, threshold, border in protocols:
        group = [r for r in records if protocol_of(r) == (metric, threshold, border)]
        tables = [r for r in group if not r.get("grid")]
        heading = f" ({metric}{f', border {border}' if border else ''})" if len(protocols) > 1 else ""
        lines += [f"Metric protocol {describe_protocol(metric, threshold, border)}.", ""]
        if tables:
            lines += [
                f"## Per-image means{heading}"
                + (" (the paper's protocol)" if metric == "paper" and not border else ""),
                "",
                metrics_table(tables, "per-image"),
                "",
                f"## Pooled over all pixels{heading}",
                "",
                metrics_table(tables, "pooled"),
                "",
                counts_note(tables),
                "",
            ]
        lines += image_level_section(tables)
        if grid_names(group):
            lines += [f"## Robustness (severity curves){heading}", ""] + robustness_section(group, out)
    if runs:
        figure = loss_curves_figure(runs, out / "figures" / "loss-curves.png")
        lines += ["## Training losses (Fig. 4)", "", f"![loss curves]({figure.relative_to(out)})", ""]
    plain_records = [r for r in records if not r.get("grid") and protocol_of(r) == protocols[0]] if records else []
    grid = (
        qualitative_figure(plain_records or records, eval_dirs, out / "figures" / "qualitative.png")
        if records
        else None
    )
    if grid is not None:
        lines += ["## Qualitative results (Fig. 5)", "", f"![qualitative results]({grid.relative_to(out)})", ""]
    if records and feature_pixels > 0:
        lines += feature_section(records, out, feature_pixels)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
