"""Training: every task runs, resume is exact after a kill, NaN stops cleanly, 2-process DDP agrees."""

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

from reloc.config import load_config
from reloc.engine import tasks
from reloc.engine.tasks import NonFiniteLossError
from reloc.engine.trainer import CHECKPOINT, train

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
    replayed = load_config(plain_run / "config.yaml")
    assert replayed.to_dict() == load_config(plain_run / "config.yaml").to_dict()
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
    config = tiny_config(dataset, "train.task=reloc", f"model.localizer_weights={plain_run}", "train.alternate_every=1", "train.epochs=1")
    train(config, tmp_path, progress=False)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1].split(",")[1] == "localization+restoration"


def test_finetune_without_starting_weights_is_refused(dataset):
    with pytest.raises(ValueError, match="localizer_weights"):
        tiny_config(dataset, "train.task=finetune").validate()


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
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert state["task"]["epoch"] == 1
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / CHECKPOINT, weights_only=False)["task"]["networks"]["localizer"]


def test_resume_after_kill_reaches_the_same_weights(dataset, tmp_path):
    overrides = [f"data.dataset={dataset}", *TINY, "train.task=plain", "train.epochs=4", "data.steps_per_epoch=6"]
    reference = tmp_path / "uninterrupted"
    train(load_config(None, overrides), reference, progress=False)

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "reloc", "train", "--out", str(killed), "--no-progress"]
    for item in overrides:
        command += ["--set", item]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    deadline = time.monotonic() + 120
    while not (killed / CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    epochs_done = torch.load(killed / CHECKPOINT, weights_only=False)["task"]["epoch"]
    assert 1 <= epochs_done < 4

    train(load_config(killed / "config.yaml"), killed, resume=True, progress=False)
    expected, actual = _final_weights(reference), _final_weights(killed)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    epochs = [line.split(",")[0] for line in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4"]


def _ddp_worker(rank: int, world: int, port: int, dataset: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = load_config(None, [f"data.dataset={dataset}", *TINY, "train.task=reloc", "train.alternate_every=1"])
    result = train(config, out, progress=False)
    torch.save({role: net.state_dict() for role, net in result.networks.items()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_ddp_ends_with_identical_weights(dataset, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(2, port, str(dataset), str(tmp_path)), nprocs=2, start_method="spawn")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for role in rank0:
        for key in rank0[role]:
            assert torch.equal(rank0[role][key], rank1[role][key]), f"{role}.{key}"
    assert (tmp_path / "metrics.csv").is_file()


def test_cosine_schedule_follows_the_epoch(dataset, tmp_path):
    import math

    config = tiny_config(dataset, "train.task=plain", "train.epochs=3", "optim.schedule=cosine", "optim.cosine_min_factor=0.1")
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("lr_localizer")
    rates = [float(row.split(",")[column]) for row in rows[1:]]
    expected = [1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * e / 3))) for e in (1, 2, 3)]
    assert rates == pytest.approx(expected, rel=1e-4)


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
        dataset, "train.task=reloc", f"model.localizer_weights={plain_run}", "train.epochs=2", "train.restorer_warmup_epochs=1"
    )
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert [row.split(",")[1] for row in rows[1:]] == ["warmup", "restoration"]
    assert calls["discriminator"] == 2  # 2 restoration steps after the warm-up, none in it
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)["task"]
    assert state["updates"] == {"localizer": 0, "restorer": 4, "discriminator": 2, "warmup": 2}
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


@pytest.mark.parametrize("select_by", ["loss", "auc"])
def test_best_weights_follow_select_by(dataset, tmp_path, monkeypatch, select_by):
    """weights/best holds the epoch chosen by train.select_by (scripted validation scores)."""
    from reloc.engine.trainer import SELECTION
    from reloc.models.weights import load_network

    column = SELECTION[select_by][0]
    scripted = iter([0.5, 0.2, 0.9] if select_by == "loss" else [0.6, 0.9, 0.7])  # best: epoch 2 either way
    snapshots = []
    real_validate = tasks.Task.validate

    def validate(self, loader):
        result = real_validate(self, loader)
        result[column] = next(scripted)
        snapshots.append({k: v.clone() for k, v in self.networks["localizer"].state_dict().items()})
        return result

    monkeypatch.setattr(tasks.Task, "validate", validate)
    config = tiny_config(dataset, "train.task=plain", "train.epochs=3", f"train.select_by={select_by}")
    train(config, tmp_path, progress=False)
    best = load_network(tmp_path / "weights" / "best" / "localizer.safetensors").state_dict()
    assert all(torch.equal(best[k], v) for k, v in snapshots[1].items())
    assert not all(torch.equal(best[k], v) for k, v in snapshots[2].items())


def test_unknown_select_by_is_refused(dataset):
    with pytest.raises(ValueError, match="select_by"):
        tiny_config(dataset, "train.select_by=iou").validate()


def test_restorer_learning_rate_is_separate(dataset, plain_run, tmp_path):
    config = tiny_config(
        dataset, "train.task=reloc", f"model.localizer_weights={plain_run}", "optim.restorer_lr=0.0002",
        "train.epochs=1",
    )
    train(config, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), rows[1].split(",")
    assert float(values[header.index("lr_restorer")]) == pytest.approx(2e-4)
    assert float(values[header.index("lr_localizer")]) == pytest.approx(1e-3)
