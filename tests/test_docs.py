"""The docs site builds with no warning, its model cards equal the package's cards, and the
README is a front page whose model table and Python example are current."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HOOK = ROOT / "docs" / "hooks" / "model_cards.py"
CARDS = ROOT / "src" / "reloc" / "pretrained" / "cards.json"


@pytest.fixture(scope="module")
def model_cards():
    spec = importlib.util.spec_from_file_location("model_cards", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def _table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """First-column key -> the other cells, for the first table after ``heading``."""
    section = markdown.split(heading, 1)[1]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            rows[cells[0].strip("`").replace("\\|", "|")] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


def test_mkdocs_build_is_strict_and_passes(tmp_path):
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["strict"] is True and config["validation"]["anchors"] == "warn"
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**_env(), "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr
    cards = json.loads(CARDS.read_text(encoding="utf-8"))["models"]
    for name, card in cards.items():
        page = (site / "models" / name / "index.html").read_text(encoding="utf-8")
        assert f"{card['figures']['jpeg:75']['auc']:.3f}" in page
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--max-pixels" in cli and "reloc localize" in cli  # options rendered from the typer app
    assert "Pretrained models" in (site / "changelog" / "index.html").read_text(encoding="utf-8")


def test_generated_cards_equal_cards_json(model_cards):
    cards = json.loads(CARDS.read_text(encoding="utf-8"))["models"]
    data = model_cards.context()
    for name, card in cards.items():
        rows = _table_rows(model_cards.render_card(name, data), "## Evaluation")
        assert list(rows) == list(card["figures"])
        for distortion, values in card["figures"].items():
            f1, iou, auc = (float(cell) for cell in rows[distortion][:3])
            assert (f1, iou, auc) == (round(values["f1"], 3), round(values["iou"], 3), round(values["auc"], 3))
        details = model_cards.render_card(name, data)
        assert f"| decision threshold folded into the logits | {card['threshold']} " in details
    zoo = _table_rows(model_cards.render_index(data), "## Figures")
    for distortion, cells in zoo.items():
        for name, cell in zip(cards, cells):
            values = cards[name]["figures"][distortion]
            assert cell == " / ".join(f"{values[key]:.3f}" for key in ("f1", "iou", "auc"))


def test_cards_show_the_image_level_calibration_and_the_restorer_gain(model_cards):
    calibration = json.loads(model_cards.DETECTION.read_text(encoding="utf-8"))
    restoration = json.loads(model_cards.RESTORATION.read_text(encoding="utf-8"))["restorers"]
    camera = json.loads(model_cards.CAMERA_AUTHENTIC.read_text(encoding="utf-8"))["rows"]
    data = model_cards.context()
    for name, level in calibration["models"].items():
        card = model_cards.render_card(name, data)
        section = card.split("## Image-level detection", 1)[1].split("\n## ", 1)[0]
        row = next(line for line in section.splitlines() if line.startswith(f"| {level['image_auc']:.3f} ["))
        assert f"| {level['threshold']:.3f} | {100 * level['false_alarm_rate']:.1f}% |" in row
        assert row.endswith("| yes |") == (level["image_auc_ci95"][0] > 0.5)
        routed = [r for r in camera if r["model"] == name]
        assert f"{sum(r['flagged'] for r in routed)} of {len(routed)} above its threshold" in section
        if name in restoration:  # a model with a restorer: its PSNR gain per JPEG quality
            gains = restoration[name]["summary"]
            assert "## The restorer" in card
            assert all(f"| {quality} | " in card and f"{g['psnr_gain']:+.3f} [" in card for quality, g in gains.items())
        else:
            assert "## The restorer" not in card


def test_a_card_without_a_required_field_fails_the_build(model_cards, tmp_path):
    cards = json.loads(CARDS.read_text(encoding="utf-8"))
    del cards["models"]["robust"]["figures"]
    broken = tmp_path / "cards.json"
    broken.write_text(json.dumps(cards), encoding="utf-8")
    with pytest.raises(model_cards.CardError, match="'robust' lacks figures"):
        model_cards.context(broken)


def test_readme_is_a_front_page_with_a_current_model_table():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make demo", "make test"]
    for heading in ("## Install", "## Pretrained models", "## Citation", "## Licence"):
        assert heading in text
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_readme.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for link in re.findall(r"\]\((docs/[^)#]+|CHANGELOG\.md)", text):
        assert (ROOT / link).is_file(), link


def test_a_stale_readme_table_is_caught(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text(encoding="utf-8").replace("| `pretrained:plain` |", "| `pretrained:old` |"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_readme.py"), "--check", "--readme", str(stale)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "stale" in done.stderr


def test_the_readme_python_example_runs(tmp_path):
    example = README.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(tmp_path / "suspect.jpg", quality=75)
    example += "\nassert probabilities.shape == (96, 128) and facts['model'].startswith('pretrained:')\n"
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
