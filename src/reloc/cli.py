"""The ``reloc`` command line (a typer app); ``reloc --help`` shows :data:`SUMMARY`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reloc.cli_errors import GuardedGroup
from reloc.errors import EXIT_INPUTS_FAILED
from reloc.limits import MAX_SIDE

#: What ``reloc --help`` says before the list of commands.
SUMMARY = """Find the tampered (spliced, copy-moved, removed, retouched) pixels of images,
robustly to JPEG compression, with ReLoc: a restoration network (SCUNet) recovers the
compressed image, then a localization network (DFCN, SCSE-Unet or MVSS-Net) maps the
tampering.

\b
check images       reloc localize photo.jpg --out localized/   (a pretrained model chosen by JPEG quality)
examine in a page  reloc serve                                 (http://127.0.0.1:8765/)
list the models    reloc models
try it end to end  reloc demo --out runs/demo
make data          reloc synth --photos PHOTOS --out runs/synth
train              reloc train --config configs/cpu/dfcn.yaml --out runs/plain --set data.dataset=runs/synth
evaluate, report   reloc eval --dataset runs/synth --plain runs/plain ... --out runs/eval; reloc report runs/eval

Each command has its own --help."""

app = typer.Typer(cls=GuardedGroup, add_completion=False, no_args_is_help=True, help=SUMMARY)


def _print_version(value: bool) -> None:
    if value:
        from reloc import __version__

        typer.echo(f"reloc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """The options before any command."""


def _probability(value: str) -> float:
    """A number strictly between 0 and 1 (NaN refused)."""
    try:
        number = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number") from None
    if not 0.0 < number < 1.0:  # NaN compares false
        raise typer.BadParameter(f"{value} is not strictly between 0 and 1")
    return number


def _split(value: str) -> str:
    if value not in SPLIT_CHOICES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SPLIT_CHOICES)}")
    return value


SPLIT_CHOICES = ("train", "val", "test", "all")


def _distortion_spec(value: str) -> str:
    """A distortion spec that parses (``reloc.data.distortions``), kept as written."""
    from reloc.data.distortions import parse_distortion

    try:
        parse_distortion(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _check_device(name: str) -> str:
    """Refuse a device name torch does not know, or CUDA on a machine without it."""
    from reloc.devices import pick_device

    try:
        pick_device(name)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return name


def _check_stride(window: int | None, stride: int | None) -> None:
    if window is None and stride is not None:
        raise typer.BadParameter(
            "give --window with it: without --window each model runs with the window its weights record",
            param_hint="--stride",
        )
    if window is not None and stride is not None and stride > window:
        raise typer.BadParameter(
            f"{stride} is larger than --window {window}; pixels between windows would be left out",
            param_hint="--stride",
        )


#: Options shared by several commands.
WindowOption = Annotated[
    Optional[int],
    typer.Option(
        min=1,
        show_default=False,
        help="Sliding-window side in pixels [default: what the localizer's weights record: one whole-image "
        "pass up to their pixel budget, else tiles of their window (512 for the pretrained models); else 512].",
    ),
]
StrideOption = Annotated[
    Optional[int],
    typer.Option(
        min=1,
        show_default=False,
        help="Sliding-window stride in pixels, at most --window [default: --window's, or the recorded one].",
    ),
]
BatchOption = Annotated[
    Optional[int],
    typer.Option(min=1, help="Windows per forward pass (default: 1 on the CPU, fastest there; 4 on a GPU)."),
]


def _fusion(value: str) -> str:
    from reloc.evidence import FUSIONS

    if value not in FUSIONS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(FUSIONS)}")
    return value


FusionOption = Annotated[
    str,
    typer.Option(
        parser=_fusion,
        help="What the map (heat map, mask, overlay) is: clones+dq, the learned map averaged with the "
        "double-quantisation map where the JPEG file shows aligned double compression and raised where the "
        "copy-move matcher matched regions (measured best on casia1-dev, see docs/guide/evidence.md; the "
        "learned map alone is kept beside it); clones or dq, one of the two; none, the learned map alone "
        "(skips the evidence).",
    ),
]
DeviceOption = Annotated[
    str, typer.Option(callback=_check_device, help="'auto' (CUDA when present), 'cpu', 'cuda[:N]' or 'mps'.")
]
KeepMemoryOption = Annotated[
    bool,
    typer.Option(
        help="Let glibc's malloc keep freed memory for reuse (CPU inference about a third faster, CPU "
        "training about a fifth; the process keeps its peak memory until it exits)."
    ),
]
OverwriteOption = Annotated[
    bool, typer.Option(help="Replace outputs that exist already (by default the command refuses, naming the file).")
]
MAX_EXCLUDE_BORDER = 1024
"""Largest ``--exclude-border``: a band wider than this leaves no pixel of any real mask."""
PrecisionOption = Annotated[
    str, typer.Option(help="fp32, bf16, fp16 (CUDA) or auto (bf16 where the CPU or GPU has it, else fp32 / fp16).")
]

#: The variants ``reloc models`` lists: (role, name, builder arguments).
LISTED_VARIANTS: list[tuple[str, str, dict]] = [
    ("restorer", "scunet", {"preset": "paper"}),
    ("restorer", "scunet", {"preset": "small"}),
    ("restorer", "scunet", {"preset": "tiny"}),
    ("localizer", "dfcn", {}),
    ("localizer", "dfcn", {"faithful": False}),
    ("localizer", "dfcn", {"width": 0.5}),
    ("localizer", "scse_unet", {}),
    ("localizer", "mvssnet", {}),
    ("discriminator", "dcgan", {}),
]


def parse_assignments(assignments: list[str]) -> dict:
    """``["width=0.5", "faithful=false"]`` -> ``{"width": 0.5, "faithful": False}`` (YAML scalars)."""
    import yaml

    parsed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def check_precision(precision: str, device) -> None:
    """A bad ``--precision`` (unknown, or not runnable on ``device``) as a one-line usage error."""
    from reloc.precision import resolve_precision

    try:
        resolve_precision(precision, device)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--precision") from error


@app.command()
def models() -> None:
    """List the registered networks with their exact parameter counts."""
    import torch

    from reloc.models import count_parameters, create_network

    typer.echo(f"{'role':<14} {'network':<34} {'parameters':>14}")
    for kind, name, kwargs in LISTED_VARIANTS:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            network = create_network(kind, name, **kwargs)
        label = name + (f"({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
        typer.echo(f"{kind:<14} {label:<34} {count_parameters(network):>14,}")
    typer.echo("")
    typer.echo(_pretrained_table())


def _pretrained_table() -> str:
    """The pretrained models with their card figures (per-image F1 / AUC on held-out photos)."""
    from reloc import pretrained
    from reloc.engine.detection import detection_lines

    try:
        cards = pretrained.cards()
    except pretrained.PretrainedError as error:
        return f"pretrained models: unavailable ({error})"
    columns = ("none", "jpeg:50", "jpeg:75", "jpeg:90")
    lines = [
        "pretrained models (use as pretrained:NAME; figures: per-image F1 / AUC on held-out photos, "
        "reloc release cards)",
        f"{'name':<20} {'roles':<20} {'window':>7} " + " ".join(f"{c:>13}" for c in columns),
    ]
    for name in pretrained.NAMES:
        card = cards.get(name)
        if card is None:
            continue
        figures = card.get("figures", {})

        def cell(spec: str, figures: dict = figures) -> str:
            values = figures.get(spec)
            if not values or values.get("f1") is None or values.get("auc") is None:
                return f"{'-':>13}"
            return f"{values['f1']:.2f} / {values['auc']:.2f}".rjust(13)

        label = pretrained.PREFIX + name
        window = "/".join(str(v) for v in card["window"]) if card.get("window") else "-"
        lines.append(
            f"{label:<20} {'+'.join(card.get('roles', [])):<20} {window:>7} " + " ".join(cell(c) for c in columns)
        )
    rule = pretrained.routing()
    jpeg = ", ".join(f"QF {entry['quality']} -> {entry['model']}" for entry in rule["jpeg"])
    lines.append(
        "`reloc localize` with no model option uses --model auto, measured on real forgeries and camera-size "
        f"photos: no JPEG -> {rule['no_jpeg']['model']}; JPEGs by the nearest measured quality: {jpeg}."
    )
    return "\n".join(lines + [detection_lines()])


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the synthetic data, runs, evaluation and report.")] = Path(
        "runs/demo"
    ),
    train: Annotated[
        bool, typer.Option(help="Train CPU-scale models from scratch instead of using the pretrained ones.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate the paper's four situations with the pretrained models on scikit-image's photos; write a report."""
    from reloc.demo import run_demo

    report = run_demo(out, train=train, progress=progress)
    typer.echo(f"report: {report}")


@app.command(name="eval")
def evaluate(
    dataset: Annotated[
        Path,
        typer.Option(help="Test dataset (a public benchmark's folder, Tp/Gt folder, IMDL-BenCo JSON or synth folder)."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for eval/*.json records and maps/.")],
    plain: Annotated[Optional[Path], typer.Option(help="plain run (M^P): P{P} and P{D}.")] = None,
    finetune: Annotated[Optional[Path], typer.Option(help="finetune run (M^{D|P}): D|P{D}.")] = None,
    reloc: Annotated[
        Optional[list[str]], typer.Option(help="ReLoc run, or LABEL=RUN for ablations (repeatable).")
    ] = None,
    transfer: Annotated[
        Optional[list[str]], typer.Option(help="RELOC_RUN:PLAIN_RUN, restorer of one before the other's localizer.")
    ] = None,
    evidence: Annotated[
        str,
        typer.Option(
            help="Classical evidence methods scored alone, a comma list of ela, noise, ghost, dq, blocks, clones "
            "(situations ela{P}, ...: the images as stored, no distortion; see docs/guide/evidence.md)."
        ),
    ] = "",
    fusion: Annotated[
        str,
        typer.Option(
            parser=_fusion,
            help="none, or clones, dq, clones+dq: also score each model's map fused with that evidence "
            "(situations P+clones+dq{D}, ...; the double-quantisation model needs the file, so on distorted "
            "images it does not apply).",
        ),
    ] = "none",
    distortions: Annotated[
        list[str], typer.Option("--distortion", parser=_distortion_spec, help="Distortion spec (repeatable).")
    ] = ["jpeg:75"],  # noqa: B006
    grid: Annotated[
        Optional[str],
        typer.Option(help="Robustness grid (jpeg, benco, resize, webp, double-jpeg, social); replaces --distortion."),
    ] = None,
    metric_protocol: Annotated[str, typer.Option(help="paper, best-threshold or inverted (see the docs).")] = "paper",
    exclude_border: Annotated[int, typer.Option(help="Ignore this many pixels each side of the mask boundary.")] = 0,
    mask_resize: Annotated[
        Optional[str],
        typer.Option(help="'nearest': resize masks of another size than their image instead of skipping them."),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(
            parser=_split,
            help="train, val, test or all; the split recorded in the runs' split.json. Default: test, or all "
            "when only classical methods are scored (they were trained on nothing).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Distortion seed (and split seed for runs that record no split).")] = 0,
    window: WindowOption = None,
    stride: StrideOption = None,
    batch_size: BatchOption = None,
    tiling: Annotated[
        str,
        typer.Option(
            help="default: as reloc localize runs images (whole up to the weights' budget, else windows on the "
            "8-px JPEG grid, tapered); paper: 512-px windows flush with the far sides, overlaps averaged."
        ),
    ] = "default",
    save_maps: Annotated[int, typer.Option(help="Probability maps to keep per situation (for reports).")] = 4,
    pooled_auc: Annotated[bool, typer.Option(help="Also compute AUC over all pixels pooled.")] = True,
    device: DeviceOption = "auto",
    keep_freed_memory: KeepMemoryOption = True,
    precision: PrecisionOption = "fp32",
    overwrite: OverwriteOption = False,
) -> None:
    """Evaluate the paper's situations (Tables I-V), classical evidence methods and fusions; one
    JSON record per situation and distortion, with per-kind means where the file names say the
    kind of forgery (CASIA's Sp_D_ splices / Sp_S_ copy-moves, reloc synth's types).

    Samples that cannot be used (unreadable, a mask of another size) are skipped and listed
    in the records; the command then says how many and why in one line and exits with 1.
    Under ``torchrun --nproc_per_node N`` the images are split across the processes.
    """
    from reloc.analysis.image_level import image_level_line
    from reloc.data.catalog import DatasetError
    from reloc.devices import pick_device
    from reloc.engine.distributed import DistContext
    from reloc.engine.evaluate import (
        TILINGS,
        evaluation_samples,
        evidence_situations,
        fused_situations,
        run_evaluation,
        standard_situations,
    )
    from reloc.engine.grids import get_grid
    from reloc.engine.inference import retain_freed_memory
    from reloc.evidence import parse_methods
    from reloc.metrics import PROTOCOLS
    from reloc.runs import SplitError

    _check_stride(window, stride)
    if metric_protocol not in PROTOCOLS:
        raise typer.BadParameter(f"--metric-protocol must be one of {', '.join(PROTOCOLS)}, got {metric_protocol!r}")
    if tiling not in TILINGS:
        raise typer.BadParameter(f"must be one of {', '.join(TILINGS)}, got {tiling!r}", param_hint="--tiling")
    if mask_resize not in (None, "nearest"):
        raise typer.BadParameter(f"--mask-resize takes 'nearest', got {mask_resize!r}")
    if not 0 <= exclude_border <= MAX_EXCLUDE_BORDER:
        raise typer.BadParameter(f"must be from 0 to {MAX_EXCLUDE_BORDER} pixels", param_hint="--exclude-border")
    try:
        chosen_grid = get_grid(grid) if grid else None
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        methods = parse_methods(evidence)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--evidence") from None

    if keep_freed_memory:
        retain_freed_memory()

    relocs: dict[str, str] = {}
    for item in reloc or []:
        label, run_folder = item.split("=", 1) if "=" in item else ("ReLoc", item)
        if label in relocs:
            raise typer.BadParameter(f"two --reloc runs labelled {label!r}; name them LABEL=RUN", param_hint="--reloc")
        relocs[label] = run_folder
    pairs = [tuple(item.split(":", 1)) for item in transfer or []]
    if any(len(pair) != 2 for pair in pairs):
        raise typer.BadParameter("--transfer takes RELOC_RUN:PLAIN_RUN")
    folders = (
        [str(run) for run in (plain, finetune) if run] + list(relocs.values()) + [r for pair in pairs for r in pair]
    )
    any_model = bool(plain or finetune or relocs or pairs)
    try:
        refs = evaluation_samples(dataset, split or ("test" if any_model else "all"), folders, seed)
    except (SplitError, DatasetError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    models = standard_situations(plain and str(plain), finetune and str(finetune), relocs, pairs)
    if not models and not methods:
        raise typer.BadParameter("give at least one of --plain, --finetune, --reloc, --transfer, --evidence")
    if fusion != "none" and not models:
        raise typer.BadParameter("fuses a model's map: give a model too (--plain, ...)", param_hint="--fusion")
    situations = models + (fused_situations(models, fusion) if fusion != "none" else []) + evidence_situations(methods)
    chosen = pick_device(device)
    check_precision(precision, chosen)
    dist = DistContext.from_environment(chosen.type)
    records = run_evaluation(
        situations,
        refs,
        list(distortions),
        out,
        grid=chosen_grid,
        device=dist.local_device(chosen),
        window=window,
        stride=stride,
        batch_size=batch_size,
        seed=seed,
        pooled_auc=pooled_auc,
        keep_maps=save_maps,
        dataset=str(dataset),
        metric_protocol=metric_protocol,
        exclude_border=exclude_border,
        mask_resize=mask_resize,
        precision=precision,
        dist=dist,
        tiling=tiling,
        overwrite=overwrite,
    )
    dist.close()
    if not dist.is_main:
        return
    for record in records:
        values = record["metrics"]["per-image"]
        unjudged = (record.get("evidence") or {}).get("not_applicable")
        typer.echo(
            f"{record['situation']:<24} {record['distortion']:<12} F1 {_metric(values['f1'])} "
            f"IoU {_metric(values['iou'])} AUC {_metric(values['auc'])} ({record['images']} images"
            + (f", {record['skipped']} skipped" if record.get("skipped") else "")
            + (f", {record['evidence']['method']} not applicable to {unjudged}" if unjudged else "")
            + (", none tampered: F1 / IoU / AUC undefined" if record.get("tampered_images") == 0 else "")
            + ")"
        )
        for kind, row in record.get("by_kind", {}).items():
            typer.echo(
                f"  {kind:<35} F1 {_metric(row['f1'])} IoU {_metric(row['iou'])} AUC {_metric(row['auc'])} "
                f"({row['images']} images)"
            )
        if image_level_line(record):
            typer.echo(image_level_line(record))
    typer.echo(f"records in {out / 'eval'}")
    problem = skipped_line(records, len(refs))
    if problem:
        typer.echo(problem, err=True)
        raise typer.Exit(EXIT_INPUTS_FAILED)


def skipped_line(records: list[dict], samples: int) -> str | None:
    """One line on the samples an evaluation skipped (``None`` if none): how many, and why (the
    commonest reasons, numbers generalised), or ``error: ...`` when nothing was evaluated."""
    import re
    from collections import Counter

    skipped = {(s["name"], s["reason"]) for record in records for s in record.get("skipped_samples", [])}
    if not skipped:
        return None
    names = {name for name, _ in skipped}
    kinds = Counter(re.sub(r"\d+", "N", reason) for _, reason in skipped).most_common()
    why = "; ".join(f"{count} x {kind}" for kind, count in kinds[:3]) + ("; ..." if len(kinds) > 3 else "")
    if all(record["images"] == 0 for record in records):
        return f"error: no sample was evaluated: all {len(names)} of {samples} skipped ({why}); see skipped_samples in the records"
    return (
        f"warning: {len(names)} of {samples} samples skipped, not evaluated ({why}); see skipped_samples in the records"
    )


def _metric(value: float | None) -> str:
    """A metric with 3 decimals; ``nan`` only for an undefined one (``None`` or NaN), never for 0."""
    import math

    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"


data_app = typer.Typer(no_args_is_help=True, help="Look at datasets as reloc reads them.")
app.add_typer(data_app, name="data")


@data_app.command(name="inspect")
def data_inspect(
    path: Annotated[
        Path, typer.Argument(help="A dataset: a public benchmark's folder, Tp/Gt, JSON list or synth folder.")
    ],
    write_json: Annotated[
        Optional[Path], typer.Option(help="Write the usable samples as an IMDL-BenCo JSON list to this file.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: OverwriteOption = False,
) -> None:
    """Detected layout, counts, mask polarity and values, mis-sized and unreadable files."""
    from reloc.data.catalog import DatasetError, write_benco_json
    from reloc.data.inspection import inspect_dataset
    from reloc.data.io import ImageError
    from reloc.io_utils import refuse_to_replace

    if write_json is not None:
        refuse_to_replace([write_json, write_json.parent / f"{write_json.stem}_masks"], overwrite=overwrite)

    try:
        found = inspect_dataset(path, progress=progress)
        typer.echo(found.report())
        if write_json is not None:
            typer.echo(f"wrote {write_benco_json(found.usable, write_json)} ({len(found.usable)} samples)")
    except (DatasetError, ImageError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


def _command_line(ctx: typer.Context) -> str:
    """``reloc SUBCOMMAND...`` of ``ctx`` with the options given that differ from their defaults (provenance)."""
    names, parent = [], ctx
    while parent.parent is not None:
        names.insert(0, parent.info_name)
        parent = parent.parent
    words = ["reloc", *names]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or value == () or value == []:
            continue
        flag = param.opts[0]
        if isinstance(value, bool):
            words.append(flag)
        else:
            words += [
                word for item in (value if isinstance(value, (list, tuple)) else [value]) for word in (flag, str(item))
            ]
    return " ".join(words)


release_app = typer.Typer(
    no_args_is_help=True, help="Make the shipped pretrained models (the release recipe) and their cards."
)
app.add_typer(release_app, name="release")


@release_app.command(name="run")
def release_run(
    ctx: typer.Context,
    preset: Annotated[
        str, typer.Option(help="The recipe's preset (auto: cpu-2h on a CPU with bf16, cpu-fp32 on others).")
    ] = "auto",
    recipe: Annotated[
        Optional[Path], typer.Option(help="The recipe YAML [default: configs/release/recipe.yaml].")
    ] = None,
    work: Annotated[Optional[Path], typer.Option(help="Data, runs and logs [default: runs/release].")] = None,
    photos: Annotated[
        Optional[str],
        typer.Option(help="The photo folder instead of the recipe's (e.g. a copy by benchmarks/shrink_photos.py)."),
    ] = None,
    part: Annotated[
        Optional[list[str]],
        typer.Option(help="Run only these parts (repeatable; --list-parts names them) [default: all but experiments]."),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Training parts run side by side at most.")] = 2,
    start_from_package: Annotated[
        bool,
        typer.Option(
            "--start-from-package", help="A part whose start part has no run in --work starts from shipped weights."
        ),
    ] = False,
    results: Annotated[
        Optional[Path], typer.Option(help="Provenance JSON [default: benchmarks/results/release/pretrain.json].")
    ] = None,
    package: Annotated[
        Optional[Path], typer.Option(help="Where ship puts weights and cards [default: src/reloc/pretrained].")
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option(help="Torch threads of every training part (default: the recipe's).")
    ] = None,
    option: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="A config override of every training part (repeatable)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redo the inference part even when recorded as finished.")
    ] = False,
    list_parts: Annotated[bool, typer.Option("--list-parts", help="Print the recipe's parts and stop.")] = False,
) -> None:
    """Run the release recipe (data, training parts, inference choice, ship), resumably."""
    from reloc.release import provenance, runner, ship
    from reloc.release import recipe as recipes

    if list_parts:
        loaded = recipes.load_recipe(preset, recipe or recipes.RECIPE)
        default = runner.default_parts(loaded)
        typer.echo(
            "\n".join(p if p in default else f"{p} (experiment: only with --part)" for p in runner.parts(loaded))
        )
        return
    runner.run(
        preset=preset,
        recipe_path=recipe or recipes.RECIPE,
        work=work or runner.WORK,
        photos=photos,
        only=part,
        jobs=jobs,
        start_from_package=start_from_package,
        results_path=results or provenance.RESULTS,
        package=package or ship.PACKAGE,
        threads=threads,
        overrides=option,
        force=force,
        command=_command_line(ctx),
    )


@release_app.command(name="pack")
def release_pack(
    out: Annotated[Optional[Path], typer.Option(help="The pack folder [default: runs/gpu-pack].")] = None,
    preset: Annotated[str, typer.Option(help="The recipe's preset the pack is for.")] = "gpu",
    recipe: Annotated[
        Optional[Path], typer.Option(help="The recipe YAML [default: configs/release/recipe.yaml].")
    ] = None,
    photos: Annotated[Optional[str], typer.Option(help="The photo folder instead of the recipe's.")] = None,
    wheels: Annotated[
        bool, typer.Option(help="Download the wheels the GPU machine's Python lacks (pydantic) into it.")
    ] = True,
) -> None:
    """Pack what a GPU machine needs to run the recipe's data and training parts (64 MiB checked)."""
    from reloc.release import gpu
    from reloc.release import recipe as recipes

    gpu.make_pack(out or gpu.PACK, preset, recipe or recipes.RECIPE, photos, wheels)


@release_app.command(name="gpu")
def release_gpu(
    ctx: typer.Context,
    pack: Annotated[Optional[Path], typer.Option(help="The pack [default: runs/gpu-pack].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Runs and results [default: runs/gpu-release].")] = None,
    time_limit: Annotated[float, typer.Option(help="Seconds for the data and training parts.")] = 400.0,
    inference: Annotated[bool, typer.Option("--inference", help="Then run the inference part.")] = False,
    option: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="A config override of every training part (repeatable)."),
    ] = None,
    recipe: Annotated[
        Optional[Path], typer.Option(help="The recipe YAML [default: configs/release/recipe.yaml].")
    ] = None,
) -> None:
    """Train the pack's preset (data, training parts) within a time limit, resumably (a GPU machine)."""
    from reloc.release import gpu
    from reloc.release import recipe as recipes

    gpu.run(
        pack or gpu.PACK,
        out or gpu.ROOT / "runs" / "gpu-release",
        time_limit,
        option,
        inference,
        recipe or recipes.RECIPE,
        command=_command_line(ctx),
    )


@release_app.command(name="cards")
def release_cards(
    model: Annotated[
        Optional[list[str]], typer.Option(help="Evaluate only these models (repeatable): plain, robust, reloc.")
    ] = None,
    spec: Annotated[
        Optional[list[str]], typer.Option(help="Evaluate only these distortions (repeatable; default all).")
    ] = None,
    work: Annotated[Optional[Path], typer.Option(help="Test sets and parts [default: runs/pretrained-bench].")] = None,
    aggregate: Annotated[bool, typer.Option("--aggregate", help="Only merge the measured parts.")] = False,
) -> None:
    """Measure the shipped models on the held-out photos; write the results and the cards' figures."""
    from reloc.release import cards, measure

    for name, known, what in ((model, measure.MODELS, "--model"), (spec, measure.SPECS, "--spec")):
        unknown = [value for value in name or [] if value not in known]
        if unknown:
            raise typer.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(known)}", param_hint=what)
    cards.run(model, spec, work or cards.WORK, only_aggregate=aggregate)


@app.command()
def localize(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    model: Annotated[
        Optional[str],
        typer.Option(
            help="'auto' (default: by each file's JPEG quality, see `reloc models`), pretrained:NAME, "
            "a run folder or a localizer weights file."
        ),
    ] = None,
    run: Annotated[
        Optional[Path], typer.Option(help="A run folder (or pretrained:NAME): its best localizer and restorer.")
    ] = None,
    localizer: Annotated[
        Optional[Path], typer.Option(help="Localizer weights (.safetensors or pretrained:NAME).")
    ] = None,
    restorer: Annotated[Optional[Path], typer.Option(help="Restorer weights to put in front of the localizer.")] = None,
    restore: Annotated[bool, typer.Option(help="Use the model's restorer when it has one.")] = True,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("localized"),
    window: WindowOption = None,
    stride: StrideOption = None,
    batch_size: BatchOption = None,
    threshold: Annotated[
        float, typer.Option(parser=_probability, help="Probability above which a pixel is marked tampered, in (0, 1).")
    ] = 0.5,
    save_restored: Annotated[bool, typer.Option(help="Also write the restored image.")] = False,
    save_probability: Annotated[
        bool, typer.Option(help="Also write the raw probabilities as a 16-bit grey PNG (value = p x 65535).")
    ] = False,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders of folder inputs.")] = False,
    max_pixels: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="Refuse images with more pixels [default: 400 M pixels (about 8.4 GB), or what half this "
            "machine's memory holds, and large images in tiny files (decompression bombs); a value given "
            "here replaces both].",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = "auto",
    keep_freed_memory: KeepMemoryOption = True,
    precision: PrecisionOption = "auto",
    evidence: Annotated[
        str,
        typer.Option(
            help="Classical evidence maps to add, a comma list of ela, noise, ghost, dq, blocks, clones "
            "(see docs/guide/evidence.md): each written as <stem>_evidence-<name>.png, its figures into the JSON."
        ),
    ] = "",
    fusion: FusionOption = "clones+dq",
) -> None:
    """Localize tampering in images: heat map, mask, overlay and a JSON summary per image.

    Files that fail (unreadable, over --max-pixels, out of memory) are listed with their
    reason at the end (exit code 1); every good file is still processed. Outputs never
    replace a file: if OUT holds one of their names, a fresh sub-folder is used. With no
    model option, `--model auto` picks a pretrained model per file from its JPEG quality.
    Under ``torchrun --nproc_per_node N`` the files are split across the processes and the
    summary is merged.
    """
    from reloc.devices import pick_device
    from reloc.engine.distributed import DistContext
    from reloc.engine.inference import retain_freed_memory
    from reloc.engine.localize import BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS, localize_files
    from reloc.engine.model_choice import ModelChooser
    from reloc.evidence import parse_methods
    from reloc.limits import MAX_EXPANSION, fitting_pixels
    from reloc.pretrained import PretrainedError

    if keep_freed_memory:
        retain_freed_memory()

    given = [value for value in (model, run, localizer) if value is not None]
    if len(given) > 1:
        raise typer.BadParameter("give one of --model, --run, --localizer")
    try:
        methods = parse_methods(evidence)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--evidence") from None
    _check_stride(window, stride)
    chosen = pick_device(device)
    check_precision(precision, chosen)
    dist = DistContext.from_environment(chosen.type)
    try:
        chooser = ModelChooser.from_option(
            str(given[0]) if given else "auto", dist.local_device(chosen), restorer, restore, precision
        )
    except (PretrainedError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    if not chooser.auto:  # a bad weights file is the batch's usage error, before any file is read
        chooser.pipeline(next(iter(chooser.sources)))
    summary = localize_files(
        inputs,
        chooser,
        out,
        window=window,
        stride=stride,
        batch_size=batch_size,
        threshold=threshold,
        save_restored=save_restored,
        save_probability=save_probability,
        recursive=recursive,
        max_pixels=fitting_pixels(DEFAULT_MAX_PIXELS, BYTES_PER_PIXEL) if max_pixels is None else max_pixels,
        max_expansion=MAX_EXPANSION if max_pixels is None else None,  # a cap the user gives replaces both
        dist=dist,
        evidence=methods,
        fusion=fusion,
    )
    dist.close()
    if dist.is_main:
        typer.echo(summary.report())
    if not summary.ok:
        raise typer.Exit(EXIT_INPUTS_FAILED)


@app.command()
def report(
    evals: Annotated[list[Path], typer.Argument(help="Folders written by `reloc eval`.")],
    out: Annotated[Path, typer.Option(help="Folder for report.md and figures/.")],
    runs: Annotated[
        Optional[list[Path]], typer.Option("--run", help="Run folders for loss curves (repeatable).")
    ] = None,
    title: Annotated[str, typer.Option(help="Report title.")] = "reloc report",
    features: Annotated[
        int, typer.Option(help="Pixels per class for the t-SNE feature figure (Fig. 2); 0 skips it.")
    ] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Turn evaluation records into Markdown tables laid out like the paper's, plus figures."""
    from reloc.analysis.report import write_report
    from reloc.engine.evaluate import load_records
    from reloc.io_utils import refuse_to_replace

    refuse_to_replace([out / "report.md", out / "figures"], overwrite=overwrite)

    records = load_records(evals)
    if not records:
        raise typer.BadParameter(f"no evaluation records under {[str(e) for e in evals]}")
    typer.echo(f"report: {write_report(records, out, list(evals), list(runs or []), title, feature_pixels=features)}")


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Checkpoint in a reference implementation's key layout.")],
    network: Annotated[str, typer.Option(help="Registry name: scunet, dfcn, scse_unet, mvssnet, dcgan.")],
    out: Annotated[Path, typer.Option(help="Destination .safetensors file.")],
    preset: Annotated[
        Optional[str], typer.Option(help="Preset of networks that have them (scunet: paper, small, tiny).")
    ] = None,
    option: Annotated[
        Optional[list[str]], typer.Option("--set", help="Builder argument key=value, e.g. faithful=true.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Convert a reference checkpoint to a self-describing safetensors file (by key name)."""
    import torch

    from reloc.io_utils import refuse_to_replace
    from reloc.limits import MAX_PARAMETERS
    from reloc.models import REGISTRIES, count_parameters, create_network
    from reloc.models.weights import WeightsError, load_foreign_weights, save_network

    refuse_to_replace([out], overwrite=overwrite)

    kind = next((role for role, registry in REGISTRIES.items() if network in registry), None)
    if kind is None:
        raise typer.BadParameter(f"unknown network {network!r}")
    arguments = parse_assignments(option or [])
    if preset is not None:
        arguments["preset"] = preset
    try:
        with torch.device("meta"):  # shapes only: the size is checked before any memory is spent
            parameters = count_parameters(create_network(kind, network, **arguments))
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"that network would have {parameters:,} parameters, over {MAX_PARAMETERS:,}")
        built = create_network(kind, network, **arguments)
    except (TypeError, ValueError, ArithmeticError) as error:
        raise typer.BadParameter(f"cannot build {network} with {arguments}: {error}", param_hint="--set") from error
    try:
        report = load_foreign_weights(built, source, strict=True)
    except WeightsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    save_network(built, out)
    typer.echo(f"{report}\nwrote {out}")


@app.command()
def export(
    weights: Annotated[
        Path,
        typer.Argument(
            help="A .safetensors file written by reloc (it rebuilds its network), a run folder or pretrained:NAME."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Destination .onnx file.")],
    role: Annotated[
        str, typer.Option(help="Which network of a run folder or pretrained model: localizer or restorer.")
    ] = "localizer",
    height: Annotated[int, typer.Option(min=1, max=MAX_SIDE, help="Height of the traced example input.")] = 512,
    width: Annotated[int, typer.Option(min=1, max=MAX_SIDE, help="Width of the traced example input.")] = 512,
    opset: Annotated[
        Optional[int],
        typer.Option(help="ONNX opset version, at least reloc.export.DEFAULT_OPSET [default: that one]."),
    ] = None,
    dynamic: Annotated[bool, typer.Option(help="Dynamic batch, height and width (else fixed to 1x3xHxW).")] = True,
    check: Annotated[
        bool, typer.Option(help="Compare onnxruntime's output with PyTorch's (needs onnxruntime).")
    ] = True,
    overwrite: OverwriteOption = False,
) -> None:
    """Export a network to ONNX (needs the 'export' extra: onnx, onnxscript, onnxruntime)."""
    import torch

    from reloc.export import DEFAULT_OPSET, check_onnx, export_onnx, latest_opset
    from reloc.io_utils import refuse_to_replace
    from reloc.models.weights import WeightsError, load_network
    from reloc.pretrained import PretrainedError
    from reloc.runs import resolve_weights

    if opset is not None and not DEFAULT_OPSET <= opset <= latest_opset():
        raise typer.BadParameter(
            f"{opset} is not an opset the exporter writes ({DEFAULT_OPSET} to {latest_opset()})", param_hint="--opset"
        )
    refuse_to_replace([out], overwrite=overwrite)

    try:
        network = load_network(resolve_weights(str(weights), role))
    except (WeightsError, PretrainedError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    try:
        export_onnx(network, out, height, width, opset=opset or DEFAULT_OPSET, dynamic=dynamic)
    except ImportError as error:
        typer.echo(f"error: {error}; install the export extra: pip install 'reloc[export]'", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"wrote {out} ({network.spec.kind} {network.spec.name}, {'dynamic' if dynamic else 'fixed'} size)")
    if check:
        try:
            difference = check_onnx(network, out, torch.rand(1, 3, height, width))
        except ImportError:
            typer.echo("onnxruntime not installed: output not checked")
            return
        typer.echo(f"max |onnxruntime - torch| on a random {height}x{width} image: {difference:.2e}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder (created): config.yaml, metrics.csv, checkpoints, weights.")],
    config: Annotated[Optional[Path], typer.Option(help="YAML configuration (see configs/).")] = None,
    option: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override section.key=value, e.g. train.epochs=3.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its last checkpoint.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    keep_freed_memory: KeepMemoryOption = True,
    time_limit: Annotated[
        Optional[float],
        typer.Option(help="Seconds from now: stop after the last epoch that ends within them (--resume goes on)."),
    ] = None,
) -> None:
    """Train one situation (plain, finetune, reloc, joint); works under torchrun for several GPUs."""
    import time

    deadline = None if time_limit is None else time.monotonic() + time_limit
    from reloc import runs
    from reloc.config import load_config
    from reloc.data.catalog import DatasetError
    from reloc.data.io import ImageError
    from reloc.engine.inference import retain_freed_memory
    from reloc.engine.tasks import NonFiniteLossError
    from reloc.engine.trainer import train as run_training
    from reloc.io_utils import refuse_to_replace

    if keep_freed_memory:
        retain_freed_memory()
    try:
        if resume and (config or option):
            raise ValueError("--resume continues OUT/config.yaml as it is; do not pass --config or --set with it")
        if not resume and (out / runs.CHECKPOINTS).exists():
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        if not resume:
            refuse_to_replace(
                [out / name for name in (runs.CONFIG, runs.SPLIT, runs.METRICS, runs.WEIGHTS)],
                hint="choose another --out; nothing of yours is replaced",
            )
        result = run_training(
            None if resume else load_config(config, option or []),
            out,
            resume=resume,
            progress=progress,
            deadline=deadline,
        )
    except NonFiniteLossError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(3) from error
    except (ValueError, FileNotFoundError, DatasetError, ImageError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(
        f"finished {result.finished} of {result.epochs} epochs in {result.run_dir}; best by validation {result.select_by} kept in "
        f"{runs.weights_path(result.run_dir, 'localizer').parent}"
    )


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder: Tp/, Gt/, Au/, manifest.json, provenance.jsonl.")],
    photos: Annotated[
        Optional[list[str]],
        typer.Option(help="'default' (scikit-image's photos), a folder or a file; repeatable (default: 'default')."),
    ] = None,
    count: Annotated[
        int, typer.Option(help="Number of samples (edits and, with authentic_fraction, authentic).")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of everything; the same seed gives identical files.")] = 0,
    types: Annotated[str, typer.Option(help="Comma-separated subset of splice,copymove,removal,text.")] = (
        "splice,copymove,removal,text"
    ),
    size: Annotated[int, typer.Option(min=32, max=MAX_SIDE, help="Side of the square output images.")] = 512,
    settings: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="YAML file of generator settings (configs/synth/; docs/guide/generator.md); repeatable, "
            "later files override earlier ones key by key."
        ),
    ] = None,
    enlarge_hosts: Annotated[
        Optional[bool],
        typer.Option(
            help="Enlarge photos smaller than --size to it; --no-enlarge-hosts keeps them at their own size "
            "(smaller samples) so no interpolation pattern a model could learn covers the image "
            "(default: the settings', else enlarge)."
        ),
    ] = None,
    donors: Annotated[Optional[str], typer.Option(help="Another photo source for splice donors.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: up to 2).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the files of an earlier run in OUT.")] = False,
) -> None:
    """Generate realistic tampered images with exact masks from real photos."""
    import dataclasses

    from reloc.data.synth import SynthSettings, synthesize

    try:
        chosen = SynthSettings.from_yaml(*settings) if settings else SynthSettings()
        if enlarge_hosts is not None:
            chosen = dataclasses.replace(chosen, enlarge_hosts=enlarge_hosts)
        summary = synthesize(
            photos[0] if photos and len(photos) == 1 else (photos or "default"),
            out,
            count=count,
            seed=seed,
            types=[t.strip() for t in types.split(",") if t.strip()],
            size=size,
            settings=chosen,
            donors=donors,
            workers=workers,
            overwrite=overwrite,
        )
    except (ValueError, FileExistsError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(str(summary))


@app.command()
def serve(
    model: Annotated[
        Optional[list[str]], typer.Option(help="'auto' or a pretrained model (plain, robust, reloc); repeatable.")
    ] = None,
    run: Annotated[Optional[list[str]], typer.Option(help="A run folder to serve (repeatable).")] = None,
    localizer: Annotated[Optional[str], typer.Option(help="Localizer weights (.safetensors) to serve.")] = None,
    restorer: Annotated[Optional[str], typer.Option(help="Restorer weights in front of --localizer.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (other than loopback: warned).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8765,
    token: Annotated[
        Optional[str], typer.Option(help="Require 'Authorization: Bearer TOKEN' on every API request.")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted, in MB (at most 4096).")] = 50,
    max_megapixels: Annotated[
        Optional[float],
        typer.Option(
            help="Largest image accepted, in megapixels [default: 50, or less where a quarter of this "
            "machine's memory would not hold one job].",
            show_default=False,
        ),
    ] = None,
    max_disk_gb: Annotated[
        float, typer.Option(help="Disk the work folder may use for uploads and results; oldest results go first.")
    ] = 4,
    expire_hours: Annotated[float, typer.Option(help="Hours a result is kept.")] = 24,
    queue_size: Annotated[int, typer.Option(help="Images that may wait for the worker (more: 503).")] = 16,
    keep: Annotated[
        Optional[Path], typer.Option(help="Work folder to use and keep (default: temporary, removed).")
    ] = None,
    window: WindowOption = None,
    stride: StrideOption = None,
    device: DeviceOption = "auto",
    evidence: Annotated[
        str, typer.Option(help="Classical evidence maps shown as layers, a comma list (as `reloc localize`).")
    ] = "",
    fusion: FusionOption = "clones+dq",
) -> None:
    """A local web page (and HTTP API) to examine images: heat map, mask, file facts, case report.

    With no model option it serves the pretrained models with the --model auto rule.
    """
    from reloc.devices import pick_device
    from reloc.evidence import parse_methods
    from reloc.limits import finite_positive
    from reloc.serve import serve as run_server
    from reloc.serve.models import ModelError, load_models

    _check_stride(window, stride)
    if queue_size < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--queue-size")
    for option, value, high in (
        ("--max-upload-mb", max_upload_mb, 4096),
        ("--max-megapixels", max_megapixels, 1000),
        ("--max-disk-gb", max_disk_gb, 2**20),
        ("--expire-hours", expire_hours, 24 * 366),
    ):
        try:
            if value is not None:
                finite_positive(value, "it", high=high)
        except ValueError as error:
            raise typer.BadParameter(str(error).removeprefix("it "), param_hint=option) from None
    try:
        methods = tuple(parse_methods(evidence))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--evidence") from None

    try:
        import fastapi  # noqa: F401 - checked here, used by reloc.serve
        import uvicorn  # noqa: F401 - checked here, used by reloc.serve
    except ImportError as error:
        typer.echo(f"error: {error}; install the serve extra: pip install 'reloc[serve]'", err=True)
        raise typer.Exit(2) from error
    try:
        models = load_models(model or [], run or [], localizer, restorer, pick_device(device))
    except ModelError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    run_server(
        models,
        host=host,
        port=port,
        token=token,
        keep=keep,
        max_upload_bytes=int(max_upload_mb * 2**20),
        **({} if max_megapixels is None else {"max_pixels": int(max_megapixels * 1e6)}),
        max_disk_bytes=int(max_disk_gb * 2**30),
        max_age=expire_hours * 3600,
        capacity=queue_size,
        window=window,
        stride=stride,
        evidence=methods,
        fusion=fusion,
    )


click_app = typer.main.get_command(app)
"""The click command behind ``app``, for tools that read click (the docs' CLI reference)."""

if __name__ == "__main__":
    app()
