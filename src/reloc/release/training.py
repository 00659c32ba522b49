"""The recipe's data and training parts: synthesise a data part, start and resume ``reloc train``
processes, several side by side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from reloc.release.provenance import run_progress, save_results, train_summary
from reloc.release.recipe import ROOT, START_KEYS, data_of, data_parts, photo_split, ships_as, start_parts


def make_data(recipe: dict, work: Path, part: str = "data") -> dict:
    """Synthesise data part ``part``'s training set (train / val photos only; every data
    part splits the photos alike) into ``work / part``; returns the data summary."""
    from reloc.data.photos import list_photos
    from reloc.data.synth import synthesize
    from reloc.data.synth.settings import SynthSettings

    root, training, held_out = photo_split(recipe)
    synth = data_parts(recipe)[part]
    for folder in synth.get("hosts", []):  # more host folders, relative to the checkout: all training photos
        training = training + list_photos(ROOT / folder)
    # settings files first (configs/synth/), then the recipe's and the part's own settings
    files = [ROOT / f for f in synth.get("settings_files", [])]
    base = SynthSettings.from_yaml(*files).to_dict() if files else {}
    settings = SynthSettings.from_mapping({**base, **synth["settings"]})
    summary = synthesize(
        [str(p) for p in training],
        work / part,
        count=int(synth["count"]),
        seed=int(synth["seed"]),
        size=int(synth["size"]),
        settings=settings,
        overwrite=True,
        workers=os.cpu_count() if int(synth["count"]) >= 24 else 1,  # spawning a pool takes seconds
    )
    print(summary)
    folders: dict[str, int] = {}
    for path in training:
        folders[path.parent.name] = folders.get(path.parent.name, 0) + 1
    return {
        "photos_root": recipe["photos"],
        "training_photos": len(training),
        "training_photos_per_folder": folders,
        "held_out": list(recipe["held_out"]),
        **{k: v for k, v in summary.as_dict().items() if k != "out"},
        "size": int(synth["size"]),
        "seed": int(synth["seed"]),
        "settings": settings.to_dict(),
    }


def start_weights(
    recipe: dict, name: str, work: Path, from_package: bool = False, role: str = "localizer"
) -> str | None:
    """Where part ``name``'s ``role`` network starts: the best one of the run of the part its
    :data:`START_KEYS` entry names (the run folder), or with ``from_package`` and no such
    run, that model's shipped weights (``pretrained:NAME``); ``None`` where the recipe names
    no part (trained from scratch; a restorer from the identity).

    Raises:
        SystemExit: the start part has no trained run (and not ``from_package``).
    """
    from reloc import runs

    start = recipe["models"][name].get(START_KEYS[role])
    if start is None:
        return None
    run = work / start
    if runs.weights_path(run, role).is_file():
        return str(run)
    if from_package:
        return f"pretrained:{ships_as(recipe, start)}"
    raise SystemExit(
        f"error: {name}'s {role} starts from {start}, which has no trained {role} in {work}: train {start} "
        f"first, or pass --start-from-package to start from the shipped weights"
    )


def train_command(
    recipe: dict, name: str, work: Path, from_package: bool = False, time_limit: float | None = None
) -> list[str]:
    """The ``reloc train`` command of one part: fresh (config + overrides) or ``--resume``;
    ``time_limit``: its ``--time-limit`` in seconds."""
    from reloc import runs

    run = work / name
    done, total = run_progress(run)
    command = [sys.executable, "-m", "reloc", "train", "--out", str(run), "--no-progress"]
    if time_limit is not None:
        command += ["--time-limit", f"{time_limit:.0f}"]
    if total and (run / runs.CHECKPOINT).is_file():
        return [*command, "--resume"]
    if run.exists():
        shutil.rmtree(run)  # started, no epoch finished: start over
    model = recipe["models"][name]
    command += ["--config", str(ROOT / model["config"]), "--set", f"data.dataset={work / data_of(recipe, name)}"]
    for role in START_KEYS:
        start = start_weights(recipe, name, work, from_package, role)
        if start is not None:
            command += ["--set", f"model.{role}_weights={start}"]
    for override in model["overrides"]:
        command += ["--set", override]
    return command


def launch(
    recipe: dict, name: str, work: Path, from_package: bool = False, time_limit: float | None = None
) -> subprocess.Popen | None:
    """Start one training part (None when it finished before); ``time_limit``: see :func:`train_command`."""
    done, total = run_progress(work / name)
    if total and done >= total:
        print(f"{name}: finished before ({done} epochs), skipped")
        return None
    data = work / data_of(recipe, name)
    if not (data / "manifest.json").is_file():
        raise SystemExit(f"error: {name} trains on {data}, which is not made yet: run the {data.name} part first")
    threads = str(recipe["models"][name]["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    command = train_command(recipe, name, work, from_package, time_limit)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    log = open(work / "logs" / f"{name}.log", "a")  # noqa: SIM115 - closed when the process ends
    print(f"{name}: {' '.join(command[1:])} ({threads} thread(s); log {log.name})")
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def deadlines(recipe: dict, names: list[str], time_limit: float) -> dict[str, float]:
    """``{part: time.monotonic() by which it stops}`` for training ``names`` within
    ``time_limit`` seconds from now: parts are grouped in waves (a part is one wave after the
    latest of ``names`` it starts from) and each wave's end falls an equal share of the time
    after the previous one's (parts that end early leave their time to the next wave)."""
    wave: dict[str, int] = {}
    for name in names:  # the recipe's order lists a start before the parts that start from it
        starts = [wave[start] + 1 for start in start_parts(recipe["models"][name]).values() if start in wave]
        wave[name] = max(starts, default=0)
    waves = max(wave.values(), default=0) + 1
    now = time.monotonic()
    return {name: now + time_limit * (wave[name] + 1) / waves for name in names}


def train_parts(
    recipe: dict,
    names: list[str],
    work: Path,
    results: dict,
    results_path: Path,
    jobs: int = 2,
    from_package: bool = False,
    time_limit: float | None = None,
) -> None:
    """Train ``names`` (in the recipe's order): a part starts once the part it starts from is
    no longer pending here, up to ``jobs`` at a time; each finished part is recorded in
    ``results`` (and saved to ``results_path``) as it ends; ``from_package``: see :func:`start_weights`;
    ``time_limit``: seconds for all of them, shared out by :func:`deadlines` (a part stopped
    by its share keeps its last finished epoch and resumes from it when run again; one
    whose share is spent before it starts is not started).

    Raises:
        SystemExit: a part failed (the others are waited for first; run again to resume).
    """
    ends = deadlines(recipe, names, time_limit) if time_limit is not None else {}
    pending, running, failed = list(names), {}, []
    while pending or running:
        for name in list(pending):
            if len(running) >= max(jobs, 1) or failed:
                break
            if any(start in [*pending, *running] for start in start_parts(recipe["models"][name]).values()):
                continue  # a part it starts from is not trained yet
            pending.remove(name)
            share = ends[name] - time.monotonic() if name in ends else None
            if share is not None and share < 1:
                print(f"{name}: not started, its share of the time limit is spent")
                continue
            running[name] = (launch(recipe, name, work, from_package, share), time.perf_counter())
        if not running:
            break  # only parts waiting for a failed one are left
        time.sleep(0 if any(process is None for process, _ in running.values()) else 2)
        for name, (process, tick) in list(running.items()):
            if process is not None and process.poll() is None:
                continue
            del running[name]
            if process is not None and process.returncode != 0:
                failed.append(name)
                continue
            before = results["parts"].get(name, {})
            if process is None and before.get("finished"):
                continue  # finished and recorded by an earlier invocation
            done, total = run_progress(work / name)
            if not done:
                print(f"{name}: no epoch finished within its share of the time limit")
                continue
            entry = {**train_summary(work / name), "finished": done >= total, "epochs_configured": total}
            if process is None:  # finished before, never recorded (that invocation was killed)
                entry.update(
                    wall_seconds=None,
                    commit=None,
                    note="trained by an earlier invocation that was stopped before recording it",
                )
            else:
                wall = before.get("wall_seconds", 0.0) + time.perf_counter() - tick
                entry.update(wall_seconds=round(wall, 1), commit=results["commit"], machine=results["machine"])
            results["parts"][name] = entry
            save_results(results, results_path)
    if failed:
        raise SystemExit(
            f"error: part(s) {', '.join(failed)} failed; see {work / 'logs'}; run the recipe again to resume"
        )
