"""examples/engine in Docker: build smc-example-engine:test with build/images.sh, `train` writes
the scikit-learn model, `serve` fronts MLServer in engine mode, docker stop drains and exits 0.

Runs with SMC_TEST_ENGINE_IMAGE=1 (see tests/engine/conftest.py: ~6 min cold for the image)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.images.conftest import Container, docker, job_mounts

IMAGE = "smc-example-engine:test"


@pytest.fixture(scope="session")
def engine_image(smc_binary: Path) -> str:
    if shutil.which("docker") is None or docker("info", timeout=30).returncode != 0:
        pytest.fail("the engine image test needs Docker (CLI and a running Engine)")
    result = subprocess.run(["bash", str(ROOT / "build" / "images.sh"), "engine"],
                            env={**os.environ, "SMC_BINARY": str(smc_binary), "SMC_IMAGE_TAG": "test"},
                            capture_output=True, text=True, timeout=1500, check=False)
    if result.returncode != 0:
        pytest.fail(f"build/images.sh engine failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return IMAGE


@pytest.mark.docker
@pytest.mark.slow
def test_engine_image_trains_and_serves_mlserver(engine_image, tmp_path):
    base = tmp_path / "opt_ml"
    for sub in ("input/config", "model", "output"):
        (base / sub).mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text("{}")
    (base / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    names = [f"smc-engine-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        trained = docker("run", "--name", names[0], *job_mounts(base), engine_image, "train", timeout=300)
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        assert (base / "model" / "model-settings.json").is_file()
        port = free_port()
        started = docker("run", "-d", "--name", names[1], "-p", f"127.0.0.1:{port}:8080",
                         "-v", f"{base / 'model'}:/opt/ml/model", engine_image, "serve")
        assert started.returncode == 0, started.stderr
        container = Container(names[1], port)
        container.wait_ready(timeout_s=120)
        body = json.dumps({"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32",
                                       "data": [[6.7, 3.0, 5.2, 2.3]]}]}).encode()
        request = urllib.request.Request(container.url("/invocations"), data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["outputs"][0]["data"] == [2]
        stop_started = time.monotonic()
        assert docker("stop", "-t", "30", names[1], timeout=60).returncode == 0
        assert time.monotonic() - stop_started < 15
        assert container.exit_code() == 0, container.logs()[-3000:]
        lines = [json.loads(line) for line in container.logs().splitlines() if line.startswith("{")]
        assert any(line.get("event") == "engine_healthy" for line in lines)
        assert any(line.get("component") == "engine" for line in lines)  # MLServer's output, as JSON lines
    finally:
        for name in names:
            docker("rm", "-f", "-v", name, timeout=60)
