"""The Dockerfiles shown in README.md and docs/*.md are the ones tests/images builds: each block is
marked with its file (`<!-- example:PATH -->` on the line before the ```dockerfile fence) and equals
that file."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

# Built by tests/images; other example Dockerfiles (examples/mpi, mme, engine) are built by their own tests.
DOCKERFILES = ["examples/tabular/Dockerfile", "examples/sklearn/Dockerfile",
               "examples/tabular/Dockerfile.scratch", "examples/byo-flask/Dockerfile"]
TESTED = set(DOCKERFILES) | {"examples/mpi/Dockerfile", "examples/mme/Dockerfile", "examples/engine/Dockerfile"}
BLOCK = re.compile(r"(?:<!-- example:(?P<path>\S+) -->\s*)?```dockerfile\n(?P<body>.*?)```", re.DOTALL)


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_blocks() -> list[tuple[str | None, str]]:
    return [(m.group("path"), m.group("body")) for doc in DOCS for m in BLOCK.finditer(doc.read_text())]


def test_the_readme_shows_one_dockerfile():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("```dockerfile") == 1, "README.md shows one Dockerfile; the others live in docs/"


@pytest.mark.parametrize("path", DOCKERFILES)
def test_readme_shows_the_tested_dockerfile(path):
    bodies = [body for marked, body in readme_blocks() if marked == path]
    assert bodies, f"neither README.md nor docs/ has a `<!-- example:{path} -->` marker before a ```dockerfile block"
    for body in bodies:
        assert body == (ROOT / path).read_text(), f"the docs' copy of {path} differs from the file the tests build"


def test_readme_has_no_untested_dockerfile():
    unmarked = [body.splitlines()[0] for marked, body in readme_blocks() if marked not in TESTED]
    assert not unmarked, f"README.md or docs/ has ```dockerfile blocks that no test builds (first lines: {unmarked}); " \
        "mark each with `<!-- example:PATH -->` of a tested Dockerfile (TESTED in tests/images/test_readme.py)"


@pytest.mark.parametrize("path", sorted(TESTED - set(DOCKERFILES)))
def test_readme_copy_of_other_examples_is_current(path):
    for marked, body in readme_blocks():
        if marked == path:
            assert body == (ROOT / path).read_text(), f"the docs' copy of {path} differs from the file"
