"""Make docs/figures/synth-example.png: one sample of each tampering type with its mask.

    python docs/make_synth_figure.py

Uses the photos embedded in scikit-image, so anyone can regenerate the same figure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from reloc.data.io import read_image, read_mask, write_png
from reloc.data.synth import TAMPER_TYPES, synthesize

OUT = Path(__file__).parent / "figures" / "synth-example.png"
GAP = 4


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        synthesize("default", folder, count=len(TAMPER_TYPES), seed=0, size=192, progress=False, workers=1)
        columns = []
        for index, kind in enumerate(TAMPER_TYPES):
            name = f"{index:06d}_{kind}.png"
            image = read_image(Path(folder) / "Tp" / name)
            mask = np.repeat(read_mask(Path(folder) / "Gt" / name)[..., None], 3, axis=2)
            columns.append(np.concatenate([image, np.ones((GAP, image.shape[1], 3)), mask], axis=0))
            columns.append(np.ones((columns[-1].shape[0], GAP, 3)))
        write_png(OUT, np.concatenate(columns[:-1], axis=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
