"""Dynamic batching (SMC_BATCH_SIZE) and Batch Transform's multi-record bodies, against the frozen
binary with real nginx and gunicorn (docs/serve.md, "Dynamic batching" and "Batch Transform")."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import free_port
from tests.serve.conftest import request

pytestmark = pytest.mark.both_pythons

ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}


def _together(server, bodies, timeout=20):
    """Send every body at once (one connection each); the responses in the same order."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: server.invoke(body, timeout=timeout), bodies))


def test_concurrent_requests_run_as_one_batch(start_server):
    server = start_server("batching", {**ONE_WORKER, "SMC_BATCH_SIZE": "8", "SMC_BATCH_DELAY_MS": "300"})
    answers = _together(server, [{"value": i} for i in range(8)])
    assert [a.status for a in answers] == [200] * 8
    for i, answer in enumerate(answers):
        assert answer.json()["echo"] == {"value": i}  # each request gets its own prediction
    assert max(a.json()["batch_size"] for a in answers) >= 4, [a.json() for a in answers]
    assert server.events("batching_on")[0]["batch_size"] == 8


def test_torchserve_names_are_aliases(start_server):
    server = start_server("batching", {**ONE_WORKER, "SAGEMAKER_TS_BATCH_SIZE": "4",
                                       "SAGEMAKER_TS_MAX_BATCH_DELAY": "300"})
    answers = _together(server, [{"value": i} for i in range(4)])
    assert [a.status for a in answers] == [200] * 4
    assert max(a.json()["batch_size"] for a in answers) >= 2
    event = server.events("batching_on")[0]
    assert (event["batch_size"], event["batch_delay_ms"]) == (4, 300.0)


def test_per_request_outcomes(start_server):
    server = start_server("batching", {**ONE_WORKER, "SMC_BATCH_SIZE": "4", "SMC_BATCH_DELAY_MS": "400"})
    # An exception object in the returned list fails only its request.
    answers = _together(server, [{"value": 0}, {"fail": "this one"}, {"value": 2}, {"value": 3}])
    assert [a.status for a in answers] == [200, 500, 200, 200]
    assert answers[1].json()["message"] == "batch_predict_fn raised ValueError: cannot predict this one"
    assert answers[0].json()["batch_size"] == 4
    # input_fn raising never reaches the batch: 400 alone, the others are a batch of three.
    answers = _together(server, [{"value": 0}, {"bad_input": True}, {"value": 2}, {"value": 3}])
    assert [a.status for a in answers] == [200, 400, 200, 200]
    assert "bad_input was set" in answers[1].json()["message"]
    assert {answers[i].json()["batch_size"] for i in (0, 2, 3)} == {3}
    # A list of the wrong length fails the whole batch, naming both lengths.
    answers = _together(server, [{"value": 0}, {"short": True}, {"value": 2}, {"value": 3}])
    assert [a.status for a in answers] == [500] * 4
    assert answers[0].json()["message"] == ("batch_predict_fn returned 3 predictions for 4 inputs; "
                                            "return one prediction per input, in order")
    # The worker goes on serving.
    assert server.invoke({"value": 9}).status == 200


def test_timeout_is_per_request(start_server):
    server = start_server("batching", {**ONE_WORKER, "SMC_BATCH_SIZE": "2", "SMC_BATCH_DELAY_MS": "1",
                                       "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"})
    started = time.monotonic()
    slow = server.invoke({"sleep": 2.5}, timeout=10)
    assert slow.status == 504, slow.body
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in slow.json()["message"]
    assert time.monotonic() - started < 2.0
    time.sleep(2)  # the slow batch ends; the worker then answers again
    assert server.invoke({"value": 1}).status == 200


def test_drain_waits_for_the_batch_in_flight(start_server):
    server = start_server("batching", {**ONE_WORKER, "SMC_BATCH_SIZE": "4", "SMC_BATCH_DELAY_MS": "50"})
    results = []

    def send(i):
        results.append(server.invoke({"value": i, "sleep": 1.5}, timeout=15))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the batch runs
    server.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(15)
    assert [r.status for r in results] == [200] * 3, [r.body for r in results]
    assert server.wait_exit(20) == 0


def test_batching_needs_batch_predict_fn(start_server):
    server = start_server("echo", {**ONE_WORKER, "SMC_BATCH_SIZE": "4"}, wait=False)
    assert server.wait_exit(30) != 0
    failure = server.events("handler_import_failed")[0]
    assert "defines no batch_predict_fn" in failure["error"]
    assert "SMC_BATCH_SIZE" in failure["hint"]


def test_batch_predict_fn_alone_without_batching(start_server):
    server = start_server("batching", ONE_WORKER)
    answer = server.invoke({"value": 1})
    assert answer.status == 200
    assert answer.json()["batch_size"] == 1


def test_batch_metrics(start_server):
    port = free_port()
    server = start_server("batching", {**ONE_WORKER, "SMC_BATCH_SIZE": "4", "SMC_BATCH_DELAY_MS": "300",
                                       "SMC_METRICS_PORT": str(port)})
    assert [a.status for a in _together(server, [{"value": i} for i in range(4)])] == [200] * 4
    text = request(port, "GET", "/metrics").body.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples["smc_batch_size_count"]) >= 1
    assert float(samples["smc_batch_size_sum"]) == 4
    assert float(samples["smc_batch_wait_seconds_count"]) == 4
    assert float(samples['smc_invocations_total{status="200"}']) == 4


# Batch Transform: MultiRecord + SplitType=Line bodies give one output line per input line.

def test_json_lines_with_the_default_codecs(start_server):
    server = start_server("echo")
    body = "".join(json.dumps({"x": i}) + "\n" for i in range(5))
    for kind in ("application/jsonlines", "application/x-jsonlines"):
        answer = server.invoke(body, content_type=kind, accept=kind)
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == kind
        assert answer.body.decode().splitlines() == [json.dumps({"x": i}) for i in range(5)]
    bad = server.invoke('{"x": 1}\n{"x": \n', content_type="application/jsonlines")
    assert bad.status == 400
    assert "line 2" in bad.json()["message"]


def test_csv_records_give_one_line_each(start_server):
    server = start_server("echo")
    answer = server.invoke("1,2\n3,4\n5,6\n", content_type="text/csv", accept="text/csv")
    assert answer.status == 200
    assert answer.body.decode().splitlines() == ["1,2", "3,4", "5,6"]


def test_multi_record_json_body_to_a_json_handler(start_server):
    server = start_server("json_records")
    body = "".join(json.dumps({"x": i}) + "\n" for i in range(4))
    for kind in ("application/json", "application/jsonlines"):
        answer = server.invoke(body, content_type=kind, accept="application/jsonlines")
        assert answer.status == 200, answer.body
        assert answer.body.decode().splitlines() == [json.dumps({"y": 2 * i}) for i in range(4)]
    # One document spread over lines is still one request.
    assert server.invoke('{\n "x": 5\n}\n').json() == {"y": 10}
    failing = server.invoke('{"x": 1}\n{"z": 2}\n{"x": 3}\n')
    assert failing.status == 500
    assert failing.json()["message"].startswith("record at line 2: predict_fn raised KeyError")
    malformed = server.invoke('{"x": 1}\n{"x": 2}\n{"x": \n', content_type="application/jsonlines")
    assert malformed.status == 400
    assert malformed.json()["message"].startswith("record at line 3: input_fn rejected the input")
