"""Synthetic tampering: realistic tampered images with exact masks, made from real photos.

No public tampering dataset can be downloaded here, so the benchmark is generated from
pristine, lossless photos (see :mod:`reloc.data.photos`). Each sample starts from a *host*:
a photo resized so that its short side is ``size`` (area interpolation when shrinking,
cubic when enlarging), quantised to 8 bits and randomly cropped to ``size x size``. The
host therefore carries no resampling trace except the global one, and every trace inside
the tampered region comes from the edit. One of four edits is then applied:

``splice``
    a region of *another* photo (a donor from the same split, from ``donors=`` when given)
    pasted in. Shapes: smooth random blobs, random polygons, ellipses, rectangles.
``copymove``
    a region of the host crop itself moved elsewhere in it, by integer translation or an
    affine transform (scale, rotation, mirror).
``removal``
    a region erased by inpainting (``cv2.inpaint``, Telea or Navier-Stokes).
``text``
    text drawn on the photo (addition), or a box filled with the local background colour
    and new text drawn in it (replacement); DejaVu fonts from matplotlib's data folder
    (Pillow's built-in scalable font when matplotlib is absent), nothing downloaded.

On top of the edit, *traces* like those real forgeries carry, each with a probability in
:class:`SynthSettings` and recorded in the provenance: the region resampled (scale
0.5-2 with nearest / linear / cubic / area / Lanczos interpolation), rotated or mirrored,
colour-matched to its surroundings, given a small gamma / colour shift, previously
JPEG-compressed (a grid not aligned with the host's), Gaussian-blurred or denoised (a
sharpness / noise-level mismatch) or given Gaussian noise; edges feathered.

*Traits* of hand-made edits, each off by default (the defaults give the same files as
before they existed) and described in ``docs/guide/generator.md``: object-shaped regions
(:mod:`reloc.data.synth.objects`), Poisson cloning, patch-based removal, a donor JPEG, a
host JPEG grid not aligned with the crop, a final JPEG save, integer-box downscaling of
large photos, authentic samples and the no-edit shortcut check. Photos that cannot be read
or are too small are skipped and named (:func:`reloc.data.photos.usable_photos`).

**Mask definition.** The region's (feathered) alpha defines the *intended* region, the
support ``alpha > 0``. The mask is exactly the pixels of that support whose final 8-bit
RGB value differs from the host's in at least one channel; every pixel outside the mask
is copied from the host unchanged. So the mask never marks an unchanged pixel, and
``Tp == host`` outside it, bit for bit. (Inside a pasted region a pixel whose value
happens to equal the host's is left out: it carries no evidence of the edit.) Masks are
written as {0, 255}. A sample whose mask area falls outside ``area_range`` is redrawn.

**Splits.** Photos, not crops, are split: ``test_fraction`` (25%) of the host photos go to
``test``, ``val_fraction`` (10%) to ``val``, the rest to ``train``; every sample of a
host goes to its photo's split, and a splice donor always comes from the host's split
(donor photos given by ``donors=`` are split in the same way), so no source photo is
shared between splits.

**Determinism.** Sample ``i`` draws everything from ``np.random.default_rng([seed, 4, i])``
and its host / donor from generators keyed by ``seed`` only, so samples are independent
of each other, the result is the same serially or with worker processes, and the same
arguments give byte-identical files (PNGs without metadata, fixed compression; JSON with
fixed key order).

Output folder layout::

    OUT/Tp/000000_splice.png      tampered image, lossless 8-bit RGB
    OUT/Gt/000000_splice.png      mask, 8-bit grey {0, 255}
    OUT/Au/000003_authentic.png   untouched crop (``authentic_fraction``), no mask file
    OUT/manifest.json             [["Tp/000000_splice.png", "Gt/000000_splice.png"],
                                   ["Au/000003_authentic.png", "Negative"], ...]
    OUT/manifest_{train,val,test}.json   the same, one split each
    OUT/provenance.jsonl          one JSON object per sample (what was done, and split)
    OUT/synth_config.json         the arguments and settings of the run
"""

from reloc.data.synth.edits import host_crop, load_host
from reloc.data.synth.generator import assign_splits, render_sample, synthesize
from reloc.data.synth.settings import (
    INTERPOLATIONS,
    OBJECT_METHODS,
    SAMPLE_KINDS,
    SPLITS,
    TAMPER_TYPES,
    Sample,
    SynthSettings,
    SynthSummary,
)

__all__ = [
    "INTERPOLATIONS",
    "OBJECT_METHODS",
    "SAMPLE_KINDS",
    "SPLITS",
    "TAMPER_TYPES",
    "Sample",
    "SynthSettings",
    "SynthSummary",
    "assign_splits",
    "host_crop",
    "load_host",
    "render_sample",
    "synthesize",
]
