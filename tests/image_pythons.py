"""Real CPython interpreters standing in for an image's own Python, for host tests of smc serve
under the image's Python (SMC_PYTHON).

Each is a venv of a real CPython (3.9, 3.11, 3.13: under pyenv on this machine kind, or the
machine's python3.X) with tests/fixtures/image_python/requirements.txt installed: packages smc's
embedded interpreter does not have. Cached under ~/.cache/smc/image-python-<version>-<key>, keyed on
that file; building one takes about a minute (pip from the package index).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "tests" / "fixtures" / "image_python" / "requirements.txt"
CACHE = Path(os.environ.get("SMC_CACHE_DIR", Path.home() / ".cache" / "smc"))
VERSIONS = ("3.9", "3.11", "3.13")


def find_cpython(version: str) -> Path | None:
    """A real CPython VERSION: pyenv's newest VERSION.*, else python{VERSION} on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        found = sorted((p for p in pyenv.glob(f"{version}.*") if (p / "bin" / "python3").is_file()),
                       key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
        if found:
            return found[-1] / "bin" / "python3"
    on_path = shutil.which(f"python{version}")
    return Path(on_path) if on_path else None


def image_python(version: str) -> Path | None:
    """bin/python3 of a cached venv of CPython VERSION with the test requirements; None if this
    machine has no CPython VERSION."""
    base = find_cpython(version)
    if base is None:
        return None
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + str(base).encode()).hexdigest()[:12]
    venv = CACHE / f"image-python-{version}-{key}"
    python = venv / "bin" / "python3"
    if (venv / ".ok").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                   check=True)
    (venv / ".ok").touch()
    return python
