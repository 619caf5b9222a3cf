"""Metrics against the frozen binary: Prometheus /metrics on SMC_METRICS_PORT and CloudWatch EMF
lines on stdout (SMC_METRICS=emf), summed over gunicorn workers, across a worker restart."""

from __future__ import annotations

import json
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ROOT, free_port
from tests.serve.conftest import request

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons


def _scrape(port: int) -> dict[str, float]:
    response = request(port, "GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _wait_for(check, timeout_s: float = 10):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_prometheus_counts_statuses_latency_and_restarts_across_workers(start_server):
    metrics_port = free_port()
    server = start_server("echo", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SMC_METRICS_PORT": str(metrics_port)})
    # /ping is 200 once one worker holds the model; on a loaded machine the second may still be
    # loading it, and would then see none of the requests below.
    both = _wait_for(lambda: (s := _scrape(metrics_port))["smc_workers"] == 2
                     and s["smc_model_load_seconds_count"] == 2)
    assert both, _scrape(metrics_port)
    with ThreadPoolExecutor(8) as pool:  # concurrent keep-alive-less clients spread over both workers
        results = list(pool.map(lambda i: server.invoke({"i": i}).status, range(200)))
    assert results == [200] * 200
    assert server.invoke({"crash": "boom"}).status == 500
    assert server.invoke("not json{", content_type="application/json").status in (400, 500)
    assert server.request("GET", "/nothing-here").status == 404  # not an invocation: not counted

    samples = _scrape(metrics_port)
    assert samples['smc_invocations_total{status="200"}'] == 200
    assert samples['smc_invocations_total{status="500"}'] >= 1
    total = sum(v for k, v in samples.items() if k.startswith("smc_invocations_total"))
    assert total == 202
    assert samples["smc_invocation_duration_seconds_count"] == 202
    assert samples['smc_invocation_duration_seconds_bucket{le="+Inf"}'] == 202
    assert 0 < samples["smc_invocation_duration_seconds_sum"] < 202 * 0.5
    assert samples["smc_invocations_in_flight"] == 0
    assert samples["smc_workers"] == 2
    assert samples["smc_worker_restarts_total"] == 0
    assert samples["smc_model_load_seconds_count"] == 2

    # A worker killed mid-request: its counts stay (counters never go down), a restart is counted.
    assert server.invoke({"kill": True}).status == 502
    # The restart is counted when the worker dies; its replacement's model load a moment later.
    after = _wait_for(lambda: (s := _scrape(metrics_port))["smc_worker_restarts_total"] == 1
                      and s.get("smc_model_load_seconds_count") == 3 and s)
    assert after, _scrape(metrics_port)
    assert after['smc_invocations_total{status="200"}'] == 200
    assert after["smc_invocations_in_flight"] == 0
    assert after["smc_model_load_seconds_count"] == 3

    assert request(metrics_port, "GET", "/other").status == 404
    assert server.stop() == 0


def test_emf_lines_on_stdout_carry_the_interval_counts(start_server):
    server = start_server("echo", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMC_METRICS": "emf",
                                       "SMC_METRICS_INTERVAL_SECONDS": "0.5", "SMC_METRICS_NAMESPACE": "MyModel"})
    for i in range(10):
        assert server.invoke({"i": i}).status == 200
    assert server.invoke({"crash": "x"}).status == 500
    time.sleep(1.2)
    assert server.stop() == 0
    lines = [json.loads(line) for line in server.out_path.read_text().splitlines() if '"_aws"' in line]
    assert len(lines) >= 2
    for doc in lines:
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "MyModel" and directive["Dimensions"] == [[]]
        for metric in directive["Metrics"]:
            assert isinstance(doc[metric["Name"]], (int, float)), metric  # every declared metric has a value
        assert isinstance(doc["_aws"]["Timestamp"], int)
    assert sum(doc["Invocations"] for doc in lines) == 11  # intervals add up: nothing counted twice
    assert sum(doc["Invocation5XX"] for doc in lines) == 1
    busy = next(doc for doc in lines if doc["Invocations"])
    assert busy["InvocationLatencyP50"] > 0 and busy["InvocationLatencyAvg"] > 0
    assert any("ModelLoadTime" in doc for doc in lines)


def _serve_app_with_metrics(start_server, opt_ml, fixture: str, setting: str, workers: int):
    """An app from tests/fixtures (SMC_WSGI_APP or SMC_ASGI_APP) with Prometheus metrics on."""
    source = ROOT / "tests" / "fixtures" / fixture
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, code / source.name)
    metrics_port = free_port()
    server = start_server(None, env={setting: f"{source.stem}:app", "SMC_METRICS_PORT": str(metrics_port),
                                     "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)})
    return server, metrics_port


def test_time_to_first_byte_of_a_streamed_answer(start_server, opt_ml):
    server, metrics_port = _serve_app_with_metrics(start_server, opt_ml, "handlers/streaming_app.py", "SMC_WSGI_APP", 1)
    for _ in range(3):
        assert server.invoke(b"x").body == b"first,rest"
    samples = _scrape(metrics_port)
    assert samples["smc_stream_first_byte_seconds_count"] == 3
    assert samples['smc_stream_first_byte_seconds_bucket{le="0.025"}'] == 0  # first chunk after >= 50 ms
    assert samples['smc_stream_first_byte_seconds_bucket{le="2.5"}'] == 3
    assert samples['smc_invocation_duration_seconds_bucket{le="0.1"}'] == 0  # whole answer after >= 150 ms
    assert samples["smc_invocation_duration_seconds_count"] == 3
    # the first byte comes about 100 ms before the end of each answer
    assert samples["smc_invocation_duration_seconds_sum"] - samples["smc_stream_first_byte_seconds_sum"] >= 3 * 0.09


@pytest.mark.parametrize("env, message", [
    ({"SMC_METRICS": "statsd"}, "SMC_METRICS='statsd' is not one of off, emf"),
    ({"SMC_METRICS_PORT": "70000"}, "SMC_METRICS_PORT=70000 is not a TCP port"),
])
def test_bad_metrics_settings_are_configuration_errors(start_server, env, message):
    server = start_server("echo", env=env, wait=False)
    assert server.wait_exit(30) == 5
    assert message in server.output()


def test_metrics_port_taken_is_a_start_up_error(start_server):
    import socket

    with socket.socket() as taken:
        port = free_port()
        taken.bind(("0.0.0.0", port))
        taken.listen()
        server = start_server("echo", env={"SMC_METRICS_PORT": str(port)}, wait=False)
        assert server.wait_exit(30) == 3
    assert re.search(rf"metrics port {port} cannot be opened", server.output())


def test_asgi_apps_are_counted_too(start_server, opt_ml):
    server, metrics_port = _serve_app_with_metrics(start_server, opt_ml, "apps/asgi_stream.py", "SMC_ASGI_APP", 2)
    for _ in range(5):
        assert server.invoke({"mode": "size"}).status == 200
    streamed = server.invoke({"n": 3, "gap_s": 0.1})
    assert streamed.status == 200 and len(streamed.body.splitlines()) == 3
    assert server.request("GET", "/elsewhere").status == 200  # not an invocation: not counted
    samples = _wait_for(lambda: (s := _scrape(metrics_port))["smc_invocation_duration_seconds_count"] == 6 and s)
    assert samples, _scrape(metrics_port)
    assert samples['smc_invocations_total{status="200"}'] == 6
    assert samples["smc_stream_first_byte_seconds_count"] == 1  # only the streamed answer
    assert samples["smc_invocations_in_flight"] == 0
    assert samples["smc_invocation_duration_seconds_sum"] >= 0.2  # the stream's two gaps


def test_an_idle_connection_does_not_delay_a_scrape_and_errors_are_json(start_server):
    """One idle connection to the metrics port made every scrape wait its 10 s timeout (one
    connection at a time), and http.server's 400/414/501 answers were HTML (issue 24 item 14)."""
    import socket

    metrics_port = free_port()
    server = start_server("echo", env={"SMC_METRICS_PORT": str(metrics_port)})
    assert server.invoke("1").status == 200
    with socket.create_connection(("127.0.0.1", metrics_port)) as idle:
        idle.sendall(b"GET /metr")  # a request line that never ends
        started = time.monotonic()
        _scrape(metrics_port)
        assert time.monotonic() - started < 2
    for method, path, status in (("PUT", "/metrics", 501), ("GET", "/" + "m" * 70000, 414)):
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as conn:
            conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.0 {status}".encode()) or head.startswith(f"HTTP/1.1 {status}".encode()), head
        assert b"application/json" in head, head
        assert json.loads(body)["status"] == status, body
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as conn:
        conn.sendall(b"GET /metrics extra HTTP/1.1\r\n\r\n")  # one word too many
        answer = conn.recv(65536)
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b"application/json" in answer, answer
