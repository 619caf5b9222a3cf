"""examples/engine with a real third-party engine, MLServer, on the host: `smc train` runs the
example's train.py with MLServer's venv python, then the frozen `smc serve` fronts `mlserver
start` in engine mode. (On the host with a venv, not in Docker: see examples/engine/README.md.)"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, free_port
from tests.serve.conftest import Server, nginx_required

EXAMPLE = ROOT / "examples" / "engine"
REQUIREMENTS = EXAMPLE / "requirements.txt"


@pytest.fixture(scope="session")
def mlserver_venv() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = Path.home() / ".cache" / "smc" / f"mlserver-{digest}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".mlserver-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ok").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            "-r", str(REQUIREMENTS)], check=True, timeout=900)
            (venv / ".ok").touch()
    return venv


def test_mlserver_example_trains_then_serves_behind_smc(smc_binary, opt_ml, mlserver_venv):
    nginx_required()
    shutil.copy(EXAMPLE / "code" / "train.py", opt_ml / "code" / "train.py")
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text("{}")
    (opt_ml / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    env = clean_env()
    env.update({"SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_PROGRAM": "train.py",
                "SMC_PYTHON": str(mlserver_venv / "bin" / "python"), "SMC_LOG_FORMAT": "json"})
    trained = subprocess.run([str(smc_binary), "train"], env=env, capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (opt_ml / "model" / "model.joblib").is_file()

    engine_port = free_port()
    server = Server(smc_binary, opt_ml, free_port(), {
        "PATH": f"{mlserver_venv / 'bin'}:{env['PATH']}",
        "SMC_ENGINE_COMMAND": f"mlserver start {opt_ml / 'model'}",
        "SMC_ENGINE_URL": f"http://127.0.0.1:{engine_port}",
        "SMC_ENGINE_HEALTH_PATH": "/v2/health/ready",
        "SMC_ENGINE_INVOCATIONS_PATH": "/v2/models/iris/infer",
        "MLSERVER_HTTP_PORT": str(engine_port), "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
    })
    try:
        server.wait_ready(timeout=90)
        body = {"inputs": [{"name": "predict", "shape": [2, 4], "datatype": "FP32",
                            "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}
        answer = server.invoke(body, headers={"X-Amzn-SageMaker-Inference-Id": "mls-1"})
        assert answer.status == 200, answer.body
        assert answer.json()["outputs"][0]["data"] == [0, 2]
        assert answer.headers["x-amzn-sagemaker-inference-id"] == "mls-1"
        assert any(e.get("component") == "engine" for e in server.lines())  # MLServer's lines relayed
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
