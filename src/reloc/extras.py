"""Optional packages, imported where a feature needs them, with one line naming the extra.

The core install (``pip install reloc``) is what ``reloc localize`` and ``reloc eval`` need;
the rest comes with extras (``pyproject.toml``): ``figures`` (SciPy and scikit-learn: the
t-SNE feature figure and its EMD; SciPy: the copy-move matcher, ``--evidence clones``), ``tensorboard`` (training's event files), ``photos``
(scikit-image: its lossless photos, ``--photos default``), ``serve`` and ``export``.

>>> require("json", "figures", "the feature figure").dumps([1])
'[1]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from reloc.errors import UsageError

#: The extra that installs each optional top-level package.
EXTRAS = {
    "scipy": "figures",
    "sklearn": "figures",
    "tensorboard": "tensorboard",
    "skimage": "photos",
    "fastapi": "serve",
    "uvicorn": "serve",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
}


def missing_extra(what: str, extra: str, error: ImportError) -> UsageError:
    """The one-line error for ``what`` lacking the package of ``error``: ``pip install 'reloc[EXTRA]'``."""
    package = (error.name or str(error)).split(".")[0]
    return UsageError(what, f"needs {package}, which is not installed: pip install 'reloc[{extra}]'")


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module`` imported, or :class:`reloc.errors.UsageError` naming ``extra`` when it is missing.

    Args:
        module: the dotted module to import (``"sklearn.manifold"``).
        extra: the extra of ``pyproject.toml`` that installs it.
        what: the feature that needs it, as the error names it (``"the t-SNE feature figure"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing_extra(what, extra, error) from None
