"""The kind of forgery a sample's file name says, for the datasets whose names say it.

>>> forgery_kind("Sp_D_CNN_A_ani0049_ani0084_0266"), forgery_kind("Sp_S_CND_A_pla0016_pla0016_0196")
('splice', 'copy-move')
>>> forgery_kind("000012_copymove"), forgery_kind("Au_ani_0005"), forgery_kind("canong3_02_sub_01")
('copy-move', None, None)
"""

from __future__ import annotations

import re

from reloc.data.synth.settings import TAMPER_TYPES

KINDS: tuple[str, ...] = ("splice", "copy-move", "removal", "text")
"""The kinds, in the order tables list them."""

_CASIA = re.compile(r"^(?:Sp|Tp)_([DS])_")
"""CASIA v1 (``Sp_``) and v2 (``Tp_``): ``D`` a region from a different image (a splice), ``S``
one from the same image (a copy-move)."""

_SYNTH = re.compile(r"^\d+_(" + "|".join(TAMPER_TYPES) + r")$")
"""``reloc synth`` samples: ``<index>_<type>`` (:data:`reloc.data.synth.settings.TAMPER_TYPES`)."""


def forgery_kind(name: str) -> str | None:
    """The kind (one of :data:`KINDS`) a sample name (the image's stem) says; ``None`` when it
    says none (other datasets, authentic images)."""
    casia = _CASIA.match(name)
    if casia:
        return "splice" if casia.group(1) == "D" else "copy-move"
    synth = _SYNTH.match(name)
    if synth:
        return "copy-move" if synth.group(1) == "copymove" else synth.group(1)
    return None
