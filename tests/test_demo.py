"""``reloc demo`` on the shipped models, shrunk (one small image per photo): the report,
the records in ``reloc eval``'s layout and the windows it runs the models in."""

import json

from reloc import demo
from reloc.pretrained import card

#: the demo's situations and the shipped model each runs
MODELS = {"P{P}": "plain", "P{D}": "plain", "D|P{D}": "robust", "ReLoc{D}": "reloc"}


def test_demo_writes_report_and_eval_records(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "PER_PHOTO", 1)
    monkeypatch.setattr(demo, "SIZE", 128)
    monkeypatch.setattr(demo, "FEATURE_PIXELS", 50)
    report = demo.run_demo(tmp_path, progress=False)

    text = report.read_text()
    assert "P{P}" in text and "ReLoc{D}" in text
    assert "## Time on this machine" in text
    windows = {name: card(model)["window"] for name, model in MODELS.items()}
    if len({tuple(w) for w in windows.values()}) > 1:  # the header names each situation's window
        assert all(f"{name} {w[0]} / {w[1]}" in text for name, w in windows.items())
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "eval").glob("*.json"))]
    situations = {r["situation"] for r in records}
    assert {"P{P}", "P{D}", "D|P{D}", "ReLoc{D}"} <= situations
    for record in records:
        assert record["images"] == 4  # one per scikit-image photo
        # each model in the window its weights record (the release recipe's validation choice)
        assert [record["protocol"]["window"], record["protocol"]["stride"]] == card(MODELS[record["situation"]])[
            "window"
        ]
        assert 0.0 <= record["metrics"]["per-image"]["auc"] <= 1.0
    assert any((tmp_path / "figures").glob("*.png"))
