"""The Dockerfiles shown in README.md and docs/*.md are the ones the tests build: each block is
marked with its file (`<!-- example:PATH -->` on the line before the fence) and equals that file;
so do the other files the docs show in full (code, requirements), whatever their language."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.images.docs_examples import WALKTHROUGH, dockerfile_blocks, marked_blocks

# Built by tests/images; other example Dockerfiles (examples/mpi, mme, engine) are built by their own tests.
DOCKERFILES = ["examples/tabular/Dockerfile", "examples/sklearn/Dockerfile",
               "examples/tabular/Dockerfile.scratch", "examples/byo-flask/Dockerfile"]
TESTED = set(DOCKERFILES) | {"examples/mpi/Dockerfile", "examples/mme/Dockerfile", "examples/engine/Dockerfile"} \
    | {f"{directory}/Dockerfile" for directory in WALKTHROUGH.values()}


def test_the_readme_shows_one_dockerfile():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("```dockerfile") == 1, "README.md shows one Dockerfile; the others live in docs/"


@pytest.mark.parametrize("path", DOCKERFILES)
def test_readme_shows_the_tested_dockerfile(path):
    bodies = [body for marked, body in dockerfile_blocks() if marked == path]
    assert bodies, f"neither README.md nor docs/ has a `<!-- example:{path} -->` marker before a ```dockerfile block"
    for body in bodies:
        assert body == (ROOT / path).read_text(), f"the docs' copy of {path} differs from the file the tests build"


def test_readme_has_no_untested_dockerfile():
    unmarked = [body.splitlines()[0] for marked, body in dockerfile_blocks() if marked not in TESTED]
    assert not unmarked, f"README.md or docs/ has ```dockerfile blocks that no test builds (first lines: {unmarked}); " \
        "mark each with `<!-- example:PATH -->` of a tested Dockerfile (TESTED in tests/images/test_readme.py)"


def test_every_file_the_docs_show_is_the_file_in_the_repository():
    blocks = marked_blocks()
    assert len(blocks) >= len(TESTED)
    for doc, path, body in blocks:
        assert (ROOT / path).is_file(), f"{doc.name} shows {path}, which does not exist"
        assert body == (ROOT / path).read_text(), f"{doc.name}'s copy of {path} differs from the file"
