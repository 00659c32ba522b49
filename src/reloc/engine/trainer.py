"""The generic training loop: data, epochs, validation, logs, checkpoints and resume.

The run folder's layout (config, split, metrics, checkpoints, weights) is
:mod:`reloc.runs`. A killed run continues with ``resume=True`` from the last completed
epoch and reaches the same weights as an uninterrupted run: crops, distortions and
shuffling are functions of (seed, epoch, index), and the checkpoint holds every RNG,
optimizer and scheduler state (as tensors and plain containers only, see
:func:`reloc.runs.load_checkpoint`). A damaged ``last.pt`` falls back to ``previous.pt``.
"""

from __future__ import annotations

import csv
import io
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from reloc import runs
from reloc.config import Config, ConfigError, load_config
from reloc.data.catalog import DatasetError, load_dataset, split_by_source, validate
from reloc.data.datasets import TrainCrops
from reloc.devices import pick_device
from reloc.engine.distributed import DistContext
from reloc.engine.tasks import NonFiniteLossError, Task, create_task
from reloc.errors import UsageError
from reloc.extras import require
from reloc.io_utils import write_text_atomic
from reloc.metrics import LocalizationMetrics
from reloc.models.weights import save_network

#: ``train.select_by`` -> (validation column, +1 if higher is better else -1)
SELECTION = {
    "f1": ("val_f1", 1.0),
    "auc": ("val_auc", 1.0),
    "loss": ("val_localization", -1.0),
    "psnr": ("val_psnr_restored", 1.0),  # the restorer's: ReLocTask.validation_batch
}


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
    #: epochs finished when the run ended (below ``epochs`` when its time limit stopped it)
    finished: int | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python's, NumPy's, torch's (and CUDA's) global RNG states as tensors and numbers,
    so a checkpoint loads with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (or the tuples that checkpoints of earlier
    versions hold)."""
    python, numpy = state["python"], state["numpy"]
    if isinstance(python, dict):
        python = (python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"])
    random.setstate(python)
    if isinstance(numpy, dict):
        numpy = ("MT19937", numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"])
    np.random.set_state(numpy)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def build_datasets(
    config: Config, needs_distorted: bool, dist: DistContext, recorded: runs.RunSplit | None = None
) -> tuple[TrainCrops, TrainCrops, runs.RunSplit]:
    """Training crops (new each epoch) and fixed validation crops from a source-disjoint
    split (``data.split_seed``), and that split as a :class:`~reloc.runs.RunSplit`.

    ``recorded``: the split of the run being resumed; it is used as written (after
    checking that the dataset is unchanged) instead of being derived again.
    """
    listing = load_dataset(config.data.dataset)
    if recorded is not None:
        splits = {name: recorded.select(config.data.dataset, listing, name) for name in recorded.samples}
    else:
        refs = validate(listing, mask_resize=config.data.mask_resize) if dist.is_main else listing
        refs = dist.gather(refs)[0] if dist.enabled else refs
        splits = split_by_source(refs, config.data.split_seed, config.data.test_fraction, config.data.val_fraction)
    if not splits["train"] or not splits["val"]:
        raise DatasetError(
            f"{config.data.dataset}: the split left {len(splits['train'])} training and "
            f"{len(splits['val'])} validation images; both need at least one (see data.val_fraction)"
        )
    distortion = config.data.distortion if needs_distorted else None
    crops = {
        "tamper_bias": config.data.tamper_bias,
        "cache_mb": config.data.cache_mb,
        "mask_resize": config.data.mask_resize,
    }
    train = TrainCrops(splits["train"], config.data.crop, distortion, config.train.seed, **crops)
    val = TrainCrops(splits["val"], config.data.crop, config.data.distortion, config.train.seed + 1, **crops)
    if config.data.cache_mb:  # decoded once here, shared by the DataLoader's worker processes
        train.preload()
        val.preload()
    split = recorded or runs.RunSplit.of(config.data.dataset, listing, splits, config.data.split_seed)
    return train, val, split


@torch.no_grad()
def run_validation(task: Task, loader: DataLoader, dist: DistContext, threshold: float) -> dict[str, float]:
    """Validation losses (``val_<loss>``, averaged per crop) and per-image F1 / IoU / AUC
    (``val_f1`` ...) of ``task`` over ``loader``, merged over processes; the networks are
    in eval mode during it and back in train mode after."""
    for network in task.networks.values():
        network.eval()
    metrics = LocalizationMetrics(threshold=threshold, pooled_auc=False)
    sums: dict[str, float] = {}
    count = 0
    try:
        for raw in loader:
            batch = task.to_device(raw)
            losses, probabilities = task.validation_batch(batch)
            size = batch["mask"].shape[0]
            count += size
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value * size
            for prob, mask in zip(probabilities.cpu().numpy(), batch["mask"].cpu().numpy(), strict=True):
                metrics.update(prob[0], mask[0])
    finally:
        for network in task.networks.values():
            network.train()
    parts = dist.gather((sums, count, metrics.per_image))
    total = sum(part[1] for part in parts)
    merged = LocalizationMetrics(pooled_auc=False)
    for _, _, records in parts:
        merged.per_image.extend(records)
    summary = merged.summary()["per-image"]
    result = {f"val_{key}": sum(part[0].get(key, 0.0) for part in parts) / max(total, 1) for key in parts[0][0]}
    result.update({f"val_{key}": value for key, value in summary.items()})
    return result


class MetricsLog:
    """``metrics.csv`` (one row per epoch) and TensorBoard, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, first_epoch: int) -> None:
        """``first_epoch``: epochs already done (rows of later epochs are dropped)."""
        self.path = run_dir / runs.METRICS
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # drop rows of epochs that will be run again after a resume
            with self.path.open() as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= first_epoch]
            self._rewrite(rows)
        try:
            require("tensorboard", "tensorboard", "TensorBoard event files")
        except UsageError as missing:  # metrics.csv is written all the same
            print(f"note: {missing}; training goes on without them (metrics.csv has every figure)", file=sys.stderr)
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir))

    def _rewrite(self, rows: list[dict]) -> None:
        if not rows:
            self.path.unlink(missing_ok=True)
            return
        self._write(rows, list(rows[0]))

    def _write(self, rows: list[dict], fields: list[str]) -> None:
        """Replace ``metrics.csv`` by ``rows`` atomically (a run killed meanwhile keeps the old file)."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.path, text.getvalue())

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
        self._write(rows, fields)
        for key, value in row.items():
            if isinstance(value, float) and key != "epoch":
                self.scalar(f"epoch/{key}", value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def export_weights(task: Task, run_dir: Path, which: str) -> None:
    """Write each network of ``task`` to ``RUN/weights/<which>/<role>.safetensors``."""
    for role, network in task.networks.items():
        save_network(network, runs.weights_path(run_dir, role, which))


def _differences(before: dict, after: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in dict.fromkeys([*before, *after]):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def train(
    config: Config | None,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    deadline: float | None = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir``; with ``resume``, continue from its last checkpoint.

    Args:
        config: the experiment; with ``resume`` it may be ``None`` (the run's
            ``config.yaml`` is used) and otherwise must equal that file.
        run_dir: the run folder (layout: :mod:`reloc.runs`).
        resume: continue from ``last.pt`` (or ``previous.pt`` if ``last.pt`` is damaged).
        progress: tqdm bars.
        deadline: the :func:`time.monotonic` after which no training step starts: an epoch
            is not begun when the longest one so far would end past it, and one that runs
            past it is abandoned (its steps are lost, the checkpoint and weights of the
            epochs before it are kept, so ``resume`` goes on from there); one process only.

    Raises:
        NonFiniteLossError: a loss became NaN/inf; the last good checkpoint is kept.
        DatasetError: the dataset is empty, unreadable or too small to split.
        ConfigError: an incomplete configuration, or with ``resume`` one that differs
            from the run's.
        CheckpointError: no usable checkpoint to resume from.
        ValueError: a ``deadline`` under torchrun.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / runs.CHECKPOINT).exists() and not (run_dir / runs.PREVIOUS_CHECKPOINT).exists():
            raise FileNotFoundError(f"{run_dir}: nothing to resume ({runs.CHECKPOINT} is missing)")
        stored = load_config(run_dir / runs.CONFIG).with_absolute_paths()
        if config is not None:
            config = config.with_absolute_paths()
        if config is not None and config != stored:
            changed = _differences(stored.to_dict(), config.to_dict())
            raise ConfigError(
                f"{run_dir}: resume continues {run_dir / runs.CONFIG} as it is; the given configuration differs in "
                f"{', '.join(changed)} (edit that file to change a resumed run)"
            )
        config = stored
    elif config is None:
        raise ConfigError("train() needs a configuration unless it resumes a run")
    given_paths = config.given_paths()
    config = config.with_absolute_paths()
    config.check()
    dist = DistContext.from_environment("cuda" if torch.cuda.is_available() and config.train.device != "cpu" else "cpu")
    if deadline is not None and dist.enabled:  # each process would stop at its own step
        raise ValueError("a time limit stops one process; under torchrun, set train.epochs instead")
    device = pick_device(config.train.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    seed_everything(config.train.seed)
    state = None
    if resume:
        state, _ = runs.load_resume_checkpoint(run_dir, map_location=device)
    task = create_task(config, device, dist)
    train_set, val_set, split = build_datasets(
        config, task.needs_distorted, dist, runs.read_split(run_dir) if resume else None
    )
    sampler = DistributedSampler(
        train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=config.train.seed, drop_last=True
    )
    batch_size = min(config.data.batch_size, max(1, len(train_set) // dist.world_size))
    if batch_size < config.data.batch_size and dist.is_main:
        print(
            f"note: data.batch_size {config.data.batch_size} lowered to {batch_size}: the training split holds "
            f"{len(train_set)} images ({dist.world_size} process(es))",
            file=sys.stderr,
        )
    loader = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.data.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    val_sampler = DistributedSampler(val_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=False)
    val_loader = DataLoader(val_set, batch_size=batch_size, sampler=val_sampler, num_workers=config.data.workers)

    best_score = float("-inf")
    first_epoch = 0
    if state is not None:
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"])
        best_score, first_epoch = float(state["best_score"]), int(state["task"]["epoch"])
    elif dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        as_given = [f"{key}: {value}" for key, value in given_paths.items() if value != config.given_paths()[key]]
        config.to_yaml(
            run_dir / runs.CONFIG,
            comment="\n".join([f"written by reloc train in {Path.cwd()}; paths as given:", *as_given])
            if as_given
            else None,
        )
    if dist.is_main:
        runs.write_split(run_dir, split)
    dist.barrier()

    log = MetricsLog(run_dir, dist.is_main, first_epoch)
    steps = len(loader) if config.data.steps_per_epoch is None else min(len(loader), config.data.steps_per_epoch)
    finished, longest = first_epoch, 0.0

    def out_of_time(ahead: float = 0.0) -> bool:
        return deadline is not None and time.monotonic() + ahead > deadline

    try:
        for epoch in range(first_epoch, config.train.epochs):
            if out_of_time(longest):
                break
            task.epoch = epoch
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            started = time.perf_counter()
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            phases: set[str] = set()
            bar = tqdm(
                total=steps,
                desc=f"epoch {epoch + 1}/{config.train.epochs}",
                disable=not (progress and dist.is_main),
                leave=False,
            )
            abandoned, waited, ready = False, 0.0, time.perf_counter()
            for index, batch in enumerate(loader):
                if index >= steps:
                    break
                if out_of_time():
                    abandoned = True
                    break
                waited += time.perf_counter() - ready  # the steps waited on the loader
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
                bar.set_postfix(
                    {
                        "phase": phase[:4],
                        **{k: f"{v:.4f}" for k, v in losses.items() if "_" not in k},
                        "img/s": f"{rate:.1f}",
                    }
                )
                bar.update(1)
                ready = time.perf_counter()
            bar.close()
            if abandoned:
                break
            validation = run_validation(task, val_loader, dist, config.train.threshold)
            task.end_epoch(validation, phases)
            task.epoch = epoch + 1
            row: dict[str, float | int | str] = {"epoch": epoch + 1, "phase": "+".join(sorted(phases))}
            row.update({f"train_{k}": sums[k] / counts[k] for k in sums})
            row.update(validation)
            row.update(task.learning_rates())
            row["seconds"] = time.perf_counter() - started
            row["data_wait_seconds"] = waited  # of the training steps' time, waiting for batches
            score = selection_score(validation, config.train.select_by)
            improved = score > best_score or (epoch == first_epoch == 0)  # the first epoch is always kept
            if improved:
                best_score = score
            if dist.is_main:
                log.epoch(row)
                export_weights(task, run_dir, "last")
                if improved:
                    export_weights(task, run_dir, "best")
                runs.save_checkpoint(run_dir, {"task": task.state_dict(), "rng": rng_state(), "best_score": best_score})
            dist.barrier()
            finished, longest = epoch + 1, max(longest, time.perf_counter() - started)
    except NonFiniteLossError as error:
        raise NonFiniteLossError(
            f"{error}; stopped. The last good checkpoint ({run_dir / runs.CHECKPOINT}) is kept; "
            "lower the learning rate or check the data, then resume"
        ) from None
    finally:
        log.close()
    if finished < config.train.epochs and dist.is_main:
        print(
            f"note: stopped at the time limit after {finished} of {config.train.epochs} epochs; "
            "the weights and checkpoint of the last finished epoch are kept (--resume goes on)",
            file=sys.stderr,
        )
    return TrainResult(run_dir, config.train.epochs, config.train.select_by, task.networks, finished)
