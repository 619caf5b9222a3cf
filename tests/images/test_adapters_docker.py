"""SMC_ENGINE_ADAPTERS=vllm in a container: the stand-in engine (stdlib only) run by `smc python`
in the no-Python base image, an adapter .tar.gz in /opt/ml/model loaded by a relative `src`, an
invocation naming it, and DELETE. Builds one small image on smc-base (cached: seconds)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request

from tests.conftest import ROOT
from tests.images.conftest import docker

IMAGE = "smc-adapters-engine:test"


def _call(port, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_engine_adapters_in_a_container(docker_engine, smc_binary, containers, tmp_path):
    base = subprocess.run(["bash", str(ROOT / "build" / "base-image.sh")], capture_output=True, text=True,
                          timeout=900, check=False)
    assert base.returncode == 0, base.stderr[-3000:]
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(smc_binary, context / "smc")
    shutil.copy(ROOT / "tests" / "engine" / "stand_in_engine.py", context / "stand_in_engine.py")
    (context / "Dockerfile").write_text(
        "FROM smc-base:latest\nCOPY smc /usr/local/bin/\nCOPY stand_in_engine.py /opt/engine/\n"
        'ENV SMC_ENGINE_COMMAND="smc python /opt/engine/stand_in_engine.py --port 8000" '
        "SMC_ENGINE_URL=http://127.0.0.1:8000 SMC_ENGINE_ADAPTERS=vllm\n"
        'ENTRYPOINT ["smc"]\n')
    built = docker("build", "-q", "-t", IMAGE, str(context), timeout=300)
    assert built.returncode == 0, built.stderr
    model = tmp_path / "model"
    (model / "pack" / "fr").mkdir(parents=True)
    (model / "pack" / "fr" / "adapter_config.json").write_text('{"r": 8}')
    with tarfile.open(model / "fr.tar.gz", "w:gz") as tar:
        tar.add(model / "pack" / "fr", arcname="fr")
    model.chmod(0o755)
    result, box = containers(IMAGE, "serve", docker_args=["-v", f"{model}:/opt/ml/model:ro"],
                             detach=True, publish=True)
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    assert _call(box.port, "POST", "/adapters", {"name": "fr", "src": "fr.tar.gz"}) == (200, b"Adapter fr registered")
    status, body = _call(box.port, "POST", "/invocations", {"inputs": "bonjour"},
                         {"X-Amzn-SageMaker-Adapter-Identifier": "fr"})
    assert status == 200 and json.loads(body)["model"] == "fr", body
    status, body = _call(box.port, "POST", "/invocations", {"inputs": "x"},
                         {"X-Amzn-SageMaker-Adapter-Identifier": "de"})
    assert status == 404 and b"'de'" in body
    assert _call(box.port, "DELETE", "/adapters/fr") == (200, b"Adapter fr unregistered")
    assert _call(box.port, "GET", "/adapters") == (200, b'{"adapters": []}')
