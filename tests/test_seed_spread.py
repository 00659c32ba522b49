"""benchmarks/seed_spread.py: per-distortion means of each training and paired differences
from the first over the images both evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark
from reloc.engine.evaluate import record_filename


@pytest.fixture()
def spread(monkeypatch):
    return load_benchmark("seed_spread.py", "seed_spread", monkeypatch)


def write_record(folder: Path, distortion: str, aucs: dict[str, float], situation: str = "D|P{D}") -> None:
    """A ``reloc eval`` record of ``situation`` with per-image AUCs (F1 = AUC / 2, IoU = AUC / 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"name": n, "f1": a / 2, "iou": a / 3, "auc": a} for n, a in aucs.items()]
    mean = {m: sum(r[m] for r in rows) / len(rows) for m in ("f1", "iou", "auc")}
    record = {
        "situation": situation,
        "distortion": distortion,
        "metrics": {"per-image": mean},
        "images": len(rows),
        "protocol": {"metric": "paper", "threshold": 0.5},
        "per_image": rows,
        "localizer": str(folder / "localizer.safetensors"),
    }
    (folder / record_filename(situation, distortion)).write_text(json.dumps(record))


def test_paired_differences_follow_the_images_by_name_and_skip_missing_values(spread, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_record(first, "jpeg:75", {"x": 0.6, "y": 0.8, "z": 0.7, "w": 0.5})
    write_record(second, "jpeg:75", {"y": 0.9, "x": 0.7, "z": float("nan"), "w": 0.6})  # another order, one NaN
    write_record(first, "none", {"x": 0.9, "y": 0.9})  # only in the first: not compared
    out = tmp_path / "spread.json"
    assert spread.main([str(first), str(second), "--label", "s0", "--label", "s1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["distortions"]) == ["jpeg:75"]
    row = result["distortions"]["jpeg:75"]
    assert row["means"]["s0"]["auc"] == pytest.approx(0.65)
    difference = row["difference_from_first"]["s1"]["auc"]
    assert difference["images"] == 3 and difference["mean"] == pytest.approx(0.1)
    low, high = difference["ci95"]
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)  # every paired difference is +0.1
    assert row["difference_from_first"]["s1"]["f1"]["mean"] == pytest.approx(0.05)
    assert result["weights"]["s1"] == {"localizer": str(second / "localizer.safetensors")}  # no digest recorded


def test_unusable_inputs_are_refused_with_a_message(spread, tmp_path):
    write_record(tmp_path / "a", "jpeg:75", {"x": 0.5, "y": 0.6})
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "o.json")
    with pytest.raises(SystemExit, match="at least two folders"):
        spread.main([str(tmp_path / "a"), "--out", out])
    with pytest.raises(SystemExit, match="no `reloc eval` record"):
        spread.main([str(tmp_path / "a"), str(tmp_path / "empty"), "--out", out])
    write_record(tmp_path / "b", "none", {"x": 0.5, "y": 0.6})
    with pytest.raises(SystemExit, match="share no distortion"):
        spread.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", out])
    (tmp_path / "empty" / "cut.json").write_text('{"distortion": "jpeg')  # a truncated record
    with pytest.raises(SystemExit, match="cut.json: not an evaluation record"):
        spread.main([str(tmp_path / "a"), str(tmp_path / "empty"), "--out", out])
    with pytest.raises(SystemExit, match="1 labels for 2 folders"):
        spread.main([str(tmp_path / "a"), str(tmp_path / "a"), "--label", "x", "--out", out])


def test_a_folder_of_several_situations_is_compared_by_the_named_one(spread, tmp_path):
    plain, reloc = tmp_path / "plain", tmp_path / "reloc"
    write_record(plain, "none", {"x": 0.9, "y": 0.7}, situation="P{P}")  # what `reloc eval --plain` writes
    write_record(plain, "none", {"x": 0.9, "y": 0.7}, situation="P{D}")
    write_record(plain, "jpeg:75", {"x": 0.6, "y": 0.5}, situation="P{D}")
    write_record(reloc, "none", {"x": 0.8, "y": 0.8}, situation="ReLoc{D}")
    write_record(reloc, "jpeg:75", {"x": 0.8, "y": 0.7}, situation="ReLoc{D}")
    out = tmp_path / "o.json"
    with pytest.raises(SystemExit, match=r"two records of none \(situations P\{D\}, P\{P\}\).*--situation"):
        spread.main([str(plain), str(reloc), "--out", str(out)])
    with pytest.raises(SystemExit, match="3 situations for 2 folders"):
        spread.main(
            [str(plain), str(reloc), "--situation", "P{D}", "--situation", "a", "--situation", "b", "--out", str(out)]
        )
    with pytest.raises(SystemExit, match=r"no `reloc eval` record of situation P\{D\}"):  # one name for both folders
        spread.main([str(plain), str(reloc), "--situation", "P{D}", "--out", str(out)])
    argv = [str(plain), str(reloc), "--situation", "P{D}", "--situation", "ReLoc{D}", "--out", str(out)]
    assert spread.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["situations"] == {str(plain): "P{D}", str(reloc): "ReLoc{D}"}
    assert result["distortions"]["jpeg:75"]["difference_from_first"][str(reloc)]["auc"]["mean"] == pytest.approx(0.2)
    assert result["distortions"]["none"]["difference_from_first"][str(reloc)]["auc"]["mean"] == pytest.approx(0.0)
