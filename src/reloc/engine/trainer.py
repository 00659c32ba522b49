"""The generic training loop: data, epochs, validation, logs, checkpoints and resume.

Run folder::

    RUN/config.yaml                      the resolved configuration (re-run it to reproduce)
    RUN/metrics.csv                      one row per epoch: losses, validation metrics, rates, seconds
    RUN/events.out.tfevents.*            TensorBoard scalars
    RUN/checkpoints/last.pt              everything needed to resume, written atomically
    RUN/weights/{last,best}/<role>.safetensors   self-describing weights (best by ``train.select_by``)

A killed run continues with ``resume=True`` from the last completed epoch and reaches the
same weights as an uninterrupted run: crops, distortions and shuffling are functions of
(seed, epoch, index), and the checkpoint holds every RNG, optimizer and scheduler state.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from reloc.config import Config, load_config
from reloc.data.catalog import DatasetError, load_dataset, split_by_source, validate
from reloc.data.datasets import TrainCrops
from reloc.devices import pick_device
from reloc.engine.distributed import DistContext
from reloc.engine.tasks import NonFiniteLossError, Task, create_task
from reloc.io_utils import atomic_path
from reloc.models.weights import save_network

CHECKPOINT = Path("checkpoints") / "last.pt"
#: ``train.select_by`` -> (validation column, +1 if higher is better else -1)
SELECTION = {"f1": ("val_f1", 1.0), "auc": ("val_auc", 1.0), "loss": ("val_localization", -1.0)}


def selection_score(validation: dict[str, float], select_by: str) -> float:
    """Higher-is-better score of an epoch's validation for ``select_by``; NaN counts as worst."""
    column, sign = SELECTION[select_by]
    value = validation.get(column, float("nan"))
    return sign * value if value == value else float("-inf")


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    epochs: int
    select_by: str
    networks: dict[str, torch.nn.Module]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def build_datasets(config: Config, needs_distorted: bool, dist: DistContext) -> tuple[TrainCrops, TrainCrops]:
    """Training crops (new each epoch) and fixed validation crops from a source-disjoint split."""
    refs = load_dataset(config.data.dataset)
    if dist.is_main:
        refs = validate(refs)
    refs = dist.gather(refs)[0] if dist.enabled else refs
    splits = split_by_source(refs, config.train.seed, config.data.test_fraction, config.data.val_fraction)
    if not splits["train"] or not splits["val"]:
        raise DatasetError(
            f"{config.data.dataset}: the split left {len(splits['train'])} training and "
            f"{len(splits['val'])} validation images; both need at least one (see data.val_fraction)"
        )
    distortion = config.data.distortion if needs_distorted else None
    train = TrainCrops(splits["train"], config.data.crop, distortion, config.train.seed, config.data.tamper_bias,
                       cache_mb=config.data.cache_mb)
    val = TrainCrops(splits["val"], config.data.crop, config.data.distortion, config.train.seed + 1, config.data.tamper_bias,
                     cache_mb=config.data.cache_mb)
    return train, val


class MetricsLog:
    """``metrics.csv`` (one row per epoch) and TensorBoard, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, first_epoch: int) -> None:
        """``first_epoch``: epochs already done (rows of later epochs are dropped)."""
        self.path = run_dir / "metrics.csv"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # drop rows of epochs that will be run again after a resume
            with self.path.open() as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= first_epoch]
            self._rewrite(rows)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir))

    def _rewrite(self, rows: list[dict]) -> None:
        if not rows:
            self.path.unlink(missing_ok=True)
            return
        fields = list(rows[0])
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, step)

    def epoch(self, row: dict[str, float | int | str]) -> None:
        if not self.enabled:
            return
        rows = []
        if self.path.exists():
            with self.path.open() as handle:
                rows = list(csv.DictReader(handle))
        fields = list(dict.fromkeys([*(rows[0] if rows else {}), *row]))
        rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        for key, value in row.items():
            if isinstance(value, float) and key != "epoch":
                self.scalar(f"epoch/{key}", value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def export_weights(task: Task, folder: Path) -> None:
    for role, network in task.networks.items():
        save_network(network, folder / f"{role}.safetensors")


def train(config: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``config`` into ``run_dir``; with ``resume``, continue from its last checkpoint.

    Raises:
        NonFiniteLossError: a loss became NaN/inf; the last good checkpoint is kept.
        DatasetError: the dataset is empty, unreadable or too small to split.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT
    if resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"{run_dir}: nothing to resume ({CHECKPOINT} is missing)")
        config = load_config(run_dir / "config.yaml")
    config.validate()
    dist = DistContext.from_environment("cuda" if torch.cuda.is_available() and config.train.device != "cpu" else "cpu")
    device = pick_device(config.train.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    seed_everything(config.train.seed)
    task = create_task(config, device, dist)
    train_set, val_set = build_datasets(config, task.needs_distorted, dist)
    sampler = DistributedSampler(
        train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=config.train.seed, drop_last=True
    )
    batch_size = min(config.data.batch_size, max(1, len(train_set) // dist.world_size))
    loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, num_workers=config.data.workers, drop_last=True,
        pin_memory=device.type == "cuda",
    )
    val_sampler = DistributedSampler(val_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=False)
    val_loader = DataLoader(val_set, batch_size=batch_size, sampler=val_sampler, num_workers=config.data.workers)

    best_score = float("-inf")
    first_epoch = 0
    if resume:
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"])
        best_score, first_epoch = state["best_score"], state["task"]["epoch"]
    elif dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.to_yaml(run_dir / "config.yaml")
    dist.barrier()

    log = MetricsLog(run_dir, dist.is_main, first_epoch)
    steps = len(loader) if config.data.steps_per_epoch is None else min(len(loader), config.data.steps_per_epoch)
    try:
        for epoch in range(first_epoch, config.train.epochs):
            task.epoch = epoch
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            started = time.perf_counter()
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            phases: set[str] = set()
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{config.train.epochs}", disable=not (progress and dist.is_main), leave=False)
            for index, batch in enumerate(loader):
                if index >= steps:
                    break
                phase = task.phase()
                phases.add(phase)
                losses = task.train_step(batch)
                task.step += 1
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                    counts[key] = counts.get(key, 0) + 1
                    if task.step % config.train.log_every == 0:
                        log.scalar(f"step/{key}", value, task.step)
                rate = (index + 1) * batch_size * dist.world_size / (time.perf_counter() - started)
                bar.set_postfix({"phase": phase[:4], **{k: f"{v:.4f}" for k, v in losses.items() if "_" not in k}, "img/s": f"{rate:.1f}"})
                bar.update(1)
            bar.close()
            validation = task.validate(val_loader)
            task.end_epoch(validation, phases)
            task.epoch = epoch + 1
            row: dict[str, float | int | str] = {"epoch": epoch + 1, "phase": "+".join(sorted(phases))}
            row.update({f"train_{k}": sums[k] / counts[k] for k in sums})
            row.update(validation)
            row.update(task.learning_rates())
            row["seconds"] = time.perf_counter() - started
            score = selection_score(validation, config.train.select_by)
            improved = score > best_score or (epoch == first_epoch == 0)  # the first epoch is always kept
            if improved:
                best_score = score
            if dist.is_main:
                log.epoch(row)
                export_weights(task, run_dir / "weights" / "last")
                if improved:
                    export_weights(task, run_dir / "weights" / "best")
                atomic_torch_save({"task": task.state_dict(), "rng": rng_state(), "best_score": best_score}, checkpoint_path)
            dist.barrier()
    except NonFiniteLossError as error:
        raise NonFiniteLossError(
            f"{error}; stopped. The last good checkpoint ({checkpoint_path}) is kept; "
            "lower the learning rate or check the data, then resume"
        ) from None
    finally:
        log.close()
    return TrainResult(run_dir, config.train.epochs, config.train.select_by, task.networks)
