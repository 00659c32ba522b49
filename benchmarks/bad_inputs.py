"""A hostile corpus for the command line: every bad file and option of issues 16 and 49, run through ``reloc``.

    OMP_NUM_THREADS=1 python benchmarks/bad_inputs.py [--out benchmarks/results/checks/bad_inputs.json]

Builds, in a temporary folder, a folder of evidence mixing good images (PNG, JPEG, GIF,
JFIF, RGBA, 16-bit, 1x1, 1x50, 7x7) with bad files (truncated, empty, text named .jpg, a
PNG header declaring 10^10 pixels, a broken link, a link loop, a named pipe, a sub-folder,
an input named like another input's output), a tiny random-weight DFCN and SCUNet, a
crafted weights file declaring a huge network, and runs the real CLI (``reloc.cli.app``
through ``typer.testing.CliRunner``, in this process: one import of torch for all cases)
on each case. Checks per case: the exit code, the first line (``error: <what>: <why>`` for
expected errors), no traceback in the output, the files the case must not change (the
user's own files: SHA-256 before and after), the peak resident memory of the case
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``; Linux); over the corpus:
every good file processed and no input file changed.

Issue 49's cases (``item`` 1-8 in the table): ``reloc serve`` under 16 uploads of a
one-colour 7000x7000 PNG (143 KB) and, with a full queue, of a 7000x7000 JPEG it accepts
(the server's own peak ``VmHWM``, its work folder after SIGTERM / SIGHUP, the API schema
behind the token); small files declaring huge images; commands that would replace the
user's files; evaluations that skip samples; hostile JSON nesting and out-of-range options;
devices; export opsets, window metadata, report labels, multi-frame inputs and two
concurrent ``localize`` runs into one folder.

Writes the table of cases to ``benchmarks/results/checks/bad_inputs.json`` and prints it.
Permission cases (unreadable file or folder) are meaningless as root, who reads anyway;
they are run and marked ``not testable as root`` then.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "checks" / "bad_inputs.json"
GOOD = ["good.png", "good.jpg", "anim.gif", "photo.jfif", "alpha.png", "deep16.png", "one.png", "strip.png", "seven.png",
        "case.png", "case_overlay.png"]  # fmt: skip


def _image(size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray((np.random.default_rng(seed).random((*size, channels)) * 255).astype(np.uint8), mode)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` pixels, with one tiny (wrong) IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )


def _flat_png(path: Path, width: int, height: int) -> Path:
    """A valid one-colour RGB PNG of ``width x height``, compressed row by row (never held decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor, parts = zlib.compressobj(9), []
    row = b"\0" + bytes([90, 140, 200]) * width
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
    return path


def _reset_peak() -> None:
    """Reset this process's peak resident set (``VmHWM``) to its current one (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """A process's peak resident set (``VmHWM``) in MiB, or ``None`` off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


DEEP = "[" * 100_000 + "]" * 100_000
"""JSON nested deeper than Python's recursion limit."""


def build_hostile(root: Path, files: dict[str, Path]) -> None:
    """Issue 49's inputs, added to ``files``: bombs, hostile metadata, datasets that skip, the user's own files."""
    import torch
    from safetensors.torch import save_file

    from reloc.models.weights import SPEC_KEY, WINDOW_KEY, load_network

    hostile = root / "hostile"
    hostile.mkdir()
    files["bomb_100mpx"] = _flat_png(hostile / "flat-100mpx.png", 10_000, 10_000)
    state = {k: v.contiguous() for k, v in load_network(files["localizer"]).state_dict().items()}
    spec = json.dumps({"kind": "localizer", "name": "dfcn", "kwargs": {"width": 0.25, "faithful": False}})
    for name, metadata in {
        "deep_spec": {SPEC_KEY: DEEP},
        "deep_window": {SPEC_KEY: spec, WINDOW_KEY: DEEP},
        "fraction_window": {SPEC_KEY: spec, WINDOW_KEY: json.dumps({"window": 1.5, "stride": 1.5})},
        "boolean_window": {SPEC_KEY: spec, WINDOW_KEY: json.dumps({"window": True, "stride": True})},
    }.items():
        save_file(state, str(hostile / f"{name}.safetensors"), metadata=metadata)
        files[name] = hostile / f"{name}.safetensors"
    files["deep_list"] = hostile / "deep.json"
    files["deep_list"].write_text(DEEP)
    for name, sizes in {"missized": [(30, 30)] * 3, "partly_missized": [(30, 30), (40, 40), (40, 40)]}.items():
        dataset = hostile / name
        for sub in ("Tp", "Gt"):
            (dataset / sub).mkdir(parents=True)
        for index, size in enumerate(sizes):
            _image((40, 40), 20 + index).save(dataset / "Tp" / f"{index}.png")
            mask = np.zeros(size, np.uint8)
            mask[5:15, 5:15] = 255
            Image.fromarray(mask).save(dataset / "Gt" / f"{index}.png")
        files[name] = dataset
    listed = hostile / "partly_missized" / "list.json"
    listed.write_text(json.dumps([["Tp/1.png", "Gt/1.png"], ["Tp/gone.png", "Gt/gone.png"]]))
    files["missing_listed"] = listed
    for name, record in {"no_key": {"situation": "x"}, "string_metrics": {"situation": "x", "metrics": "oops"}}.items():
        (hostile / name / "eval").mkdir(parents=True)
        (hostile / name / "eval" / "a.json").write_text(json.dumps(record))
        files[name] = hostile / name
    label = "a\nb | <script>alert(1)</script>"
    record = {"situation": label, "distortion": "jpeg:75", "images": 1, "dataset": "x",
              "metrics": {"per-image": {"f1": 0.5, "iou": 0.4, "auc": 0.6}, "pooled": {}},
              "protocol": {"window": 32, "stride": 32, "seed": 0}}  # fmt: skip
    (hostile / "labels" / "eval").mkdir(parents=True)
    (hostile / "labels" / "eval" / "a.json").write_text(json.dumps(record))
    files["hostile_labels"] = hostile / "labels"
    frames = [Image.fromarray(np.full((20, 24, 3), value, np.uint8)) for value in (0, 120, 240)]
    (hostile / "frames").mkdir()
    frames[0].save(hostile / "frames" / "anim.gif", save_all=True, append_images=frames[1:])
    files["multi_frame"] = hostile / "frames" / "anim.gif"
    mine = root / "mine"  # the user's own files, which no command may replace
    mine.mkdir()
    for name in ("model.onnx", "c.safetensors", "list.json", "report.md", "config.yaml"):
        (mine / name).write_text("the user's own file\n")
        files[f"mine_{name}"] = mine / name
    files["mine"] = mine
    concurrent = root / "concurrent"
    concurrent.mkdir()
    for index in range(6):
        _image((96, 96), 40 + index).save(concurrent / f"c{index}.png")
    files["concurrent"] = concurrent
    torch.manual_seed(0)


def build_corpus(root: Path) -> dict[str, Path]:
    """The evidence folder, weights files and other inputs of the cases."""
    import torch
    from safetensors.torch import save_file

    from reloc.models import create_localizer, create_restorer
    from reloc.models.weights import SPEC_KEY, save_network

    case = root / "case"
    (case / "sub").mkdir(parents=True)
    _image((48, 40), 1).save(case / "good.png")
    _image((40, 48), 2).save(case / "good.jpg", quality=80)
    _image((20, 20), 3).convert("P").save(case / "anim.gif")
    _image((30, 30), 4).save(case / "photo.jfif", format="JPEG")
    _image((30, 20), 5, "RGBA").save(case / "alpha.png")
    cv2_free_16bit = Image.fromarray((np.random.default_rng(6).random((20, 20)) * 65535).astype(np.uint16))
    cv2_free_16bit.save(case / "deep16.png")
    _image((1, 1), 7).save(case / "one.png")
    _image((1, 50), 8).save(case / "strip.png")
    _image((7, 7), 9).save(case / "seven.png")
    _image((24, 24), 10).save(case / "case.png")
    _image((24, 24), 11).save(case / "case_overlay.png")  # evidence named like case.png's overlay
    _image((16, 16), 12).save(case / "sub" / "nested.png")
    buffer = io.BytesIO()
    _image((64, 64), 13).save(buffer, format="PNG")
    (case / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (case / "empty.png").write_bytes(b"")
    (case / "letter.jpg").write_text("Dear analyst, this is not a JPEG.\n")
    (case / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    (case / "notes.txt").write_text("not an image")
    os.symlink("missing.png", case / "broken.png")
    os.symlink("loop.png", case / "loop.png")
    os.mkfifo(case / "pipe.png")
    locked = root / "locked"
    locked.mkdir()
    _image((8, 8), 14).save(locked / "inside.png")
    os.chmod(locked, 0)
    (root / "unreadable.png").write_bytes(buffer.getvalue())
    os.chmod(root / "unreadable.png", 0)

    torch.manual_seed(0)
    localizer = create_localizer("dfcn", width=0.25, faithful=False)
    files = {
        "case": case,
        "locked": locked,
        "unreadable": root / "unreadable.png",
        "localizer": save_network(localizer, root / "dfcn.safetensors"),
        "restorer": save_network(create_restorer("scunet", preset="tiny"), root / "scunet.safetensors"),
    }
    crafted = root / "huge.safetensors"
    spec = {"kind": "localizer", "name": "dfcn", "kwargs": {"width": 300.0, "faithful": False}}
    save_file(
        {k: v.contiguous() for k, v in localizer.state_dict().items()},
        str(crafted),
        metadata={SPEC_KEY: json.dumps(spec)},
    )
    files["crafted"] = crafted
    truncated = root / "truncated.safetensors"
    truncated.write_bytes(files["localizer"].read_bytes()[:1000])
    files["truncated_weights"] = truncated
    (root / "occupied").write_text("a file where --out should be a folder")
    files["occupied"] = root / "occupied"
    run = root / "run"
    (run / "weights" / "best").mkdir(parents=True)
    files["empty_run"] = run
    return files


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def cases(files: dict[str, Path], root: Path) -> list[dict[str, object]]:
    """``(name, arguments, expected exit code, text the first line must hold)`` of every case."""
    loc, case = files["localizer"], files["case"]
    out = root / "out"
    as_root = os.geteuid() == 0

    def c(name: str, args: list[object], code: int, text: str, **extra: object) -> dict[str, object]:
        return {"case": name, "args": [str(a) for a in args], "expected_exit": code, "expected_text": text, **extra}

    return [
        c("folder with --recursive, --window 4 --stride 4 (windows under DFCN's 8 px)", ["localize", case, "--localizer", loc, "--out", out / "recursive", "--recursive", "--window", "4", "--stride", "4"], 1, "localized 12 image(s), 4 failed, 4 skipped"),
        c("folder of good and bad files, --out = the input folder", ["localize", case, "--localizer", loc, "--out", case], 1, "localized 11 image(s), 4 failed, 5 skipped", check_outputs=True),
        c("with a restorer, --save-restored", ["localize", case / "good.png", case / "one.png", "--localizer", loc, "--restorer", files["restorer"], "--save-restored", "--out", out / "restored"], 0, "localized 2 image(s), 0 failed"),
        c("image over --max-pixels", ["localize", case / "good.png", "--localizer", loc, "--max-pixels", "100", "--out", out / "cap"], 1, "localized 0 image(s), 1 failed"),
        c("symlink loop named directly", ["localize", case / "loop.png", "--localizer", loc, "--out", out / "loop"], 1, "localized 0 image(s), 1 failed"),
        c("unreadable input file", ["localize", files["unreadable"], "--localizer", loc, "--out", out / "unreadable"], 0 if as_root else 1, "localized 1 image(s)" if as_root else "localized 0 image(s), 1 failed", root_note=as_root),
        c("unreadable input folder", ["localize", files["locked"], "--localizer", loc, "--out", out / "locked"], 0 if as_root else 1, "localized 1 image(s)" if as_root else "localized 0 image(s), 1 failed", root_note=as_root),
        c("--window 0", ["localize", case / "good.png", "--localizer", loc, "--window", "0"], 2, "error: --window: "),
        c("--stride 0", ["localize", case / "good.png", "--localizer", loc, "--stride", "0"], 2, "error: --stride: "),
        c("--stride 1000 (> --window 512)", ["localize", case / "good.png", "--localizer", loc, "--window", "512", "--stride", "1000"], 2, "error: --stride: 1000 is larger than --window 512"),
        c("--stride without --window", ["localize", case / "good.png", "--localizer", loc, "--stride", "16"], 2, "error: --stride: give --window with it"),
        c("--batch-size 0", ["localize", case / "good.png", "--localizer", loc, "--batch-size", "0"], 2, "error: --batch-size: "),
        c("--threshold nan", ["localize", case / "good.png", "--localizer", loc, "--threshold", "nan"], 2, "error: --threshold: nan is not strictly between 0 and 1"),
        c("--threshold 2", ["localize", case / "good.png", "--localizer", loc, "--threshold", "2"], 2, "error: --threshold: 2 is not strictly between 0 and 1"),
        c("--device bogus", ["localize", case / "good.png", "--localizer", loc, "--device", "bogus"], 2, "error: --device: 'bogus' is not a device"),
        c("--device cuda", ["localize", case / "good.png", "--localizer", loc, "--device", "cuda"], None, "", cuda_dependent=True),
        c("missing run", ["localize", case / "good.png", "--run", root / "no-such-run"], 2, ": no localizer weights ("),
        c("run folder without weights", ["localize", case / "good.png", "--run", files["empty_run"]], 2, ": no localizer weights ("),
        c("weights of the wrong role", ["localize", case / "good.png", "--localizer", files["restorer"]], 2, "not a localizer"),
        c("weights declaring a huge network", ["localize", case / "good.png", "--localizer", files["crafted"]], 2, "do not fit the declared localizer"),
        c("truncated weights file", ["localize", case / "good.png", "--localizer", files["truncated_weights"]], 2, "not a readable safetensors file"),
        c("--out is a file", ["localize", case / "good.png", "--localizer", loc, "--out", files["occupied"]], 2, "is a file, not a folder"),
        c("--out not writable", ["localize", case / "good.png", "--localizer", loc, "--out", files["locked"] / "o"], 0 if as_root else 2, "" if as_root else "error: output folder", root_note=as_root),
        c("eval: bad dataset", ["eval", "--dataset", case / "notes.txt", "--out", out / "eval", "--plain", files["empty_run"]], 2, "error: "),
        c("eval: --split bogus", ["eval", "--dataset", case, "--out", out / "eval", "--split", "bogus"], 2, "error: --split: 'bogus' is not one of"),
        c("eval: --window 0", ["eval", "--dataset", case, "--out", out / "eval", "--window", "0"], 2, "error: --window: "),
        c("unknown option", ["localize", case / "good.png", "--bogus"], 2, "error: "),
    ]  # fmt: skip


def cases_49(files: dict[str, Path], root: Path) -> list[dict[str, object]]:
    """Issue 49's command-line cases (``item``: its numbered finding); serve's are in :func:`serve_cases`."""
    loc, image, out, mine = files["localizer"], files["case"] / "good.png", root / "out49", files["mine"]
    missized, partly = files["missized"], files["partly_missized"]
    record = out / "eval-again" / "eval" / "P_P___none.json"
    quick = ["--split", "all", "--window", "32", "--stride", "32"]

    def c(item: int, name: str, args: list[object], code: int, text: str, **extra: object) -> dict[str, object]:
        return {"item": item, "case": name, "args": [str(a) for a in args], "expected_exit": code,
                "expected_text": text, **extra}  # fmt: skip

    return [
        c(3, "a 300 KB PNG declaring 10000x10000 pixels", ["localize", files["bomb_100mpx"], "--localizer", loc, "--out", out / "bomb"], 1, "localized 0 image(s), 1 failed", failed_text="decompression bomb"),
        c(3, "the same with --max-pixels 1000000", ["localize", files["bomb_100mpx"], "--localizer", loc, "--max-pixels", "1000000", "--out", out / "bomb-capped"], 1, "localized 0 image(s), 1 failed", failed_text="over the cap of 1,000,000 pixels (`reloc localize --max-pixels`)"),
        c(4, "train --out a folder holding the user's config.yaml", ["train", "--out", mine, "--set", "data.dataset=x"], 2, f"error: {files['mine_config.yaml']}: already exists", victims=[files["mine_config.yaml"]]),
        c(4, "eval into a fresh --out", ["eval", "--dataset", partly, "--out", out / "eval-again", "--plain", loc, "--mask-resize", "nearest", *quick], 0, "P{P}"),
        c(4, "eval again into that --out (its records exist)", ["eval", "--dataset", partly, "--out", out / "eval-again", "--plain", loc, "--mask-resize", "nearest", *quick], 2, f"error: {record}: already exists", victims=[record]),
        c(4, "eval --reloc a/b=... --reloc a_b=... (one record file)", ["eval", "--dataset", partly, "--out", out / "labels", "--reloc", f"a/b={loc}", "--reloc", f"a_b={loc}", "--mask-resize", "nearest", *quick], 2, "would be written twice"),
        c(4, "export --out the user's model.onnx", ["export", loc, "--out", files["mine_model.onnx"]], 2, f"error: {files['mine_model.onnx']}: already exists", victims=[files["mine_model.onnx"]]),
        c(4, "convert --out the user's .safetensors", ["convert", loc, "--network", "dfcn", "--out", files["mine_c.safetensors"]], 2, "already exists", victims=[files["mine_c.safetensors"]]),
        c(4, "data inspect --write-json the user's list.json", ["data", "inspect", partly, "--write-json", files["mine_list.json"]], 2, f"error: {files['mine_list.json']}: already exists", victims=[files["mine_list.json"]]),
        c(4, "report --out a folder holding the user's report.md", ["report", files["hostile_labels"], "--out", mine], 2, "already exists", victims=[files["mine_report.md"]]),
        c(5, "eval: every mask mis-sized (nothing evaluated)", ["eval", "--dataset", missized, "--out", out / "none-evaluated", "--plain", loc, *quick], 1, "error: no sample was evaluated: all 3 of 3 skipped", last_line=True),
        c(5, "eval: one mask of three mis-sized", ["eval", "--dataset", partly, "--out", out / "some-evaluated", "--plain", loc, *quick], 1, "warning: 1 of 3 samples skipped", last_line=True),
        c(5, "eval: a listed sample missing", ["eval", "--dataset", files["missing_listed"], "--out", out / "missing-listed", "--plain", loc, *quick], 1, "warning: 1 of 2 samples skipped", last_line=True),
        c(6, "weights metadata: spec nested 100000 deep", ["localize", image, "--localizer", files["deep_spec"], "--out", out / "x"], 2, "nested too deeply"),
        c(6, "weights metadata: window nested 100000 deep", ["localize", image, "--localizer", files["deep_window"], "--out", out / "x"], 2, "nested too deeply"),
        c(6, "export of weights with a spec nested 100000 deep", ["export", files["deep_spec"], "--out", out / "deep.onnx"], 2, "nested too deeply"),
        c(6, "eval on an IMDL-BenCo list nested 100000 deep", ["eval", "--dataset", files["deep_list"], "--out", out / "x", "--plain", loc], 2, "nested too deeply"),
        c(6, "data inspect of that list", ["data", "inspect", files["deep_list"]], 2, "nested too deeply"),
        c(6, "synth --size 100000", ["synth", "--out", out / "synth", "--size", "100000"], 2, "error: --size:"),
        c(6, "train --set data.crop=100000", ["train", "--out", out / "train", "--set", "data.crop=100000"], 2, "crop"),
        c(6, "eval --exclude-border 100000", ["eval", "--dataset", partly, "--out", out / "x", "--plain", loc, "--exclude-border", "100000"], 2, "error: --exclude-border:"),
        c(6, "export --height 100000", ["export", loc, "--out", out / "tall.onnx", "--height", "100000"], 2, "error: --height:"),
        c(6, "export --height 0 --width -5", ["export", loc, "--out", out / "flat.onnx", "--height", "0", "--width", "-5"], 2, "error: --height:"),
        c(6, "convert --set width=100000", ["convert", loc, "--network", "dfcn", "--out", out / "wide.safetensors", "--set", "width=100000"], 2, "error: --set: cannot build dfcn"),
        c(6, "serve --max-upload-mb nan", ["serve", "--localizer", loc, "--max-upload-mb", "nan"], 2, "error: --max-upload-mb:"),
        c(6, "serve --max-upload-mb inf", ["serve", "--localizer", loc, "--max-upload-mb", "inf"], 2, "error: --max-upload-mb:"),
        c(6, "serve --max-megapixels nan", ["serve", "--localizer", loc, "--max-megapixels", "nan"], 2, "error: --max-megapixels:"),
        c(6, "serve --port 70000", ["serve", "--localizer", loc, "--port", "70000"], 2, "error: --port:"),
        c(6, "serve --port -1", ["serve", "--localizer", loc, "--port", "-1"], 2, "error: --port:"),
        c(6, "report on a record missing its keys", ["report", files["no_key"], "--out", out / "r1"], 2, "not an evaluation record"),
        c(6, "report on a record whose metrics is a string", ["report", files["string_metrics"], "--out", out / "r2"], 2, "not an evaluation record"),
        c(6, "eval --reloc X=pretrained:plain (no restorer)", ["eval", "--dataset", partly, "--out", out / "x", "--reloc", "X=pretrained:plain", "--split", "all"], 2, "error: pretrained:plain has no restorer"),
        c(7, "--device mps", ["localize", image, "--localizer", loc, "--device", "mps", "--out", out / "mps"], 2, "error: --device:"),
        c(7, "--device cpu:0 (the CPU)", ["localize", image, "--localizer", loc, "--device", "cpu:0", "--out", out / "cpu0"], 0, "localized 1 image(s), 0 failed"),
        c(7, "--device cpu:1", ["localize", image, "--localizer", loc, "--device", "cpu:1", "--out", out / "cpu1"], 2, "error: --device:"),
        c(8, "export --opset 1", ["export", loc, "--out", out / "opset.onnx", "--opset", "1"], 2, "error: --opset:"),
        c(8, "weights whose window metadata is 1.5", ["localize", image, "--localizer", files["fraction_window"], "--out", out / "x"], 2, "whole numbers"),
        c(8, "weights whose window metadata is true", ["localize", image, "--localizer", files["boolean_window"], "--out", out / "x"], 2, "whole numbers"),
        c(8, "report on a label with a line break, | and HTML", ["report", files["hostile_labels"], "--out", out / "labels-report"], 0, "report: ", check="labels_escaped"),
        c(8, "an animated GIF of 3 frames", ["localize", files["multi_frame"], "--localizer", loc, "--out", out / "frames"], 0, "localized 1 image(s), 0 failed", check="frames_noted"),
    ]  # fmt: skip


def check_after(spec: dict[str, object], output: str) -> str | None:
    """The extra check a case names (``check``): what is wrong, or ``None``."""
    out = Path(spec["args"][spec["args"].index("--out") + 1])
    if spec.get("check") == "labels_escaped":
        rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
        rows = [row for row in rows if "---" not in row and not row.startswith("| situation")]
        if len(rows) != 2 or any("<script>" in row or row.replace("\\|", "").count("|") != 6 for row in rows):
            return f"the label broke the table: {rows}"
    if spec.get("check") == "frames_noted":
        record = json.loads((out / "anim.json").read_text())
        status = json.loads((out / "summary.json").read_text())["files"][0]
        if "only the first of 3 frames" not in str(record.get("note")) or "only the first" not in str(
            status.get("note")
        ):
            return "no note that only the first frame was analysed"
    return None


def concurrent_localize(files: dict[str, Path], root: Path) -> dict[str, object]:
    """Item 8: two ``reloc localize`` processes started together into one --out; each summary.json
    must list exactly the files of its own folder."""
    out = root / "out49" / "concurrent"
    command = [sys.executable, "-m", "reloc", "localize", str(files["concurrent"]), "--localizer",
               str(files["localizer"]), "--out", str(out), "--window", "32", "--stride", "32"]  # fmt: skip
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    folders = [Path(re.search(r"outputs in (\S+) \(", text).group(1)) for text in outputs if "outputs in" in text]
    mismatched = []
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        listed = {name for entry in summary["files"] if entry["json"] for name in
                  (entry["json"], *(entry["json"][:-5] + suffix for suffix in ("_heatmap.png", "_mask.png", "_overlay.png")))}  # fmt: skip
        for entry in summary["files"]:  # with the default fusion, the learned map's own heat map too
            learned = (
                json.loads((folder / entry["json"]).read_text())["map"].get("learned", {}) if entry["json"] else {}
            )
            listed |= {learned["heatmap"]} if "heatmap" in learned else set()
        present = {path.name for path in folder.iterdir() if path.is_file() and path.name != "summary.json"}
        if listed != present:
            mismatched.append(str(folder))
    codes = [run.returncode for run in runs]
    passed = codes == [0, 0] and len(folders) == 2 and len(set(folders)) == 2 and not mismatched
    return {"item": 8, "case": "two localize runs started together into one --out",
            "command": "2 x reloc " + " ".join(command[3:]), "exit_code": max(codes), "expected_exit": 0,
            "first_line": "; ".join(f"outputs in {folder}" for folder in folders)
            + ("; each summary.json lists exactly its folder's files" if not mismatched else "; MISMATCH"),
            "traceback": any("Traceback" in text for text in outputs), "files_changed": [],
            "peak_rss_mb": None, "note": f"folders {[str(f) for f in folders]}; summaries not matching: {mismatched}",
            "passed": passed}  # fmt: skip


SERVE_LIMIT_MB = 2048
"""Issue 49's bound on the server's resident memory with a full queue."""


def _start_server(files: dict[str, Path], root: Path, name: str, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    """A ``reloc serve`` process on a free loopback port, its URL and its temporary folder."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temporary = root / f"tmp-{name}"
    temporary.mkdir()
    command = [sys.executable, "-m", "reloc", "serve", "--localizer", str(files["localizer"]), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", *extra]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": str(temporary)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    token = extra[extra.index("--token") + 1] if "--token" in extra else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for _ in range(600):
        try:
            if httpx.get(f"{url}/api/health", headers=headers, timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    return server, url, temporary


def _stop_server(server: subprocess.Popen, temporary: Path, number: int) -> tuple[int, list[str]]:
    """Send ``number`` to the server; its exit code and what is left of its work folder."""
    server.send_signal(number)
    try:
        server.wait(120)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    left = [str(path.relative_to(temporary)) for path in temporary.rglob("*")]
    return server.returncode, left


def serve_cases(files: dict[str, Path], root: Path) -> list[dict[str, object]]:
    """Items 1 and 2: ``reloc serve`` (default limits, one tiny random-weight localizer, CPU)
    under 16 uploads of a one-colour 7000x7000 PNG, then under a full queue of a 7000x7000 JPEG
    it accepts; the API schema without the token; the work folder after SIGHUP / SIGTERM."""
    import httpx

    bomb = _flat_png(root / "flat-7000.png", 7000, 7000).read_bytes()
    records = []

    def row(
        item: int,
        case: str,
        command: str,
        code: int,
        line: str,
        peak: float | None,
        passed: bool,
        signal: int,
        idle: float | None = None,
    ):
        growth = None if peak is None or idle is None else round(peak - idle, 1)
        return {"item": item, "case": case, "command": command, "exit_code": code, "expected_exit": 128 + signal,
                "first_line": line, "traceback": False, "python_warning": False, "files_changed": [],
                "peak_rss_mb": peak, "rss_growth_mb": growth, "passed": passed}  # fmt: skip

    server, url, temporary = _start_server(files, root, "bombs", "--token", "s3cret")
    idle = peak_rss_mb(server.pid)  # after loading: the server's own start-up peak
    good = {"Authorization": "Bearer s3cret"}
    schema = (httpx.get(f"{url}/openapi.json").status_code, httpx.get(f"{url}/api/openapi.json").status_code,
              httpx.get(f"{url}/api/openapi.json", headers=good).status_code)  # fmt: skip
    statuses, messages = [], []

    def bomb_upload(index: int) -> None:
        response = httpx.post(f"{url}/api/localize", headers=good, timeout=600,
                              files={"file": (f"flat-{index}.png", bomb, "image/png")})  # fmt: skip
        statuses.append(response.status_code)
        messages.append(response.json().get("error", ""))

    threads = [threading.Thread(target=bomb_upload, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = peak_rss_mb(server.pid)
    code, left = _stop_server(server, temporary, signal.SIGHUP)
    bombs_refused = statuses == [413] * 16 and all("decompression bomb" in m for m in messages)
    records.append(row(1, f"serve: 16 uploads of a one-colour 7000x7000 PNG ({len(bomb) / 1024:.0f} KB)",
                       "reloc serve --token ... ; 16 x POST /api/localize", code,
                       f"{statuses.count(413)} x 413: {messages[0][:150]}", peak,
                       bombs_refused and peak is not None and peak < SERVE_LIMIT_MB, signal=signal.SIGHUP,
                       idle=idle))  # fmt: skip
    records.append(row(2, "serve: API schema without / with the token", "GET /openapi.json, /api/openapi.json", code,
                       f"/openapi.json {schema[0]}, /api/openapi.json {schema[1]} without the token, {schema[2]} with it",
                       None, schema == (404, 401, 200), signal=signal.SIGHUP))  # fmt: skip
    records.append(row(2, "serve: SIGHUP", "kill -HUP <server>", code, f"exit {code}; left in its temporary folder: {left}",
                       None, not left and code == 128 + signal.SIGHUP, signal=signal.SIGHUP))  # fmt: skip

    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((7000, 7000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    del photo
    jpeg = buffer.getvalue()
    server, url, temporary = _start_server(files, root, "queue", "--max-disk-gb", "16")  # room for 17 reservations
    idle = peak_rss_mb(server.pid)
    answers: list[int] = []
    ids: list[str] = []

    def queued_upload(index: int) -> None:
        response = httpx.post(f"{url}/api/localize", data={"wait": "false"}, timeout=600,
                              files={"file": (f"photo-{index}.jpg", jpeg, "image/jpeg")})  # fmt: skip
        answers.append(response.status_code)
        if response.status_code == 202:
            ids.append(response.json()["id"])

    threads = [threading.Thread(target=queued_upload, args=(index,)) for index in range(17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    waiting, started, first_done = 0, time.perf_counter(), None
    while time.perf_counter() - started < 360:
        waiting = max(waiting, httpx.get(f"{url}/api/health").json()["queue"]["waiting"])
        states = [httpx.get(f"{url}/api/jobs/{job}").json()["state"] for job in ids[:1] + ids[-1:]]
        if any(state in ("done", "failed") for state in states):
            first_done = round(time.perf_counter() - started, 1)
            break
        time.sleep(2)
    peak = peak_rss_mb(server.pid)
    code, left = _stop_server(server, temporary, signal.SIGTERM)
    full = answers.count(202) >= 16 and waiting >= 15
    records.append(row(1, f"serve: a full queue of 7000x7000 JPEGs ({len(jpeg) / 2**20:.1f} MB, 49 Mpx), peak until the first is done",
                       "reloc serve --max-disk-gb 16; 17 x POST /api/localize wait=false", code,
                       f"{answers.count(202)} x 202, {answers.count(503)} x 503, {len(answers) - answers.count(202) - answers.count(503)} other; {waiting} waiting at most; first result after "
                       f"{first_done} s (None: not within 360 s); server peak {peak} MiB", peak,
                       full and peak is not None and peak < SERVE_LIMIT_MB, signal=signal.SIGTERM, idle=idle))  # fmt: skip
    records.append(row(2, "serve: SIGTERM with a full queue", "kill <server>", code,
                       f"exit {code}; left in its temporary folder: {left}", None,
                       not left and code == 128 + signal.SIGTERM, signal=signal.SIGTERM))  # fmt: skip
    return records


def run_case(spec: dict[str, object]) -> dict[str, object]:
    import torch
    from typer.testing import CliRunner

    from reloc.cli import app

    if spec.get("cuda_dependent"):
        spec["expected_exit"] = 0 if torch.cuda.is_available() else 2
        spec["expected_text"] = "localized 1 image(s)" if torch.cuda.is_available() else "CUDA is not available"
    victims = {str(path): _digest(Path(path)) for path in spec.get("victims", [])}
    _reset_peak()
    before = peak_rss_mb()  # the resident set now (freed memory stays with the process: see --keep-freed-memory)
    result = CliRunner().invoke(app, spec["args"])
    peak = peak_rss_mb()
    output = result.output
    # tqdm's bar ("\rlocalize: 100%|...| 2/2 [00:00<00:00, 9.7image/s, failed=1]") shares a line with
    # what follows it in CliRunner's output, where stdout and stderr are one stream
    text = re.sub(r"\r?localize: [^\r\n]*?\]", "\n", output)
    text = re.sub(r"[^\n]*\r", "", text)  # other progress bars (eval's) redrawn with carriage returns
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    shown = lines[-1] if spec.get("last_line") and lines else first  # eval's verdict follows its table
    record = {
        **({"item": spec["item"]} if "item" in spec else {}),
        "case": spec["case"],
        "command": "reloc " + " ".join(spec["args"]),
        "exit_code": result.exit_code,
        "expected_exit": spec["expected_exit"],
        "first_line": shown,
        "traceback": "Traceback" in output
        or (result.exception is not None and not isinstance(result.exception, SystemExit)),
        "python_warning": "Warning:" in output,
        "files_changed": [path for path, digest in victims.items() if _digest(Path(path)) != digest],
        "peak_rss_mb": peak,
        "rss_growth_mb": None if peak is None or before is None else round(peak - before, 1),
    }
    error_ok = not shown.startswith("error: ") or (len(shown.split(": ")) >= 3)
    failed_ok = "failed_text" not in spec or any(spec["failed_text"] in line for line in lines if "FAILED" in line)
    problem = check_after(spec, output) if spec.get("check") and result.exit_code == 0 else None
    if problem:
        record["note"] = problem
    record["passed"] = (
        result.exit_code == spec["expected_exit"]
        and spec["expected_text"] in shown
        and not record["traceback"]
        and not record["python_warning"]
        and not record["files_changed"]
        and error_ok
        and failed_ok
        and problem is None
    )
    if spec.get("root_note"):
        record["note"] = "not testable as root (root reads unreadable files); run as another user to test"
    record["check_outputs"] = bool(spec.get("check_outputs"))
    if result.exit_code in (0, 1) and "outputs in" in output:
        record["failed_lines"] = [line.strip() for line in lines if line.strip().startswith("FAILED")]
        record["outputs_in"] = next(line for line in lines if line.startswith("outputs in")).split(" ")[2]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-serve", action="store_true", help="skip the reloc serve cases (two servers, minutes)")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reloc-bad-inputs-") as folder:
        root = Path(folder)
        files = build_corpus(root)
        build_hostile(root, files)
        before = _hashes(root)
        records = [run_case(spec) for spec in cases(files, root) + cases_49(files, root)]
        records.append(concurrent_localize(files, root))
        if not args.no_serve:
            records += serve_cases(files, root)
        after = _hashes(root)
        changed = [path for path, digest in before.items() if after.get(path) != digest]
        first = next(record for record in records if record["check_outputs"])
        processed = sorted(json.loads(Path(p).read_text())["input"]["path"].rsplit("/", 1)[1]
                           for p in Path(first["outputs_in"]).glob("*.json") if p.name != "summary.json")  # fmt: skip
        skipped = json.loads((Path(first["outputs_in"]) / "summary.json").read_text())["skipped"]
        for path in (files["locked"], files["unreadable"]):
            os.chmod(path, 0o700)
    summary = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cases": len(records),
        "passed": sum(r["passed"] for r in records),
        "tracebacks": sum(r["traceback"] for r in records),
        "exit_70": sum(r["exit_code"] == 70 for r in records),
        "python_warnings": sum(bool(r.get("python_warning")) for r in records),
        "user_files_replaced": sum(bool(r.get("files_changed")) for r in records),
        "serve_peak_rss_mib": max(
            (r["peak_rss_mb"] for r in records if r.get("item") == 1 and r["peak_rss_mb"]), default=None
        ),  # fmt: skip
        "serve_limit_mib": SERVE_LIMIT_MB,
        "inputs_hashed": len(before),
        "inputs_changed": changed,
        "good_files": GOOD,
        "good_files_processed_in_first_case": processed,
        "every_good_file_processed": sorted(GOOD) == processed,
        "skipped_in_first_case": skipped,
        "table": records,
        "seconds": round(time.perf_counter() - began, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    for record in records:
        mark = "ok  " if record["passed"] else "FAIL"
        item = f"[{record['item']}] " if "item" in record else ""
        print(
            f"{mark} exit {record['exit_code']} (want {record['expected_exit']}) {item}{record['case']}"
            f" [peak {record.get('peak_rss_mb')} MiB, +{record.get('rss_growth_mb')}]: {record['first_line'][:110]}"
        )
    print(f"{summary['passed']}/{summary['cases']} passed, {summary['tracebacks']} tracebacks, "
          f"{summary['exit_70']} exit 70, {summary['user_files_replaced']} cases replaced a user's file, "
          f"{len(changed)} of {len(before)} input files changed, every good file processed: {summary['every_good_file_processed']}, "
          f"serve peak {summary['serve_peak_rss_mib']} MiB (limit {SERVE_LIMIT_MB})")  # fmt: skip


if __name__ == "__main__":
    main()
