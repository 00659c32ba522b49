"""A regression guard for the dataset readers and the evaluation protocols.

    python benchmarks/protocols.py [--work runs/protocols]

For every public layout of :mod:`reloc.data.layouts`, builds a fake tree of generated
images (``tests/fake_trees.py``, the tests' fixture, which ships in no wheel, so this script
runs from a checkout: 4 tampered with a mask, 2 authentic, plus one tampered image without
a mask, one mask of another size and one truncated mask), runs ``reloc data inspect`` and
``reloc eval`` with a tiny random-weight DFCN, and checks the counts: detected layout,
tampered / authentic / missing / mis-sized / unreadable files, images evaluated and samples
skipped. Then ``reloc eval --grid benco`` on a small
``reloc synth`` set and ``reloc report``, checking the records and the severity curves.
Writes ``benchmarks/results/checks/protocols.json`` and exits 1 when a check fails. The numbers
of a random-weight model mean nothing; the counts are the point.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import torch
from typer.testing import CliRunner

from reloc.cli import app
from reloc.data.layouts import LAYOUTS
from reloc.engine.grids import get_grid
from reloc.errors import EXIT_INPUTS_FAILED
from reloc.models import create_localizer
from reloc.models.weights import save_network

# The fake trees are the tests' fixture (tests/fake_trees.py, not part of the package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_trees import build_fake_tree  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "checks" / "protocols.json"
EVAL = ["--split", "all", "--window", "32", "--stride", "32", "--save-maps", "0", "--device", "cpu"]


def invoke(arguments: list[str], exit_codes: tuple[int, ...] = (0,)) -> str:
    """Run a ``reloc`` command in-process; raise with its output when it ends with another exit code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped samples are counted below, not printed
        result = CliRunner().invoke(app, arguments)
    if result.exit_code not in exit_codes:
        raise RuntimeError(f"reloc {' '.join(arguments)} failed ({result.exit_code}):\n{result.output}")
    return result.output


def check_layout(name: str, work: Path, localizer: Path) -> dict:
    tree = build_fake_tree(name, work / name, tampered=4, authentic=2, missing=1, missized=1, unreadable=1)
    started = time.perf_counter()
    report = invoke(["data", "inspect", str(tree.root), "--no-progress", "--write-json", str(work / f"{name}.json")])
    found = {
        "layout": re.search(r"^layout: (\S+)", report, re.MULTILINE).group(1),
        "tampered": int(re.search(r"samples: (\d+) tampered", report).group(1)),
        "authentic": int(re.search(r"(\d+) authentic", report).group(1)),
        "missing": int(re.search(r"^without a mask: (\d+)", report, re.MULTILINE).group(1)),
        "missized": int(re.search(r"^mask of another size: (\d+)", report, re.MULTILINE).group(1)),
        "unreadable": int(re.search(r"^unreadable: (\d+)", report, re.MULTILINE).group(1)),
        "listed_in_json": len(json.loads((work / f"{name}.json").read_text())),
    }
    out = work / f"{name}-eval"
    invoke(
        [
            "eval",
            "--dataset",
            str(tree.root),
            "--out",
            str(out),
            "--plain",
            str(localizer),
            "--distortion",
            "jpeg:75",
            *EVAL,
        ],
        exit_codes=(EXIT_INPUTS_FAILED,) if tree.missized + tree.unreadable else (0,),  # eval: 1 when samples skipped
    )
    record = json.loads(next((out / "eval").glob("P_D_*.json")).read_text())
    found.update(evaluated=record["images"], skipped=record["skipped"])
    expected = {
        "layout": name,
        "tampered": tree.tampered,
        "authentic": tree.authentic,
        "missing": tree.missing,
        "missized": tree.missized,
        "unreadable": tree.unreadable,
        "listed_in_json": tree.usable,
        "evaluated": tree.usable,
        "skipped": tree.missized + tree.unreadable,
    }
    failures = [f"{key}: got {found[key]}, expected {value}" for key, value in expected.items() if found[key] != value]
    return {
        "found": found,
        "ok": not failures,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 2),
    }


def check_benco_grid(work: Path, localizer: Path) -> dict:
    from reloc.data.synth import synthesize

    started = time.perf_counter()
    synthesize("default", work / "synth", count=6, seed=0, size=64, progress=False, workers=1, overwrite=True)
    out = work / "benco-eval"
    invoke(
        [
            "eval",
            "--dataset",
            str(work / "synth"),
            "--out",
            str(out),
            "--plain",
            str(localizer),
            "--grid",
            "benco",
            *EVAL,
        ]
    )
    invoke(["report", str(out), "--out", str(work / "benco-report")])
    records = [json.loads(path.read_text()) for path in (out / "eval").glob("*.json")]
    figure = work / "benco-report" / "figures" / "robustness-benco.png"
    text = (work / "benco-report" / "report.md").read_text()
    grid = get_grid("benco")
    found = {
        "grid_records": sum(1 for r in records if r.get("grid", {}).get("name") == "benco"),
        "plain_records": sum(1 for r in records if not r.get("grid")),
        "figure_bytes": figure.stat().st_size if figure.is_file() else 0,
        "table_rows": sum(1 for line in text.splitlines() if re.match(r"\| (blur|noise|jpeg) \|", line)),
    }
    failures = []
    if found["grid_records"] != len(grid.points) or found["table_rows"] != len(grid.points):
        failures.append(f"expected {len(grid.points)} grid records and table rows, got {found}")
    if found["plain_records"] != 1 or found["figure_bytes"] < 5000:
        failures.append(f"expected one P{{P}} record and a severity-curve figure, got {found}")
    return {
        "found": found,
        "ok": not failures,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/protocols"), help="Scratch folder for the fake trees.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    localizer = args.work / "localizer.safetensors"
    save_network(create_localizer("dfcn", width=0.25, faithful=False), localizer)
    results = {"layouts": {}, "torch_threads": torch.get_num_threads()}
    for layout in LAYOUTS:
        results["layouts"][layout.name] = check_layout(layout.name, args.work, localizer)
        print(
            layout.name, "ok" if results["layouts"][layout.name]["ok"] else results["layouts"][layout.name]["failures"]
        )
    results["benco_grid_on_synth"] = check_benco_grid(args.work, localizer)
    print("benco grid", "ok" if results["benco_grid_on_synth"]["ok"] else results["benco_grid_on_synth"]["failures"])
    results["ok"] = all(r["ok"] for r in results["layouts"].values()) and results["benco_grid_on_synth"]["ok"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}: {'all checks passed' if results['ok'] else 'FAILURES'}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
