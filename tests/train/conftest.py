"""Fixtures for smc train tests: the real sagemaker-training toolkit in a cached throwaway venv."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Lets the test modules here import their helpers (trainkit.py) by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

TOOLKIT_VERSION = "5.1.4"
TOOLKIT_VENV = Path.home() / ".cache" / "smc" / f"sagemaker-training-{TOOLKIT_VERSION}"


@pytest.fixture(scope="session")
def toolkit_train() -> Path:
    """The `train` console script of sagemaker-training, installed once into ~/.cache/smc."""
    marker = TOOLKIT_VENV / ".ok"
    TOOLKIT_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(TOOLKIT_VENV.parent / f".sagemaker-training-{TOOLKIT_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            python = shutil.which("python3") or sys.executable
            shutil.rmtree(TOOLKIT_VENV, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(TOOLKIT_VENV)], check=True)
            subprocess.run(
                [
                    str(TOOLKIT_VENV / "bin" / "pip"),
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    f"sagemaker-training=={TOOLKIT_VERSION}",
                ],
                check=True,
                timeout=900,
            )
            marker.touch()
    return TOOLKIT_VENV / "bin" / "train"
