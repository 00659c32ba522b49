"""The run folder: its layout, and reading / writing what it holds, in one place.

Layout of a run folder ``RUN`` written by ``reloc train``::

    RUN/config.yaml                              the resolved configuration (re-run it to reproduce)
    RUN/split.json                               the sample ids of each split + dataset fingerprint
    RUN/metrics.csv                              one row per epoch
    RUN/events.out.tfevents.*                    TensorBoard scalars
    RUN/checkpoints/last.pt                      everything needed to resume (written atomically)
    RUN/checkpoints/previous.pt                  the checkpoint before it (resume falls back to it)
    RUN/weights/{last,best}/<role>.safetensors   self-describing weights of each network

Checkpoints hold only tensors and plain containers (dicts, lists, tuples, numbers,
strings, ``None``) and are read with ``torch.load(weights_only=True)``, so a checkpoint
from someone else cannot run code; NumPy arrays (which checkpoints of earlier versions
hold for NumPy's RNG state) are the one allow-listed type. The trainer, ``reloc eval``, ``reloc localize``, the
CLI and the benchmarks find files through the functions here.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from reloc import pretrained
from reloc.io_utils import atomic_path, parse_json, write_json_atomic

CONFIG = Path("config.yaml")
SPLIT = Path("split.json")
METRICS = Path("metrics.csv")
CHECKPOINTS = Path("checkpoints")
CHECKPOINT = CHECKPOINTS / "last.pt"
PREVIOUS_CHECKPOINT = CHECKPOINTS / "previous.pt"
WEIGHTS = Path("weights")
#: the weights kept per run: ``best`` (by ``train.select_by``) and ``last`` (the last epoch)
WEIGHT_SETS = ("best", "last")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, empty, truncated, not ours, or holding code)."""


class SplitError(ValueError):
    """A split file that is unreadable or does not match the dataset it is used with."""


def weights_path(run: str | os.PathLike, role: str, which: str = "best") -> Path:
    """``RUN/weights/<which>/<role>.safetensors`` (not checked to exist)."""
    if which not in WEIGHT_SETS:
        raise ValueError(f"which must be one of {WEIGHT_SETS}, got {which!r}")
    return Path(run) / WEIGHTS / which / f"{role}.safetensors"


def resolve_weights(path: str | os.PathLike, role: str) -> str:
    """The weights file of ``role`` named by ``path``: a weights file, a run folder (its
    best weights of ``role``) or a packaged model ``pretrained:NAME`` (:mod:`reloc.pretrained`).

    Raises:
        FileNotFoundError: naming the file looked for and what it was derived from.
    """
    path = str(path)
    if pretrained.is_pretrained(path):
        return str(pretrained.weights_file(path, role))
    candidate = Path(path)
    if candidate.is_dir():
        candidate = weights_path(candidate, role)
    if not candidate.is_file():
        looked = "" if str(candidate) == path else f"looked for {candidate}; "
        raise FileNotFoundError(
            f"{path}: no {role} weights ({looked}expected a weights file, a run folder or pretrained:NAME)"
        )
    return str(candidate)


def optional_weights(path: str | os.PathLike, role: str) -> str | None:
    """Like :func:`resolve_weights` for a run folder or ``pretrained:NAME`` that may lack
    ``role`` (a plain run has no restorer): ``None`` then."""
    path = str(path)
    if pretrained.is_pretrained(path):
        return resolve_weights(path, role) if role in pretrained.roles(pretrained.parse(path)) else None
    candidate = weights_path(path, role)
    return str(candidate) if candidate.is_file() else None


# --- checkpoints ------------------------------------------------------------------------
def save_checkpoint(run: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``RUN/checkpoints/last.pt`` atomically, keeping the one it
    replaces as ``previous.pt``; returns the path of ``last.pt``.

    ``state`` must hold only tensors and plain containers (it is read back with
    ``weights_only=True``).
    """
    last, previous = Path(run) / CHECKPOINT, Path(run) / PREVIOUS_CHECKPOINT
    with atomic_path(last) as temporary:
        torch.save(state, temporary)
        if last.exists():
            os.replace(last, previous)
    return last


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``.

    Raises:
        CheckpointError: one line naming the file: missing, empty, truncated or corrupt,
            refused (it holds objects other than tensors and plain containers, which could
            run code when unpickled), or not a reloc training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (the write was cut off)")
    try:
        with torch.serialization.safe_globals(_numpy_arrays()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain containers, which could run code "
            f"when loaded ({_first_line(error)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as error:  # damaged file
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_line(error)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("task"), dict) or "epoch" not in state["task"]:
        raise CheckpointError(f"{path}: not a reloc training checkpoint (no task state)")
    return state


def load_resume_checkpoint(run: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, Path]:
    """The newest good checkpoint of ``run``: ``last.pt``, else ``previous.pt`` (with a
    warning saying why); returns ``(state, path)``.

    Raises:
        FileNotFoundError: ``run`` holds no checkpoint at all.
        CheckpointError: no checkpoint is usable; the message names each file, why, and
            the recovery.
    """
    run = Path(run)
    problems = []
    for path in (run / CHECKPOINT, run / PREVIOUS_CHECKPOINT):
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            warnings.warn(
                f"{problems[0]}; resuming from {path} (after epoch {state['task']['epoch']}) instead", stacklevel=2
            )
        return state, path
    if not problems:
        raise FileNotFoundError(f"{run}: nothing to resume ({CHECKPOINT} is missing)")
    raise CheckpointError(
        "; ".join(problems) + f"; no usable checkpoint is left: start the run again (remove {run / CHECKPOINTS} "
        "or choose another --out)"
    )


def epochs_done(run: str | os.PathLike) -> int:
    """Epochs completed by ``run`` according to its newest good checkpoint (0 if none)."""
    try:
        return int(load_resume_checkpoint(run)[0]["task"]["epoch"])
    except FileNotFoundError:
        return 0


def update_counts(run: str | os.PathLike) -> dict[str, int]:
    """Optimizer steps taken per network (and ``warmup`` steps) by ``run`` so far."""
    try:
        state = load_resume_checkpoint(run)[0]["task"]
    except FileNotFoundError:
        return {}
    return {key: int(value) for key, value in state.get("updates", {}).items()}


# --- the split --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSplit:
    """The samples a run was trained, validated and held out on.

    Attributes:
        dataset: the dataset path as given at training.
        fingerprint: :func:`reloc.data.catalog.dataset_fingerprint` of the whole listing.
        seed: ``data.split_seed``.
        samples: ``{"train": [id, ...], "val": [...], "test": [...]}`` (ids from
            :func:`reloc.data.catalog.sample_id`).
    """

    dataset: str
    fingerprint: str
    seed: int
    samples: dict[str, list[str]]

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "fingerprint": self.fingerprint, "seed": self.seed, "samples": self.samples}

    @classmethod
    def of(cls, dataset: str | os.PathLike, listing: list, splits: dict[str, list], seed: int) -> RunSplit:
        """The split of ``splits`` (``{name: [SampleRef, ...]}``) of the dataset at
        ``dataset`` whose full listing (before unreadable files are dropped) is ``listing``."""
        from reloc.data.catalog import dataset_fingerprint, dataset_root, sample_id

        root = dataset_root(dataset)
        samples = {name: [sample_id(ref, root) for ref in refs] for name, refs in splits.items()}
        return cls(str(dataset), dataset_fingerprint(listing, root), int(seed), samples)

    def select(self, dataset: str | os.PathLike, listing: list, name: str, origin: str = "the run") -> list:
        """The samples of split ``name`` among ``listing`` (the dataset at ``dataset``), in
        the order they were recorded.

        Raises:
            SplitError: the dataset's fingerprint differs from the recorded one (samples
                added, removed or changed since training), or ``name`` is not a split.
        """
        from reloc.data.catalog import dataset_fingerprint, dataset_root, sample_id

        if name not in self.samples:
            raise SplitError(f"{origin}: no split {name!r} (recorded: {sorted(self.samples)})")
        root = dataset_root(dataset)
        if dataset_fingerprint(listing, root) != self.fingerprint:
            raise SplitError(
                f"{dataset}: not the dataset {origin} was trained on ({self.dataset}): samples were added, removed "
                "or changed since (fingerprint differs), so its recorded split cannot be applied; evaluate on the "
                "same dataset, or on the whole of another one with --split all"
            )
        by_id = {sample_id(ref, root): ref for ref in listing}
        return [by_id[i] for i in self.samples[name]]


def write_split(run: str | os.PathLike, split: RunSplit) -> Path:
    """Write ``RUN/split.json`` atomically; returns its path."""
    path = Path(run) / SPLIT
    write_json_atomic(path, split.to_dict())
    return path


def read_split(run: str | os.PathLike) -> RunSplit | None:
    """``RUN/split.json``, or ``None`` when ``run`` is not a folder holding one.

    Raises:
        SplitError: the file exists but is not a split file.
    """
    path = Path(run) / SPLIT
    if not path.is_file():
        return None
    try:
        data = parse_json(path.read_text())
        return RunSplit(
            str(data["dataset"]),
            str(data["fingerprint"]),
            int(data["seed"]),
            {name: [str(i) for i in ids] for name, ids in data["samples"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SplitError(f"{path}: not a readable split file ({error})") from None


def _numpy_arrays() -> list:
    """What unpickling a plain NumPy array needs (uint32 / float64 arrays of older checkpoints)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType, np.dtypes.Float64DType]


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
