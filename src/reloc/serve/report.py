"""The case report of one image: a single self-contained HTML file for the case folder.

Everything is inside the file: the image, heat map, overlay, mask (at the report's
threshold), restored image and classical evidence maps as base64 PNGs (with one line each
on what the map shows and how reliable it measured), the file facts (SHA-256 first), the model
with its card figures, reloc's version, the time and the threshold, and the JSON of
``reloc localize`` (shown, and embedded as ``<script type="application/json"
id="localize-json">`` for tools). Every text that came with the upload (its name, EXIF
values) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from typing import Any

import numpy as np
from PIL import Image

from reloc import __version__
from reloc.engine.detection import evidence_text
from reloc.serve.jobs import Job

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2430;margin:0;background:#f4f6f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #d5dbe3;padding-bottom:4px}
.sub{color:#5a6472;margin:0 0 16px}
table{border-collapse:collapse;background:#fff;width:100%}td,th{border:1px solid #dde2e8;padding:5px 8px;text-align:left;
vertical-align:top}th{background:#eef1f5;width:28%;font-weight:600}code{font:12px ui-monospace,Consolas,monospace;word-break:break-all}
.warn{background:#fff4d6;font-weight:600}.views{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #dde2e8;padding:8px}figure img{width:100%;display:block;image-rendering:auto}
figcaption{font-weight:600;margin-top:6px}pre{background:#fff;border:1px solid #dde2e8;padding:10px;overflow:auto;font-size:12px}
.big{font-size:20px;font-weight:700}
"""


def render_report(job: Job, threshold: float) -> str:
    """The HTML case report of a done ``job`` at ``threshold``."""
    probabilities = job.probabilities()
    record = job.record(threshold, probabilities)
    facts = job.facts
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = [
        ("File", html.escape(job.filename)),
        ("SHA-256", f"<code>{facts['sha256']}</code>"),
        ("Size", f"{facts['bytes']:,} bytes; {facts['width']} x {facts['height']} pixels as stored ({facts['mode']})"),
        ("Format", html.escape(str(facts["format"]))),
        ("JPEG quality", _jpeg_text(facts)),
    ]
    if facts.get("frames", 1) > 1:
        rows.append(
            ("Frames", f'<span class="warn">{facts["frames"]} frames or pages: only the first was analysed</span>')
        )
    exif = facts.get("exif") or {}
    software = exif.get("Software")
    rows.append(
        ("EXIF Software", f'<span class="warn">{html.escape(software)}</span>' if software else "none recorded")
    )
    rows += [(f"EXIF {tag}", html.escape(value)) for tag, value in exif.items() if tag != "Software"]
    model = job.model
    model_rows = [
        ("Model", html.escape(model.name)),
        ("Why", html.escape(job.model_reason)),
        ("Networks", html.escape(", ".join(f"{role}: {label}" for role, label in model.networks.items()))),
        ("Weights", html.escape(model.source)),
    ]
    if model.card:
        model_rows.append(("Card", html.escape(str(model.card.get("summary", "")))))
        figures = model.card.get("figures") or {}
        for condition, values in figures.items():
            text = ", ".join(
                f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in values.items()
            )
            model_rows.append((f"Card figures, {html.escape(condition)}", html.escape(text)))
    result_rows = [
        ("Threshold", f"{threshold:g}"),
        (
            "Tampered fraction",
            f'<span class="big">{record["tampered_fraction"]:.2%}</span> of the pixels above the threshold',
        ),
        ("Map", html.escape(record["map"].get("shows", "the learned map"))),
        ("Image-level evidence", html.escape(evidence_text(record["detection"]))),
        ("Max / mean probability", f"{record['max_probability']:.3f} / {record['mean_probability']:.3f}"),
        ("Sliding windows", f"{job.total} windows of {job.window} px, stride {job.stride}; {job.seconds} s"),
        ("reloc", f"version {__version__}"),
        ("Report generated", generated + " (UTC)"),
    ]
    views = [
        ("Image (as analysed, upright)", _file_uri(job, "image.png")),
        ("Heat map (tamper probability)", _file_uri(job, "heatmap.png")),
        ("Overlay (red where tampered)", _file_uri(job, "overlay.png")),
        (f"Mask at threshold {threshold:g}", _png_uri(probabilities > threshold)),
    ]
    if (job.folder / "learned.png").is_file():
        views.append(("Learned map alone (heat map)", _file_uri(job, "learned.png")))
    if model.has_restorer:
        views.append(("Restored image (input of the localizer)", _file_uri(job, "restored.png")))
    views += [
        (f"Evidence: {method}", _file_uri(job, layer["map"])) for method, layer in job.layers.items() if layer["map"]
    ]
    evidence_rows = [
        (html.escape(method), f"{html.escape(layer['note'])}<br>Measured: {html.escape(layer['reliability'])}")
        for method, layer in job.layers.items()
    ]
    evidence_html = f"<h2>Classical evidence</h2>{_table(evidence_rows)}" if evidence_rows else ""
    data = json.dumps(record, indent=2)
    embedded = data.replace("</", "<\\/")  # no "</script>" inside the script element
    figures_html = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="{uri}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        for caption, uri in views
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>reloc case report: {html.escape(job.filename)}</title>
<meta name="generator" content="reloc {__version__}"><style>{_STYLE}</style></head>
<body><main>
<h1>Case report: {html.escape(job.filename)}</h1>
<p class="sub">SHA-256 <code>{facts["sha256"]}</code> &middot; reloc {__version__} &middot; {generated} UTC</p>
<h2>Result</h2>{_table(result_rows)}
<h2>File</h2>{_table(rows)}
<h2>Model</h2>{_table(model_rows)}
{evidence_html}
<h2>Views</h2><div class="views">{figures_html}</div>
<h2>reloc localize JSON</h2><pre>{html.escape(data)}</pre>
<script type="application/json" id="localize-json">{embedded}</script>
</main></body></html>
"""


def _jpeg_text(facts: dict[str, Any]) -> str:
    if facts.get("jpeg_quality") is None:
        return "not a JPEG (no quantisation tables)" if facts.get("format") != "JPEG" else "JPEG, quality not estimated"
    standard = facts.get("jpeg_standard_tables")
    tables = (
        "standard libjpeg tables"
        if standard
        else '<span class="warn">non-standard tables</span> (not libjpeg at that quality: another encoder or an edited file)'
    )
    return f"about {facts['jpeg_quality']} (from the quantisation tables; {tables})"


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows) + "</table>"


def _file_uri(job: Job, name: str) -> str:
    return "data:image/png;base64," + base64.b64encode((job.folder / name).read_bytes()).decode("ascii")


def _png_uri(mask: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(mask)).decode("ascii")


def png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit PNG of a bool mask ``(H, W)`` (as {0, 255}) or a uint8 image ``(H, W[, 3])``."""
    pixels = array.astype(np.uint8) * np.uint8(255) if array.dtype == np.bool_ else array
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()
