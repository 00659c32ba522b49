"""Image-level detection figures of evaluation records (``record["image_level"]``, from
:func:`reloc.engine.detection.image_level`) as text: the ``reloc eval`` line and the
``reloc report`` section."""

from __future__ import annotations

import math


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def undefined_text(figures: dict) -> str:
    """``"undefined: image AUC, ... (no authentic image)"`` or ``""``."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in (figures.get("undefined") or {}).items():
        by_reason.setdefault(reason, []).append(name.replace("_", " "))
    return "; ".join(f"undefined ({reason}): {', '.join(names)}" for reason, names in by_reason.items())


def image_level_line(record: dict) -> str:
    """One line for ``reloc eval``: image AUC, balanced accuracy, flagged shares, and what is undefined."""
    figures = record.get("image_level")
    if not figures:
        return ""
    authentic = record.get("authentic") or {}
    line = (
        f"  image level ({figures['tampered_images']} tampered, {figures['authentic_images']} authentic): "
        f"AUC {_fmt(figures['auc'])}, balanced accuracy {_fmt(figures['balanced_accuracy'])}, "
        f"authentic flagged {_fmt(figures['flagged_authentic'], True)}, "
        f"tampered recall {_fmt(figures['tampered_recall'], True)} at score > {figures['threshold']:.3g}"
        f"; pixel false alarms on authentic images {_fmt(authentic.get('pixel_false_alarm_rate'), True)}"
    )
    undefined = undefined_text(figures)
    return line + (f"; {undefined}" if undefined else "")


def image_level_section(records: list[dict]) -> list[str]:
    """Report lines: a table row per record with image-level figures (none without records that have them)."""
    chosen = [r for r in records if r.get("image_level")]
    if not chosen:
        return []
    if not any(r["image_level"]["authentic_images"] for r in chosen):
        return [
            "## Image-level detection",
            "",
            "No authentic image among the test images: image AUC, balanced accuracy, TPR at a false-positive rate "
            "and false alarms are undefined.",
            "",
        ]
    lines = [
        "## Image-level detection",
        "",
        "Image score: " + chosen[0]["image_level"].get("aggregation", "?") + "; flagged = score above the threshold "
        "(the model's calibrated one for pretrained weights, else 0.5). TPR at 1% / 5% FPR uses the threshold "
        "chosen on these same images (an oracle figure). Pixel false alarms: share of the authentic images' "
        "pixels above the pixel threshold.",
        "",
        "| situation | distortion | tampered | authentic | image AUC | balanced acc. | TPR @1% FPR | TPR @5% FPR "
        "| threshold | authentic flagged | tampered recall | pixel false alarms |",
        "|" + " --- |" * 12,
    ]
    notes = []
    for record in chosen:
        figures, authentic = record["image_level"], record.get("authentic") or {}
        tpr = figures.get("tpr_at_fpr") or {}
        name = record["situation"].replace("|", "\\|")  # a Markdown cell (D|P{D})
        lines.append(
            f"| {name} | {record['distortion']} | {figures['tampered_images']} "
            f"| {figures['authentic_images']} | {_fmt(figures['auc'])} | {_fmt(figures['balanced_accuracy'])} "
            f"| {_fmt(tpr.get('0.01'))} | {_fmt(tpr.get('0.05'))} | {figures['threshold']:.3g} "
            f"| {_fmt(figures['flagged_authentic'], True)} | {_fmt(figures['tampered_recall'], True)} "
            f"| {_fmt(authentic.get('pixel_false_alarm_rate'), True)} |"
        )
        undefined = undefined_text(figures)
        if undefined:
            notes.append(f"{record['situation']} @ {record['distortion']}: {undefined}.")
    return lines + [""] + ([" ".join(notes), ""] if notes else [])
