"""benchmarks/replicate.py: aggregation shape, Markdown table, skipping finished parts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def replicate(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("replicate", ROOT / "benchmarks" / "replicate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "SEED_RESULTS", tmp_path / "results" / "replicate")
    return module


def row(f1, iou, auc):
    return {"f1": f1, "iou": iou, "auc": auc, "images": 10}


def test_aggregate_gives_mean_and_std_per_situation(replicate):
    for seed, shift in ((0, 0.0), (1, 0.2)):
        replicate.save_results(seed, {
            "seed": seed, "parts": {}, "seconds": {"plain": 100 + 100 * shift},
            "table3": {"P{P}": row(0.5 + shift, 0.4, 0.9), "ReLoc{D}": row(0.3, 0.2, None)},
            "table4": {"jpeg:60": {"P{D}": row(0.1, 0.1, 0.5)}, "P{P}": row(0.5, 0.4, 0.9)},
        })
    summary = replicate.aggregate()
    saved = json.loads((replicate.RESULTS / "replicate.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["seeds"] == [0, 1]
    f1 = saved["table3"]["P{P}"]["f1"]
    assert f1["mean"] == pytest.approx(0.6) and f1["std"] == pytest.approx(0.1414, abs=1e-4) and f1["n"] == 2
    assert saved["table3"]["ReLoc{D}"]["auc"] == {"mean": None, "std": None, "n": 0}
    assert saved["table4"]["jpeg:60"]["P{D}"]["f1"]["mean"] == pytest.approx(0.1)
    assert saved["seconds"]["plain"]["mean"] == pytest.approx(110)
    text = (replicate.RESULTS / "replicate.md").read_text()
    assert "| P{P} | 0.600 ± 0.141 |" in text and "Table IV: trained at QF 70-100, tested at jpeg:60" in text


def test_finished_evaluation_part_is_skipped(replicate, tmp_path, capsys):
    results = {"seed": 3, "parts": {"eval-t3": {"finished": True}}, "seconds": {"eval-t3": 5}, "table3": {"x": 1}}
    replicate.run_part("eval-t3", 3, tmp_path / "work", "unused", results, force=False)
    assert "skipped" in capsys.readouterr().out
    assert results["table3"] == {"x": 1} and not (tmp_path / "work").exists()


def test_parts_are_listed_in_run_order(replicate, capsys):
    replicate.main(["--list-parts"])
    parts = capsys.readouterr().out.split()
    assert parts.index("plain") < parts.index("val-gap") < parts.index("finetune") < parts.index("reloc")
    assert parts.index("reloc") < parts.index("equal-updates") < parts.index("eval-t3")


def test_parts_finished_in_parallel_processes_are_all_kept(replicate):
    """Two parts of one seed start from the same file; each writes only what it changed."""
    start = {"seed": 4, "parts": {"data": {"finished": True}}, "seconds": {"data": 3}, "dataset": {"train": 5}}
    replicate.save_results(4, start)
    stale = replicate.load_results(4)
    finetune = json.loads(json.dumps(stale))
    finetune["parts"]["finetune"] = {"finished": True}
    finetune["seconds"]["finetune"] = 10
    reloc = json.loads(json.dumps(stale))
    reloc["parts"]["reloc"] = {"finished": True}
    reloc["seconds"]["reloc"] = 20
    reloc["config"] = {"base": ["x"]}
    replicate.merge_results(4, stale, finetune)
    merged = replicate.merge_results(4, stale, reloc)
    assert replicate.load_results(4) == merged
    assert set(merged["parts"]) == {"data", "finetune", "reloc"}
    assert merged["seconds"] == {"data": 3, "finetune": 10, "reloc": 20}
    assert merged["dataset"] == {"train": 5} and merged["config"] == {"base": ["x"]}


def test_paired_differences_pool_seeds_and_bound_the_mean(replicate):
    seeds = []
    for seed, gain in ((0, 0.1), (1, 0.3)):
        names = [f"img{i}" for i in range(20)]
        base = {n: [0.2 + 0.01 * i, 0.6] for i, n in enumerate(names)}
        better = {n: [v[0] + gain + (0.05 if i % 2 else -0.05), 0.6 if i else None] for i, (n, v) in enumerate(base.items())}
        seeds.append({"per_image_t3": {"ReLoc{D}": better, "D|P{D}": base}})
    paired = replicate.paired_differences(seeds)
    f1 = paired["ReLoc{D} - D|P{D}"]["f1"]
    assert f1["mean"] == pytest.approx(0.2) and f1["per_seed"] == [0.1, 0.3] and f1["images"] == 40
    assert 0.17 < f1["ci95"][0] < 0.2 < f1["ci95"][1] < 0.23  # images resampled within seeds
    auc = paired["ReLoc{D} - D|P{D}"]["auc"]
    assert auc["mean"] == 0 and auc["images"] == 38  # the None AUC of img0 is left out, in both seeds
    assert "ReLoc{D} - D|P{D} equal-updates" not in paired
