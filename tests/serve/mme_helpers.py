"""Model trees and a server fixture for the multi-model endpoint tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.serve.conftest import Server, nginx_required

FIXTURES = ROOT / "tests" / "fixtures" / "mme"


def make_model(base: Path, name: str, weights=(1.0, 2.0, 3.0), intercept=1.0, own_code: str | None = None,
               extra: dict | None = None) -> str:
    """base/models/NAME/model with model.json; own_code: a helper NAME for code/inference.py + helper.py."""
    model = base / "models" / name / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "model.json").write_text(json.dumps({"weights": list(weights), "intercept": intercept, **(extra or {})}))
    if own_code is not None:
        (model / "code").mkdir(exist_ok=True)
        shutil.copy(FIXTURES / "own" / "inference.py", model / "code" / "inference.py")
        (model / "code" / "helper.py").write_text(f"NAME = {own_code!r}\n")
    return str(model)


def install_image_handler(base: Path) -> None:
    """The image's handler, where sagemaker-inference looks in multi-model mode (models/code)."""
    code = base / "models" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "inference.py", code / "inference.py")


def load(server: Server, name: str, url: str, timeout: float = 30):
    return server.request("POST", "/models", json.dumps({"model_name": name, "url": url}),
                          {"Content-Type": "application/json"}, timeout=timeout)


def start_mme(smc_binary: Path, base: Path, env: dict[str, str] | None = None, workers: int = 2) -> Server:
    nginx_required()
    install_image_handler(base)
    server = Server(smc_binary, base, free_port(), {
        "SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **(env or {})})
    server.wait_ready()
    return server


@pytest.fixture
def mme(smc_binary, tmp_path):
    """mme(env=None, workers=2) -> a running multi-model `smc serve` on tmp_path/opt_ml."""
    servers: list[Server] = []

    def start(env: dict[str, str] | None = None, workers: int = 2) -> Server:
        base = tmp_path / "opt_ml"
        base.mkdir(exist_ok=True)
        server = start_mme(smc_binary, base, env, workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.stop()
