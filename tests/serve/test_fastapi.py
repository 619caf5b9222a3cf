"""SMC_ASGI_APP with a real FastAPI (and so Starlette) app, installed as a user would:
`smc python -m pip install fastapi` into smc's prefix."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, clean_env
from tests.serve.streamclient import stream


FASTAPI = "fastapi==0.165.0"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def fastapi_prefix(smc_binary, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    result = subprocess.run([str(smc_binary), "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                             FASTAPI], check=False, env={**clean_env(), "SMC_PREFIX": str(prefix)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{FASTAPI} is needed for this test and could not be installed:\n{result.stderr}"
    return prefix


@pytest.fixture
def fastapi_server(start_server, opt_ml, fastapi_prefix):
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "apps" / "fastapi_app.py", code / "fastapi_app.py")
    return start_server(None, env={"SMC_ASGI_APP": "fastapi_app:app", "SMC_PREFIX": str(fastapi_prefix),
                                   "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"})


def test_fastapi_streams_server_sent_events_as_produced(fastapi_server):
    result = stream(fastapi_server.port, {"prompt": "hi", "max_tokens": 4, "gap_s": 0.3},
                    {"X-Amzn-SageMaker-Inference-Id": "fastapi-1"})
    assert result.status == 200 and result.complete
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["x-amzn-sagemaker-inference-id"] == "fastapi-1"
    events = [json.loads(line[len(b"data: "):]) for line in result.body.split(b"\n\n") if line]
    assert [event["token"] for event in events] == [0, 1, 2, 3]
    assert {event["model"] for event in events} == {"loaded"}  # /ping was 200 only after the lifespan ran
    arrivals = [at for at, _ in result.chunks]
    assert len(arrivals) == 4 and arrivals[0] - result.sent_at < 0.6  # well before the last (0.9 s in)
    assert all(later - earlier > 0.2 for earlier, later in zip(arrivals, arrivals[1:]))
    assert fastapi_server.wait_event("request", inference_id="fastapi-1")["status"] == 200


def test_fastapi_validation_errors_reach_the_client(fastapi_server):
    answer = fastapi_server.invoke({"max_tokens": "many"})
    assert answer.status == 422
    fields = {tuple(error["loc"]) for error in answer.json()["detail"]}
    assert ("body", "prompt") in fields and ("body", "max_tokens") in fields


def test_fastapi_reads_a_streamed_big_body(fastapi_server):
    size = 30 * MIB  # over 10 MB: nginx streams it to uvicorn as it arrives
    conn = http.client.HTTPConnection("127.0.0.1", fastapi_server.port, timeout=60)
    try:
        conn.request("POST", "/size", body=b"\x05" * size, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"length": size}
    finally:
        conn.close()
