"""Streaming in a real container: an image built as the README says (FROM smc-base, COPY smc,
ENTRYPOINT ["smc"]), serving a streaming inference.py and an ASGI app through Docker's port mapping."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import docker
from tests.serve.streamclient import stream

IMAGE = "smc-i10-streaming:test"  # this file's own tag: the smc-example-* tags are shared
DOCKERFILE = """FROM smc-base:latest
COPY smc /usr/local/bin/
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
LABEL com.amazonaws.sagemaker.capabilities.bidirectional-streaming=true
ENTRYPOINT ["smc"]
"""


@pytest.fixture(scope="module")
def image(docker_engine, smc_binary: Path, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("streaming-image")
    shutil.copy(smc_binary, context / "smc")
    (context / "Dockerfile").write_text(DOCKERFILE)
    result = subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(context)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return IMAGE


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / "stream.py", model / "code" / "inference.py")
    shutil.copy(ROOT / "tests" / "fixtures" / "apps" / "asgi_stream.py", model / "code" / "asgi_stream.py")
    for path in [model, *model.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return model


def _serve(containers, image: str, model: Path, *env: str):
    args = [arg for item in env for arg in ("-e", item)]
    result, box = containers(image, "serve", detach=True, publish=True,
                             docker_args=["-v", f"{model}:/opt/ml/model", *args])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    return box


def test_inference_py_streams_out_of_the_container(image, containers, tmp_path):
    box = _serve(containers, image, _model(tmp_path), "SMC_STOP_GRACE_SECONDS=10")
    result = stream(box.port, {"mode": "tokens", "n": 4, "gap_s": 0.3})
    assert result.status == 200 and result.complete and result.headers["transfer-encoding"] == "chunked"
    arrivals = [at for at, _ in result.chunks]
    assert len(arrivals) == 4 and all(b - a > 0.2 for a, b in zip(arrivals, arrivals[1:])), arrivals
    broken = stream(box.port, {"mode": "raise", "n": 5})
    assert len(broken.body.splitlines()) == 2 and not broken.complete
    # docker stop while a stream is in flight: it finishes within the grace period
    results: list = []
    client = threading.Thread(target=lambda: results.append(
        stream(box.port, {"mode": "tokens", "n": 8, "gap_s": 0.25}, timeout=30)))
    client.start()
    time.sleep(0.5)
    stopped = docker("stop", "-t", "30", box.name, timeout=60)
    client.join(30)
    assert stopped.returncode == 0 and results and results[0].complete, box.logs()[-3000:]
    assert box.exit_code() == 0
    finished = [json.loads(line) for line in box.logs().splitlines()
                if line.startswith("{") and '"stream_finished"' in line]
    assert [f["outcome"] for f in finished] == ["complete", "failed", "complete"]


def test_asgi_app_streams_out_of_the_container(image, containers, tmp_path):
    box = _serve(containers, image, _model(tmp_path), "SMC_ASGI_APP=asgi_stream:app")
    result = stream(box.port, {"n": 3, "gap_s": 0.3})
    assert result.status == 200 and result.complete
    assert [json.loads(line)["model"] for line in result.body.splitlines()] == ["loaded"] * 3
    arrivals = [at for at, _ in result.chunks]
    assert len(arrivals) == 3 and all(b - a > 0.2 for a, b in zip(arrivals, arrivals[1:])), arrivals
