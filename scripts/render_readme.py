"""Render the README's model table from the model cards (``src/reloc/pretrained/cards.json``).

    python scripts/render_readme.py           # rewrite the block between the markers
    python scripts/render_readme.py --check   # exit 1 when the README's block is stale

The table is made by ``docs/hooks/model_cards.py`` (the same data and code as the docs'
model cards) and fills the block between ``<!-- models:start -->`` and
``<!-- models:end -->``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HOOK = ROOT / "docs" / "hooks" / "model_cards.py"
START, END = "<!-- models:start -->", "<!-- models:end -->"


def model_cards():
    """The docs hook module, loaded from its file (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("model_cards", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rendered(text: str) -> str:
    """``text`` (the README) with the block between the markers rendered from the cards."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{README.name} must hold one {START} ... {END} block")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{model_cards().readme_table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the README's block is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    try:
        current = args.readme.read_text(encoding="utf-8")
        new = rendered(current)
    except (OSError, ValueError) as error:
        print(f"error: {args.readme}: {error}", file=sys.stderr)
        return 2
    if args.check:
        if new != current:
            print(f"error: {args.readme}'s model table is stale: run python scripts/render_readme.py", file=sys.stderr)
            return 1
        return 0
    if new != current:
        args.readme.write_text(new, encoding="utf-8")
        print(f"wrote the model table into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
