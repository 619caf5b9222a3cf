"""The /models API of the frozen `smc serve` with SAGEMAKER_MULTI_MODEL=true (real nginx, gunicorn)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.serve.mme_helpers import load, make_model, mme  # noqa: F401  (fixture)

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons


def _invoke(server, name, body, content_type="application/json", accept=None, headers=None):
    all_headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {}), **(headers or {})}
    return server.request("POST", f"/models/{name}/invoke", body, all_headers)


def test_models_api_round_trip(mme):
    server = mme()
    base = server.base
    assert server.request("GET", "/ping").status == 200  # no model loaded yet: still healthy
    assert server.request("GET", "/models").json() == {"models": []}
    url_a = make_model(base, "a", (1, 2, 3), 1)
    url_b = make_model(base, "b", (0.5, 0.5, 0.5), 0)
    resp = load(server, "a", url_a)
    assert resp.status == 200, resp.body
    assert resp.json() == {"status": 'Model "a" loaded'}
    assert load(server, "b", url_b).status == 200
    dup = load(server, "a", url_a)
    assert dup.status == 409 and dup.json()["message"] == "Model a is already registered."
    listing = server.request("GET", "/models").json()
    assert listing == {"models": [{"modelName": "a", "modelUrl": url_a}, {"modelName": "b", "modelUrl": url_b}]}
    assert server.request("GET", "/models/b").json() == {"modelName": "b", "modelUrl": url_b}
    csv = _invoke(server, "a", "1,2,3\n4,5,6\n", "text/csv", "text/csv")
    assert (csv.status, csv.headers["content-type"], csv.body) == (200, "text/csv", b"15.0\n33.0\n")
    js = _invoke(server, "b", json.dumps({"instances": [[2, 2, 2]]}), headers={"X-Amzn-SageMaker-Target-Model": "b.tar.gz"})
    assert js.status == 200 and js.json() == {"model": "b", "predictions": [3.0]}
    assert js.headers.get("x-amzn-sagemaker-inference-id")
    assert server.request("DELETE", "/models/a").json() == {"status": 'Model "a" unregistered'}
    gone = _invoke(server, "a", "1,2,3\n", "text/csv")
    assert gone.status == 404 and gone.json()["message"] == "Model not found: a"
    assert server.request("DELETE", "/models/a").status == 404
    assert server.request("GET", "/models/a").status == 404
    assert server.request("GET", "/models").json() == {"models": [{"modelName": "b", "modelUrl": url_b}]}


def test_invoke_errors_and_target_model_logging(mme):
    server = mme()
    load(server, "m", make_model(server.base, "m"))
    bad = _invoke(server, "m", "png?", "image/png", headers={"X-Amzn-SageMaker-Target-Model": "m.tar.gz",
                                                                 "X-Amzn-SageMaker-Inference-Id": "req-77"})
    assert bad.status == 415 and bad.headers["content-type"] == "application/json"
    record = server.wait_event("invocation_rejected", inference_id="req-77")
    assert record["target_model"] == "m.tar.gz" and record["model"] == "m"
    access = server.wait_event("request", inference_id="req-77")  # nginx's access line
    assert access["target_model"] == "m.tar.gz" and access["path"] == "/models/m/invoke"
    assert server.request("GET", "/models/m/invoke").status == 405
    assert server.request("POST", "/invocations", "1,2,3", {"Content-Type": "text/csv"}).status == 400


def test_every_worker_serves_every_model_with_its_own_code(mme):
    server = mme(workers=2)
    for name, helper in (("x", "helper-x"), ("y", "helper-y")):
        assert load(server, name, make_model(server.base, name, own_code=helper)).status == 200
        # model_fn ran once in each worker: before the 200, or for a worker still booting when the
        # load came, at its boot (before its first request)
        loads = server.base / "models" / name / "model" / "loads.txt"
        deadline = time.monotonic() + 15
        while len(loads.read_text().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(loads.read_text().split()) == 2

    def call(i):
        name = "xy"[i % 2]
        return _invoke(server, name, "[1]").json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(64)))
    assert {a["pid"] for a in answers if a["model"] == "x"} == {a["pid"] for a in answers if a["model"] == "y"}
    assert len({a["pid"] for a in answers}) == 2  # both workers answered
    for answer in answers:
        assert answer["helper"] == f"helper-{answer['model']}"  # each model's own sibling module
        assert answer["loads_here"] == [answer["model"]]  # each model's inference.py is its own module
        assert answer["model_dir"].endswith(f"/{answer['model']}/model")


def test_paging(mme):
    server = mme(workers=1)
    for name in ("c", "a", "b"):
        assert load(server, name, make_model(server.base, name)).status == 200
    first = server.request("GET", "/models?max_results=2").json()
    assert [m["modelName"] for m in first["models"]] == ["a", "b"] and first["nextPageToken"] == "2"
    rest = server.request("GET", f"/models?max_results=2&next_page_token={first['nextPageToken']}").json()
    assert [m["modelName"] for m in rest["models"]] == ["c"] and "nextPageToken" not in rest
    assert server.request("GET", "/models?max_results=x").status == 400


def test_models_api_is_absent_without_multi_model(echo_server):
    assert echo_server.request("GET", "/models").status == 404
    assert echo_server.request("POST", "/models", "{}", {"Content-Type": "application/json"}).status == 404


def test_invoke_has_the_timeout_and_payload_limit_of_invocations(mme):
    server = mme(env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}, workers=1)
    model = server.base / "models" / "slow" / "model"
    (model / "code").mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"0")
    (model / "code" / "inference.py").write_text(
        "import time\n\ndef model_fn(d):\n    return 1\n\n"
        "def predict_fn(data, model):\n    time.sleep(float(data))\n    return data\n")
    assert load(server, "slow", str(model)).status == 200
    assert _invoke(server, "slow", "0.01").status == 200
    late = _invoke(server, "slow", "3")
    assert late.status == 504 and "SAGEMAKER_MODEL_SERVER_TIMEOUT" in late.json()["message"]
    big = _invoke(server, "slow", "1" * (1024 * 1024 + 1))
    assert big.status == 413
    assert _invoke(server, "slow", "0.01").status == 200  # the worker survived both


def test_a_model_name_that_loads_is_usable_in_every_route(mme):
    """Names are UTF-8 in paths, percent-encoded or not (issue 24 item 12): a Unicode name used to
    load (200), then every route read its path as Latin-1, so it could never be invoked,
    described or unloaded, and its memory was never reclaimed."""
    from urllib.parse import quote

    server = mme()
    for name in ("模型-ü", "with space", "q?mark#hash%"):
        url = make_model(server.base, name, (1, 1, 1), 0)
        assert load(server, name, url).status == 200
        path = "/models/" + quote(name, safe="")
        answer = server.request("POST", path + "/invoke", "1,2,3\n", {"Content-Type": "text/csv", "Accept": "text/csv"})
        assert (answer.status, answer.body) == (200, b"6.0\n"), (name, answer.body)
        assert server.request("GET", path).json() == {"modelName": name, "modelUrl": url}
        assert server.request("DELETE", path).status == 200, name
        assert server.request("GET", path).status == 404
    assert server.request("GET", "/models").json() == {"models": []}
    lone = load(server, "\ud800", make_model(server.base, "x"))
    assert lone.status == 400 and "UTF-8" in lone.json()["message"]
