"""The ``reloc`` command line (a typer app).

Commands: ``models`` (the registered networks and their sizes), ``demo`` (the README's
first command), ``convert`` (reference checkpoints -> our safetensors), ``synth``
(synthetic tampered images from real photos).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])

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


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the outputs.")] = Path("runs/demo"),
    restorer_preset: Annotated[str, typer.Option(help="SCUNet preset.")] = "paper",
    localizer: Annotated[str, typer.Option(help="Localizer name.")] = "dfcn",
    quality: Annotated[int, typer.Option(help="JPEG quality factor of the distorted input.")] = 75,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda[:N]'.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
) -> None:
    """Run the restorer + localizer pipeline on a photo embedded in scikit-image.

    The networks are randomly initialised (no weights are downloaded), so the heat map
    shows that the pipeline runs end to end, not a meaningful localization.
    """
    import numpy as np
    import torch

    from reloc.data.distortions import parse_distortion
    from reloc.data.io import read_image, to_tensor, write_png
    from reloc.data.photos import list_photos
    from reloc.devices import pick_device
    from reloc.engine.inference import Pipeline
    from reloc.models import create_localizer, create_restorer
    from reloc.visualize import heatmap, overlay

    torch.manual_seed(seed)
    target = pick_device(device)
    photo = list_photos("default")[0]
    plain = read_image(photo)
    distorted = parse_distortion(f"jpeg:{quality}")(plain, np.random.default_rng(seed))
    pipeline = Pipeline(create_restorer("scunet", preset=restorer_preset), create_localizer(localizer))
    pipeline = pipeline.to(target).eval()
    started = time.perf_counter()
    with torch.inference_mode():
        batch = to_tensor(distorted)[None].to(target)
        restored, probabilities = pipeline.run(batch)
    seconds = time.perf_counter() - started
    restored_np = restored[0].permute(1, 2, 0).cpu().numpy()
    map_np = probabilities[0, 0].cpu().numpy()
    out.mkdir(parents=True, exist_ok=True)
    write_png(out / "distorted.png", distorted)
    write_png(out / "restored.png", restored_np)
    write_png(out / "heatmap.png", heatmap(map_np))
    write_png(out / "overlay.png", overlay(distorted, map_np))
    summary = {
        "photo": str(photo),
        "size": list(plain.shape[:2]),
        "distortion": f"jpeg:{quality}",
        "restorer": f"scunet({restorer_preset})",
        "localizer": localizer,
        "device": str(target),
        "seconds": round(seconds, 3),
        "weights": "random initialisation (untrained)",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"wrote {out}/heatmap.png, overlay.png, restored.png, distorted.png and summary.json")


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Checkpoint in a reference implementation's key layout.")],
    network: Annotated[str, typer.Option(help="Registry name: scunet, dfcn, scse_unet, mvssnet, dcgan.")],
    out: Annotated[Path, typer.Option(help="Destination .safetensors file.")],
    option: Annotated[
        Optional[list[str]], typer.Option("--set", help="Builder argument key=value, e.g. preset=paper.")
    ] = None,
) -> None:
    """Convert a reference checkpoint to a self-describing safetensors file (by key name)."""
    from reloc.models import REGISTRIES, create_network
    from reloc.models.weights import WeightsError, load_foreign_weights, save_network

    kind = next((role for role, registry in REGISTRIES.items() if network in registry), None)
    if kind is None:
        raise typer.BadParameter(f"unknown network {network!r}")
    built = create_network(kind, network, **parse_assignments(option or []))
    try:
        report = load_foreign_weights(built, source, strict=True)
    except WeightsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    save_network(built, out)
    typer.echo(f"{report}\nwrote {out}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder (created): config.yaml, metrics.csv, checkpoints, weights.")],
    config: Annotated[Optional[Path], typer.Option(help="YAML configuration (see configs/).")] = None,
    option: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override section.key=value, e.g. train.epochs=3.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its last checkpoint.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train one situation (plain, finetune, reloc, joint); works under torchrun for several GPUs."""
    from reloc.config import load_config
    from reloc.data.datasets import DatasetError
    from reloc.data.io import ImageError
    from reloc.engine.tasks import NonFiniteLossError
    from reloc.engine.trainer import train as run_training

    try:
        if resume and (config or option):
            raise ValueError("--resume continues OUT/config.yaml as it is; do not pass --config or --set with it")
        if not resume and (out / "checkpoints").exists():
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        result = run_training(load_config(config, option or []), out, resume=resume, progress=progress)
    except NonFiniteLossError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(3) from error
    except (ValueError, FileNotFoundError, DatasetError, ImageError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"finished {result.epochs} epochs in {result.run_dir}; best validation F1 {result.best_f1:.4f}")


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder: Tp/, Gt/, manifest.json, provenance.jsonl.")],
    photos: Annotated[str, typer.Option(help="'default' (scikit-image's photos), a folder or a file.")] = "default",
    count: Annotated[int, typer.Option(help="Number of tampered images.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of everything; the same seed gives identical files.")] = 0,
    types: Annotated[str, typer.Option(help="Comma-separated subset of splice,copymove,removal,text.")] = (
        "splice,copymove,removal,text"
    ),
    size: Annotated[int, typer.Option(help="Side of the square output images.")] = 512,
    donors: Annotated[Optional[str], typer.Option(help="Another photo source for splice donors.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: up to 2).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the files of an earlier run in OUT.")] = False,
) -> None:
    """Generate realistic tampered images with exact masks from real photos."""
    from reloc.data.synth import synthesize

    try:
        summary = synthesize(
            photos,
            out,
            count=count,
            seed=seed,
            types=[t.strip() for t in types.split(",") if t.strip()],
            size=size,
            donors=donors,
            workers=workers,
            overwrite=overwrite,
        )
    except (ValueError, FileExistsError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(str(summary))


if __name__ == "__main__":
    app()
