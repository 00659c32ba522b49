"""Evaluation records, the paper-style report and its figures, from tiny trained runs."""

from __future__ import annotations

import hashlib
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
    "data.crop=64",
    "data.batch_size=4",
    "data.steps_per_epoch=2",
    "data.tamper_bias=0.5",
    "model.localizer_args={width: 0.25, faithful: false}",
    "model.restorer_args={preset: tiny}",
    "model.discriminator_args={width: 8}",
    "train.epochs=2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from reloc.data.synth import synthesize

    root = tmp_path_factory.mktemp("eval")
    synthesize("default", root / "synth", count=24, seed=0, size=96, progress=False, workers=1)
    paths = {"dataset": root / "synth"}
    for task in ("plain", "finetune", "reloc"):
        extra = [] if task == "plain" else [f"model.localizer_weights={root / 'plain'}"]
        train(
            load_config(None, [f"data.dataset={root / 'synth'}", *TINY, f"train.task={task}", *extra]),
            root / task,
            progress=False,
        )
        paths[task] = root / task
    return paths


def test_eval_writes_a_record_per_situation_and_report_renders(runs, tmp_path):
    cli = CliRunner()
    result = cli.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(runs["dataset"]),
            "--out",
            str(tmp_path / "ev"),
            "--plain",
            str(runs["plain"]),
            "--finetune",
            str(runs["finetune"]),
            "--reloc",
            str(runs["reloc"]),
            "--transfer",
            f"{runs['reloc']}:{runs['plain']}",
            "--distortion",
            "jpeg:75",
            "--distortion",
            "jpeg:60",
            "--window",
            "64",
            "--stride",
            "48",
            "--save-maps",
            "2",
        ],
    )
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
    assert record["restorer_sha256"] == hashlib.sha256(Path(record["restorer"]).read_bytes()).hexdigest()
    assert record["localizer_sha256"] == hashlib.sha256(Path(record["localizer"]).read_bytes()).hexdigest()
    assert records[record_filename("P{P}", "none")]["restorer_sha256"] is None

    result = cli.invoke(
        app,
        [
            "report",
            str(tmp_path / "ev"),
            "--out",
            str(tmp_path / "rep"),
            "--run",
            str(runs["reloc"]),
            "--features",
            "40",
        ],
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
        return {
            "situation": name,
            "distortion": distortion,
            "images": 3,
            "metrics": {"per-image": {"f1": f1, "iou": 0.5, "auc": None}},
        }

    table = metrics_table(
        [record("ReLoc{D}", "jpeg:75", 0.4), record("P{P}", "none", 0.9), record("D|P{D}", "jpeg:75", 0.2)]
    )
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["P{P}", "D\\|P{D}", "ReLoc{D}"]
    assert all(row.replace("\\|", "").count("|") == 6 for row in rows)  # situation, 3 metrics, images
    assert "0.900" in rows[0] and "–" in rows[0]  # an undefined AUC is shown as a dash


def test_labels_from_the_command_line_cannot_break_the_markdown_table():
    hostile = "a\nb | <script>alert(1)</script>"
    record = {"situation": hostile, "distortion": "jpeg:75", "images": 1, "metrics": {"per-image": {"f1": 0.5}}}
    rows = metrics_table([record]).splitlines()
    assert len(rows) == 3, "a line break in a label starts no new row"
    assert "<script>" not in rows[2] and "&lt;script&gt;" in rows[2] and "b \\| &lt;" in rows[2]
    assert rows[2].replace("\\|", "").count("|") == 6


def _tp_gt_copy(synth: Path, target: Path) -> Path:
    """The synth set as a plain Tp/Gt folder: no recorded split, so the split seed and fractions decide."""
    import shutil

    for sub in ("Tp", "Gt"):
        shutil.copytree(synth / sub, target / sub)
    return target


@pytest.fixture(scope="module")
def odd_split_run(runs, tmp_path_factory) -> tuple[Path, Path]:
    """A plain run trained with non-default split fractions and seed on a Tp/Gt dataset."""
    root = tmp_path_factory.mktemp("odd")
    dataset = _tp_gt_copy(runs["dataset"], root / "tpgt")
    overrides = [f"data.dataset={dataset}", *TINY, "train.epochs=1", "data.test_fraction=0.5", "data.split_seed=7"]
    train(load_config(None, overrides), root / "run", progress=False)
    return dataset, root / "run"


def test_eval_uses_the_split_the_run_was_trained_with(odd_split_run, tmp_path):
    from reloc import runs as run_files
    from reloc.data.catalog import load_dataset, split_by_source
    from reloc.engine.evaluate import evaluation_samples

    dataset, run = odd_split_run
    recorded = run_files.read_split(run)
    test = evaluation_samples(dataset, "test", [run])
    assert [ref.image.name for ref in test] == [Path(i).name for i in recorded.samples["test"]]
    trained_on = {Path(i).name for i in recorded.samples["train"]}
    default = {ref.image.name for ref in split_by_source(load_dataset(dataset), 0)["test"]}
    assert default & trained_on  # what re-splitting with the defaults would have tested on
    assert not {ref.image.name for ref in test} & trained_on
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            str(dataset),
            "--out",
            str(tmp_path),
            "--plain",
            str(run),
            "--window",
            "96",
            "--stride",
            "96",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "eval" / record_filename("P{D}", "jpeg:75")).read_text())
    assert sorted(r["name"] for r in record["per_image"]) == sorted(Path(i).stem for i in recorded.samples["test"])


def test_eval_refuses_a_changed_dataset_in_one_line(odd_split_run, tmp_path):
    import shutil

    dataset, run = odd_split_run
    changed = _tp_gt_copy(dataset, tmp_path / "changed")
    victim = min((changed / "Tp").iterdir())
    victim.unlink()
    (changed / "Au").mkdir()
    shutil.copy(min((changed / "Tp").iterdir()), changed / "Au" / "added.png")  # an authentic image
    result = CliRunner().invoke(
        app, ["eval", "--dataset", str(changed), "--out", str(tmp_path / "ev"), "--plain", str(run)]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "not the dataset" in lines[0] and "--split all" in lines[0]
    # the whole of another dataset can still be evaluated
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            str(changed),
            "--out",
            str(tmp_path / "all"),
            "--plain",
            str(run),
            "--split",
            "all",
            "--window",
            "96",
            "--stride",
            "96",
        ],
    )
    assert result.exit_code == 0, result.output


def test_two_unlabelled_reloc_runs_are_refused(tmp_path):
    result = CliRunner().invoke(
        app,
        ["eval", "--dataset", str(tmp_path), "--out", str(tmp_path / "ev"), "--reloc", "runs/a", "--reloc", "runs/b"],
    )
    assert result.exit_code == 2 and "two --reloc runs labelled 'ReLoc'" in result.output


def test_report_names_a_corrupt_record_in_one_line(tmp_path):
    records = tmp_path / "ev" / "eval"
    records.mkdir(parents=True)
    (records / "P_P___none.json").write_text('{"situation": "P{P}", "metr')  # cut off mid-write
    result = CliRunner().invoke(app, ["report", str(tmp_path / "ev"), "--out", str(tmp_path / "report")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "P_P___none.json" in lines[0] and "not an evaluation record" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "report" / "report.md").exists()


def test_printed_metrics_show_zero_as_zero():
    from reloc.cli import _metric

    assert (_metric(0.0), _metric(None), _metric(float("nan")), _metric(0.4567)) == ("0.000", "nan", "nan", "0.457")


def test_the_report_names_one_window_or_each_situations_own():
    from reloc.analysis.report import windows_sentence

    def record(name, window, stride):
        return {"situation": name, "protocol": {"window": window, "stride": stride}}

    same = [record("P{P}", 128, 64), record("D|P{D}", 128, 64)]
    assert windows_sentence(same) == "sliding windows 128 px, stride 64"
    mixed = [record("P{P}", 128, 64), record("P{D}", 128, 64), record("D|P{D}", 512, 512)]
    assert (
        windows_sentence(mixed) == "sliding windows (side / stride, px): P{P} 128 / 64, P{D} 128 / 64, D|P{D} 512 / 512"
    )


def test_eval_tiling_default_or_the_papers(runs, tmp_path):
    """``--tiling paper`` stamps and runs the paper's windows (flush, averaged); the default runs as localize."""
    base = [
        "eval",
        "--dataset",
        str(runs["dataset"]),
        "--plain",
        str(runs["plain"]),
        "--window",
        "64",
        "--stride",
        "40",
    ]
    stamps = {}
    for tiling in ("default", "paper"):
        result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / tiling), "--tiling", tiling])
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / tiling / "eval" / record_filename("P{P}", "none")).read_text())
        stamps[tiling] = record["protocol"]
    assert (stamps["paper"]["blend"], stamps["paper"]["grid"], stamps["paper"]["tiling"]) == ("mean", 1, "paper")
    assert (stamps["default"]["blend"], stamps["default"]["grid"]) == ("taper", 8)
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "bad"), "--tiling", "tiles"])
    assert result.exit_code == 2 and "--tiling" in result.output
