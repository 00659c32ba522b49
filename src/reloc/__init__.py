"""reloc: robust image tampering localization with restoration-assisted training (ReLoc)."""

__version__ = "0.1.0"
