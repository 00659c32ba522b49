"""Copy the release recipe's photos, each shrunk to what the synthesiser reads of it, so that
the set is small enough to travel to a GPU machine (the device tool carries 64 MiB; the
photos are ~130 MB).

    python benchmarks/shrink_photos.py OUT [--size 320]

A photo whose short side is above ``--size`` is replaced by
:func:`reloc.data.synth.load_host` of it at that size (area interpolation, saved as a
lossless 8-bit PNG under the same relative name, whatever its suffix); any other photo is copied byte for byte.
The synthesiser, at that ``size``, loads hosts and donors with ``load_host``, which leaves a
photo whose short side already equals ``size`` as it is: data made from the copy at that size
is the data made from the originals (tests/test_shrink_photos.py checks it on generated
photos), except for one case: a donor spliced into a host smaller than ``size`` (kept at its
own side by ``enlarge_hosts: false``) is loaded at that host's side, so from the copy it is
shrunk twice (to ``size``, then to the side). Made from this copy, the recipe's ``native``
set (1100 samples at 320 px) differs from the one made from the originals in 11 of its 2200
files, 8 splices into the five photos below 320 px. The recipe's held-out photos are copied
too (the recipe checks that they exist); nothing trains on them. ``reloc release pack`` makes
such a copy (:func:`reloc.release.gpu.shrink_photos`) into the pack a GPU machine trains from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from reloc.release.gpu import shrink_photos

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "release" / "recipe.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the copy (created)")
    parser.add_argument("--size", type=int, default=320, help="the synthesiser's size the copy is for")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the recipe's)")
    args = parser.parse_args(argv)
    source = args.photos or (ROOT / yaml.safe_load(RECIPE.read_text())["photos"]).resolve()
    if not source.is_dir():
        print(f"error: photo folder {source} not found", file=sys.stderr)
        return 2
    counts = shrink_photos(source, args.out, args.size)
    print(f"{args.out}: {counts['shrunk']} photos shrunk to a short side of {args.size}, {counts['copied']} copied")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
