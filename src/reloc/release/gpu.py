"""The release recipe on a lent GPU machine: a pack made on the CPU beforehand, then one timed run.

``reloc release pack`` copies what the recipe's data parts read: its photos, each shrunk to the
synthesiser's size (:func:`shrink_photos`: ~42 MiB for the ``gpu`` preset's 320 px, where 4000
synthesised 320-px samples as PNGs would be ~730 MiB, 186 KB a sample), the wheels the device's Python lacks, and
``pack.json`` (preset, data parts, commit), into ``runs/gpu-pack/`` (ignored by git, carried
by the device tool), and checks that it travels with the working tree within the tool's 64 MiB.
``reloc release gpu`` runs the recipe's data and training parts from it under one time limit
(:func:`reloc.release.runner.run`): the samples are synthesised there on every processor, the
training parts keep them decoded in memory (``data.cache_mb``, shared by the loader's worker
processes) and stop at their share of the limit with their best weights so far; a killed run
resumes. ``scripts/gpu_release.sh`` is the device call (docs/research/release-recipe.md).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from reloc.release.recipe import RECIPE, ROOT, data_parts, load_recipe, photo_split

#: Where ``reloc release pack`` writes by default (under the ignored ``runs/``).
PACK = ROOT / "runs" / "gpu-pack"
#: What the device tool carries: the working tree and the carried paths together, in MiB.
TRAVEL_LIMIT_MIB = 64
#: Packages of the core that the device's Python lacks (its image has the rest), as wheels.
DEVICE_WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")
#: The device's Python and platforms, for ``pip download`` (docs of the device tool).
DEVICE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def shrink_photos(source: Path, out: Path, size: int) -> dict[str, int]:
    """Write the shrunk copy of every photo under ``source`` (its subfolders' images) to
    ``out``: a photo whose short side is above ``size`` as :func:`reloc.data.synth.load_host`
    of it at that size (a lossless PNG under the same relative name), any other copied byte
    for byte; returns ``{"shrunk": n, "copied": m}``. At that ``size`` the synthesiser makes
    the same data from the copy as from the photos (bar donors spliced into hosts smaller
    than ``size``: benchmarks/shrink_photos.py)."""
    from PIL import Image

    from reloc.data.photos import list_photos
    from reloc.data.synth import load_host

    counts = {"shrunk": 0, "copied": 0}
    for folder in sorted(d for d in source.iterdir() if d.is_dir()):
        for photo in list_photos(folder):
            target = out / photo.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(photo) as image:
                short = min(image.size)
            if short > size:
                Image.fromarray(load_host(photo, size, enlarge=False)).save(target, format="PNG")
                counts["shrunk"] += 1
            else:
                shutil.copyfile(photo, target)
                counts["copied"] += 1
    return counts


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder``."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def tree_bytes(root: Path = ROOT) -> int:
    """The bytes of the working tree that travels to a device machine: tracked files and
    untracked ones that git does not ignore.

    Raises:
        SystemExit: ``root`` is no git checkout (or git is missing).
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"error: cannot list the working tree of {root} with git: {error}") from None
    paths = (root / name for name in listed.decode().split("\0") if name)
    return sum(path.stat().st_size for path in paths if path.is_file())


def download_wheels(folder: Path) -> list[str]:
    """``pip download`` the :data:`DEVICE_WHEELS` at the versions installed here, for the
    device's Python 3.12 on x86-64 Linux, into ``folder``; returns the files."""
    from importlib.metadata import version

    folder.mkdir(parents=True, exist_ok=True)
    platforms = [word for platform in DEVICE_PLATFORMS for word in ("--platform", platform)]
    pins = [f"{name}=={version(name)}" for name in DEVICE_WHEELS]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version"]
    command += ["3.12", "--implementation", "cp", *platforms, "-d", str(folder), *pins]
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"error: pip download of {', '.join(pins)} failed (see above)")
    return sorted(path.name for path in folder.glob("*.whl"))


def make_pack(
    out: Path = PACK,
    preset: str = "gpu",
    recipe_path: Path = RECIPE,
    photos: str | None = None,
    wheels: bool = True,
    limit_mib: float = TRAVEL_LIMIT_MIB,
    root: Path = ROOT,
) -> dict:
    """Write the pack of ``preset`` to ``out`` (replacing one there): ``photos/`` (the recipe's
    photos, or ``photos``, shrunk to its data parts' size), ``wheels/`` (with ``wheels``) and
    ``pack.json``; print its size next to the working tree's; returns ``pack.json``'s content.

    Raises:
        SystemExit: the data parts differ in size, or pack and tree exceed ``limit_mib``.
    """
    from reloc.release.provenance import git_commit

    recipe = load_recipe(preset, recipe_path)
    if photos:
        recipe["photos"] = str(Path(photos).resolve())
    source, training, held_out = photo_split(recipe)
    parts = data_parts(recipe)
    sizes = sorted({int(spec["size"]) for spec in parts.values()})
    if len(sizes) != 1:
        raise SystemExit(f"error: preset {preset!r} synthesises at sizes {sizes}; a pack serves one size")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    counts = shrink_photos(source, out / "photos", sizes[0])
    wheel_files = download_wheels(out / "wheels") if wheels else []
    pack = {
        "preset": preset,
        "size": sizes[0],
        "data_parts": parts,
        "photos": {**counts, "training": len(training), "held_out": len(held_out), "from": str(source)},
        "wheels": wheel_files,
        "commit": git_commit(),
    }
    pack_bytes = folder_bytes(out) + len(json.dumps(pack, indent=2))
    tree = tree_bytes(root)
    pack.update(pack_bytes=pack_bytes, tree_bytes=tree)
    (out / "pack.json").write_text(json.dumps(pack, indent=2) + "\n")
    total = (pack_bytes + tree) / 2**20
    print(
        f"{out}: {counts['shrunk']} photos shrunk to {sizes[0]} px, {counts['copied']} copied, "
        f"{len(wheel_files)} wheels: {pack_bytes / 2**20:.1f} MiB; with the working tree "
        f"({tree / 2**20:.1f} MiB) {total:.1f} of the {limit_mib:g} MiB that travel"
    )
    if total > limit_mib:
        raise SystemExit(f"error: {out} and the working tree make {total:.1f} MiB, over the {limit_mib:g} MiB limit")
    return pack


def read_pack(pack: Path, recipe_path: Path = RECIPE) -> tuple[dict, dict]:
    """``(pack.json of pack, the recipe at the pack's preset)``.

    Raises:
        SystemExit: no pack there, or the recipe's data parts differ from the pack's.
    """
    path = Path(pack) / "pack.json"
    try:
        manifest = json.loads(path.read_text())
        recipe = load_recipe(manifest["preset"], recipe_path)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise SystemExit(f"error: {path}: not a pack ({error}); make one with `reloc release pack`") from None
    if json.loads(json.dumps(data_parts(recipe))) != manifest.get("data_parts"):
        raise SystemExit(f"error: {pack} was packed for other data settings than the recipe's; pack it again")
    return manifest, recipe


def epoch_rows(run: Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` (none before its first epoch)."""
    from reloc import runs

    if not (run / runs.METRICS).is_file():
        return []
    with (run / runs.METRICS).open() as handle:
        return list(csv.DictReader(handle))


def run(
    pack: Path = PACK,
    out: Path = ROOT / "runs" / "gpu-release",
    time_limit: float = 400.0,
    overrides: list[str] | None = None,
    inference: bool = False,
    recipe_path: Path = RECIPE,
    command: str = "reloc release gpu",
) -> dict:
    """Run the pack's preset from its photos into ``out``: data and training parts within
    ``time_limit`` seconds, then (``inference``) the inference part; resumable (a data part
    whose folder is missing, as in the archive a GPU machine sends back, is made again: the
    same samples from the same pack).

    ``out`` gets ``work/`` (data parts and training runs: weights, ``metrics.csv``, logs) and
    ``gpu-release.json``: the recipe's provenance (machine with the GPU, commit, each part's
    wall time and epochs), each invocation's time limit and wall time, and each training
    part's per-epoch figures. Returns that content.

    Raises:
        SystemExit: ``error: ...`` for a missing or stale pack, a failed part.
    """
    from reloc.release import runner
    from reloc.release.provenance import git_commit, load_results, save_results

    started = time.perf_counter()
    manifest, recipe = read_pack(pack, recipe_path)
    preset = manifest["preset"]
    if git_commit() == "unknown" and manifest.get("commit"):
        os.environ["RELOC_COMMIT"] = manifest["commit"]  # a copy of the tree without .git: the pack's
    out = Path(out)
    results_path = out / "gpu-release.json"
    results = load_results(results_path)
    for part in data_parts(recipe):  # made again where its folder did not come back from the GPU machine
        if not (out / "work" / part / "manifest.json").is_file() and results["parts"].pop(part, None):
            save_results(results, results_path)
    only = [*data_parts(recipe), *recipe["models"], *(["inference"] if inference else [])]
    runner.run(
        preset=preset,
        recipe_path=recipe_path,
        work=out / "work",
        photos=str(Path(pack).resolve() / "photos"),
        only=only,
        jobs=len(recipe["models"]),
        results_path=results_path,
        overrides=overrides,
        command=command,
        time_limit=time_limit,
    )
    results = load_results(results_path)
    invocation = {
        "time_limit_seconds": time_limit,
        "inference": inference,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    results["gpu_release"] = {
        "invocations": [*results.get("gpu_release", {}).get("invocations", []), invocation],
        "pack": {key: manifest[key] for key in ("preset", "size", "photos", "commit", "pack_bytes", "tree_bytes")},
        "epochs": {name: epoch_rows(out / "work" / name) for name in recipe["models"]},
    }
    save_results(results, results_path)
    for name, rows in results["gpu_release"]["epochs"].items():
        aucs = [float(row["val_auc"]) for row in rows if row.get("val_auc") not in (None, "", "nan")]
        seconds = sum(float(row["seconds"]) for row in rows)
        waited = sum(float(row.get("data_wait_seconds") or 0.0) for row in rows)
        print(
            f"{name}: {len(rows)} epochs in {seconds:.0f} s ({waited:.0f} s waiting for batches)"
            + (f", validation AUC {aucs[-1]:.4f} (best {max(aucs):.4f})" if aucs else "")
        )
    return results
