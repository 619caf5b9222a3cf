"""Dynamic batching and multi-record bodies in a real container: an image built as the README says
(FROM smc-base, COPY smc, ENTRYPOINT ["smc"]) serving tests/fixtures/handlers/batching.py through
Docker's port mapping, with `docker stop` while a batch is in flight."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import build_on_base, docker

IMAGE = "smc-i22-batching:test"  # this file's own tag: the smc-example-* tags are shared
DOCKERFILE = """FROM smc-base:latest
COPY smc /usr/local/bin/
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
ENTRYPOINT ["smc"]
"""


@pytest.fixture(scope="module")
def image(docker_engine, smc_binary: Path, tmp_path_factory) -> str:
    return build_on_base(IMAGE, smc_binary, tmp_path_factory.mktemp("batching-image"), DOCKERFILE)


def _post(port: int, body: bytes, content_type: str, accept: str, timeout_s: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _invoke(port: int, document: dict, timeout_s: float = 30) -> tuple[int, dict]:
    status, body = _post(port, json.dumps(document).encode(), "application/json", "application/json", timeout_s)
    return status, json.loads(body)


def _serve(containers, image: str, tmp_path: Path, handler: str, *env: str):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / handler, model / "code" / "inference.py")
    for path in [model, *model.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    args = [arg for item in env for arg in ("-e", item)]
    result, box = containers(image, "serve", detach=True, publish=True,
                             docker_args=["-v", f"{model}:/opt/ml/model", *args])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    return box


def test_batches_in_a_container(image, containers, tmp_path):
    box = _serve(containers, image, tmp_path, "batching.py", "SAGEMAKER_MODEL_SERVER_WORKERS=1",
                 "SMC_BATCH_SIZE=8", "SMC_BATCH_DELAY_MS=300", "SMC_STOP_GRACE_SECONDS=20")

    # Eight requests at once run as one batch (or few): each gets its own prediction.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _invoke(box.port, {"value": i}), range(8)))
    assert [status for status, _ in answers] == [200] * 8, answers
    assert [body["echo"] for _, body in answers] == [{"value": i} for i in range(8)]
    assert max(body["batch_size"] for _, body in answers) >= 4, answers

    # One failed prediction fails only its request; a bad input never reaches the batch.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda doc: _invoke(box.port, doc),
                                [{"value": 0}, {"fail": "this one"}, {"bad_input": True}, {"value": 3}]))
    assert [status for status, _ in answers] == [200, 500, 400, 200], answers
    assert answers[1][1]["message"] == "batch_predict_fn raised ValueError: cannot predict this one"

    # docker stop while a batch is in flight: the drain waits for it, every request is answered.
    slow: list = []
    clients = [threading.Thread(target=lambda i=i: slow.append(_invoke(box.port, {"value": i, "sleep": 1.5})))
               for i in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.8)  # the batch has formed (300 ms delay) and is running
    stopped = docker("stop", "-t", "30", box.name, timeout=60)
    for client in clients:
        client.join(30)
    assert stopped.returncode == 0
    assert sorted(status for status, _ in slow) == [200, 200, 200], (slow, box.logs()[-3000:])
    assert box.exit_code() == 0
    events = [json.loads(line) for line in box.logs().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "batching_on" and e.get("batch_size") == 8 for e in events)


def test_multi_record_bodies_in_a_container(image, containers, tmp_path):
    """Batch Transform's MultiRecord + SplitType=Line: a handler written for one JSON document per
    request answers one line per record, in order; so do the default codecs for CSV."""
    box = _serve(containers, image, tmp_path, "json_records.py")
    lines = "".join(json.dumps({"x": i}) + "\n" for i in range(6))
    for kind in ("application/jsonlines", "application/json"):
        status, body = _post(box.port, lines.encode(), kind, "application/jsonlines")
        assert status == 200, body
        assert body.decode().splitlines() == [json.dumps({"y": 2 * i}) for i in range(6)]
    status, body = _post(box.port, b'{"x": 1}\n{"z": 2}\n', "application/json", "application/json")
    assert status == 500 and json.loads(body)["message"].startswith("record at line 2:"), body
