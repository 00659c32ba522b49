"""``reloc demo``: the four situations of the paper with the shipped models, in minutes on a CPU.

Default (``reloc demo``):

1. synthesise tampered test images from scikit-image's lossless colour photos (none of
   them was used to train the shipped models);
2. evaluate the paper's four situations at JPEG QF 75 with the pretrained models:
   P{P} and P{D} with ``pretrained:plain``, D|P{D} with ``pretrained:robust``, ReLoc{D}
   with ``pretrained:reloc``, each in the sliding window its weights record (as ``reloc
   localize`` runs it); records in ``OUT/eval/*.json`` as ``reloc eval`` writes them;
3. write ``report.md`` (tables, qualitative maps, t-SNE of features).

``reloc demo --train`` instead trains CPU-scale ``plain``, ``finetune`` and ``reloc`` models
from scratch on the same photos (``configs/demo.yaml``) and evaluates those on the
held-out photo: it shows the training pipeline end to end in minutes, and learns little.
"""

from __future__ import annotations

import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
#: (run, task, epochs) of ``--train``
DEMO_RUNS = [("plain", "plain", 20), ("finetune", "finetune", 10), ("reloc", "reloc", 10)]
DEMO_DISTORTION = "jpeg:75"
#: the test set of the default demo: images per photo and side
PER_PHOTO, SIZE = 6, 320
#: pixels per class in the report's feature figure (t-SNE: most of the report's time)
FEATURE_PIXELS = 600


def run_demo(out: Path, train: bool = False, progress: bool = True) -> Path:
    """Run the demo into ``out``; returns the path of ``report.md``."""
    import torch

    from reloc.analysis.report import write_report
    from reloc.data.catalog import load_dataset
    from reloc.data.photos import list_photos
    from reloc.data.synth import synthesize
    from reloc.data.synth.settings import SynthSettings
    from reloc.devices import pick_device
    from reloc.engine.evaluate import evaluation_samples, run_evaluation, standard_situations
    from reloc.engine.inference import retain_freed_memory

    retain_freed_memory()  # as reloc eval does: glibc keeps freed blocks for the next window

    timings: dict[str, float] = {}
    started = time.perf_counter()
    dataset = out / "synth"
    photos = list_photos("default")
    if train:
        count, size, settings = 400, 256, SynthSettings()
    else:  # every photo is a test photo
        count, size, settings = PER_PHOTO * len(photos), SIZE, SynthSettings(test_fraction=0.0, val_fraction=0.0)
    print(
        f"[1/3] synthesising {count} tampered images from scikit-image's {len(photos)} photos -> {dataset}", flush=True
    )
    synthesize("default", dataset, count=count, seed=0, size=size, settings=settings, progress=progress, overwrite=True)
    timings["synth"] = time.perf_counter() - started
    runs = out / "runs"
    if train:
        _train_runs(dataset, runs, progress, timings)
        test = evaluation_samples(dataset, "test", [runs / name for name, _, _ in DEMO_RUNS])  # the runs' split
        situations = standard_situations(str(runs / "plain"), str(runs / "finetune"), {"ReLoc": str(runs / "reloc")})
        where = "the held-out photo"
    else:
        test = load_dataset(dataset)
        situations = standard_situations("pretrained:plain", "pretrained:robust", {"ReLoc": "pretrained:reloc"})
        where = "scikit-image's photos (never used in training)"

    print(f"[2/3] evaluating the four situations at {DEMO_DISTORTION} on {len(test)} images of {where}", flush=True)
    tick = time.perf_counter()
    # trained runs: whole images; the pretrained models: the windows their weights record
    window, stride = (size, size) if train else (None, None)
    with torch.inference_mode():
        records = run_evaluation(
            situations,
            test,
            [DEMO_DISTORTION],
            out,
            device=pick_device("auto"),
            window=window,
            stride=stride,
            keep_maps=4,
            progress=progress,
            dataset=str(dataset),
        )
    timings["evaluate"] = time.perf_counter() - tick

    print("[3/3] writing the report", flush=True)
    tick = time.perf_counter()
    report = write_report(
        records, out, [out], [runs / "reloc"] if train else [], title="reloc demo", feature_pixels=FEATURE_PIXELS
    )
    timings["report"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started
    lines = ["", "## Time on this machine", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {step} | {seconds:.0f} |" for step, seconds in timings.items()]
    if train:
        lines += [
            "",
            "Minutes of training on four photos: this shows the framework working end to end; "
            "it is not a replication of the paper's numbers.",
        ]
    else:
        lines += [
            "",
            "Models: the pretrained models shipped with reloc (`reloc models`; cards in docs/models/). "
            "Test images: synthetic edits of photos the models never saw; a heat map is evidence to "
            "examine, not a verdict.",
        ]
    report.write_text(report.read_text() + "\n".join(lines) + "\n")
    return report


def _train_runs(dataset: Path, runs: Path, progress: bool, timings: dict[str, float]) -> None:
    """``--train``: the three CPU-scale runs of ``configs/demo.yaml``."""
    from reloc.config import load_config
    from reloc.engine.trainer import train

    for step, (name, task, epochs) in enumerate(DEMO_RUNS, start=1):
        print(f"      training {name} ({step}/{len(DEMO_RUNS)}, {epochs} epochs)", flush=True)
        overrides = [f"data.dataset={dataset}", f"train.task={task}", f"train.epochs={epochs}"]
        if task != "plain":
            overrides.append(f"model.localizer_weights={runs / 'plain'}")
        tick = time.perf_counter()
        train(load_config(CONFIG, overrides), runs / name, progress=progress)
        timings[f"train {name}"] = time.perf_counter() - tick
