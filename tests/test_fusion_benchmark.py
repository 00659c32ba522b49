"""benchmarks/fusion.py's rules and arithmetic: the library's fusion at the shipped weight is one
of its rules, a method that did not apply leaves the learned map, the per-image records and
the paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_benchmark
from reloc.evidence import DQ_WEIGHT, Evidence


@pytest.fixture
def fusion(monkeypatch):
    return load_benchmark("fusion.py", "fusion_benchmark", monkeypatch)


def maps() -> dict:
    learned = np.full((8, 8), 0.2, np.float32)
    dq = np.zeros((8, 8), np.float32)
    dq[:4] = 1.0
    clones = np.zeros((8, 8), np.float32)
    clones[7, 7] = 1.0
    return {"learned": learned, "dq": dq, "clones": clones}


def test_the_shipped_fusion_is_the_rule_at_the_shipped_weight(fusion):
    found = [Evidence("dq", maps()["dq"], ""), Evidence("clones", maps()["clones"], "")]
    shown = fusion.RULES[f"clones+dq-{DQ_WEIGHT}"](maps()["learned"], found)
    expected = (1 - DQ_WEIGHT) * 0.2 + DQ_WEIGHT * maps()["dq"]
    expected[7, 7] = 1.0
    np.testing.assert_allclose(shown, expected, rtol=1e-6)
    maximum = fusion.RULES["clones+dq-max"](maps()["learned"], found)
    assert maximum[0, 0] == 1.0 and maximum[5, 0] == np.float32(0.2) and maximum[7, 7] == 1.0
    absent = [Evidence("dq", None, "not applicable"), Evidence("clones", None, "not applicable")]
    for rule in fusion.RULES:
        assert np.array_equal(fusion.RULES[rule](maps()["learned"], absent), maps()["learned"]), rule


def test_rule_rows_score_forgeries_and_count_flagged_authentic_pixels(fusion):
    truth = np.zeros((8, 8), bool)
    truth[:4] = True  # the dq map's region
    rows = {r["rule"]: r for r in fusion.rule_rows("a.jpg", maps(), truth, {"source": "casia", "image": "a.jpg"})}
    assert set(rows) == set(fusion.RULES)
    assert rows["learned"]["f1"] == 0.0 and rows[f"dq-{DQ_WEIGHT}"]["f1"] == 1.0  # only the region over 0.5
    assert rows[f"dq-{DQ_WEIGHT}"]["auc"] == 1.0 and rows["learned"]["auc"] == 0.5
    authentic = fusion.rule_rows("b.jpg", maps(), np.zeros((8, 8), bool), {"source": "casia", "image": "b.jpg"})
    flagged = {r["rule"]: r["flagged"] for r in authentic}
    assert flagged["learned"] == 0.0 and flagged["dq-max"] == 0.5 and flagged["clones"] == 1 / 64


def test_paired_differences_match_on_the_image(fusion):
    rows = [
        {"key": "learned/a", "rule": "learned", "auc": 0.5, "source": "casia", "tampered": True},
        {"key": "learned/b", "rule": "learned", "auc": 0.7, "source": "casia", "tampered": True},
        {"key": "dq-0.5/a", "rule": "dq-0.5", "auc": 0.9, "source": "casia", "tampered": True},
        {"key": "dq-0.5/b", "rule": "dq-0.5", "auc": 0.7, "source": "casia", "tampered": True},
    ]
    result = fusion.paired(rows, "dq-0.5", "auc", lambda r: True)
    assert result["n"] == 2 and result["mean"] == pytest.approx(0.2)
