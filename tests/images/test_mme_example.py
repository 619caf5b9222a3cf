"""examples/mme in Docker: an image with SAGEMAKER_MULTI_MODEL=true serving two models through
the /models API (one with the image's handler, one with its own code/inference.py), and
`smc doctor --image` accepting it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.images.conftest import BUILD_TIMEOUT_S

IMAGE = "smc-example-mme:test"


@pytest.fixture(scope="module")
def mme_image(docker_engine, smc_binary) -> str:
    result = subprocess.run(["bash", str(ROOT / "build" / "images.sh"), "mme"],
                            env={**os.environ, "SMC_BINARY": str(smc_binary), "SMC_IMAGE_TAG": "test"},
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if result.returncode != 0:
        pytest.fail(f"build/images.sh mme failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return IMAGE


def call(port: int, method: str, path: str, body: object = None, content_type: str = "application/json"):
    data = body if isinstance(body, (bytes, type(None))) else (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_two_models_load_answer_and_unload_in_the_image(mme_image, containers, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "examples" / "mme" / "models", models)
    for path in [models, *models.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    result, box = containers(mme_image, "serve", detach=True, publish=True,
                             docker_args=["-v", f"{models}:/opt/ml/models:ro"])
    assert result.returncode == 0, result.stderr
    box.wait_ready()  # /ping is 200 before any model is loaded
    assert call(box.port, "GET", "/models") == (200, {"models": []})
    for name in ("linear", "shouter"):
        status, body = call(box.port, "POST", "/models", {"model_name": name, "url": f"/opt/ml/models/{name}/model"})
        assert status == 200, body
    status, body = call(box.port, "POST", "/models/linear/invoke", {"instances": [[1, 2, 3]]})
    assert status == 200 and body == {"predictions": [pytest.approx(0.5 - 2.5 + 6.0 + 0.1)]}
    status, body = call(box.port, "POST", "/models/shouter/invoke", "world", "text/plain")
    assert (status, body) == (200, {"model": "shouter", "answer": "HELLO WORLD"})
    assert [m["modelName"] for m in call(box.port, "GET", "/models")[1]["models"]] == ["linear", "shouter"]
    assert call(box.port, "DELETE", "/models/linear")[0] == 200
    assert call(box.port, "POST", "/models/linear/invoke", {"instances": [[1, 2, 3]]})[0] == 404
    status, body = call(box.port, "POST", "/models", {"model_name": "etc", "url": "/etc"})
    assert status == 400 and "outside the model directories" in body["message"]


def test_doctor_accepts_the_mme_image(mme_image, smc_binary):
    result = subprocess.run([str(smc_binary), "doctor", "--json", "--image", mme_image, "serve"],
                            capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    found = {f["check"]: f for f in report["findings"]}
    assert found["multi_model"]["status"] == "ok"
    assert found["handler"]["status"] == "ok" and "/opt/ml/code/inference.py" in found["handler"]["message"]
