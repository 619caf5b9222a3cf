"""Shared fixtures: the frozen binary (built once per run), /opt/ml trees, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def smc_binary() -> Path:
    """dist/smc: taken from SMC_BINARY (make test builds it first) or built here once."""
    given = os.environ.get("SMC_BINARY")
    if given:
        path = Path(given).resolve()
        assert path.is_file(), f"SMC_BINARY={given} does not exist; run `make binary`"
        return path
    subprocess.run(["make", "-C", str(ROOT), "binary"], check=True)
    return ROOT / "dist" / "smc"


@pytest.fixture
def smc(smc_binary: Path):
    """Run the frozen binary: smc(*args, env={...}, **popen_kwargs) -> CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw):
        full_env = clean_env()
        full_env.update(env or {})
        return subprocess.run(
            [str(smc_binary), *args], env=full_env, capture_output=True, text=True, timeout=timeout, **kw
        )

    return run


def clean_env() -> dict[str, str]:
    """The test runner's environment without what would leak into smc's config."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SM_", "SAGEMAKER_", "SMC_", "PYTHON", "_PYI_")) and k != "LD_LIBRARY_PATH_ORIG"
    }


@pytest.fixture
def opt_ml(tmp_path: Path) -> Path:
    base = tmp_path / "opt_ml"
    for sub in ("input/config", "input/data", "code", "model", "output"):
        (base / sub).mkdir(parents=True)
    return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


# Which Python serves: smc's embedded one unless a test says otherwise. Modules marked
# `pytest.mark.both_pythons` run every test twice: embedded, and under a real CPython 3.11 venv
# standing in for the image's own Python (tests/image_pythons.py), as SMC_PYTHON.
IMAGE_PYTHON_VERSION = "3.11"


def pytest_generate_tests(metafunc):
    if "serve_python" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_pythons"):
        metafunc.parametrize("serve_python", ["embedded", "image"], indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def serve_python(request):
    """SMC_PYTHON for every Server started in this module (see IMAGE_PYTHON_VERSION)."""
    choice = getattr(request, "param", "embedded")
    if choice == "image":
        from tests.image_pythons import image_python

        found = image_python(IMAGE_PYTHON_VERSION)
        if found is None:
            pytest.skip(f"no CPython {IMAGE_PYTHON_VERSION} to stand in for the image's Python")
        choice = str(found)
    from tests.serve.conftest import Server

    Server.python = choice
    yield choice
    Server.python = "embedded"


@pytest.fixture(autouse=True)
def _embedded_only(request):
    """`pytest.mark.embedded_only(reason)`: a test of the embedded interpreter's own ways (its
    SMC_PREFIX installs, the forked master), skipped when the image's Python serves."""
    marker = request.node.get_closest_marker("embedded_only")
    if marker is not None and request.getfixturevalue("serve_python") != "embedded":
        pytest.skip(marker.args[0] if marker.args else "the embedded interpreter's own behaviour")
