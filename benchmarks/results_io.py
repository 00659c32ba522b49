"""The benchmarks' own result files, read back: one home for what a damaged one does.

Every benchmark that resumes or aggregates reads JSON it wrote before (atomically, so a
killed run leaves the previous file whole). A file damaged by hand, by a merge or by a full
disk ends the run with one line naming it and how to recover, never a traceback, and
nothing is overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_MISSING = object()


def read_results(path: Path, default: Any = _MISSING) -> Any:
    """The JSON in ``path``; ``default`` where there is no such file (without one, the file
    must exist).

    Raises:
        SystemExit: ``error: PATH: ...`` (exit status 1) for a missing file without a
            default, an unreadable file, or one that is not valid UTF-8 JSON.
    """
    path = Path(path)
    if not path.is_file():
        if default is _MISSING:
            raise SystemExit(f"error: {path}: no such results file")
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        message = (
            f"error: {path}: not a readable results file ({error}); restore it (`git checkout -- {path}` "
            "if it is committed) or move it away to measure again"
        )
        raise SystemExit(message) from None
