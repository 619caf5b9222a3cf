""""Did you mean": the module files near a name that was not found (handlr.py beside handler.py)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


def did_you_mean(module_name: str, dirs: Iterable[Path]) -> str:
    """' (did you mean /opt/ml/code/handler.py?)', or '' when no module file there is close."""
    files = {}
    for directory in dirs:
        try:
            for path in sorted(directory.glob("*.py")):
                files.setdefault(path.stem, path)
        except OSError:
            continue
    close = difflib.get_close_matches(module_name, list(files), n=1, cutoff=0.75)
    return f" (did you mean {files[close[0]]}?)" if close else ""


__all__ = ["did_you_mean"]
