"""The LLM hosting contract in a container. Stateful sessions (docs/serve.md and docs/engines.md,
"Stateful sessions"): the default store (/dev/shm in the container), state kept across three handler
workers, and engine mode with the stand-in engine run by `smc python` on the no-Python base image.
LoRA adapters in handler mode (engine mode: test_adapters_docker.py): the hooks in every worker."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import build_on_base

IMAGE = "smc-i21-sessions:test"
ID = "X-Amzn-SageMaker-Session-Id"


def _post(port: int, body: dict, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


@pytest.fixture(scope="module")
def image(docker_engine, smc_binary: Path, tmp_path_factory) -> str:
    return build_on_base(IMAGE, smc_binary, tmp_path_factory.mktemp("llm-image"),
                         "FROM smc-base:latest\nCOPY smc /usr/local/bin/\nCOPY stand_in_engine.py /opt/engine/\n"
                         "ENV SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true\n"
                         "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true\n"
                         'ENTRYPOINT ["smc"]\n', (ROOT / "tests" / "engine" / "stand_in_engine.py",))


def _open(port: int) -> str:
    status, headers, body = _post(port, {"requestType": "NEW_SESSION"}, {ID: "NEW_SESSION"})
    assert status == 200, body
    return headers["x-amzn-sagemaker-new-session-id"].split(";")[0]


def test_handler_sessions_in_a_container(image, containers, tmp_path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / "sessions.py", model / "code" / "inference.py")
    for path in [model, *model.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    result, box = containers(image, "serve", detach=True, publish=True, docker_args=[
        "-v", f"{model}:/opt/ml/model:ro", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=3"])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    session = _open(box.port)
    counts, pids = [], set()
    for _ in range(12):  # each call a new connection: nginx spreads them over the three workers
        status, _, body = _post(box.port, {}, {ID: session})
        assert status == 200, body
        counts.append(json.loads(body)["n"])
        pids.add(json.loads(body)["pid"])
    assert counts == list(range(1, 13)), (counts, pids)
    assert _post(box.port, {}, {ID: "not-issued-here"})[0] == 400
    status, headers, _ = _post(box.port, {"requestType": "CLOSE"}, {ID: session})
    assert status == 200 and headers["x-amzn-sagemaker-closed-session-id"] == session
    events = [json.loads(line) for line in box.logs().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "sessions_on" and str(e.get("path", "")).startswith("/dev/shm") for e in events), \
        [e for e in events if e.get("event") == "sessions_on"]


def test_engine_sessions_in_a_container(image, containers):
    result, box = containers(image, "serve", detach=True, publish=True, docker_args=[
        "-e", "SMC_ENGINE_COMMAND=smc python /opt/engine/stand_in_engine.py --port 8000",
        "-e", "SMC_ENGINE_URL=http://127.0.0.1:8000"])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    session = _open(box.port)
    status, _, body = _post(box.port, {"x": 1}, {ID: session})
    assert status == 200, body
    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}  # urllib capitalizes names its own way
    assert seen[ID.lower()] == session, seen  # the engine saw the id
    assert _post(box.port, {"x": 1}, {ID: "not-issued-here"})[0] == 400
    assert _post(box.port, {"requestType": "CLOSE"}, {ID: session})[0] == 200
    assert _post(box.port, {"requestType": "CLOSE"}, {})[0] == 424


def test_handler_adapters_in_a_container(image, containers, tmp_path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "adapters" / "fr").mkdir(parents=True)
    (model / "adapters" / "fr" / "adapter_config.json").write_text('{"r": 8}')
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / "lora.py", model / "code" / "inference.py")
    for path in [model, *model.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)  # the hooks log to the model dir
    result, box = containers(image, "serve", detach=True, publish=True, docker_args=[
        "-v", f"{model}:/opt/ml/model", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2",
        "-e", "SAGEMAKER_ENABLE_STATEFUL_SESSIONS=false"])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    request = urllib.request.Request(f"http://127.0.0.1:{box.port}/adapters", method="POST",
                                     data=json.dumps({"name": "fr", "src": "adapters/fr"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.read() == b"Adapter fr registered"
    loads = [line.split() for line in (model / "adapters.log").read_text().splitlines()]
    assert len({pid for verb, name, pid in loads if (verb, name) == ("load", "fr")}) == 2  # both workers
    for _ in range(4):
        status, _, body = _post(box.port, {"x": 1}, {"X-Amzn-SageMaker-Adapter-Identifier": "fr"})
        assert status == 200 and json.loads(body)["adapter"] == "fr", body
    assert _post(box.port, {"x": 1}, {"X-Amzn-SageMaker-Adapter-Identifier": "de"})[0] == 404
