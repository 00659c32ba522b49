"""Tiny fake copies of the public layouts (:mod:`reloc.data.layouts`), made of generated images.

A test fixture, kept out of the package (nothing in ``tests/`` ships in the wheel): the tests
import it as ``fake_trees`` (pytest puts ``tests/`` on ``sys.path``, as for ``conftest``), and
``benchmarks/protocols.py`` puts ``tests/`` on its path to do the same. It imports nothing of
reloc. Each tree follows one benchmark's folder and file naming, with noise images and a
rectangle mask drawn in that benchmark's convention (colour channel, polarity, file format),
plus optional faults: a tampered image without a mask, a mask of another size than its
image, a truncated mask file. No real data.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 32, 48
REGION = np.s_[8:20, 12:36]
"""The tampered rectangle of every fake mask."""


@dataclass
class FakeTree:
    """What :func:`build_fake_tree` wrote.

    Attributes:
        root: the dataset folder.
        layout: the layout name.
        tampered: tampered images listed with a mask (faulty ones included).
        authentic: authentic images.
        missing: tampered images written without a mask.
        missized: masks written at another size than their image.
        unreadable: mask files written truncated.
    """

    root: Path
    layout: str
    tampered: int
    authentic: int
    missing: int
    missized: int
    unreadable: int

    @property
    def usable(self) -> int:
        """Samples that read cleanly."""
        return self.tampered + self.authentic - self.missized - self.unreadable


def expected_mask() -> np.ndarray:
    """The float32 ``(HEIGHT, WIDTH)`` {0, 1} mask every fake tampered sample should read as."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    mask[REGION] = 1
    return mask


def build_fake_tree(
    layout: str,
    root: str | Path,
    *,
    tampered: int = 3,
    authentic: int = 2,
    missing: int = 0,
    missized: int = 0,
    unreadable: int = 0,
    seed: int = 0,
) -> FakeTree:
    """Write a fake tree of ``layout`` under ``root``.

    Args:
        layout: a name of :data:`reloc.data.layouts.LAYOUTS`.
        root: the folder to create.
        tampered: tampered images with a mask.
        authentic: authentic images (DEFACTO has none: ignored there).
        missing: extra tampered images without a mask.
        missized: how many of the masks are written 8 columns wider than their image.
        unreadable: how many of the (other) masks are truncated to 20 bytes.
        seed: seed of the noise images.

    Returns:
        the :class:`FakeTree` counts.
    """
    if layout not in _WRITERS:
        raise ValueError(f"no fake tree for layout {layout!r}; known: {sorted(_WRITERS)}")
    if missized + unreadable > tampered:
        raise ValueError("missized + unreadable must not exceed tampered")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = _WRITERS[layout]
    masks: list[Path] = []
    for index in range(tampered + missing):
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        mask_path = writer.tampered(root, index, image, with_mask=index < tampered)
        if mask_path is not None:
            masks.append(mask_path)
    if writer.authentic is not None:
        for index in range(authentic):
            writer.authentic(root, index, rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    else:
        authentic = 0
    writer.finish(root, tampered + missing, authentic, tampered)
    for mask_path in masks[:missized]:
        _widen(mask_path)
    for mask_path in masks[missized : missized + unreadable]:
        mask_path.write_bytes(mask_path.read_bytes()[:20])
    return FakeTree(root, layout, tampered, authentic, missing, missized, unreadable)


# --- writing helpers ----------------------------------------------------------------------


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(pixels).save(path, **options)
    return path


def _binary(white_tampered: bool = True) -> np.ndarray:
    """An 8-bit gray mask: the region 255 on 0 (or 0 on 255 when black marks tampering)."""
    mask = expected_mask().astype(bool)
    return (mask if white_tampered else ~mask).astype(np.uint8) * 255


def _widen(path: Path) -> None:
    """Rewrite a mask 8 columns wider (its content padded), in its own format."""
    with Image.open(path) as image:
        pixels = np.asarray(image)
    pad = ((0, 0), (0, 8)) + (((0, 0),) if pixels.ndim == 3 else ())
    _save(path, np.pad(pixels, pad, mode="edge"))


@dataclass(frozen=True)
class _Writer:
    tampered: Callable[[Path, int, np.ndarray, bool], Path | None]
    authentic: Callable[[Path, int, np.ndarray], None] | None
    finish: Callable[[Path, int, int, int], None] = lambda root, tampered, authentic, masked: None


def _simple(
    image_path: Callable[[Path, int], Path], mask_path: Callable[[Path, int], Path], mask: Callable[[], np.ndarray]
):
    def write(root: Path, index: int, image: np.ndarray, with_mask: bool) -> Path | None:
        _save(image_path(root, index), image)
        return _save(mask_path(root, index), mask()) if with_mask else None

    return write


def _authentic(path: Callable[[Path, int], Path]):
    return lambda root, index, image: _save(path(root, index), image)


# --- one writer per layout -----------------------------------------------------------------


def _casia1_stem(index: int) -> tuple[str, str]:
    sub = "Sp" if index % 2 == 0 else "CM"
    kind = "D" if sub == "Sp" else "S"
    return sub, f"Sp_{kind}_CND_A_pla{index + 1:04d}_pla{index + 11:04d}_{index + 281:04d}"


def _columbia_mask() -> np.ndarray:
    region = expected_mask().astype(bool)
    mask = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask[~region] = (255, 0, 0)  # the host camera's region
    mask[region] = (0, 255, 0)  # the spliced camera's region
    return mask


def _coverage_finish(root: Path, tampered: int, authentic: int, masked: int) -> None:
    """The distribution also holds the copied and pasted regions' masks: readers must ignore them."""
    for index in range(masked):
        for part in ("copy", "paste"):
            _save(root / "mask" / f"{index + 1}{part}.tif", _binary())


def _nist_finish(root: Path, tampered: int, authentic: int, masked: int) -> None:
    table = root / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    columns = ["TaskID", "ProbeFileID", "ProbeFileName", "ProbeMaskFileName", "IsTarget", "BaseFileName", "Lang"]
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="|")
        writer.writerow(columns)
        for index in range(tampered):
            mask = f"reference/manipulation/mask/NC2016_{index:04d}-mask.png" if index < masked else ""
            writer.writerow(
                [
                    "manipulation",
                    f"p{index}",
                    f"probe/NC2016_{index:04d}.jpg",
                    mask,
                    "Y",
                    f"world/NC2016_w{index}.jpg",
                    "",
                ]
            )
        for index in range(authentic):
            writer.writerow(
                [
                    "manipulation",
                    f"a{index}",
                    f"probe/NC2016_{5000 + index:04d}.jpg",
                    "",
                    "N",
                    f"world/NC2016_w{index}.jpg",
                    "",
                ]
            )


_WRITERS: dict[str, _Writer] = {
    "casia1": _Writer(
        _simple(
            lambda root, i: root / "Tp" / _casia1_stem(i)[0] / f"{_casia1_stem(i)[1]}.jpg",
            lambda root, i: root / "CASIA 1.0 groundtruth" / _casia1_stem(i)[0] / f"{_casia1_stem(i)[1]}_gt.png",
            _binary,
        ),
        _authentic(lambda root, i: root / "Au" / f"Au_pla_{i + 1:04d}.jpg"),
    ),
    "casia2": _Writer(
        _simple(
            lambda root, i: (
                root / "Tp" / f"Tp_D_CRN_S_N_cha{i + 1:05d}_art{i + 1:05d}_{11818 + i}.{'jpg' if i % 2 else 'tif'}"
            ),
            lambda root, i: (
                root / "CASIA 2 Groundtruth" / f"Tp_D_CRN_S_N_cha{i + 1:05d}_art{i + 1:05d}_{11818 + i}_gt.png"
            ),
            _binary,
        ),
        _authentic(lambda root, i: root / "Au" / f"Au_cha_{i + 1:05d}.jpg"),
    ),
    "columbia": _Writer(
        _simple(
            lambda root, i: root / "4cam_splc" / f"canong3_canonxt_sub_{i + 1:02d}.tif",
            lambda root, i: root / "4cam_splc" / "edgemask" / f"canong3_canonxt_sub_{i + 1:02d}_edgemask.jpg",
            _columbia_mask,
        ),
        _authentic(lambda root, i: root / "4cam_auth" / f"canong3_{i + 2:02d}_sub_01.tif"),
    ),
    "coverage": _Writer(
        _simple(
            lambda root, i: root / "image" / f"{i + 1}t.tif",
            lambda root, i: root / "mask" / f"{i + 1}forged.tif",
            _binary,
        ),
        _authentic(lambda root, i: root / "image" / f"{i + 1}.tif"),
        _coverage_finish,
    ),
    "nist16": _Writer(
        _simple(
            lambda root, i: root / "probe" / f"NC2016_{i:04d}.jpg",
            lambda root, i: root / "reference" / "manipulation" / "mask" / f"NC2016_{i:04d}-mask.png",
            lambda: _binary(white_tampered=False),
        ),
        _authentic(lambda root, i: root / "probe" / f"NC2016_{5000 + i:04d}.jpg"),
        _nist_finish,
    ),
    "imd2020": _Writer(
        _simple(
            lambda root, i: root / f"post{i}" / f"post{i}_0.jpg",
            lambda root, i: root / f"post{i}" / f"post{i}_0_mask.png",
            _binary,
        ),
        _authentic(lambda root, i: root / f"post{i}" / f"post{i}_orig.jpg"),
    ),
    "defacto": _Writer(
        _simple(
            lambda root, i: root / "splicing_1_img" / "img" / f"0_{71 + i:012d}.tif",
            lambda root, i: root / "splicing_1_annotations" / "probe_mask" / f"0_{71 + i:012d}.jpg",
            _binary,
        ),
        None,
    ),
    "cocoglide": _Writer(
        _simple(
            lambda root, i: root / "fake" / f"glide_inpainting_val2017_{389 + i}_up.png",
            lambda root, i: root / "mask" / f"glide_inpainting_val2017_{389 + i}_up.png",
            _binary,
        ),
        _authentic(lambda root, i: root / "real" / f"glide_inpainting_val2017_{389 + i}_up.png"),
    ),
    "korus": _Writer(
        _simple(
            lambda root, i: root / "Canon_60D" / "tampered-realistic" / f"r{i:04d}.TIF",
            lambda root, i: root / "Canon_60D" / "ground-truth" / f"r{i:04d}.PNG",
            _binary,
        ),
        _authentic(lambda root, i: root / "Canon_60D" / "pristine" / f"r{i:04d}.TIF"),
    ),
    "dso1": _Writer(
        _simple(
            lambda root, i: root / "DSO-1" / f"splicing-{i + 1:02d}.png",
            lambda root, i: root / "DSO-1-Fake-Images-Masks" / f"splicing-{i + 1:02d}.png",
            lambda: _binary(white_tampered=False),
        ),
        _authentic(lambda root, i: root / "DSO-1" / f"normal-{i + 1:02d}.png"),
    ),
}
