"""The files README.md and docs/*.md show in full: a fenced block right after a line
`<!-- example:PATH -->` is the repository's file PATH, character for character (tests/images/
test_readme.py checks that; test_docs_walkthrough.py builds images from the blocks themselves)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKED = re.compile(r"<!-- example:(?P<path>\S+) -->\s*```(?P<lang>[\w-]*)\n(?P<body>.*?)```", re.DOTALL)
DOCKERFILE_BLOCK = re.compile(r"(?:<!-- example:(?P<path>\S+) -->\s*)?```dockerfile\n(?P<body>.*?)```", re.DOTALL)


def marked_blocks() -> list[tuple[Path, str, str]]:
    """(doc, path, body) of every marked block, in the docs' order."""
    return [(doc, m.group("path"), m.group("body")) for doc in DOCS for m in MARKED.finditer(doc.read_text())]


def dockerfile_blocks() -> list[tuple[str | None, str]]:
    """(marked path or None, body) of every ```dockerfile block, marked or not."""
    return [(m.group("path"), m.group("body")) for doc in DOCS for m in DOCKERFILE_BLOCK.finditer(doc.read_text())]


def shown_under(directory: str) -> dict[str, str]:
    """What the docs show of one example directory: its path inside the directory -> the text."""
    prefix = directory.rstrip("/") + "/"
    return {path[len(prefix):]: body for _, path, body in marked_blocks() if path.startswith(prefix)}


# The images a new user built from the docs alone (issue 24): name -> the example directory whose
# Dockerfile (and code) the docs show. tests/images/test_docs_walkthrough.py builds them from the
# docs' text; the fifth part of that walk, doctor on good and broken images, runs on these.
WALKTHROUGH = {
    "fastapi": "examples/fastapi",  # a FastAPI app streaming server-sent events (docs/streaming.md)
    "streaming": "examples/streaming",  # a streaming handler, inference.py (docs/streaming.md)
    "mme": "examples/mme",  # a multi-model endpoint (docs/multi-model.md)
    "tiny-engine": "examples/tiny-engine",  # engine mode with a small engine (docs/engines.md)
}
