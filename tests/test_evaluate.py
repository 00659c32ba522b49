"""Evaluation records, the paper-style report and its figures, from tiny trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reloc.analysis.report import metrics_table
from reloc.cli import app
from reloc.config import load_config
from reloc.engine.evaluate import record_filename
from reloc.engine.trainer import train

TINY = [
    "data.crop=64", "data.batch_size=4", "data.steps_per_epoch=2", "data.tamper_bias=0.5",
    "model.localizer_args={width: 0.25, faithful: false}", "model.restorer_args={preset: tiny}",
    "model.discriminator_args={width: 8}", "train.epochs=2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from reloc.data.synth import synthesize

    root = tmp_path_factory.mktemp("eval")
    synthesize("default", root / "synth", count=24, seed=0, size=96, progress=False, workers=1)
    paths = {"dataset": root / "synth"}
    for task in ("plain", "finetune", "reloc"):
        extra = [] if task == "plain" else [f"model.localizer_weights={root / 'plain'}"]
        train(load_config(None, [f"data.dataset={root / 'synth'}", *TINY, f"train.task={task}", *extra]), root / task, progress=False)
        paths[task] = root / task
    return paths


def test_eval_writes_a_record_per_situation_and_report_renders(runs, tmp_path):
    cli = CliRunner()
    result = cli.invoke(app, [
        "eval", "--dataset", str(runs["dataset"]), "--out", str(tmp_path / "ev"), "--plain", str(runs["plain"]),
        "--finetune", str(runs["finetune"]), "--reloc", str(runs["reloc"]), "--transfer", f"{runs['reloc']}:{runs['plain']}",
        "--distortion", "jpeg:75", "--distortion", "jpeg:60", "--window", "64", "--stride", "48", "--save-maps", "2",
    ])
    assert result.exit_code == 0, result.output
    records = {path.name: json.loads(path.read_text()) for path in (tmp_path / "ev" / "eval").glob("*.json")}
    situations = {(r["situation"], r["distortion"]) for r in records.values()}
    assert ("P{P}", "none") in situations  # plain images are evaluated once
    for distortion in ("jpeg:75", "jpeg:60"):
        for name in ("P{D}", "D|P{D}", "ReLoc{D}", "P(plain){D}", "R(reloc)+L(plain){D}"):
            assert (name, distortion) in situations
    record = records[record_filename("ReLoc{D}", "jpeg:75")]
    assert record["images"] == 6 and len(record["per_image"]) == 6
    assert 0 <= record["metrics"]["per-image"]["auc"] <= 1
    assert record["restorer"].endswith("restorer.safetensors")

    result = cli.invoke(
        app, ["report", str(tmp_path / "ev"), "--out", str(tmp_path / "rep"), "--run", str(runs["reloc"]), "--features", "40"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| P{P} |" in text and "| ReLoc{D} |" in text and "jpeg:60 F1" in text
    assert (tmp_path / "rep" / "figures" / "loss-curves.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "figures" / "qualitative.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "figures" / "features.png").stat().st_size > 1000
    assert "| ReLoc{D} |" in text.split("Feature analysis")[1]  # one EMD per situation


def test_table_orders_rows_like_the_paper_and_marks_undefined():
    def record(name, distortion, f1):
        return {"situation": name, "distortion": distortion, "images": 3,
                "metrics": {"per-image": {"f1": f1, "iou": 0.5, "auc": None}}}

    table = metrics_table(
        [record("ReLoc{D}", "jpeg:75", 0.4), record("P{P}", "none", 0.9), record("D|P{D}", "jpeg:75", 0.2)]
    )
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["P{P}", "D\\|P{D}", "ReLoc{D}"]
    assert all(row.replace("\\|", "").count("|") == 6 for row in rows)  # situation, 3 metrics, images
    assert "0.900" in rows[0] and "–" in rows[0]  # an undefined AUC is shown as a dash
