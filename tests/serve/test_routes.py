"""The HTTP contract of the frozen `smc serve` (real nginx + gunicorn): routes, negotiation, errors."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from tests.conftest import ROOT
from tests.serve.conftest import DEMO_MODEL, Response, install_handler

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons


def test_ping_is_200_with_empty_body_when_model_loaded(echo_server):
    resp = echo_server.request("GET", "/ping")
    assert resp.status == 200
    assert resp.body == b""


def test_unknown_path_is_404_json(echo_server):
    resp = echo_server.request("GET", "/nope")
    assert resp.status == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["status"] == 404


def test_wrong_method_is_405_json_with_allow(echo_server):
    for method, path in (("GET", "/invocations"), ("POST", "/ping"), ("DELETE", "/execution-parameters")):
        resp = echo_server.request(method, path, body=b"" if method != "GET" else None)
        assert resp.status == 405, (method, path, resp.body)
        assert resp.json()["status"] == 405
        assert resp.headers.get("allow")


def test_json_round_trip_with_default_codecs(echo_server):
    resp = echo_server.invoke({"instances": [[1, 2, 3]]})
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"instances": [[1, 2, 3]]}


def test_content_type_charset_is_tolerated(echo_server):
    resp = echo_server.invoke('{"a": 1}', content_type="application/json; charset=utf-8")
    assert resp.status == 200, resp.body
    assert resp.json() == {"a": 1}


def test_csv_request_decodes_rows_of_numbers(echo_server):
    resp = echo_server.invoke("1,2,3\n4,5,6\n", content_type="text/csv")
    assert resp.json() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_accept_q_values_choose_the_response_type(echo_server):
    resp = echo_server.invoke([[1, 2]], accept="application/json;q=0.2, text/csv;q=0.9")
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/csv"
    assert resp.body == b"1,2\n"


def test_accept_star_uses_default_accept(echo_server):
    resp = echo_server.invoke([1], accept="*/*")
    assert resp.headers["content-type"] == "application/json"


def test_unacceptable_accept_is_406(echo_server):
    resp = echo_server.invoke([1], accept="image/png")
    assert resp.status == 406
    assert "image/png" in resp.json()["message"]


def test_unsupported_content_type_is_415(echo_server):
    resp = echo_server.invoke(b"\x89PNG", content_type="image/png")
    assert resp.status == 415
    assert resp.json()["error"] == "Unsupported Media Type"


def test_malformed_json_is_400_naming_the_position(echo_server):
    resp = echo_server.invoke('{"a": ', content_type="application/json")
    assert resp.status == 400
    assert "malformed JSON" in resp.json()["message"]


def test_oversize_body_is_413_json(echo_server):
    resp = echo_server.invoke(b"0" * (1024 * 1024 + 10), content_type="text/csv")
    assert resp.status == 413
    assert resp.json()["status"] == 413


def test_handler_crash_is_500_without_traceback_but_logged(echo_server):
    resp = echo_server.invoke({"crash": "boom-123"})
    assert resp.status == 500
    body = resp.json()
    assert "RuntimeError: boom-123" in body["message"]
    assert "Traceback" not in resp.body.decode()
    failure = echo_server.wait_event("invocation_failed", inference_id=resp.headers["x-amzn-sagemaker-inference-id"])
    assert "Traceback" in failure["exception"] and "boom-123" in failure["exception"]


def test_unsupported_prediction_type_is_500(echo_server):
    resp = echo_server.invoke({"return": "set"})
    assert resp.status == 500
    assert "not JSON serializable" in resp.json()["message"]


def test_headers_reach_handler_and_custom_attributes_come_back(echo_server):
    resp = echo_server.invoke({"headers": True}, accept="application/json", headers={
        "X-Amzn-SageMaker-Custom-Attributes": "trace=abc",
        "X-Amzn-SageMaker-Target-Variant": "blue",
        "X-Amzn-SageMaker-Inference-Id": "my-id-42",
    })
    assert resp.status == 200
    seen = resp.json()
    assert seen["inference_id"] == "my-id-42"
    assert seen["headers"]["x-amzn-sagemaker-custom-attributes"] == "trace=abc"
    assert seen["headers"]["x-amzn-sagemaker-target-variant"] == "blue"
    assert seen["headers"]["accept"] == "application/json"
    assert resp.headers["x-amzn-sagemaker-custom-attributes"] == "seen=trace=abc"
    assert resp.headers["x-amzn-sagemaker-inference-id"] == "my-id-42"


def test_inference_id_is_generated_and_on_every_request_log_line(echo_server):
    resp = echo_server.invoke({"x": 1})
    inference_id = resp.headers["x-amzn-sagemaker-inference-id"]
    assert len(inference_id) == 32
    user_line = echo_server.wait_event("predicting", inference_id=inference_id)
    assert user_line["component"] == "user"
    access = echo_server.wait_event("request", inference_id=inference_id)
    assert access["component"] == "nginx" and access["status"] == 200 and access["path"] == "/invocations"


def test_every_log_line_is_json_and_ping_is_not_access_logged(echo_server):
    for _ in range(3):
        echo_server.request("GET", "/ping")
    echo_server.invoke({"x": 2})
    time.sleep(0.3)
    records = echo_server.lines()  # asserts every line parses
    assert all({"ts", "level", "component", "event"} <= set(r) for r in records), records[:3]
    paths = [r.get("path") for r in records if r.get("event") == "request"]
    assert "/invocations" in paths and "/ping" not in paths
    config = echo_server.events("serve_config")
    assert len(config) == 1 and config[0]["workers"] == 2 and config[0]["timeout_s"] == 2


def test_slow_handler_past_timeout_is_504_and_worker_survives(echo_server):
    started = time.monotonic()
    resp = echo_server.invoke({"sleep": 4}, timeout=15)
    elapsed = time.monotonic() - started
    assert resp.status == 504
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in resp.json()["message"]
    assert elapsed < 3.5
    assert echo_server.invoke({"after": 1}).status == 200


def test_ping_answers_while_every_worker_is_busy(echo_server):
    results: list[Response] = []
    busy = [threading.Thread(target=lambda: results.append(echo_server.invoke({"sleep": 1.5}, timeout=10)))
            for _ in range(4)]
    for thread in busy:
        thread.start()
    time.sleep(0.4)  # both workers are now inside predict_fn, two more requests queue behind them
    started = time.monotonic()
    assert echo_server.request("GET", "/ping", timeout=2).status == 200
    assert time.monotonic() - started < 0.5
    for thread in busy:
        thread.join()
    assert [r.status for r in results] == [200] * 4


def test_execution_parameters_default_from_config(echo_server):
    resp = echo_server.request("GET", "/execution-parameters")
    assert resp.status == 200
    assert resp.json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_model_loaded_once_per_worker_not_per_request(echo_server):
    for _ in range(5):
        echo_server.invoke({"x": 1})
    loads = (echo_server.base / "model" / "loads.txt").read_text().split()
    assert len(loads) == 2, loads
    assert echo_server.invoke({"model": True}).json()["context_model_dir"] == str(echo_server.base / "model")


def test_execution_parameters_from_env_both_spellings(start_server):
    server = start_server("exec_params", env={"SAGEMAKER_BATCH_STRATEGY": "MultiRecord"})
    assert server.request("GET", "/execution-parameters").json() == {
        "MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 6}
    other = start_server("example", env={"SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
                                        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "7",
                                        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"})
    assert other.request("GET", "/execution-parameters").json() == {
        "MaxConcurrentTransforms": 7, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 20}
    big = b"1,2,3\n" * (8 * 1024 * 1024 // 6)  # 8 MiB: over the real-time limit, inside the batch one
    resp = other.invoke(big, content_type="text/csv", timeout=60)
    assert resp.status == 200, resp.body[:200]
    assert len(resp.json()["predictions"]) == big.count(b"\n")


def test_example_serves_csv_and_json(start_server):
    server = start_server("example")
    csv_resp = server.invoke("1,2,3\n0,0,0\n", content_type="text/csv", accept="text/csv")
    assert csv_resp.status == 200
    assert csv_resp.headers["content-type"] == "text/csv"
    assert csv_resp.body == b"14.5\n0.5\n"
    json_resp = server.invoke({"instances": [[1, 2, 3]]})
    assert json_resp.json() == {"predictions": [14.5]}
    bare = server.invoke([[1, 1, 1], [2, 2, 2]], accept="application/json")
    assert bare.json() == {"predictions": [6.5, 12.5]}
    malformed_csv = server.invoke("1,2\n", content_type="text/csv")
    assert malformed_csv.status == 400
    assert "row 1 has 2 values" in malformed_csv.json()["message"]
    wrong_type = server.invoke("x", content_type="application/xml")
    assert wrong_type.status == 415
    unacceptable = server.invoke([[1, 2, 3]], accept="image/png")
    assert unacceptable.status == 406


def test_transform_fn_with_context_and_tuple_result(start_server):
    server = start_server("transform")
    resp = server.invoke("[1, 2]", content_type="application/json; charset=utf-8", accept="text/csv, */*;q=0.1")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/vnd.scaled+json"
    assert resp.json() == {"scaled": [2, 4], "accept": "text/csv", "content_type": "application/json"}
    rejected = server.invoke("1,2", content_type="text/csv")
    assert rejected.status == 400
    assert "send JSON" in rejected.json()["message"]


def test_output_fn_returning_unsupported_type_is_500(start_server):
    server = start_server("bad_output")
    resp = server.invoke([1])
    assert resp.status == 500
    assert "output_fn returned int" in resp.json()["message"]


def test_ping_is_503_until_model_loaded_then_200(start_server):
    server = start_server("echo", env={"ECHO_LOAD_DELAY_S": "1.5"}, wait=False)
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:
        status = server.ping()
        if status is not None:
            statuses.append(status)
        if status == 200:
            break
        time.sleep(0.05)
    assert 503 in statuses and statuses[-1] == 200, statuses
    assert set(statuses) == {503, 200}


def test_preload_loads_model_once_before_fork(start_server):
    server = start_server("echo", env={"SMC_PRELOAD_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    pids = {server.invoke({"sleep": 0.01}).json()["pid"] for _ in range(12)}
    loads = (server.base / "model" / "loads.txt").read_text().split()
    assert len(loads) == 1, loads
    assert loads[0] not in pids  # the master loaded it; workers share it



def test_submit_directory_and_program_without_py(start_server, opt_ml):
    import shutil

    from tests.serve.conftest import HANDLERS

    elsewhere = opt_ml / "code"
    shutil.copy(HANDLERS / "transform.py", elsewhere / "scaler.py")
    server = start_server(None, env={"SAGEMAKER_SUBMIT_DIRECTORY": str(elsewhere), "SAGEMAKER_PROGRAM": "scaler"})
    assert server.invoke("[3]").json()["scaled"] == [6]


def test_chunked_request_body_is_accepted(start_server):
    import http.client

    server = start_server("example", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/invocations", body=iter([b"1,2,3\n", b"0,0,0\n"]),
                 headers={"Content-Type": "text/csv", "Accept": "text/csv"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b"14.5\n0.5\n"
    conn.close()


def test_user_print_becomes_a_json_line_at_once(echo_server):
    echo_server.invoke({"print": "hello-from-predict"})
    line = echo_server.wait_event("output", timeout=3, message="hello-from-predict")
    assert line["component"] == "gunicorn" and line["stream"] == "stdout"


def test_program_naming_the_training_script_falls_back_to_inference_py(start_server):
    """An image whose ENV SAGEMAKER_PROGRAM=train.py serves with model/code/inference.py, and says so."""
    server = start_server("example", env={"SAGEMAKER_PROGRAM": "train.py"})
    response = server.invoke("1,2,3\n", content_type="text/csv", accept="application/json")
    assert response.status == 200, response.body
    fallback = server.wait_event("handler_program_fallback")
    assert fallback["requested"] == "train.py" and fallback["using"] == "inference.py"


def test_program_naming_a_training_script_beside_inference_py_in_the_images_code_dir(start_server, opt_ml):
    """The examples' layout: /opt/ml/code holds train.py and inference.py, ENV SAGEMAKER_PROGRAM
    names train.py, model.tar.gz has no code/. Since serve also looks in /opt/ml/code, train.py was
    found there and imported as the handler ('train.py defines no model_fn')."""
    from tests.serve.conftest import install_handler

    install_handler(opt_ml, "echo")
    handler = opt_ml / "model" / "code" / "inference.py"
    (opt_ml / "code" / "inference.py").write_text(handler.read_text())
    (opt_ml / "code" / "train.py").write_text("import sys\nprint('training', sys.argv)\n")
    handler.unlink()
    (opt_ml / "model" / "code").rmdir()
    server = start_server(None, env={"SAGEMAKER_PROGRAM": "train.py"})
    assert server.invoke("1").status == 200
    fallback = server.wait_event("handler_program_fallback")
    assert fallback["requested"] == "train.py" and fallback["using"] == "inference.py"
    assert fallback["code_dir"] == str(opt_ml / "code")


def test_program_that_exists_is_used_as_named(start_server, opt_ml):
    server = start_server("example", env={"SAGEMAKER_PROGRAM": "inference.py"})
    assert server.invoke("1,2,3\n", content_type="text/csv").status == 200
    assert server.events("handler_program_fallback") == []


def test_console_format_renders_children_lines_too(start_server):
    """On a terminal (or SMC_LOG_FORMAT=console) gunicorn's and nginx's relayed lines match smc's own."""
    server = start_server("example", env={"SMC_LOG_FORMAT": "console"})
    assert server.invoke("1,2,3\n", content_type="text/csv").status == 200
    server.stop()
    lines = [line for line in server.output().splitlines() if line.strip() and not line.startswith("---")]
    assert any("component=gunicorn" in line for line in lines)
    assert any("component=nginx" in line and "event" not in line.split()[0] for line in lines)
    assert not [line for line in lines if line.lstrip().startswith("{")]


def _install_byo(opt_ml) -> dict[str, str]:
    """The seed stack's Flask predictor from bench/serve (shaped like the scikit BYO example's), as is."""
    install_handler(opt_ml, "example", DEMO_MODEL)
    shutil.copy(ROOT / "bench" / "serve" / "seed" / "predictor.py", opt_ml / "model" / "code" / "predictor.py")
    return {"BENCH_MODEL_DIR": str(opt_ml / "model")}


def test_byo_flask_app_is_served_unchanged(start_server, opt_ml):
    """SMC_WSGI_APP serves an existing Flask predictor (bundled Flask) behind smc's nginx and supervision."""
    env = _install_byo(opt_ml)
    server = start_server(None, env={**env, "SMC_WSGI_APP": "predictor:app"})
    response = server.invoke("1,2,3\n0,0,0\n", content_type="text/csv")
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    assert [float(v) for v in response.body.split()] == [1 + 4 + 9 + 0.5, 0.5]
    assert server.invoke({"x": 1}).status == 415  # the app's own answer
    assert server.wait_event("wsgi_app_loaded")["app"] == "predictor:app"
    assert server.wait_event("request", path="/invocations", status=200)["inference_id"]


def test_byo_flask_app_with_a_wrong_attribute_fails_to_start_with_exit_4(start_server, opt_ml):
    env = _install_byo(opt_ml)
    server = start_server(None, env={**env, "SMC_WSGI_APP": "predictor:application"}, wait=False)
    assert server.wait_exit() == 4
    assert "has no attribute 'application'" in server.output()
