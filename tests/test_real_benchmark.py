"""benchmarks/real.py's arithmetic: intervals, seam figures, the routing rule it writes, its tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture
def real(monkeypatch):
    return load_benchmark("real.py", "real_benchmark", monkeypatch)


def summary(auc: float, f1: float, n: int = 20) -> dict:
    return {metric: {"mean": value, "low": value - 0.1, "high": value + 0.1, "n": n}
            for metric, value in (("auc", auc), ("f1", f1), ("iou", f1 / 2), ("best_f1", f1 + 0.1))}  # fmt: skip


def test_bootstrap_mean_is_the_mean_within_its_interval_and_skips_undefined(real):
    values = [0.2, 0.4, float("nan"), 0.9, None]
    result = real.bootstrap_mean(values)
    assert result["n"] == 3 and result["mean"] == pytest.approx(0.5, abs=1e-4)
    assert result["low"] <= result["mean"] <= result["high"]
    assert real.bootstrap_mean([float("nan")]) == {"mean": None, "low": None, "high": None, "n": 0}


def test_seam_figures_find_a_jump_at_the_tile_edges_only(real):
    rng = np.random.default_rng(0)
    smooth = 0.5 + 0.01 * rng.standard_normal((1024, 1024))
    seam, inside = real.seam_figures(smooth, "tiles-512")
    assert seam / inside == pytest.approx(1.0, abs=0.15)
    tiled = smooth.copy()
    tiled[:, 512:] += 0.2  # a step where the 512-px tiles meet
    seam, inside = real.seam_figures(tiled, "tiles-512")
    assert seam / inside > 5
    assert real.border_columns(1024, "tiles-512") == [512]
    assert real.border_columns(1024, "whole") == [512]  # a whole pass is measured at the tiles' edges


def test_route_part_writes_the_best_model_per_measured_quality(real, tmp_path, monkeypatch):
    monkeypatch.setattr(real, "ROUTING", tmp_path / "routing.json")
    monkeypatch.setattr(real.pretrained.routing, "cache_clear", lambda: None)
    casia = {"75": {"plain": summary(0.70, 0.1), "robust": summary(0.72, 0.2), "reloc": summary(0.75, 0.1)},
             "99": {"plain": summary(0.90, 0.1, n=3), "robust": summary(0.60, 0.1, n=3), "reloc": summary(0.6, 0.1, n=3)}}  # fmt: skip
    camera = {
        "none": {"default": {"plain": summary(0.95, 0.6), "robust": summary(0.90, 0.7), "auto": summary(0.95, 0.6)}},
        "jpeg:90": {"default": {"plain": summary(0.80, 0.3), "robust": summary(0.80, 0.4), "reloc": summary(0.7, 0.3)}},
    }
    results = {"parts": {"casia": {"by_jpeg_quality": casia}, "camera": {"table": camera}}}
    outcome = real.route_part(results)
    rule = json.loads((tmp_path / "routing.json").read_text())
    assert outcome["rule"] == {"75": "reloc", "90": "robust"}  # 99: too few images; QF 90: AUC tie, F1 decides
    assert rule["no_jpeg"]["model"] == "plain" and "auto" not in rule["no_jpeg"]["figures"]
    assert [entry["quality"] for entry in rule["jpeg"]] == [75, 90]
    with pytest.raises(SystemExit, match="needs the casia and camera parts"):
        real.route_part({"parts": {"casia": {}}})


def test_markdown_puts_the_real_rows_first(real):
    table = {kind: summary(0.7, 0.2) for kind in ("all", "splice", "copy-move")}
    parts = {
        "camera": {"images": 2, "table": {"none": {"default": {"plain": summary(0.9, 0.5)}}}},
        "casia": {"images": 3, "skipped": [{"file": "m.png", "reason": "mask is 1x2"}],
                  "table": {"plain": table, "auto": {**table, "picked": {"plain": 3}}}},
    }  # fmt: skip
    text = real.markdown({"parts": parts})
    assert text.index("casia1-dev") < text.index("Camera-size set")
    assert "| plain | all (20) | 0.200 [0.100, 0.300] |" in text
    assert "Skipped (named): m.png: mask is 1x2." in text
