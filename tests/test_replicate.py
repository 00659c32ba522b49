"""benchmarks/replicate.py: configs, the part registry, aggregation and its two intervals, skipping finished parts."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.fixture()
def replicate(tmp_path, monkeypatch):
    module = load_benchmark("replicate.py", "replicate", monkeypatch)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "SEED_RESULTS", tmp_path / "results" / "replicate")
    return module


def row(f1, iou, auc):
    return {"f1": f1, "iou": iou, "auc": auc, "images": 10}


def test_aggregate_gives_mean_and_std_per_situation(replicate):
    for seed, shift in ((0, 0.0), (1, 0.2)):
        replicate.save_results(
            seed,
            {
                "seed": seed,
                "parts": {},
                "seconds": {"plain": 100 + 100 * shift},
                "table3": {"P{P}": row(0.5 + shift, 0.4, 0.9), "ReLoc{D}": row(0.3, 0.2, None)},
                "table4": {"jpeg:60": {"P{D}": row(0.1, 0.1, 0.5)}, "P{P}": row(0.5, 0.4, 0.9)},
            },
        )
    summary = replicate.aggregate()
    saved = json.loads((replicate.RESULTS / "replicate" / "replicate.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["seeds"] == [0, 1]
    f1 = saved["table3"]["P{P}"]["f1"]
    assert f1["mean"] == pytest.approx(0.6) and f1["std"] == pytest.approx(0.1414, abs=1e-4) and f1["n"] == 2
    assert saved["table3"]["ReLoc{D}"]["auc"] == {"mean": None, "std": None, "n": 0}
    assert saved["table4"]["jpeg:60"]["P{D}"]["f1"]["mean"] == pytest.approx(0.1)
    assert saved["seconds"]["plain"]["mean"] == pytest.approx(110)
    text = (replicate.RESULTS / "replicate" / "replicate.md").read_text()
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
    for gain in (0.1, 0.3):
        names = [f"img{i}" for i in range(20)]
        base = {n: [0.2 + 0.01 * i, 0.6] for i, n in enumerate(names)}
        better = {
            n: [v[0] + gain + (0.05 if i % 2 else -0.05), 0.6 if i else None] for i, (n, v) in enumerate(base.items())
        }
        seeds.append({"per_image_t3": {"ReLoc{D}": better, "D|P{D}": base}})
    paired = replicate.paired_differences(seeds)
    f1 = paired["ReLoc{D} - D|P{D}"]["f1"]
    assert f1["mean"] == pytest.approx(0.2) and f1["per_seed"] == [0.1, 0.3] and f1["images"] == 40
    assert 0.17 < f1["ci95_images"][0] < 0.2 < f1["ci95_images"][1] < 0.23  # images resampled within seeds
    # over seeds: mean 0.2, standard error 0.1, t(0.975, 1 df) = 12.706 -> far wider
    assert f1["ci95_seeds"] == pytest.approx([0.2 - 1.2706, 0.2 + 1.2706], abs=1e-3)
    auc = paired["ReLoc{D} - D|P{D}"]["auc"]
    assert auc["mean"] == 0 and auc["images"] == 38  # the None AUC of img0 is left out, in both seeds
    assert "ReLoc{D} - D|P{D} equal-updates" not in paired


def test_seed_interval_is_the_student_t_interval_of_the_seed_means(replicate):
    # docs/results/replication.md's per-seed F1 differences of ReLoc{D} - D|P{D}: mean -0.016, sd 0.016, t(0.975, 2) = 4.303
    low, high = replicate.seed_interval([-0.001, -0.033, -0.014])
    assert low == pytest.approx(-0.016 - 4.303 * 0.016083 / 3**0.5, abs=2e-4) and high > 0  # spans zero
    assert replicate.seed_interval([0.5]) is None


def test_markdown_reports_both_intervals(replicate):
    seeds = []
    for seed, gain in ((0, 0.1), (1, 0.3)):
        names = [f"img{i}" for i in range(10)]
        base = {n: [0.2, 0.6] for n in names}
        seeds.append(
            {
                "seed": seed,
                "parts": {},
                "seconds": {},
                "table3": {"ReLoc{D}": row(0.3, 0.2, 0.7)},
                "per_image_t3": {"ReLoc{D}": {n: [0.2 + gain, 0.6] for n in names}, "D|P{D}": base},
            }
        )
        replicate.save_results(seed, seeds[-1])
    text = replicate.markdown(replicate.aggregate())
    line = next(x for x in text.splitlines() if x.startswith("| ReLoc{D} - D\\|P{D} | F1"))
    # every image of a seed moved alike: no spread over images, the whole spread is between seeds
    assert "+0.200 | (+0.200, +0.200) | +0.100, +0.300 | (-1.071, +1.471) |" in line


def test_each_training_part_has_one_config_merged_over_the_base(replicate, tmp_path):
    from reloc.config import load_config

    training = [name for name, part in replicate.PARTS.items() if part.trains]
    assert set(training) == {p.stem for p in replicate.CONFIGS.glob("*.yaml")} - {"base"}
    for name in training:
        config = load_config(replicate.run_config(name, 7, tmp_path)).check()
        assert config.train.seed == 7 and config.data.dataset == str(tmp_path / "data")
        assert config.data.crop == 64 and config.train.select_by == "loss"  # from base.yaml
    second = load_config(replicate.run_config("plain-b", 7, tmp_path))
    assert second.model.localizer_args == {"width": 0.25, "faithful": False, "highpass": True}  # merged, not replaced
    mixed = load_config(replicate.run_config("reloc-mixed", 7, tmp_path))
    assert mixed.data.distortion == "jpeg:70-100" and mixed.train.loss == "official"  # reloc.yaml via extends
    assert mixed.model.localizer_weights == str(tmp_path / "plain")
    assert load_config(replicate.run_config("equal-updates", 7, tmp_path, epochs=13)).train.epochs == 13


def test_a_part_records_commit_and_torch_version(replicate, tmp_path, monkeypatch):
    import torch

    calls = []
    monkeypatch.setitem(
        replicate.PARTS, "probe", replicate.Part("test part", lambda ctx: calls.append(ctx.seed) or {"x": 1})
    )
    results = replicate.load_results(5)
    replicate.run_part("probe", 5, tmp_path / "work", "unused", results, force=False)
    record = replicate.load_results(5)["parts"]["probe"]
    assert calls == [5] and record["finished"] and record["x"] == 1
    assert record["torch_version"] == torch.__version__ and "git_commit" in record and "git_dirty" in record
    replicate.run_part("probe", 5, tmp_path / "work", "unused", replicate.load_results(5), force=False)
    assert calls == [5]  # finished and not a training part: skipped
