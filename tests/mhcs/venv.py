"""The MHCS venv: model-hosting-container-standards and uvicorn as pinned in requirements/mhcs.txt.

Cached under ~/.cache/smc/mhcs-<key> (CACHE_DIR or SMC_CACHE_DIR moves it), keyed on that file and
the base interpreter, built on first use (about 20 s, pip from the package index) under a lock so
parallel runs share it. MHCS needs Python >= 3.10: the machine's python3 when it is one, else the
newest python3.1x on PATH.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
REQUIREMENTS = ROOT / "requirements" / "mhcs.txt"
CACHE = Path(os.environ.get("CACHE_DIR") or os.environ.get("SMC_CACHE_DIR") or Path.home() / ".cache" / "smc")
PIP_TIMEOUT_S = 600


def base_python() -> str:
    """A CPython >= 3.10 to build the venv from (MHCS's own floor)."""
    newer = [shutil.which(f"python3.{minor}") for minor in (13, 12, 11, 10)]
    candidates = [shutil.which("python3"), sys.executable, *newer]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 10))"],
                               capture_output=True, text=True, check=False)
        if probe.stdout.strip() == "True":
            return candidate
    raise RuntimeError("the MHCS differential needs a CPython >= 3.10 on PATH (MHCS's floor)")


def mhcs_python() -> Path:
    """bin/python of the cached MHCS venv, built when missing."""
    base = base_python()
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + os.path.realpath(base).encode()).hexdigest()[:12]
    venv = CACHE / f"mhcs-{key}"
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".mhcs-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ok").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "-r", str(REQUIREMENTS)], check=True, timeout=PIP_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
            (venv / ".ok").touch()
    return python
