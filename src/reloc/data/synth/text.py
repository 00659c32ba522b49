"""Text addition and replacement edits, with fonts available offline."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reloc.data.synth.edits import _bbox, _composite, _log_uniform, _photometric, _r, _uniform
from reloc.data.synth.settings import _Redraw

# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------

_WORDS = (
    "SALE",
    "OPEN",
    "CLOSED",
    "EXIT",
    "STOP",
    "HOTEL",
    "CAFE",
    "BANK",
    "POLICE",
    "TAXI",
    "PHARMACY",
    "PARKING",
    "MARKET",
    "STATION",
    "MUSEUM",
    "PRIVATE",
    "DANGER",
    "NO ENTRY",
    "Total",
    "Invoice",
    "Date",
    "Amount",
    "Paid",
    "Receipt",
    "Name",
    "Signature",
    "Approved",
    "Confidential",
    "Original",
    "Certified",
    "Page",
    "Ref",
    "Account",
    "Balance",
    "Due",
    "Welcome",
    "Hello",
    "Summer",
    "Winter",
    "Festival",
    "Concert",
    "Tickets",
    "Entrance",
    "Street",
    "Avenue",
    "Road",
    "North",
    "South",
    "Central",
    "Airport",
    "Harbor",
    "Garden",
    "Photo",
    "Press",
    "News",
    "Breaking",
    "Live",
    "Report",
    "Official",
    "Notice",
    "Warning",
    "Lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "alpha",
    "delta",
    "omega",
    "Zurich",
    "Paris",
)


def _random_text(rng: np.random.Generator) -> list[str]:
    """One to three short lines: words, numbers, dates, prices, codes."""

    def token() -> str:
        kind = int(rng.integers(8))
        if kind == 0:
            return f"{int(rng.integers(1, 10000)):d}"
        if kind == 1:
            return f"{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/{int(rng.integers(1950, 2031))}"
        if kind == 2:
            currency = ("$", "EUR ", "\u00a3", "CHF ")[int(rng.integers(4))]
            return f"{currency}{rng.uniform(1, 5000):.2f}"
        if kind == 3:
            letters = "".join(chr(65 + int(c)) for c in rng.integers(0, 26, int(rng.integers(2, 4))))
            return f"{letters}-{int(rng.integers(100, 100000))}"
        if kind == 4:
            return f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
        return _WORDS[int(rng.integers(len(_WORDS)))]

    lines = []
    for _ in range(int(rng.choice(3, p=[0.55, 0.3, 0.15])) + 1):
        lines.append(" ".join(token() for _ in range(int(rng.integers(1, 4)))))
    return lines


@functools.lru_cache(maxsize=1)
def _font_files() -> tuple[tuple[str, str | None], ...]:
    """(name, TTF path) of the fonts used for text edits: DejaVu faces from matplotlib's
    data folder (found without importing matplotlib); Pillow's built-in scalable font
    (``path None``) when matplotlib is absent."""
    import importlib.util

    fonts: list[tuple[str, str | None]] = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"
        for name in (
            "DejaVuSans",
            "DejaVuSans-Bold",
            "DejaVuSans-Oblique",
            "DejaVuSerif",
            "DejaVuSerif-Bold",
            "DejaVuSansMono",
            "DejaVuSansMono-Bold",
        ):
            if (folder / f"{name}.ttf").is_file():
                fonts.append((name, str(folder / f"{name}.ttf")))
    if not fonts:
        fonts.append(("pillow-default", None))
    return tuple(fonts)


@functools.lru_cache(maxsize=256)
def _font(path: str | None, px: int):
    from PIL import ImageFont

    if path is None:
        return ImageFont.load_default(size=px)  # scalable since Pillow 10.1 (needs FreeType)
    return ImageFont.truetype(path, px)


def _render_text(lines: list[str], font_path: str | None, px: int, stroke: int, box_pad: int):
    """Alpha layers (float32, same shape) of the text fill, of the text with its outline,
    and of the replacement box (zeros when ``box_pad`` < 0)."""
    from PIL import Image, ImageDraw

    font = _font(font_path, px)
    ascent, descent = font.getmetrics()
    line_h = int(round((ascent + descent) * 1.15))
    margin = stroke + max(box_pad, 0) + 2
    width = int(max(font.getlength(line) for line in lines)) + 2 * margin + 2
    height = line_h * len(lines) + 2 * margin
    layers = []
    for sw in (0, stroke):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for i, line in enumerate(lines):
            draw.text((margin, margin + i * line_h), line, font=font, fill=255, stroke_width=sw, stroke_fill=255)
        layers.append(np.asarray(canvas, dtype=np.float32) / 255.0)
    fill, full = layers
    box = np.zeros_like(fill)
    ink = _bbox(full > 0)
    if ink is None:
        raise _Redraw("text rendered empty")
    if box_pad >= 0:
        y0, y1, x0, x1 = ink
        box[max(0, y0 - box_pad) : y1 + box_pad, max(0, x0 - box_pad) : x1 + box_pad] = 1.0
    return fill, full, box


def _contrasting(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour (float) contrasting in lightness with ``background``."""
    import colorsys

    light = float(background @ np.array([0.299, 0.587, 0.114]))
    value = rng.uniform(0.0, 0.3) if light > 0.5 else rng.uniform(0.75, 1.0)
    saturation = rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0
    return np.array(colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), saturation, value), np.float32)


def _text(rng, host, size, settings, info):
    replace = bool(rng.random() < settings.p_text_replace)
    fonts = _font_files()
    font_name, font_path = fonts[int(rng.integers(len(fonts)))]
    lines = _random_text(rng)
    target = _log_uniform(rng, settings.area_range) * size * size
    scale = size / 512.0
    px_lo = max(6, int(round(settings.text_size_range[0] * scale)))
    px_hi = max(px_lo, int(round(settings.text_size_range[1] * scale)))
    stroke_on = (not replace) and rng.random() < settings.p_text_stroke
    rotate = rng.random() < settings.p_rotate
    angle = _uniform(rng, [v / 3.0 for v in settings.rotate_range]) if rotate else 0.0

    pad_fraction = rng.uniform(0.15, 0.4)

    def layers_at(px: int):
        stroke = max(1, int(round(px / 14))) if stroke_on else 0
        box_pad = max(2, int(round(px * pad_fraction))) if replace else -1
        return _render_text(lines, font_path, px, stroke, box_pad), stroke

    px = int(np.clip(round(40 * scale), px_lo, px_hi))
    for _ in range(3):  # font size so that the edited area reaches the target
        (fill, full, box), stroke = layers_at(px)
        covered = float((box if replace else (full > 0.05)).sum())
        wanted = int(np.clip(round(px * math.sqrt(target / max(covered, 1.0))), px_lo, px_hi))
        limit = max(fill.shape[1] / (size - 4), fill.shape[0] / (size - 4))
        if limit > 1.0:  # too large for the image: shrink
            wanted = min(wanted, int(px / limit))
        if wanted == px or wanted < px_lo:
            break
        px = wanted
    (fill, full, box), stroke = layers_at(px)
    if angle != 0.0:
        h, w = fill.shape
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = int(math.ceil(h * sin + w * cos)) + 2, int(math.ceil(h * cos + w * sin)) + 2
        matrix[0, 2] += new_w / 2.0 - w / 2.0
        matrix[1, 2] += new_h / 2.0 - h / 2.0
        fill, full, box = (
            cv2.warpAffine(layer, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=0.0)
            for layer in (fill, full, box)
        )
    h, w = fill.shape
    if h > size or w > size:
        raise _Redraw("text does not fit")
    y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    region = host[y0 : y0 + h, x0 : x0 + w].astype(np.float32) / 255.0
    traces: dict[str, Any] = {}
    base = region.copy()
    if replace:
        ring = cv2.dilate((box > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > (box > 0.5)
        edge = region[ring] if ring.any() else region.reshape(-1, 3)
        background = np.median(edge, axis=0).astype(np.float32)
        base = box[..., None] * background + (1.0 - box[..., None]) * base
        traces["box_color"] = [_r(v, 3) for v in background]
        reference = background
    else:
        ink = full > 0.05
        reference = region[ink].mean(axis=0) if ink.any() else region.reshape(-1, 3).mean(axis=0)
    colour = _contrasting(rng, reference)
    if rng.random() < settings.p_blur:  # soft rendering: blurred glyph edges
        sigma = _uniform(rng, settings.blur_sigma_range)
        fill = cv2.GaussianBlur(fill, (0, 0), sigma)
        full = cv2.GaussianBlur(full, (0, 0), sigma)
        traces["blur_sigma"] = _r(sigma, 3)
    if stroke:
        outline = _contrasting(rng, colour)
        base = full[..., None] * outline + (1.0 - full[..., None]) * base
        traces["stroke"] = {"width": stroke, "color": [_r(v, 3) for v in outline]}
    base = fill[..., None] * colour + (1.0 - fill[..., None]) * base
    base = _photometric(rng, base.astype(np.float32), settings, traces, gamma=False, jpeg=True, smooth=False)
    support = np.zeros((size, size), np.float32)
    support[y0 : y0 + h, x0 : x0 + w] = (np.maximum(np.maximum(fill, full), box) > 0).astype(np.float32)
    info["text"] = {
        "mode": "replace" if replace else "add",
        "lines": lines,
        "font": font_name,
        "px": px,
        "angle": _r(angle, 2),
        "position": [y0, x0],
        "color": [_r(v, 3) for v in colour],
    }
    info["traces"] = traces
    return _composite(host, base, support, (y0, y0 + h, x0, x0 + w))
