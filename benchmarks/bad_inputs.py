"""A hostile corpus for the command line: every bad file and option of issue 16, run through ``reloc``.

    OMP_NUM_THREADS=1 python benchmarks/bad_inputs.py [--out benchmarks/results/bad_inputs.json]

Builds, in a temporary folder, a folder of evidence mixing good images (PNG, JPEG, GIF,
JFIF, RGBA, 16-bit, 1x1, 1x50, 7x7) with bad files (truncated, empty, text named .jpg, a
PNG header declaring 10^10 pixels, a broken link, a link loop, a named pipe, a sub-folder,
an input named like another input's output), a tiny random-weight DFCN and SCUNet, a
crafted weights file declaring a huge network, and runs the real CLI (``reloc.cli.app``
through ``typer.testing.CliRunner``, in this process: one import of torch for all cases)
on each case. Checks per case: the exit code, the first line (``error: <what>: <why>`` for
expected errors), no traceback in the output; over the corpus: every good file processed
and no input file changed (SHA-256 of every input before and after).

Writes the table of cases to ``benchmarks/results/bad_inputs.json`` and prints it.
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
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "bad_inputs.json"
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


def run_case(spec: dict[str, object]) -> dict[str, object]:
    import torch
    from typer.testing import CliRunner

    from reloc.cli import app

    if spec.get("cuda_dependent"):
        spec["expected_exit"] = 0 if torch.cuda.is_available() else 2
        spec["expected_text"] = "localized 1 image(s)" if torch.cuda.is_available() else "CUDA is not available"
    result = CliRunner().invoke(app, spec["args"])
    output = result.output
    # tqdm's bar ("\rlocalize: 100%|...| 2/2 [00:00<00:00, 9.7image/s, failed=1]") shares a line with
    # what follows it in CliRunner's output, where stdout and stderr are one stream
    text = re.sub(r"\r?localize: [^\r\n]*?\]", "\n", output)
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    record = {
        "case": spec["case"],
        "command": "reloc " + " ".join(spec["args"]),
        "exit_code": result.exit_code,
        "expected_exit": spec["expected_exit"],
        "first_line": first,
        "traceback": "Traceback" in output
        or (result.exception is not None and not isinstance(result.exception, SystemExit)),
    }
    error_ok = not first.startswith("error: ") or (len(first.split(": ")) >= 3)
    record["passed"] = (
        result.exit_code == spec["expected_exit"]
        and spec["expected_text"] in first
        and not record["traceback"]
        and error_ok
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reloc-bad-inputs-") as folder:
        root = Path(folder)
        files = build_corpus(root)
        before = _hashes(root)
        records = [run_case(spec) for spec in cases(files, root)]
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
        "inputs_hashed": len(before),
        "inputs_changed": changed,
        "good_files": GOOD,
        "good_files_processed_in_first_case": processed,
        "every_good_file_processed": sorted(GOOD) == processed,
        "skipped_in_first_case": skipped,
        "table": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    for record in records:
        mark = "ok  " if record["passed"] else "FAIL"
        print(
            f"{mark} exit {record['exit_code']} (want {record['expected_exit']}) {record['case']}: {record['first_line'][:110]}"
        )
    print(f"{summary['passed']}/{summary['cases']} passed, {summary['tracebacks']} tracebacks, "
          f"{len(changed)} of {len(before)} input files changed, every good file processed: {summary['every_good_file_processed']}")  # fmt: skip


if __name__ == "__main__":
    main()
