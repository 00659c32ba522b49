"""``reloc demo``: the whole framework on photos embedded in scikit-image, in minutes on a CPU.

1. synthesise a small tampered set from scikit-image's lossless colour photos;
2. train CPU-scale ``plain`` (M^P), ``finetune`` (M^{D|P}) and ``reloc`` models;
3. evaluate the paper's four situations at JPEG QF 75 on the held-out photo;
4. write ``report.md`` with the table and figures (loss curves, maps, t-SNE of features).

The numbers come from a few minutes of training on a handful of photos: they show the
pipeline working end to end, not the paper's results (see ``benchmarks/`` for those).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from reloc.config import load_config

#: CPU-scale training shared by the three runs (see configs/cpu/dfcn.yaml).
DEMO_SETTINGS = [
    "data.crop=64",
    "data.batch_size=8",
    "data.distortion=jpeg:75",
    "data.tamper_bias=0.7",
    "data.steps_per_epoch=40",
    "model.localizer=dfcn",
    "model.localizer_args={width: 0.5, faithful: false}",
    "model.restorer=scunet",
    "model.restorer_args={preset: small, residual: true}",
    "optim.lr=0.001",
    "train.seed=0",
]
#: (run, task, epochs)
DEMO_RUNS = [("plain", "plain", 20), ("finetune", "finetune", 10), ("reloc", "reloc", 10)]
DEMO_DISTORTION = "jpeg:75"


def run_demo(out: Path, count: int = 400, size: int = 256, progress: bool = True) -> Path:
    """Run the demo into ``out``; returns the path of ``report.md``."""
    import torch

    from reloc.analysis.report import write_report
    from reloc.data.catalog import load_dataset, split_by_source
    from reloc.data.synth import synthesize
    from reloc.devices import pick_device
    from reloc.engine.evaluate import run_evaluation, standard_situations
    from reloc.engine.trainer import train

    timings: dict[str, float] = {}
    started = time.perf_counter()
    dataset = out / "synth"
    typer.echo(f"[1/4] synthesising {count} tampered images from scikit-image's photos -> {dataset}")
    synthesize("default", dataset, count=count, seed=0, size=size, progress=progress, overwrite=True)
    timings["synth"] = time.perf_counter() - started

    runs = out / "runs"
    for step, (name, task, epochs) in enumerate(DEMO_RUNS, start=1):
        typer.echo(f"[2/4] training {name} ({step}/{len(DEMO_RUNS)}, {epochs} epochs)")
        overrides = [f"data.dataset={dataset}", *DEMO_SETTINGS, f"train.task={task}", f"train.epochs={epochs}"]
        if task != "plain":
            overrides.append(f"model.localizer_weights={runs / 'plain'}")
        tick = time.perf_counter()
        train(load_config(None, overrides), runs / name, progress=progress)
        timings[f"train {name}"] = time.perf_counter() - tick

    typer.echo(f"[3/4] evaluating the four situations at {DEMO_DISTORTION} on the held-out photo")
    tick = time.perf_counter()
    refs = load_dataset(dataset)
    test = split_by_source(refs, seed=0)["test"]
    situations = standard_situations(runs / "plain", runs / "finetune", {"ReLoc": runs / "reloc"})
    with torch.inference_mode():
        records = run_evaluation(
            situations, test, [DEMO_DISTORTION], out, device=pick_device("auto"), window=size, stride=size,
            keep_maps=4, progress=progress, dataset=str(dataset),
        )
    timings["evaluate"] = time.perf_counter() - tick

    typer.echo("[4/4] writing the report")
    report = write_report(records, out, [out], [runs / "reloc"], title="reloc demo", feature_pixels=1000)
    timings["total"] = time.perf_counter() - started
    lines = ["", "## Time on this machine", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {step} | {seconds:.0f} |" for step, seconds in timings.items()]
    lines += ["", "Minutes of training on four photos: this shows the framework working end to end; "
              "it is not a replication of the paper's numbers."]
    report.write_text(report.read_text() + "\n".join(lines) + "\n")
    return report
