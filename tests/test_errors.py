"""The command line's error policy (``reloc.errors``): one-line errors, exit codes, crash logs;
and weights files whose declared network does not fit their tensors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from conftest import build_cached
from reloc.cli import app
from reloc.errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_USAGE, one_line
from reloc.models.weights import SPEC_KEY, WeightsError, check_spec_fits, load_network, save_network


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    localizer = save_network(build_cached("localizer", "dfcn", width=0.25, faithful=False), folder / "dfcn.safetensors")
    restorer = save_network(build_cached("restorer", "scunet", preset="tiny"), folder / "scunet.safetensors")
    image = folder / "x.png"
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    image.write_bytes(buffer.getvalue())
    (folder / "a-file").write_text("not a folder")
    return {"localizer": localizer, "restorer": restorer, "image": image, "folder": folder}


def _run(arguments: list[str]):
    return CliRunner().invoke(app, [str(a) for a in arguments])


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        (["--window", "0"], "--window"),
        (["--stride", "0"], "--stride"),
        (["--window", "512", "--stride", "1000"], "--stride"),
        (["--stride", "16"], "--stride"),  # without --window: the window depends on the model
        (["--batch-size", "0"], "--batch-size"),
        (["--threshold", "nan"], "--threshold"),
        (["--threshold", "2"], "--threshold"),
        (["--threshold", "0"], "--threshold"),
        (["--device", "bogus"], "--device"),
        (["--max-pixels", "0"], "--max-pixels"),
    ],
)
def test_bad_localize_options_are_one_line_usage_errors(files, tmp_path: Path, extra, what):
    result = _run(["localize", files["image"], "--localizer", files["localizer"], "--out", tmp_path / "o", *extra])
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.startswith(f"error: {what}: ") and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_expected_errors_name_the_culprit(files, tmp_path: Path):
    cases = [
        (["localize", files["image"], "--run", tmp_path / "no-run"], ": no localizer weights ("),
        (["localize", files["image"], "--run", files["folder"]], ": no localizer weights ("),
        (["localize", files["image"], "--localizer", files["restorer"]], "not a localizer"),
        (
            ["localize", files["image"], "--localizer", files["localizer"], "--out", files["folder"] / "a-file"],
            "is a file, not a folder",
        ),
        (
            ["eval", "--dataset", tmp_path / "none", "--out", tmp_path / "e", "--plain", files["folder"]],
            "no such file or folder",
        ),
        (
            ["eval", "--dataset", tmp_path / "none", "--out", tmp_path / "e", "--split", "bogus"],
            "error: --split: 'bogus' is not one of",
        ),
    ]
    for arguments, expected in cases:
        result = _run(arguments)
        assert result.exit_code == EXIT_USAGE, (arguments, result.output)
        lines = result.output.strip().splitlines()
        assert lines[0].startswith("error: ") and expected in lines[0], (arguments, result.output)
        assert "Traceback" not in result.output


def test_some_inputs_failing_is_exit_code_1(files, tmp_path: Path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = _run(
        [
            "localize",
            files["image"],
            tmp_path / "broken.png",
            "--localizer",
            files["localizer"],
            "--out",
            tmp_path / "o",
        ]
    )
    assert result.exit_code == 1, result.output
    assert "localized 1 image(s), 1 failed" in result.output and "FAILED" in result.output
    statuses = [entry["status"] for entry in json.loads((tmp_path / "o" / "summary.json").read_text())["files"]]
    assert sorted(statuses) == ["failed", "ok"]


def test_an_internal_error_saves_its_traceback(files, tmp_path: Path, monkeypatch):
    import reloc.engine.localize

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(reloc.engine.localize, "localize_files", broken)
    result = _run(["localize", files["image"], "--localizer", files["localizer"], "--out", tmp_path / "o"])
    assert result.exit_code == EXIT_INTERNAL, result.output
    assert result.output.startswith("error: internal error: ZeroDivisionError: a bug")
    logs = list((tmp_path / "o").glob("reloc-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in result.output
    assert "Traceback" in logs[0].read_text() and "ZeroDivisionError" in logs[0].read_text()


def test_one_line():
    assert one_line("a\n  b   c\n\n") == "a; b c"
    assert len(one_line("x" * 1000)) == 400


def test_a_spec_declaring_a_huge_network_is_refused_before_building(tmp_path: Path):
    network = build_cached("localizer", "dfcn", width=0.25, faithful=False)
    state = {key: value.contiguous() for key, value in network.state_dict().items()}
    crafted = tmp_path / "crafted.safetensors"
    # width 200 would be about 10^9 parameters (4 GB): refused from the header alone
    save_file(
        state,
        str(crafted),
        metadata={
            SPEC_KEY: json.dumps({"kind": "localizer", "name": "dfcn", "kwargs": {"width": 200.0, "faithful": False}})
        },
    )
    with pytest.raises(WeightsError, match="do not fit the declared localizer 'dfcn'.*nothing was built"):
        load_network(crafted)
    save_file(
        state, str(crafted), metadata={SPEC_KEY: '{"kind": "localizer", "name": "dfcn", "kwargs": {"width": "wide"}}'}
    )
    with pytest.raises(WeightsError, match="cannot be built"):
        check_spec_fits(crafted)
    save_file(state, str(crafted), metadata={SPEC_KEY: "{not json"})
    with pytest.raises(WeightsError, match="malformed"):
        load_network(crafted)
    genuine = save_network(network, tmp_path / "genuine.safetensors")
    assert check_spec_fits(genuine).kwargs == {"width": 0.25, "faithful": False}


@pytest.mark.parametrize(
    ("arguments", "code"),
    [(["models"], EXIT_BROKEN_PIPE), (["synth", "--help"], 1)],  # help is printed by rich, which exits 1
)
def test_a_reader_that_goes_away_ends_the_command_quietly(arguments, code):
    """``reloc models | head``: here the pipe closes before reloc writes (it is still importing)."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "reloc", *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the reader is gone before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == code, stderr
    assert stderr == ""  # no "internal error", no traceback


def test_a_tiny_file_declaring_a_huge_image_fails_before_decoding_naming_max_pixels(files, tmp_path: Path):
    bomb = tmp_path / "flat.png"
    Image.new("RGB", (5000, 4000), (200, 30, 30)).save(bomb)  # 20 Mpx in about 60 kB
    result = _run(["localize", bomb, files["image"], "--localizer", files["localizer"], "--out", tmp_path / "o"])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "flat.png" in failed[0] and "decompression bomb" in failed[0]
    assert "--max-pixels" in failed[0] and "MAX_IMAGE_PIXELS" not in result.output
    assert "Warning" not in result.output, "no raw Pillow warning"
    capped = _run(
        ["localize", bomb, "--localizer", files["localizer"], "--out", tmp_path / "c", "--max-pixels", "1000000"]
    )
    assert "over the cap of 1,000,000 pixels" in capped.output and "--max-pixels" in capped.output


# --- hostile files and out-of-range options: exit 2 with one line, never 70 ------------------

DEEP = "[" * 100_000 + "]" * 100_000
"""JSON nested deeper than Python's recursion limit."""


@pytest.fixture(scope="module")
def hostile(files, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    state = {
        k: v.contiguous() for k, v in build_cached("localizer", "dfcn", width=0.25, faithful=False).state_dict().items()
    }
    spec = json.dumps({"kind": "localizer", "name": "dfcn", "kwargs": {"width": 0.25, "faithful": False}})
    made = {}
    for name, metadata in {
        "deep_spec": {SPEC_KEY: DEEP},
        "deep_window": {SPEC_KEY: spec, "reloc.window": DEEP},
        "fraction_window": {SPEC_KEY: spec, "reloc.window": json.dumps({"window": 1.5, "stride": 1.5})},
        "boolean_window": {SPEC_KEY: spec, "reloc.window": json.dumps({"window": True, "stride": True})},
    }.items():
        save_file(state, str(folder / f"{name}.safetensors"), metadata=metadata)
        made[name] = folder / f"{name}.safetensors"
    dataset = folder / "dataset"
    for sub in ("Tp", "Gt"):
        (dataset / sub).mkdir(parents=True)
    for index in range(3):
        Image.fromarray((np.random.default_rng(index).random((40, 40, 3)) * 255).astype(np.uint8)).save(
            dataset / "Tp" / f"{index}.png"
        )
        mask = np.zeros((40, 40) if index else (30, 30), np.uint8)  # sample 0's mask is mis-sized
        mask[10:20, 10:20] = 255
        Image.fromarray(mask).save(dataset / "Gt" / f"{index}.png")
    made["dataset"] = dataset
    made["deep_list"] = folder / "deep.json"
    made["deep_list"].write_text(DEEP)
    for name, record in {"no_key": {"situation": "x"}, "string_metrics": {"situation": "x", "metrics": "oops"}}.items():
        (folder / name / "eval").mkdir(parents=True)
        (folder / name / "eval" / "a.json").write_text(json.dumps(record))
        made[name] = folder / name
    return made


def test_hostile_files_and_out_of_range_options_are_one_line_usage_errors(files, hostile, tmp_path: Path):
    loc, image, dataset = files["localizer"], files["image"], hostile["dataset"]
    cases = [
        (["localize", image, "--localizer", hostile["deep_spec"]], "nested too deeply"),
        (["localize", image, "--localizer", hostile["deep_window"]], "nested too deeply"),
        (["localize", image, "--localizer", hostile["fraction_window"]], "whole numbers"),
        (["localize", image, "--localizer", hostile["boolean_window"]], "whole numbers"),
        (["export", hostile["deep_spec"], "--out", tmp_path / "x.onnx"], "nested too deeply"),
        (["eval", "--dataset", hostile["deep_list"], "--out", tmp_path / "e", "--plain", loc], "nested too deeply"),
        (["data", "inspect", hostile["deep_list"]], "nested too deeply"),
        (["synth", "--out", tmp_path / "s", "--size", "100000"], "--size"),
        (["train", "--out", tmp_path / "t", "--set", "data.crop=100000"], "crop"),
        (["eval", "--dataset", dataset, "--out", tmp_path / "e", "--plain", loc, "--exclude-border", "100000"], "--exclude-border"),
        (["export", loc, "--out", tmp_path / "x.onnx", "--height", "100000"], "--height"),
        (["export", loc, "--out", tmp_path / "x.onnx", "--height", "0", "--width", "-5"], "--height"),
        (["export", loc, "--out", tmp_path / "x.onnx", "--opset", "1"], "--opset"),
        (["convert", loc, "--network", "dfcn", "--out", tmp_path / "c.safetensors", "--set", "width=100000"], "parameters"),
        (["report", hostile["no_key"], "--out", tmp_path / "r"], "not an evaluation record"),
        (["report", hostile["string_metrics"], "--out", tmp_path / "r"], "not an evaluation record"),
        (["eval", "--dataset", dataset, "--out", tmp_path / "e", "--reloc", "X=pretrained:plain"], "has no restorer"),
        (["localize", image, "--localizer", loc, "--device", "mps"], "--device"),
        (["localize", image, "--localizer", loc, "--device", "cpu:1"], "--device"),
    ]  # fmt: skip
    for arguments, expected in cases:
        result = _run(arguments)
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert result.exit_code == EXIT_USAGE, (arguments, result.output)
        assert len(errors) == 1 and expected in errors[0], (arguments, result.output)
        assert "Traceback" not in result.output and "internal error" not in result.output
    assert not (tmp_path / "e").exists() and not (tmp_path / "x.onnx").exists()


def test_cpu_0_is_the_cpu(files, tmp_path: Path):
    result = _run(
        ["localize", files["image"], "--localizer", files["localizer"], "--device", "cpu:0", "--out", tmp_path / "o"]
    )
    assert result.exit_code == 0, result.output


def test_eval_exits_1_with_one_line_when_samples_are_skipped(files, hostile, tmp_path: Path):
    arguments = ["eval", "--dataset", hostile["dataset"], "--plain", files["localizer"], "--split", "all",
                 "--window", "32", "--stride", "32"]  # fmt: skip
    some = _run([*arguments, "--out", tmp_path / "some"])
    assert some.exit_code == 1, some.output
    assert "warning: 1 of 3 samples skipped, not evaluated (1 x mask is NxN (HxW) but its image is NxN)" in some.output
    assert "UserWarning" not in some.output
    everything = _run([*arguments, "--out", tmp_path / "all", "--mask-resize", "nearest"])
    assert everything.exit_code == 0, everything.output  # resized: every sample evaluated
    none = tmp_path / "nothing"
    none.mkdir()
    (none / "list.json").write_text(
        json.dumps([[str(hostile["dataset"] / "Tp" / "0.png"), str(hostile["dataset"] / "Gt" / "0.png")]])
    )
    nothing = _run(
        [
            "eval",
            "--dataset",
            none / "list.json",
            "--plain",
            files["localizer"],
            "--split",
            "all",
            "--out",
            tmp_path / "n",
        ]
    )
    assert nothing.exit_code == 1 and "error: no sample was evaluated: all 1 of 1 skipped" in nothing.output


def test_no_command_replaces_what_the_user_has(files, hostile, tmp_path: Path):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("model.onnx", "c.safetensors", "list.json", "report.md", "config.yaml"):
        (mine / name).write_text("the user's own file")
    cases = [
        (["export", files["localizer"], "--out", mine / "model.onnx"], mine / "model.onnx"),
        (["convert", files["localizer"], "--network", "dfcn", "--out", mine / "c.safetensors"], mine / "c.safetensors"),
        (["data", "inspect", hostile["dataset"], "--write-json", mine / "list.json"], mine / "list.json"),
        (["report", hostile["no_key"], "--out", mine], mine / "report.md"),
        (["train", "--out", mine, "--set", "data.dataset=x"], mine / "config.yaml"),
    ]
    for arguments, victim in cases:
        result = _run(arguments)
        assert result.exit_code == EXIT_USAGE, (arguments, result.output)
        assert result.output.startswith(f"error: {victim}: already exists; nothing was written"), result.output
        assert victim.read_text() == "the user's own file"
    inspected = _run(["data", "inspect", hostile["dataset"], "--write-json", mine / "list.json", "--overwrite"])
    assert inspected.exit_code == 0 and json.loads((mine / "list.json").read_text())


def test_eval_refuses_existing_records_and_labels_that_share_a_file(files, hostile, tmp_path: Path):
    arguments = ["eval", "--dataset", hostile["dataset"], "--split", "all", "--window", "32", "--stride", "32",
                 "--mask-resize", "nearest", "--out", tmp_path / "e"]  # fmt: skip
    first = _run([*arguments, "--plain", files["localizer"]])
    assert first.exit_code == 0, first.output
    record = tmp_path / "e" / "eval" / "P_P___none.json"
    before = record.read_bytes()
    again = _run([*arguments, "--plain", files["localizer"]])
    assert again.exit_code == EXIT_USAGE and again.output.startswith(f"error: {record}: already exists")
    assert record.read_bytes() == before
    assert _run([*arguments, "--plain", files["localizer"], "--overwrite"]).exit_code == 0
    clash = _run(
        [*arguments, "--reloc", f"a/b={files['localizer']}", "--reloc", f"a_b={files['localizer']}", "--overwrite"]
    )
    assert clash.exit_code == EXIT_USAGE and "would be written twice" in clash.output


def test_refuse_to_replace_names_the_existing_file_or_two_outputs_that_are_one(tmp_path: Path):
    from reloc.io_utils import parse_json, refuse_to_replace

    (tmp_path / "kept.json").write_text("{}")
    refuse_to_replace([tmp_path / "new.json", tmp_path / "other.json"])  # nothing exists: no error
    with pytest.raises(FileExistsError, match="already exists") as caught:
        refuse_to_replace([tmp_path / "new.json", tmp_path / "kept.json"])
    assert caught.value.filename == str(tmp_path / "kept.json")
    refuse_to_replace([tmp_path / "kept.json"], overwrite=True)
    with pytest.raises(FileExistsError, match="written twice"):
        refuse_to_replace([tmp_path / "a" / "x.json", tmp_path / "a" / ".." / "a" / "x.json"], overwrite=True)
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        parse_json(DEEP)
    assert parse_json("[[1]]") == [[1]]
