"""Oracle: the same multi-model sequence against sagemaker-inference 1.10.1 on multi-model-server
(SAGEMAKER_MULTI_MODEL=true, the toolkit's own start_model_server) and against smc; statuses and
bodies must match. Normalised, and listed in docs/multi-model.md as deliberate differences:

1. error bodies: MMS answers {"code", "type", "message"}, smc its one error shape
   {"error", "status", "message"}: the status is compared, and the message where MMS's names the
   model (404 "Model not found: a", 409 "Model a is already registered."); smc's 400/405 messages
   say what to send instead of MMS's generic "please refer to API document";
2. the body of a successful load: MMS says {"status": "Workers scaled"} (its worker pool),
   smc {"status": "Model \\"a\\" loaded"}: the status code is compared;
3. GET /models/{name}: MMS adds its Java worker pool (runtime, minWorkers, batchSize, workers...),
   meaningless for smc: modelName and modelUrl are compared, the keys SageMaker's contract names.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import free_port
from tests.serve import mms_mme
from tests.serve.conftest import Server, request
from tests.serve.mme_helpers import install_image_handler, make_model

JSON = {"Content-Type": "application/json"}


def sequence(port: int, base) -> list[tuple[str, int, object]]:
    url_a, url_b = str(base / "models" / "a" / "model"), str(base / "models" / "b" / "model")

    def call(step, method, path, body=None, headers=None):
        resp = request(port, method, path, body, headers, timeout=60)
        content_type = resp.headers.get("content-type", "")
        try:
            payload = json.loads(resp.body) if resp.body else None
        except ValueError:
            payload = resp.body.decode()
        if isinstance(payload, dict) and resp.status >= 400:
            payload = {"message": payload.get("message") if resp.status in (404, 409) else None}  # difference 1
        elif step.startswith("load") and resp.status == 200:
            payload = "loaded"  # difference 2
        elif step == "describe" and resp.status == 200:
            payload = {k: payload[k] for k in ("modelName", "modelUrl")}  # difference 3
        return (step, resp.status, payload, content_type.split(";")[0] if resp.status < 400 else "")

    return [
        call("list empty", "GET", "/models"),
        call("load a", "POST", "/models", json.dumps({"model_name": "a", "url": url_a}), JSON),
        call("load b", "POST", "/models", json.dumps({"model_name": "b", "url": url_b}), JSON),
        call("load a again", "POST", "/models", json.dumps({"model_name": "a", "url": url_a}), JSON),
        call("list", "GET", "/models"),
        call("list page", "GET", "/models?limit=1"),
        call("describe", "GET", "/models/a"),
        call("invoke csv", "POST", "/models/a/invoke", "1,2,3\n4,5,6\n", {"Content-Type": "text/csv", "Accept": "text/csv"}),
        call("invoke json", "POST", "/models/b/invoke", json.dumps({"instances": [[1, 2, 3]]}),
             {**JSON, "Accept": "application/json", "X-Amzn-SageMaker-Target-Model": "b.tar.gz"}),
        call("invoke json a", "POST", "/models/a/invoke", json.dumps([[1, 1, 1]]), JSON),
        call("unload a", "DELETE", "/models/a"),
        call("invoke unloaded", "POST", "/models/a/invoke", "1,2,3\n", {"Content-Type": "text/csv"}),
        call("unload a twice", "DELETE", "/models/a"),
        call("describe unloaded", "GET", "/models/a"),
        call("load missing url", "POST", "/models", json.dumps({"model_name": "c"}), JSON),
        call("list after", "GET", "/models"),
        call("wrong method", "PUT", "/models"),
    ]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("mme-oracle") / "opt_ml"
    make_model(base, "a", (1, 2, 3), 1)
    make_model(base, "b", (0.5, 0.5, 0.5), 0)
    install_image_handler(base)  # models/code/inference.py: where the toolkit's MME mode imports it from
    return base


def test_smc_matches_sagemaker_inference_on_mms(smc_binary, tree, tmp_path):
    mms_base = tmp_path / "mms"
    shutil.copytree(tree, mms_base / "opt_ml")
    smc_base = tmp_path / "smc"
    shutil.copytree(tree, smc_base / "opt_ml")
    # the same absolute urls on both sides: each server gets its own copy of the tree at equal depth
    mms_port = mms_mme.free_low_port()
    proc = mms_mme.start(mms_base / "opt_ml", mms_port, 2, tmp_path / "mms.log")
    try:
        mms_mme.wait_ping(mms_port, proc)
        expected = sequence(mms_port, mms_base / "opt_ml")
    except BaseException:
        print((tmp_path / "mms.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        mms_mme.stop(proc)
    server = Server(smc_binary, smc_base / "opt_ml", free_port(), {"SAGEMAKER_MULTI_MODEL": "true",
                                                                   "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    try:
        server.wait_ready()
        actual = sequence(server.port, smc_base / "opt_ml")
    finally:
        server.stop()
    normalised = [_same_root(row, str(mms_base), str(smc_base)) for row in expected]
    mismatches = [(e, a) for e, a in zip(normalised, actual) if e != a]
    assert not mismatches, "\n".join(f"MMS {e}\nsmc {a}" for e, a in mismatches)


def _same_root(row, mms_root: str, smc_root: str):
    return tuple(json.loads(json.dumps(item).replace(mms_root, smc_root)) if not isinstance(item, (str, int)) else
                 (item.replace(mms_root, smc_root) if isinstance(item, str) else item) for item in row)
