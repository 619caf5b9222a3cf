"""Helpers for smc train tests: job trees from tests/fixtures/jobs, environments, log lines."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "tests" / "fixtures" / "jobs"


def make_job(tmp_path: Path, case: str | None = None, name: str = "opt_ml") -> Path:
    """A fresh /opt/ml tree: a copy of tests/fixtures/jobs/<case>, or an empty single-host job."""
    base = tmp_path / name
    if case:
        shutil.copytree(JOBS / case, base)
    for sub in ("input/config", "input/data", "code", "model", "output/data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if not (base / "input/config/resourceconfig.json").exists():
        write_json(base / "input/config/resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})
    return base


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def hyperparameters(base: Path, **values: object) -> None:
    """Write hyperparameters.json the way the SageMaker SDK does: every value JSON-encoded."""
    write_json(base / "input/config/hyperparameters.json", {k: json.dumps(v) for k, v in values.items()})


def script(base: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = base / "code" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def train_env(base: Path, **extra: str) -> dict[str, str]:
    env = {"SAGEMAKER_BASE_DIR": str(base), "SMC_LOG_FORMAT": "json", "SMC_PYTHON": sys.executable}
    env.update(extra)
    return env


def log_events(stdout: str, stderr: str = "") -> list[dict]:
    events = []
    for line in (stdout + "\n" + stderr).splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return events


def failure(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def clean_env() -> dict[str, str]:
    """The runner's environment without what would leak into either launcher's config."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SM_", "SAGEMAKER_", "SMC_", "PYTHON", "_PYI_", "AWS_"))
        and k != "LD_LIBRARY_PATH_ORIG"
    }
