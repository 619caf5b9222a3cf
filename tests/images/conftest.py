"""Real images on the local Docker Engine: build the examples once per run, run containers, clean up.

Everything here needs Docker: without a daemon the tests FAIL with what to install, never skip
(CI must not pass by running nothing). Containers get unique `smc-e2e-*` names and are removed by
name at teardown; images keep their `smc-example-*:test` tags so the next run reuses Docker's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

EXAMPLES = ("tabular", "sklearn", "scratch")
TAG = "test"
TRAIN_CSV = {
    "tabular": ROOT / "examples" / "tabular" / "data" / "train.csv",
    "sklearn": ROOT / "examples" / "sklearn" / "data" / "train.csv",
    "scratch": ROOT / "examples" / "tabular" / "data" / "train.csv",
}
HYPERPARAMETERS = {
    "tabular": {"epochs": "300", "learning-rate": "0.05"},
    "sklearn": {"alpha": "0.01"},
    "scratch": {"epochs": "300", "learning-rate": "0.05"},
}
MODEL_FILE = {"tabular": "model.json", "sklearn": "model.joblib", "scratch": "model.json"}
BUILD_TIMEOUT_S = 900


def image_name(example: str) -> str:
    return f"smc-example-{example}:{TAG}"


def docker(*args: str, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, **kw)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        pytest.fail("tests/images need the Docker CLI and Engine: apt-get install -y docker.io docker-compose")
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        pytest.fail(f"the Docker Engine does not answer (`docker info`: {info.stderr.strip()}); start dockerd")


@pytest.fixture(scope="session")
def images(docker_engine, smc_binary: Path) -> dict[str, str]:
    """Build smc-base and every example with build/images.sh, as `make images` does."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "build" / "images.sh"), *EXAMPLES],
        env={**os.environ, "SMC_BINARY": str(smc_binary), "SMC_IMAGE_TAG": TAG},
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"build/images.sh failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(f"\nimages built in {time.monotonic() - started:.0f} s:\n{result.stdout}")
    return {name: image_name(name) for name in EXAMPLES}


def build_on_base(tag: str, smc_binary: Path, context: Path, dockerfile: str, files: tuple[Path, ...] = ()) -> str:
    """A small image FROM smc-base with the binary under test (and `files`) next to `dockerfile`, as
    a user builds one: `COPY smc /usr/local/bin/`. Docker caches it: seconds."""
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy(smc_binary, context / "smc")
    for path in files:
        shutil.copy(path, context / path.name)
    (context / "Dockerfile").write_text(dockerfile)
    built = docker("build", "-q", "-t", tag, str(context), timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    return tag


def json_events(stdout: str) -> list[dict]:
    """The JSON lines of smc's output (other lines skipped)."""
    events = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def image_sizes() -> list[tuple[str, int]]:
    sizes = []
    for image in ["smc-base:latest", *(image_name(e) for e in EXAMPLES)]:
        out = docker("image", "inspect", "--format", "{{.Size}}", image, timeout=30)
        if out.returncode == 0:
            sizes.append((image, int(out.stdout.strip())))
    return sizes


def pytest_terminal_summary(terminalreporter) -> None:
    # The issue asks for image sizes in the test output; only when this directory's tests ran.
    reports = terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
    if not any(getattr(r, "nodeid", "").startswith("tests/images") for r in reports):
        return
    if shutil.which("docker") is None:
        return
    terminalreporter.section("image sizes")
    for image, size in image_sizes():
        terminalreporter.write_line(f"{image:32} {size / 1e6:7.1f} MB")


def write_job(base: Path, example: str, hyperparameters: dict[str, str] | None = None) -> Path:
    """An /opt/ml tree as SageMaker lays it out for one host, world-writable for --user runs."""
    config = base / "input" / "config"
    channel = base / "input" / "data" / "train"
    for path in (config, channel, base / "model", base / "output"):
        path.mkdir(parents=True, exist_ok=True)
    shutil.copy(TRAIN_CSV[example], channel / "train.csv")
    hp = HYPERPARAMETERS[example] if hyperparameters is None else hyperparameters
    (config / "hyperparameters.json").write_text(json.dumps(hp))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    for path in [base, *base.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return base


def job_mounts(base: Path) -> list[str]:
    # SageMaker mounts these three, never /opt/ml itself: /opt/ml/code comes from the image.
    return [arg for sub in ("input", "model", "output") for arg in ("-v", f"{base / sub}:/opt/ml/{sub}")]


@dataclass
class Container:
    name: str
    port: int | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def exit_code(self) -> int:
        out = docker("inspect", "--format", "{{.State.ExitCode}}", self.name, check=True)
        return int(out.stdout.strip())

    def logs(self) -> str:
        out = docker("logs", self.name)
        return out.stdout + out.stderr

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url("/ping"), timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            state = docker("inspect", "--format", "{{.State.Running}}", self.name)
            if state.stdout.strip() == "false":
                raise AssertionError(f"container exited before /ping answered:\n{self.logs()[-4000:]}")
            time.sleep(0.3)
        raise AssertionError(f"/ping did not answer 200 within {timeout_s} s:\n{self.logs()[-4000:]}")


@pytest.fixture
def containers():
    """Run containers by unique name: run(image, *args, docker_args=[...]) -> (CompletedProcess, Container)."""
    names: list[str] = []

    def run(image: str, *args: str, docker_args: list[str] = (), detach: bool = False, publish: bool = False,
            timeout: float = 180):
        name = f"smc-e2e-{uuid.uuid4().hex[:10]}"
        names.append(name)
        port = free_port() if publish else None
        cmd = ["run", "--name", name, *(["-d"] if detach else []),
               *(["-p", f"127.0.0.1:{port}:8080"] if publish else []), *docker_args, image, *args]
        return docker(*cmd, timeout=timeout), Container(name, port)

    yield run
    for name in names:
        docker("rm", "-f", "-v", name, timeout=60)
