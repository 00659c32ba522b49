"""Robustness grids: specs, ``reloc eval --grid`` records with skipped samples, severity curves."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from fake_trees import build_fake_tree
from reloc.cli import app
from reloc.data.distortions import parse_distortion
from reloc.engine.grids import GRIDS, get_grid
from reloc.models import create_localizer
from reloc.models.weights import save_network


def test_every_grid_point_is_a_canonical_distortion_spec():
    for grid in GRIDS.values():
        for point in grid.points:
            assert str(parse_distortion(point.spec)) == point.spec
            assert point.family in grid.axis
    benco = get_grid("benco")
    assert [p.strength for p in benco.points if p.family == "noise"] == [3, 7, 11, 15, 19, 23]
    assert [p.spec for p in benco.points if p.family == "blur"][:2] == ["none", "gaussblur:3"]
    assert [p.strength for p in get_grid("jpeg").points] == [50, 60, 70, 80, 90, 100]
    assert {p.family for p in get_grid("double-jpeg").points} == {"aligned", "shifted"}
    with pytest.raises(ValueError, match="benco"):
        get_grid("nope")


@pytest.fixture(scope="module")
def localizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "localizer.safetensors"
    torch.manual_seed(0)
    save_network(create_localizer("dfcn", width=0.25, faithful=False), path)
    return path


def test_eval_on_an_unpacked_layout_skips_bad_masks_and_report_draws_curves(localizer, tmp_path):
    tree = build_fake_tree("coverage", tmp_path / "COVERAGE", tampered=3, authentic=1, missized=1, unreadable=1)
    cli = CliRunner()
    out = tmp_path / "ev"
    result = cli.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(tree.root),
            "--out",
            str(out),
            "--plain",
            str(localizer),
            "--split",
            "all",
            "--grid",
            "jpeg",
            "--window",
            "32",
            "--stride",
            "32",
            "--save-maps",
            "1",
            "--metric-protocol",
            "inverted",
        ],
    )
    assert result.exit_code == 1, result.output  # not every sample was evaluated
    assert "warning: 2 of 4 samples skipped, not evaluated" in result.output and "UserWarning" not in result.output
    records = [json.loads(path.read_text()) for path in sorted((out / "eval").glob("*.json"))]
    assert len(records) == 1 + 6  # P{P} once, P{D} at each JPEG quality
    for record in records:
        assert record["images"] == 2 and record["skipped"] == 2
        assert {s["name"] for s in record["skipped_samples"]} == {"1t", "2t"}
        assert record["protocol"]["metric"] == "inverted"
    graded = [r for r in records if r.get("grid")]
    assert sorted(r["grid"]["strength"] for r in graded) == [50, 60, 70, 80, 90, 100]
    assert all(path.name.endswith("__inverted.json") for path in (out / "eval").glob("*.json"))

    result = cli.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(tree.root),
            "--out",
            str(tmp_path / "resized"),
            "--plain",
            str(localizer),
            "--split",
            "all",
            "--window",
            "32",
            "--stride",
            "32",
            "--mask-resize",
            "nearest",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "warning: 1 of 4 samples skipped" in result.output
    record = json.loads(next((tmp_path / "resized" / "eval").glob("P_D_*.json")).read_text())
    assert record["images"] == 3 and record["skipped"] == 1  # the truncated mask cannot be resized

    result = cli.invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Metric protocol `inverted`" in text and "Robustness grid `jpeg`" in text
    assert "| jpeg | 50 | `jpeg:50` |" in text
    assert (tmp_path / "rep" / "figures" / "robustness-jpeg.png").stat().st_size > 5000


def test_eval_refuses_unknown_grid_protocol_and_distortion(localizer, tmp_path):
    tree = build_fake_tree("cocoglide", tmp_path / "cg", tampered=1, authentic=0)
    base = ["eval", "--dataset", str(tree.root), "--out", str(tmp_path / "o"), "--plain", str(localizer)]
    for extra, message in (
        (["--grid", "nope"], "unknown grid"),
        (["--metric-protocol", "oracle"], "best-threshold"),
        (["--distortion", "jpeg:50 | sharpen:2"], "unknown kind 'sharpen'"),  # refused before any work
        (["--distortion", "jpeg:75 |"], "empty alternative"),
    ):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "o").exists()
