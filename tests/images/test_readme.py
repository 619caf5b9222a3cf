"""The README's Dockerfiles are the ones tests/images builds: each marked block equals its file."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

DOCKERFILES = ["examples/tabular/Dockerfile", "examples/sklearn/Dockerfile", "examples/tabular/Dockerfile.scratch"]


def readme_block(path: str) -> str | None:
    """The ```dockerfile block right after `<!-- example:PATH -->` in README.md."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- example:{re.escape(path)} -->\s*```dockerfile\n(.*?)```", readme, re.S)
    return match.group(1) if match else None


@pytest.mark.parametrize("path", DOCKERFILES)
def test_readme_shows_the_tested_dockerfile(path):
    block = readme_block(path)
    assert block is not None, f"README.md has no `<!-- example:{path} -->` marker before a ```dockerfile block"
    assert block == (ROOT / path).read_text(), f"README.md's copy of {path} differs from the file the tests build"
