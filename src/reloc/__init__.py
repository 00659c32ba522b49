"""reloc: robust image tampering localization with restoration-assisted training (ReLoc).

The most used entry points are importable from the top level (loaded on first use, so
``import reloc`` stays light): ``reloc.load_network(path)`` rebuilds a network from a
safetensors file written by ``reloc.save_network`` / ``reloc convert`` / ``reloc train``.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_network": "reloc.models.weights",
    "save_network": "reloc.models.weights",
    "create_restorer": "reloc.models",
    "create_localizer": "reloc.models",
    "create_discriminator": "reloc.models",
    "Pipeline": "reloc.engine.inference",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reloc' has no attribute {name!r}")
