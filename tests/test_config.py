"""Configuration: defaults < YAML < --set merged deeply, typed values, errors naming key and origin."""

from __future__ import annotations

import pytest

from reloc.config import Config, ConfigError, load_config, parse_override


def test_override_precedence_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {dataset: d, batch_size: 12}\ntrain: {epochs: 5, task: reloc}\n")
    config = load_config(
        path, ["train.epochs=7", "model.restorer_args={preset: small}", "optim.discriminator_betas=[0.4, 0.9]"]
    )
    assert (config.data.batch_size, config.train.epochs, config.train.task) == (12, 7, "reloc")
    assert config.model.restorer_args == {"preset": "small"}
    assert config.optim.discriminator_betas == (0.4, 0.9)
    assert config.data.crop == Config().data.crop  # untouched default
    config.to_yaml(tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


def test_builder_arguments_merge_deeply(tmp_path):
    """--set on an *_args mapping adds to the YAML's arguments instead of replacing them."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  localizer_args: {width: 0.5, faithful: false}\n  restorer_args: {preset: small}\n")
    config = load_config(path, ["model.localizer_args={highpass: true}", "model.restorer_args.residual=true"])
    assert config.model.localizer_args == {"width": 0.5, "faithful": False, "highpass": True}
    assert config.model.restorer_args == {"preset": "small", "residual": True}
    assert load_config(path, ["model.localizer_args.width=0.25"]).model.localizer_args == {
        "width": 0.25,
        "faithful": False,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epoch=3"], r"^--set train.epoch=3: unknown setting train.epoch; did you mean train.epochs\?"),
        (["data.cropp=3"], r"unknown setting data.cropp; did you mean data.crop\?"),
        (["trian.epochs=3"], r"unknown setting trian; did you mean train\?"),
        (["nonsense"], "section.key=value"),
        (["data=3"], "data: Input should be a valid dictionary"),
        (["data.crop=abc"], r"^--set data.crop=abc: data.crop: Input should be a valid integer.*\(got 'abc'\)$"),
        (["train.epochs=abc"], "train.epochs: Input should be a valid integer"),
        (["optim.lr=fast"], "optim.lr: Input should be a valid number"),
        (["optim.lr=-1"], "optim.lr: Input should be greater than 0"),
        (["data.tamper_bias=2"], "data.tamper_bias: Input should be less than or equal to 1"),
        (["train.task=plainn"], "train.task: Input should be 'plain', 'finetune', 'reloc' or 'joint'"),
        (["train.loss=mine"], "train.loss: unknown preset 'mine'"),
        (["train.loss_terms=[gan]"], "train.loss_terms: must include 'mae'"),
        (["train.loss_terms=[mae, gann]"], r"train.loss_terms.1: Input should be 'mae', 'gan' or 'localization'"),
        (["optim.schedule=step"], "optim.schedule: Input should be 'plateau' or 'cosine'"),
        (["train.select_by=iou"], "train.select_by"),
        (["data.distortion=jpg:75"], "data.distortion: bad distortion 'jpg:75'"),
        (["model.localizer=dfnc"], r"model.localizer: unknown localizer 'dfnc'; did you mean dfcn\?"),
        (["model.localizer_args={width: 0.5"], r"--set .*: the value is not valid YAML"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(None, overrides)
    assert "\n" not in str(error.value)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  crop: [64\ntrain: {}\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: YAML syntax error: .* at line \d+, column \d+"):
        load_config(path)
    path.write_text("data:\n  crop: abc\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: data.crop: Input should be a valid integer"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="broken.yaml: expected a mapping"):
        load_config(path)


def test_check_lists_every_cross_key_problem():
    config = load_config(
        None,
        ["train.task=finetune", "train.restorer_warmup_epochs=1", "data.test_fraction=0.6", "data.val_fraction=0.5"],
    )
    with pytest.raises(ConfigError) as error:
        config.check()
    text = str(error.value)
    assert "restorer_warmup_epochs applies" in text and "test_fraction + data.val_fraction" in text
    assert "finetune needs model.localizer_weights" in text and "data.dataset is empty" in text
    with pytest.raises(ConfigError, match="must not exceed train.epochs"):
        load_config(
            None, ["data.dataset=x", "train.task=joint", "train.epochs=2", "train.restorer_warmup_epochs=3"]
        ).check()
    with pytest.raises(ConfigError, match="select_by=psnr needs a restorer"):
        load_config(None, ["data.dataset=x", "train.select_by=psnr"]).check()


def test_a_run_of_warm_up_epochs_only_pre_trains_the_restorer():
    """Every epoch a warm-up epoch: the restorer pre-training stage, its best epoch by PSNR."""
    overrides = ["data.dataset=x", "model.localizer_weights=y", "train.task=reloc", "train.epochs=2"]
    config = load_config(None, [*overrides, "train.restorer_warmup_epochs=2", "train.select_by=psnr"]).check()
    assert config.train.select_by == "psnr"


@pytest.mark.parametrize("task", ["finetune", "reloc"])
def test_tasks_starting_from_a_plain_run_need_its_weights(task):
    """Algorithm 1 initialises ReLoc's localizer from M^P: reloc, like finetune, needs it."""
    with pytest.raises(ConfigError, match=f"train.task={task} needs model.localizer_weights"):
        load_config(None, ["data.dataset=x", f"train.task={task}"]).check()
    load_config(None, ["data.dataset=x", f"train.task={task}", "model.localizer_weights=runs/plain"]).check()
    load_config(None, ["data.dataset=x", "train.task=joint"]).check()  # joint may start at random


def test_paper_configs_chain_plain_to_finetune_and_reloc():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "configs" / "paper"
    for path in sorted(folder.glob("*.yaml")):
        config = load_config(path)
        assert config.train.task == "plain", path
        chained = load_config(path, ["train.task=reloc", "model.localizer_weights=runs/plain"])
        chained.check()
        text = path.read_text()
        assert "train.task=finetune" in text and "train.task=reloc" in text and "model.localizer_weights=" in text


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml"):
        load_config(tmp_path / "absent.yaml")
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}


def test_defaults():
    config = load_config(None, [])
    assert config == Config()
    assert (config.optim.schedule, config.train.restorer_warmup_epochs, config.data.split_seed) == ("plateau", 0, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "data.crop=abc"], "error: --set data.crop=abc: data.crop: Input should be a valid integer"),
        (["--set", "train.epochs=abc"], "error: --set train.epochs=abc: train.epochs: Input should be a valid integer"),
        (["--set", "optim.lr=fast"], "error: --set optim.lr=fast: optim.lr: Input should be a valid number"),
        (["--config", "BROKEN"], "broken.yaml: YAML syntax error"),
    ],
)
def test_cli_train_reports_bad_configuration_in_one_line(tmp_path, options, message):
    from typer.testing import CliRunner

    from reloc.cli import app

    (tmp_path / "broken.yaml").write_text("train: {epochs: 3\n")
    options = [str(tmp_path / "broken.yaml") if item == "BROKEN" else item for item in options]
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), *options])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_with_absolute_paths_resolves_relative_dataset_and_weights_only(tmp_path):
    config = load_config(
        None,
        ["data.dataset=data/synth", "model.localizer_weights=pretrained:plain", f"model.restorer_weights={tmp_path}"],
    )
    absolute = config.with_absolute_paths(tmp_path / "base")
    assert absolute.data.dataset == str((tmp_path / "base" / "data" / "synth").resolve())
    assert absolute.model.localizer_weights == "pretrained:plain"
    assert absolute.model.restorer_weights == str(tmp_path)
    assert config.data.dataset == "data/synth"  # the original is unchanged
    assert config.given_paths() == {
        "data.dataset": "data/synth",
        "model.localizer_weights": "pretrained:plain",
        "model.restorer_weights": str(tmp_path),
    }


@pytest.mark.parametrize("flag, expected", [([], [True]), (["--no-keep-freed-memory"], [])])
def test_train_keeps_freed_memory_unless_told_not_to(tmp_path, monkeypatch, flag, expected):
    """``reloc train`` sets glibc's malloc to keep freed memory (as localize and eval do) before it trains."""
    from typer.testing import CliRunner

    from reloc.cli import app
    from reloc.engine import inference

    calls = []
    monkeypatch.setattr(inference, "retain_freed_memory", lambda: calls.append(True) or True)
    (tmp_path / "broken.yaml").write_text("train: {epochs: 3\n")
    result = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "broken.yaml"), *flag]
    )
    assert result.exit_code == 2 and calls == expected
