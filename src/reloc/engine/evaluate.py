"""Evaluation of the paper's situations: a dataset split through a pipeline -> one JSON record.

Situations (the paper's notation, ``M{I}``: model M tested on images I):

- ``P{P}``: the ``plain`` run's localizer on plain images;
- ``P{D}``: the same localizer on distorted images;
- ``D|P{D}``: the ``finetune`` run's localizer on distorted images;
- ``ReLoc{D}``: the ``reloc`` run's restorer and localizer on distorted images (other
  labels for ablation runs, e.g. ``joint{D}``);
- ``R(A)+L(B){D}``: the restorer of ReLoc run A in front of the localizer of plain run B
  (Table V, transferability);
- ``ela{P}``, ``clones{P}``, ...: a classical evidence method of :mod:`reloc.evidence`
  alone, on the images as stored (the JPEG methods read the files);
- ``P+clones{D}``, ``P+clones+dq{D}``, ...: a situation's map fused with classical evidence
  on the same pixels (:func:`reloc.evidence.fuse`; the fused situation's image score stays
  the learned map's, as in ``reloc localize``).

Each image is distorted whole (seeded per image), then run as ``reloc localize`` runs it
(``tiling="default"``: whole up to the budget the weights record, else windows on the 8-px
JPEG grid, tapered) or by the paper's protocol (``tiling="paper"``: 512 x 512 windows,
stride 512, last row/column flush with the border, overlaps averaged). The images are the
split the runs were trained with (``RUN/split.json``, see :func:`evaluation_samples`).
A sample whose image or mask cannot be read, or whose mask has another size than its
image, is skipped and listed in the record with the file and the reason (``skipped``,
``skipped_samples``; ``reloc eval`` says so in one line and exits 1); the evaluation goes on. Metrics follow a protocol of :data:`reloc.metrics.PROTOCOLS`,
stamped on the record; a robustness grid (:mod:`reloc.engine.grids`) stamps its family
and strength on each record. Authentic images (no tampered pixel) count in no localization
figure; the record gives their pixel false-alarm rate (``authentic``) and, over all
images, the image-level detection figures (``image_level``,
:func:`reloc.engine.detection.image_level`, from each image's ``image_score``). Where the
sample names say the kind of forgery (CASIA's ``Sp_D_`` / ``Sp_S_``, ``reloc synth``'s
``_splice`` ...: :func:`reloc.data.kinds.forgery_kind`), ``by_kind`` gives the per-image
means of each kind.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from reloc import runs
from reloc.data.catalog import SPLITS, SampleRef, load_dataset, split_by_source
from reloc.data.datasets import WholeImages
from reloc.data.io import ImageError, float_to_uint8, write_png
from reloc.data.kinds import KINDS, forgery_kind
from reloc.engine.detection import image_level, image_score
from reloc.engine.distributed import DistContext
from reloc.engine.grids import Grid
from reloc.engine.inference import PAPER_TILING, Pipeline, pipeline_from_weights
from reloc.engine.localize import sha256_file
from reloc.errors import UsageError
from reloc.evidence import FUSION_METHODS, FUSIONS, METHODS, analyse, fuse
from reloc.io_utils import parse_json, refuse_to_replace, write_json_atomic
from reloc.metrics import LocalizationMetrics, per_image_means
from reloc.precision import dtype_name
from reloc.runs import resolve_weights

TILINGS = ("default", "paper")
"""How :func:`evaluate_situation` runs each image: as ``reloc localize`` does, or by the paper's protocol."""

NETWORK_PROTOCOL = ("window", "stride", "tiling", "whole_image_pixels", "blend", "grid", "restore_window", "precision")
"""The protocol fields that describe how the networks ran (``None`` in a classical method's record)."""


@dataclass(frozen=True)
class Situation:
    """One row of the paper's tables: which weights see which images.

    Attributes:
        name: e.g. ``"ReLoc{D}"``.
        localizer: weights file of the localizer; ``None`` for a classical method alone.
        restorer: weights file of the restorer, or ``None``.
        distorted: test on distorted (``True``) or plain images.
        evidence: without a localizer, a method of :data:`reloc.evidence.METHODS`, whose map
            is the situation's map, on the images as stored (``distorted`` must be ``False``:
            the JPEG methods read the file); with one, a fusion of
            :data:`reloc.evidence.FUSIONS` other than ``none``, fused with the localizer's
            map (:func:`reloc.evidence.fuse`; on distorted images, decoded in memory, the
            double-quantisation model has no file to read and does not apply).

    Raises:
        ValueError: a situation without a localizer and evidence, a classical method on
            distorted images, or an unknown method or fusion.
    """

    name: str
    localizer: str | None
    restorer: str | None = None
    distorted: bool = True
    evidence: str | None = None

    def __post_init__(self) -> None:
        if self.localizer is None:
            if self.evidence is None or self.distorted or self.restorer:
                raise ValueError(
                    f"{self.name}: without a localizer, a situation is one evidence method on plain images"
                )
            if self.evidence not in METHODS:
                raise ValueError(f"{self.name}: unknown evidence method {self.evidence!r}")
        elif self.evidence is not None and (self.evidence not in FUSIONS or self.evidence == "none"):
            fusions = ", ".join(name for name in FUSIONS if name != "none")
            raise ValueError(f"{self.name}: a localizer's map is fused by one of {fusions}, not {self.evidence!r}")

    def pipeline(self, device: torch.device, precision: str = "fp32") -> Pipeline:
        """The situation's networks on ``device``, prepared for inference, each in the window
        its file records, if any (:func:`reloc.engine.inference.pipeline_from_weights`)."""
        if self.localizer is None:
            raise ValueError(f"{self.name} runs no network")
        return pipeline_from_weights(self.localizer, self.restorer, device, precision)


def standard_situations(
    plain: str | None,
    finetune: str | None = None,
    relocs: dict[str, str] | None = None,
    transfers: list[tuple[str, str]] | None = None,
) -> list[Situation]:
    """The situations of Tables I-V from run folders (or weights files).

    Args:
        plain: ``plain`` run -> ``P{P}`` and ``P{D}``.
        finetune: ``finetune`` run -> ``D|P{D}``.
        relocs: label -> ``reloc``/``joint``/ablation run -> ``label{D}``.
        transfers: (ReLoc run, plain run of another localizer) -> ``R(a)+L(b){D}``,
            plus that localizer alone on distorted images for comparison.
    """
    situations = []
    if plain:
        localizer = resolve_weights(plain, "localizer")
        situations += [Situation("P{P}", localizer, distorted=False), Situation("P{D}", localizer)]
    if finetune:
        situations.append(Situation("D|P{D}", resolve_weights(finetune, "localizer")))
    for label, run in (relocs or {}).items():
        situations.append(
            Situation(f"{label}{{D}}", resolve_weights(run, "localizer"), resolve_weights(run, "restorer"))
        )
    for reloc_run, plain_run in transfers or []:
        a, b = Path(reloc_run).name, Path(plain_run).name
        localizer = resolve_weights(plain_run, "localizer")
        situations.append(Situation(f"P({b}){{D}}", localizer))
        situations.append(Situation(f"R({a})+L({b}){{D}}", localizer, resolve_weights(reloc_run, "restorer")))
    return situations


def evidence_situations(methods: list[str]) -> list[Situation]:
    """One situation per classical method alone, on the images as stored: ``ela`` -> ``ela{P}``."""
    return [Situation(f"{method}{{P}}", None, distorted=False, evidence=method) for method in methods]


def fused_situations(situations: list[Situation], fusion: str = "clones") -> list[Situation]:
    """Each network situation again with its map fused by ``fusion`` (:func:`reloc.evidence.fuse`):
    ``P{D}`` -> ``P+clones{D}``, ``P+clones+dq{D}``."""
    fused = []
    for situation in situations:
        if situation.localizer is None:
            continue
        model, _, images = situation.name.rpartition("{")
        fused.append(
            Situation(
                f"{model}+{fusion}{{{images}", situation.localizer, situation.restorer, situation.distorted, fusion
            )
        )
    return fused


def by_kind(per_image: list[dict]) -> dict[str, dict[str, float | int]]:
    """Per-image means by the kind of forgery each sample's name says (:func:`reloc.data.kinds.forgery_kind`).

    Args:
        per_image: the records of :meth:`LocalizationMetrics.update`.

    Returns:
        ``{kind: {"images", "f1", "iou", "auc"}}`` over the tampered images of each kind, in
        :data:`reloc.data.kinds.KINDS` order; ``{}`` when no name says a kind.
    """
    groups: dict[str, list[dict]] = {}
    for record in per_image:
        kind = None if record.get("authentic") else forgery_kind(record["name"])
        if kind is not None:
            groups.setdefault(kind, []).append(record)
    return {kind: {"images": len(groups[kind]), **per_image_means(groups[kind])} for kind in KINDS if kind in groups}


def evaluation_samples(
    dataset: str | Path, split: str, run_folders: list[str | Path], seed: int = 0
) -> list[SampleRef]:
    """The samples of ``split`` (``train``, ``val``, ``test`` or ``all``) of ``dataset``, as
    the given runs were trained with.

    The split comes from the runs' ``split.json`` files (written at training); every run
    that has one must record the same samples for ``split``, and the dataset must be the
    one they were trained on (its fingerprint is checked). A run from before split files
    existed gets its split re-derived from its ``config.yaml`` (with a warning); with no run
    folder at all (weights files, ``pretrained:NAME``) the split is derived with ``seed``
    and the default fractions (with a warning).

    Raises:
        SplitError: the dataset changed since training, or the runs were trained on
            different splits.
        ValueError: ``split`` is not a split name.
    """
    if split != "all" and split not in SPLITS:
        raise ValueError(f"--split must be one of {(*SPLITS, 'all')}, got {split!r}")
    listing = load_dataset(dataset)
    if split == "all":
        return listing
    folders = list(dict.fromkeys(Path(run) for run in run_folders if Path(run).is_dir()))
    chosen: tuple[Path, list[SampleRef]] | None = None
    for folder in folders:
        recorded = runs.read_split(folder)
        if recorded is None:
            continue
        samples = recorded.select(dataset, listing, split, origin=str(folder))
        if chosen is None:
            chosen = (folder, samples)
        elif [ref.image for ref in samples] != [ref.image for ref in chosen[1]]:
            raise runs.SplitError(
                f"{chosen[0]} and {folder} were trained on different {split} splits of {dataset}; "
                "evaluate them separately"
            )
    if chosen is not None:
        return chosen[1]
    configured = next((folder for folder in folders if (folder / runs.CONFIG).is_file()), None)
    if configured is not None:
        return _legacy_split(configured, listing, split)
    warnings.warn(
        f"no run folder records its split: the {split} split of {dataset} is derived with seed {seed} and the "
        "default fractions",
        stacklevel=2,
    )
    return split_by_source(listing, seed)[split]


def _legacy_split(run: Path, listing: list[SampleRef], split: str) -> list[SampleRef]:
    """The split of a run trained before ``split.json`` existed, from its ``config.yaml``
    (then the split seed was ``train.seed``)."""
    import yaml

    from reloc.config import load_config

    config = load_config(run / runs.CONFIG)
    raw = yaml.safe_load((run / runs.CONFIG).read_text()) or {}
    seed = config.data.split_seed if "split_seed" in (raw.get("data") or {}) else config.train.seed
    warnings.warn(
        f"{run} has no {runs.SPLIT}: its {split} split is re-derived from {runs.CONFIG} (seed {seed})", stacklevel=3
    )
    return split_by_source(listing, seed, config.data.test_fraction, config.data.val_fraction)[split]


def evaluate_situation(
    situation: Situation,
    refs: list[SampleRef],
    distortion: str,
    *,
    device: torch.device,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    threshold: float = 0.5,
    metric_protocol: str = "paper",
    exclude_border: int = 0,
    mask_resize: str | None = None,
    seed: int = 0,
    pooled_auc: bool = True,
    maps_dir: Path | None = None,
    keep_maps: int = 0,
    progress: bool = True,
    dataset: str = "",
    precision: str = "fp32",
    dist: DistContext | None = None,
    tiling: str = "default",
) -> dict:
    """Run one situation over ``refs`` and summarise its metrics.

    Args:
        situation: what to evaluate.
        refs: the test images.
        distortion: spec applied to whole images when ``situation.distorted``.
        device: where the networks run.
        window, stride, batch_size: sliding-window protocol (``None``: what the localizer's
            weights record, :meth:`Pipeline.plan`; ``batch_size=None``:
            :meth:`Pipeline.predict`'s per-device default).
        threshold: for F1 / IoU.
        metric_protocol: ``paper``, ``best-threshold`` or ``inverted`` (:mod:`reloc.metrics`).
        exclude_border: pixels each side of the mask boundary left out of the metrics.
        mask_resize: ``None``: a mask of another size than its image skips the sample;
            ``"nearest"``: the mask is resized.
        seed: seed of the per-image distortion (the same for every situation, so all
            situations see the same distorted images).
        pooled_auc: also compute the AUC over all pixels pooled (memory: 9 B per pixel).
        maps_dir: where to write probability maps of the first ``keep_maps`` images.
        keep_maps: how many maps to write.
        progress: tqdm bar.
        dataset: the dataset's path, stored in the record (for reports).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :mod:`reloc.precision`).
        dist: under ``torchrun``, this process's place: it runs its
            :meth:`DistContext.shard` of the images and every process returns the record
            of all of them (per-image values in dataset order).
        tiling: one of :data:`TILINGS`: ``default`` (as ``reloc localize``) or ``paper``
            (windows only, flush with the far sides, overlaps averaged).

    Returns:
        A JSON-ready record: situation, distortion, per-image and pooled metrics, counts
        (``skipped`` samples listed in ``skipped_samples`` with their reason), the
        authentic images' pixel false alarms, the image-level figures, the per-image means
        by kind of forgery (``by_kind``), protocol (its network part ``None`` for a
        classical method alone), the weights used, and ``evidence``: ``None``, or the
        method (or fusion), its ``use`` (``alone`` or ``fused``) and on how many images it was
        ``not_applicable`` (scored there as an all-zero map alone; fused: no method of the
        fusion applied, so the localizer's map stood alone).
    """
    if tiling not in TILINGS:
        raise ValueError(f"tiling must be one of {TILINGS}, got {tiling!r}")
    dist = dist or DistContext()
    pipeline = None if situation.localizer is None else situation.pipeline(device, precision)
    if pipeline is not None and tiling == "paper":
        pipeline.blend, pipeline.grid = PAPER_TILING["blend"], PAPER_TILING["grid"]
        window, stride = pipeline.windows(window, stride)  # explicit: never a whole-image pass
    tiles = (None, None) if pipeline is None else pipeline.windows(window, stride)  # over the whole-image budget
    images = WholeImages(refs, distortion if situation.distorted else None, seed=seed, mask_resize=mask_resize)
    metrics = LocalizationMetrics(
        threshold=threshold, pooled_auc=pooled_auc, protocol=metric_protocol, exclude_border=exclude_border
    )
    skipped = []
    unjudged = 0  # images the evidence method gave no map for
    started = time.perf_counter()
    label = f"{situation.name} @ {distortion if situation.distorted else 'plain'}"
    shard = [index for index, _ in dist.shard(list(range(len(images))))]
    done = []  # the positions in ``refs`` of the images this process measured
    for index in tqdm(shard, desc=label, disable=not progress or not dist.is_main, leave=False):
        try:
            item = images[index]
        except ImageError as error:
            skipped.append({"name": refs[index].name, "file": error.path, "reason": error.reason})
            continue
        done.append(index)
        source = item["distorted"] if situation.distorted else item["plain"]
        probabilities = learned = None
        if pipeline is not None:
            probabilities = learned = pipeline.predict(
                source, window=window, stride=stride, batch_size=batch_size
            ).numpy()
        if situation.evidence is not None:
            pixels = float_to_uint8(source.permute(1, 2, 0).numpy())  # (H, W, C) as decoded
            file = None if situation.distorted else refs[index].image  # the pixels are the file's
            if pipeline is not None:
                found = analyse(pixels, file, FUSION_METHODS[situation.evidence])
                unjudged += not any(result.applicable for result in found)
                learned, probabilities = probabilities, fuse(probabilities, found, situation.evidence)
            else:
                found = analyse(pixels, file, [situation.evidence])[0]
                unjudged += not found.applicable
                probabilities = found.map if found.applicable else np.zeros(pixels.shape[:2], np.float32)
        record = metrics.update(probabilities, item["mask"][0].numpy(), name=item["name"])
        record["image_score"] = image_score(learned if pipeline is not None else probabilities)
        if maps_dir is not None and index < keep_maps:
            write_png(maps_dir / f"{item['name']}.png", probabilities)
    if dist.enabled:
        parts = dist.gather((done, metrics, skipped, unjudged))
        metrics = LocalizationMetrics.merged([part for _, part, _, _ in parts], [order for order, *_ in parts])
        skipped = [sample for _, _, lost, _ in parts for sample in lost]
        unjudged = sum(count for *_, count in parts)
    summary = metrics.summary()
    return {
        "situation": situation.name,
        "dataset": dataset,
        "distortion": distortion if situation.distorted else "none",
        "metrics": {"per-image": summary["per-image"], "pooled": summary["pooled"]},
        "images": summary["images"],
        "single_class": summary["single_class"],
        "undefined_f1": summary["undefined_f1"],
        "tampered_images": summary["tampered_images"],
        "authentic": summary["authentic"],
        "image_level": image_level(metrics.per_image, situation.localizer, situation.restorer),
        "by_kind": by_kind(metrics.per_image),
        "skipped": len(skipped),
        "skipped_samples": skipped,
        "protocol": {
            **(
                dict.fromkeys(NETWORK_PROTOCOL)
                if pipeline is None
                else {
                    "window": tiles[0],
                    "stride": tiles[1],
                    "tiling": tiling,
                    "whole_image_pixels": 0 if window is not None else pipeline.whole_image_pixels,
                    "blend": pipeline.blend,
                    "grid": pipeline.grid,
                    "restore_window": None if pipeline.restore_window is None else list(pipeline.restore_window),
                    "precision": dtype_name(pipeline.compute_dtype()),
                }
            ),
            "seed": seed,
            "mask_resize": mask_resize,
            **metrics.describe(),
        },  # fmt: skip
        "evidence": None
        if situation.evidence is None
        else {
            "method": situation.evidence,
            "use": "alone" if pipeline is None else "fused",
            "not_applicable": unjudged,
        },  # fmt: skip
        "localizer": situation.localizer,
        "restorer": situation.restorer,
        # The path alone does not say which weights ran (pretrained:NAME resolves to the same
        # path in every release): the digests do.
        "localizer_sha256": None if situation.localizer is None else sha256_file(situation.localizer),
        "restorer_sha256": None if situation.restorer is None else sha256_file(situation.restorer),
        "seconds": round(time.perf_counter() - started, 2),
        "per_image": metrics.per_image,
    }


def record_filename(situation: str, distortion: str, protocol: str = "") -> str:
    """A file name for a record: ``ReLoc{D}`` at ``jpeg:75`` -> ``ReLoc_D__jpeg-75.json``
    (a non-default metric protocol is appended: ``ReLoc_D__jpeg-75__inverted.json``)."""
    suffix = "__" + re.sub(r"[^A-Za-z0-9.+-]+", "-", protocol) if protocol else ""
    return (
        re.sub(r"[^A-Za-z0-9.+-]+", "_", situation)
        + "__"
        + re.sub(r"[^A-Za-z0-9.+-]+", "-", distortion)
        + suffix
        + ".json"
    )


def protocol_label(protocol: dict) -> str:
    """``""`` for the paper's protocol, else e.g. ``"inverted"`` or ``"paper-border4"`` (file names, tables)."""
    metric, border = protocol.get("metric", "paper"), protocol.get("exclude_border", 0)
    label = "" if metric == "paper" else metric
    return (label or "paper") + f"-border{border}" if border else label


def run_evaluation(
    situations: list[Situation],
    refs: list[SampleRef],
    distortions: list[str],
    out: Path,
    grid: Grid | None = None,
    overwrite: bool = False,
    **options,
) -> list[dict]:
    """Evaluate every situation at every distortion (plain-image situations once) and
    write ``out/eval/<situation>__<distortion>.json``; maps of the first images go to
    ``out/maps/<record name>/``.

    With a ``grid``, its points replace ``distortions`` and each record carries
    ``"grid": {"name", "family", "strength"}``.

    Raises:
        FileExistsError: before anything runs, a record or maps folder of this run exists
            already (without ``overwrite``), or two situations' records get one file name
            (:func:`reloc.io_utils.refuse_to_replace`).
    """
    points = list(grid.points) if grid else [None] * len(distortions)
    specs = [point.spec for point in grid.points] if grid else list(distortions)
    label = protocol_label(
        {"metric": options.get("metric_protocol", "paper"), "exclude_border": options.get("exclude_border", 0)}
    )
    plan = [
        (
            situation,
            distortion,
            point,
            record_filename(situation.name, distortion if situation.distorted else "none", label),
        )
        for situation in situations
        for distortion, point in (list(zip(specs, points)) if situation.distorted else [(specs[0], None)])
    ]
    refuse_to_replace([out / "eval" / name for *_, name in plan], overwrite=overwrite)
    if options.get("keep_maps"):
        refuse_to_replace([out / "maps" / name[:-5] for *_, name in plan], overwrite=overwrite)
    records = []
    for situation, distortion, point, name in plan:
        record = evaluate_situation(situation, refs, distortion, maps_dir=out / "maps" / name[:-5], **options)
        if point is not None:
            record["grid"] = {"name": grid.name, "family": point.family, "strength": point.strength}
        if options.get("dist") is None or options["dist"].is_main:  # one writer under torchrun
            write_json_atomic(out / "eval" / name, _nan_to_none(record))
        records.append(record)
    return records


def load_records(folders: list[Path]) -> list[dict]:
    """Every evaluation record under ``folder/eval/*.json`` (or ``folder/*.json``).

    Raises:
        UsageError: a file there that is not JSON (a truncated or foreign file), naming it.
    """
    records = []
    for folder in folders:
        folder = Path(folder)
        files = sorted((folder / "eval").glob("*.json")) or sorted(folder.glob("*.json"))
        for path in files:
            try:
                record = parse_json(path.read_text())
                problem = record_problem(record)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                problem = str(error)
            if problem:
                raise UsageError(str(path), f"not an evaluation record ({problem}); remove it or re-run reloc eval")
            records.append(record)
    return records


RECORD_FIELDS = {"situation": str, "distortion": str, "images": int, "metrics": dict, "protocol": dict}
"""The fields every evaluation record has, with their JSON types (reports rely on them)."""


def record_problem(record: object) -> str | None:
    """What makes ``record`` (parsed JSON) unusable as an evaluation record, or ``None``."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for key, kind in RECORD_FIELDS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return f"{key!r} is missing or not a{'n' if kind is int else ''} {kind.__name__}"
    if not isinstance(record["metrics"].get("per-image"), dict):
        return "'metrics' has no 'per-image' object"
    grid = record.get("grid")
    if grid is not None and not (isinstance(grid, dict) and {"name", "family", "strength"} <= set(grid)):
        return "'grid' is not an object with name, family and strength"
    return None


def _nan_to_none(value: object) -> object:
    """Strict JSON: undefined metrics (nan) become ``null``; numpy scalars become floats."""
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value
