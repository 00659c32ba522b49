"""Configuration: defaults < YAML < --set, clear errors, the resolved file reproduces the run."""

from __future__ import annotations

import pytest

from reloc.config import Config, load_config, parse_override


def test_override_precedence_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {dataset: d, batch_size: 12}\ntrain: {epochs: 5, task: reloc}\n")
    config = load_config(path, ["train.epochs=7", "model.restorer_args={preset: small}", "optim.discriminator_betas=[0.4, 0.9]"])
    assert (config.data.batch_size, config.train.epochs, config.train.task) == (12, 7, "reloc")
    assert config.model.restorer_args == {"preset": "small"}
    assert config.optim.discriminator_betas == (0.4, 0.9)
    assert config.data.crop == Config().data.crop  # untouched default
    config.to_yaml(tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epoch=3"], "unknown setting train.'epoch'"),
        (["nonsense"], "section.key=value"),
        (["data=3"], "must be a mapping"),
    ],
)
def test_bad_overrides_name_the_setting(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_validate_lists_every_problem():
    config = load_config(None, ["train.task=plainn", "train.loss=mine", "train.loss_terms=[gan]"])
    with pytest.raises(ValueError) as error:
        config.validate()
    text = str(error.value)
    assert "train.task" in text and "train.loss must" in text and "loss_terms" in text and "data.dataset" in text


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="absent.yaml"):
        load_config(tmp_path / "absent.yaml")
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}


def test_new_options_are_validated():
    config = load_config(None, ["data.dataset=x", "optim.schedule=step", "train.restorer_warmup_epochs=1"])
    with pytest.raises(ValueError) as error:
        config.validate()
    assert "optim.schedule" in str(error.value) and "restorer_warmup_epochs applies" in str(error.value)
    with pytest.raises(ValueError, match="smaller than train.epochs"):
        load_config(None, ["data.dataset=x", "train.task=reloc", "train.epochs=2", "train.restorer_warmup_epochs=2"]).validate()
    assert load_config(None, []).optim.schedule == "plateau" and load_config(None, []).train.restorer_warmup_epochs == 0
