"""The release recipe: how the pretrained models shipped in :mod:`reloc.pretrained` are made
(``reloc release run``) and measured for their cards (``reloc release cards``).

The recipe is ``configs/release/recipe.yaml`` (:mod:`~reloc.release.recipe`); its parts are
data (:mod:`~reloc.release.training`), training (``reloc train`` processes, resumable),
``inference`` (the window and threshold of each shipped model, :mod:`~reloc.release.selection`)
and ``ship`` (weights and cards into the package, :mod:`~reloc.release.ship`), run in order by
:func:`reloc.release.runner.run`, each recorded in a provenance file
(:mod:`~reloc.release.provenance`). The card writer measures the shipped models on held-out
photos (:mod:`~reloc.release.measure`) and writes their figures (:mod:`~reloc.release.cards`).
It runs from a source checkout: it reads ``configs/release/`` and writes ``src/reloc/pretrained/``.
"""
