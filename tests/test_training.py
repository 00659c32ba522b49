"""Training: every task runs, resume is exact after a kill (and falls back past a damaged
checkpoint), checkpoints cannot run code, the split is recorded, NaN stops cleanly,
2-process DDP agrees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from reloc import runs
from reloc.config import ConfigError, load_config
from reloc.engine import tasks
from reloc.engine.tasks import NonFiniteLossError
from reloc.engine.trainer import train
from reloc.runs import CHECKPOINT, PREVIOUS_CHECKPOINT, CheckpointError

TINY = [
    "data.crop=64",
    "data.batch_size=4",
    "data.steps_per_epoch=2",
    "data.tamper_bias=0.5",
    "model.localizer_args={width: 0.25, faithful: false}",
    "model.restorer_args={preset: tiny}",
    "model.discriminator_args={width: 8}",
    "optim.lr=0.001",
    "train.epochs=2",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from reloc.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize("default", out, count=24, seed=0, size=96, progress=False, workers=1)
    return out


def tiny_config(dataset: Path, *extra: str):
    return load_config(None, [f"data.dataset={dataset}", *TINY, *extra])


@pytest.fixture(scope="module")
def plain_run(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("plain")
    train(tiny_config(dataset, "train.task=plain"), run, progress=False)
    return run


def test_plain_run_writes_config_metrics_checkpoint_and_weights(plain_run):
    lines = (plain_run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,phase,train_localization,val_localization")
    assert len(lines) == 3  # header + 2 epochs
    assert (plain_run / CHECKPOINT).is_file()
    assert (plain_run / "weights" / "best" / "localizer.safetensors").is_file()
    assert list(plain_run.glob("events.out.tfevents.*"))
    assert (plain_run / PREVIOUS_CHECKPOINT).is_file()  # epoch 1's, kept when epoch 2's was written
    assert runs.load_checkpoint(plain_run / PREVIOUS_CHECKPOINT)["task"]["epoch"] == 1
    replayed = load_config(plain_run / "config.yaml")
    assert replayed == tiny_config(replayed.data.dataset, "train.task=plain")  # the file is the run's config
    assert replayed.model.localizer_args == {"width": 0.25, "faithful": False}


@pytest.mark.parametrize("task", ["finetune", "reloc", "joint"])
def test_tasks_start_from_plain_run_and_train(task, dataset, plain_run, tmp_path):
    config = tiny_config(dataset, f"train.task={task}", f"model.localizer_weights={plain_run}")
    result = train(config, tmp_path, progress=False)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    if task == "finetune":
        assert set(result.networks) == {"localizer"}
    else:
        assert set(result.networks) == {"localizer", "restorer", "discriminator"}
        assert "val_psnr_restored" in header and "train_restoration_mae" in header
    if task == "reloc":  # epoch 1 restores, epoch 2 localizes
        rows = (tmp_path / "metrics.csv").read_text().splitlines()[1:]
        assert [row.split(",")[1] for row in rows] == ["restoration", "localization"]


def test_reloc_alternates_every_k_steps(dataset, plain_run, tmp_path):
    config = tiny_config(
        dataset, "train.task=reloc", f"model.localizer_weights={plain_run}", "train.alternate_every=1", "train.epochs=1"
    )
    train(config, tmp_path, progress=False)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1].split(",")[1] == "localization+restoration"


@pytest.mark.parametrize("task", ["finetune", "reloc"])
def test_starting_weights_are_required(task, dataset, tmp_path):
    with pytest.raises(ConfigError, match="localizer_weights"):
        train(tiny_config(dataset, f"train.task={task}"), tmp_path, progress=False)
    assert not (tmp_path / "config.yaml").exists()


def test_non_finite_loss_stops_and_keeps_last_checkpoint(dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = tasks.localization_loss

    def poisoned(logits, target, weights):
        loss = original(logits, target, weights)
        if not torch.is_grad_enabled():  # validation
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 3 else loss  # epoch 1 has 2 steps; NaN at the third

    monkeypatch.setattr(tasks, "localization_loss", poisoned)
    config = tiny_config(dataset, "train.task=plain", "train.epochs=3")
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 3.*last good checkpoint"):
        train(config, tmp_path, progress=False)
    state = runs.load_checkpoint(tmp_path / CHECKPOINT)
    assert state["task"]["epoch"] == 1
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2


def _final_weights(run: Path, role: str = "localizer") -> dict[str, torch.Tensor]:
    return runs.load_checkpoint(run / CHECKPOINT)["task"]["networks"][role]


@pytest.mark.parametrize("stage", ["plain", "restorer pre-training"])
def test_resume_after_kill_reaches_the_same_weights(stage, dataset, plain_run, tmp_path):
    overrides = [f"data.dataset={dataset}", *TINY, "train.task=plain", "train.epochs=4", "data.steps_per_epoch=6"]
    role = "localizer"
    if stage != "plain":  # the recipe's restorer-jpeg: every epoch a warm-up epoch, best by PSNR
        role = "restorer"
        overrides[-3:] = [
            "train.task=reloc",
            f"model.localizer_weights={plain_run}",
            "train.epochs=4",
            "train.restorer_warmup_epochs=4",
            "train.select_by=psnr",
            "data.steps_per_epoch=3",
        ]
    reference = tmp_path / "uninterrupted"
    train(load_config(None, overrides), reference, progress=False)

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "reloc", "train", "--out", str(killed), "--no-progress"]
    for item in overrides:
        command += ["--set", item]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    deadline = time.monotonic() + 120
    while not (killed / CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    epochs_done = runs.epochs_done(killed)
    assert 1 <= epochs_done < 4

    train(load_config(killed / "config.yaml"), killed, resume=True, progress=False)
    expected, actual = _final_weights(reference, role), _final_weights(killed, role)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    epochs = [line.split(",")[0] for line in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4"]


def _ddp_worker(rank: int, world: int, port: int, dataset: str, out: str, start: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    config = load_config(
        None,
        [
            f"data.dataset={dataset}",
            *TINY,
            "train.task=reloc",
            "train.alternate_every=1",
            f"model.localizer_weights={start}",
        ],
    )
    result = train(config, out, progress=False)
    torch.save({role: net.state_dict() for role, net in result.networks.items()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_ddp_ends_with_identical_weights(dataset, plain_run, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(
        _ddp_worker, args=(2, port, str(dataset), str(tmp_path), str(plain_run)), nprocs=2, start_method="spawn"
    )
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for role in rank0:
        for key in rank0[role]:
            assert torch.equal(rank0[role][key], rank1[role][key]), f"{role}.{key}"
    assert (tmp_path / "metrics.csv").is_file()


def test_cosine_schedule_follows_the_epoch(dataset, tmp_path):
    import math

    config = tiny_config(
        dataset, "train.task=plain", "train.epochs=3", "optim.schedule=cosine", "optim.cosine_min_factor=0.1"
    )
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("lr_localizer")
    rates = [float(row.split(",")[column]) for row in rows[1:]]
    expected = [1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * e / 3))) for e in (1, 2, 3)]
    assert rates == pytest.approx(expected, rel=1e-4)


def test_cosine_schedule_with_an_idle_network_warns_nothing(dataset, plain_run, tmp_path, recwarn):
    # the localizer idles through the warm-up while its cosine schedule follows the epoch:
    # torch's "scheduler before optimizer" warning is expected there and must not reach users
    config = tiny_config(
        dataset,
        "train.task=reloc",
        f"model.localizer_weights={plain_run}",
        "train.epochs=2",
        "train.restorer_warmup_epochs=1",
        "optim.schedule=cosine",
    )
    train(config, tmp_path, progress=False)
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_restorer_warmup_trains_only_the_restorer_with_mae(dataset, plain_run, tmp_path, monkeypatch):
    from reloc.models.weights import load_network

    calls = {"discriminator": 0, "localization": 0}
    for name in calls:
        original = getattr(tasks, f"{name}_loss")

        def counting(*args, _original=original, _name=name):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(tasks, f"{name}_loss", counting)
    config = tiny_config(
        dataset,
        "train.task=reloc",
        f"model.localizer_weights={plain_run}",
        "train.epochs=2",
        "train.restorer_warmup_epochs=1",
    )
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert [row.split(",")[1] for row in rows[1:]] == ["warmup", "restoration"]
    assert calls["discriminator"] == 2  # 2 restoration steps after the warm-up, none in it
    assert runs.update_counts(tmp_path) == {"localizer": 0, "restorer": 4, "discriminator": 2, "warmup": 2}
    warm = dict(zip(header, rows[1].split(",")))
    assert float(warm["train_restoration"]) == pytest.approx(100 * float(warm["train_restoration_mae"]), rel=1e-3)
    assert warm["train_restoration_gan"] == "" and warm["train_restoration_localization"] == ""
    # the localizer never trained: identical to the plain run's
    start = load_network(plain_run / "weights" / "best" / "localizer.safetensors").state_dict()
    end = load_network(tmp_path / "weights" / "last" / "localizer.safetensors").state_dict()
    assert all(torch.equal(start[key], end[key]) for key in start)
    # resumed phases continue from the warm-up: a third epoch localizes
    config3 = load_config(tmp_path / "config.yaml", ["train.epochs=3"])
    config3.to_yaml(tmp_path / "config.yaml")
    train(config3, tmp_path, resume=True, progress=False)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[-1].split(",")[1] == "localization"


def test_a_restorer_pre_training_run_selects_by_psnr_and_leaves_the_localizer_alone(
    dataset, plain_run, tmp_path, monkeypatch
):
    """Every epoch a warm-up epoch (the recipe's restorer-jpeg stage): only the restorer trains,
    weights/best holds the epoch of the highest validation PSNR of the restored crops, and the
    localizer's tensors are the plain run's, bit for bit."""
    from reloc.engine import trainer
    from reloc.models.weights import load_network

    scripted = iter([31.0, 30.5])  # the first epoch restores best
    snapshots = []
    real_validate = trainer.run_validation

    def validate(task, *args):
        result = real_validate(task, *args)
        assert result["val_psnr_restored"] == result["val_psnr_restored"]  # the column select_by reads
        result["val_psnr_restored"] = next(scripted)
        snapshots.append({k: v.clone() for k, v in task.networks["restorer"].state_dict().items()})
        return result

    monkeypatch.setattr(trainer, "run_validation", validate)
    config = tiny_config(
        dataset,
        "train.task=reloc",
        f"model.localizer_weights={plain_run}",
        "train.epochs=2",
        "train.restorer_warmup_epochs=2",
        "train.select_by=psnr",
        "data.steps_per_epoch=1",
    )
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == ["warmup", "warmup"]
    assert runs.update_counts(tmp_path) == {"localizer": 0, "restorer": 2, "discriminator": 0, "warmup": 2}
    best = load_network(runs.weights_path(tmp_path, "restorer")).state_dict()
    assert all(torch.equal(best[k], v) for k, v in snapshots[0].items())
    assert not all(torch.equal(best[k], v) for k, v in snapshots[1].items())
    start = load_network(runs.weights_path(plain_run, "localizer")).state_dict()
    for which in runs.WEIGHT_SETS:
        end = load_network(runs.weights_path(tmp_path, "localizer", which)).state_dict()
        assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start), which


@pytest.mark.parametrize("select_by", ["loss", "auc"])
def test_best_weights_follow_select_by(dataset, tmp_path, monkeypatch, select_by):
    """weights/best holds the epoch chosen by train.select_by (scripted validation scores)."""
    from reloc.engine import trainer
    from reloc.engine.trainer import SELECTION
    from reloc.models.weights import load_network

    column = SELECTION[select_by][0]
    scripted = iter([0.5, 0.2, 0.9] if select_by == "loss" else [0.6, 0.9, 0.7])  # best: epoch 2 either way
    snapshots = []
    real_validate = trainer.run_validation

    def validate(task, *args):
        result = real_validate(task, *args)
        result[column] = next(scripted)
        snapshots.append({k: v.clone() for k, v in task.networks["localizer"].state_dict().items()})
        return result

    monkeypatch.setattr(trainer, "run_validation", validate)
    config = tiny_config(dataset, "train.task=plain", "train.epochs=3", f"train.select_by={select_by}")
    train(config, tmp_path, progress=False)
    best = load_network(tmp_path / "weights" / "best" / "localizer.safetensors").state_dict()
    assert all(torch.equal(best[k], v) for k, v in snapshots[1].items())
    assert not all(torch.equal(best[k], v) for k, v in snapshots[2].items())


def test_restorer_learning_rate_is_separate(dataset, plain_run, tmp_path):
    config = tiny_config(
        dataset,
        "train.task=reloc",
        f"model.localizer_weights={plain_run}",
        "optim.restorer_lr=0.0002",
        "train.epochs=1",
    )
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), rows[1].split(",")
    assert float(values[header.index("lr_restorer")]) == pytest.approx(2e-4)
    assert float(values[header.index("lr_localizer")]) == pytest.approx(1e-3)


def test_split_is_recorded_with_its_own_seed(dataset, plain_run, tmp_path):
    from reloc.data.catalog import dataset_fingerprint, load_dataset

    recorded = runs.read_split(plain_run)
    listing = load_dataset(dataset)
    assert recorded.fingerprint == dataset_fingerprint(listing, dataset) and recorded.seed == 0
    ids = {name: set(values) for name, values in recorded.samples.items()}
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert sum(map(len, ids.values())) == len(listing)
    # the split follows data.split_seed, not train.seed (the synth set records train/test itself,
    # so a plain Tp/Gt copy without provenance is what the seed splits)
    folder = tmp_path / "tpgt"
    for sub in ("Tp", "Gt"):
        (folder / sub).mkdir(parents=True)
    for ref in listing:
        (folder / "Tp" / ref.image.name).write_bytes(ref.image.read_bytes())
        (folder / "Gt" / ref.mask.name).write_bytes(ref.mask.read_bytes())
    from reloc.engine.distributed import DistContext
    from reloc.engine.trainer import build_datasets

    def split_of(*extra):
        return build_datasets(tiny_config(folder, *extra), False, DistContext())[2].samples

    assert split_of("train.seed=5") == split_of("train.seed=0")
    assert split_of("data.split_seed=3") != split_of("data.split_seed=0")


def test_checkpoints_load_weights_only_and_a_malicious_one_does_not_run(plain_run, tmp_path):
    state = runs.load_checkpoint(plain_run / CHECKPOINT)  # a real checkpoint loads with weights_only=True
    assert isinstance(state["rng"]["numpy"]["key"], torch.Tensor)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"task": {"epoch": 1}, "x": Payload()}, evil)  # a checkpoint whose pickle calls os.system
    with pytest.raises(CheckpointError, match=r"evil.pt: refused: .*could run code") as error:
        runs.load_checkpoint(evil)
    assert "\n" not in str(error.value)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()


def _copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_resume_falls_back_to_the_previous_checkpoint(damage, dataset, plain_run, tmp_path):
    run = _copy_run(plain_run, tmp_path / "run")
    last = run / CHECKPOINT
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2] if damage == "truncated" else b"")
    with pytest.raises(CheckpointError, match=f"{last}: (truncated or corrupt|empty)"):
        runs.load_checkpoint(last)
    with pytest.warns(UserWarning, match=r"last.pt: .*; resuming from .*previous.pt \(after epoch 1\)"):
        result = train(None, run, resume=True, progress=False)
    assert result.epochs == 2
    assert [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]
    # epoch 2 redone from epoch 1's state gives the uninterrupted run's weights
    expected, actual = _final_weights(plain_run), _final_weights(run)
    assert all(torch.equal(expected[key], actual[key]) for key in expected)


def test_resume_with_no_usable_checkpoint_is_one_line_from_the_cli(plain_run, tmp_path):
    from typer.testing import CliRunner

    from reloc.cli import app

    run = _copy_run(plain_run, tmp_path / "run")
    (run / CHECKPOINT).write_bytes(b"")
    (run / PREVIOUS_CHECKPOINT).write_bytes(b"PK\x03\x04 not a zip")
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert "last.pt: empty file" in lines[0] and "previous.pt: truncated or corrupt" in lines[0]
    assert "start the run again" in lines[0]


def test_resume_refuses_a_different_configuration(dataset, plain_run, tmp_path):
    run = _copy_run(plain_run, tmp_path / "run")
    stored = load_config(run / "config.yaml")
    changed = load_config(run / "config.yaml", ["optim.lr=0.5", "train.epochs=3"])
    with pytest.raises(ConfigError, match=r"differs in optim.lr, train.epochs"):
        train(changed, run, resume=True, progress=False)
    assert train(stored, run, resume=True, progress=False).epochs == 2  # the same one is fine (nothing left)


def test_lowered_batch_size_is_reported(dataset, tmp_path, capsys):
    train(tiny_config(dataset, "train.task=plain", "train.epochs=1", "data.batch_size=500"), tmp_path, progress=False)
    assert "data.batch_size 500 lowered to" in capsys.readouterr().err


def test_checkpoints_of_earlier_versions_still_load(tmp_path):
    """Earlier checkpoints hold NumPy's and Python's RNG states as tuples (with a NumPy
    array): the allow-listed array type loads them with weights_only=True, and resume
    restores them."""
    import random

    import numpy as np

    from reloc.engine.trainer import set_rng_state

    random.seed(3)
    np.random.seed(3)
    legacy = {
        "task": {"epoch": 2},
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "best_score": 0.5,
    }
    expected = (random.random(), np.random.rand())
    torch.save(legacy, tmp_path / "old.pt")
    state = runs.load_checkpoint(tmp_path / "old.pt")
    random.seed(0)
    np.random.seed(0)
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand()) == expected


def test_config_yaml_stores_absolute_paths_and_resumes_from_another_folder(dataset, tmp_path, monkeypatch):
    """A run started with a relative dataset path records it absolute (the relative one in a
    comment), so resuming from any working directory reads the same data."""
    monkeypatch.chdir(dataset.parent)
    run = tmp_path / "run"
    config = tiny_config(Path(dataset.name), "train.task=plain", "train.epochs=1")
    train(config, run, progress=False)
    text = (run / "config.yaml").read_text()
    assert load_config(run / "config.yaml").data.dataset == str(dataset.resolve())
    assert f"# data.dataset: {dataset.name}" in text
    monkeypatch.chdir(tmp_path)
    assert train(None, run, resume=True, progress=False).epochs == 1  # nothing left, but the data are found
    with pytest.raises(ConfigError, match="differs in data.dataset"):
        train(tiny_config(Path("elsewhere"), "train.task=plain", "train.epochs=1"), run, resume=True, progress=False)
