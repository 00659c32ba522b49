"""``python -m reloc`` runs the command-line interface (also under ``torchrun``)."""

from reloc.cli import app

app()
