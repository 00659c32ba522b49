"""benchmarks/generalization.py's arithmetic: F1 / flagged share per threshold, the threshold
chosen on casia1-dev, paired differences, the variants' settings."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture
def gen(monkeypatch):
    return load_benchmark("generalization.py", "generalization_benchmark", monkeypatch)


def test_at_thresholds_gives_f1_on_a_forgery_and_the_flagged_share_on_an_authentic_photo(gen):
    probabilities = np.array([[0.9, 0.6], [0.3, 0.05]])
    truth = np.array([[True, False], [True, False]])
    values = dict(zip(gen.THRESHOLDS, gen.at_thresholds(probabilities, truth)))
    assert values[0.5] == pytest.approx(2 * 1 / (2 + 2))  # flagged {0.9, 0.6}: one of two true pixels
    assert values[0.25] == pytest.approx(2 * 2 / (3 + 2))  # flagged {0.9, 0.6, 0.3}
    assert values[0.95] == 0.0
    authentic = dict(zip(gen.THRESHOLDS, gen.at_thresholds(probabilities, np.zeros_like(truth))))
    assert authentic[0.5] == 0.5 and authentic[0.05] == 0.75 and authentic[0.95] == 0.0


def row(key: str, tampered: bool, auc: float | None, curve: list[float], score: float, source: str = "casia") -> dict:
    return {"key": f"{source}/{key}", "source": source, "image": key, "tampered": tampered, "auc": auc,
            "f1": curve[9], "best_f1": max(curve), "score": score, "at_thresholds": curve}  # fmt: skip


def test_summary_chooses_the_threshold_of_the_best_mean_f1_and_reports_the_authentic_share_there(gen):
    low = [0.8 if i < 4 else 0.1 for i in range(19)]  # F1 high below 0.25
    rows = [
        row("Sp_D_a.jpg", True, 0.9, low, 0.9),
        row("Sp_S_b.jpg", True, 0.7, low, 0.8),
        row("Au_c.jpg", False, None, [0.5 if i < 4 else 0.0 for i in range(19)], 0.2),
        row("s1.png", True, 0.95, low, 0.9, source="synthetic"),
    ]
    summary = gen.summary_of(rows)
    chosen = summary["casia"]["chosen_threshold"]
    assert chosen["threshold"] == 0.05 and chosen["f1"]["mean"] == 0.8
    assert chosen["authentic_pixels_flagged"]["mean"] == 0.5
    assert summary["casia"]["splice"]["auc"]["mean"] == 0.9 and summary["casia"]["copy-move"]["auc"]["mean"] == 0.7
    assert summary["casia"]["image_auc"] == 1.0  # both forgeries score above the authentic photo
    assert summary["synthetic"]["auc"]["mean"] == 0.95


def test_paired_differences_match_images_by_key_and_skip_undefined(gen):
    curve = [0.0] * 19
    base = [
        row("a.jpg", True, 0.6, curve, 0.5),
        row("b.jpg", True, 0.7, curve, 0.5),
        row("c.jpg", True, None, curve, 0.5),
    ]
    new = [
        row("a.jpg", True, 0.7, curve, 0.5),
        row("b.jpg", True, 0.9, curve, 0.5),
        row("c.jpg", True, 0.8, curve, 0.5),
    ]
    result = gen.paired(new, base, "auc", "casia")
    assert result["n"] == 2 and result["mean"] == pytest.approx(0.15)


def test_every_ablation_variant_turns_off_only_its_trait(gen):
    traits = gen.VARIANTS["traits"]
    for name, spec in gen.VARIANTS.items():
        if name.startswith("no-") and name != "no-large-hosts":
            assert spec["settings_files"] == traits["settings_files"] and spec["hosts"] == traits["hosts"]
            assert all(value in (0, 0.0) for value in spec["settings"].values())
    assert "hosts" not in gen.VARIANTS["no-large-hosts"]


def test_recipe_variants_are_valid_overrides_of_the_plain_stage_on_the_traits_set(gen, tmp_path, monkeypatch):
    from reloc.config import load_config

    made = []
    monkeypatch.setattr(gen, "make_data", lambda recipe, work, name: made.append(name) or {})
    for name, overrides in gen.RECIPE_VARIANTS.items():
        assert name not in gen.VARIANTS
        config = load_config(gen.ROOT / "configs/release/plain.yaml", [*gen.TRAINING, *overrides])
        assert config.train.epochs == 4 and config.optim.lr == 1e-4  # the same fine-tune, one change
        assert gen.make_variant_data(name, tmp_path) == tmp_path / "data-traits"
    assert load_config(None, gen.RECIPE_VARIANTS["traits-augment"]).train.task == "finetune"
    assert made == ["data-traits"] * len(gen.RECIPE_VARIANTS)  # one shared training set, made on demand
