"""SMC_ASGI_APP: an ASGI app under uvicorn behind smc's nginx and supervision; streaming and WebSocket."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time

import pytest
import wsproto
import wsproto.events

from tests.conftest import ROOT
from tests.serve.streamclient import stream

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons

APPS = ROOT / "tests" / "fixtures" / "apps"


def _install(opt_ml) -> None:
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(APPS / "asgi_stream.py", code / "asgi_stream.py")


def test_asgi_app_streams_through_nginx_after_lifespan_startup(start_server, opt_ml):
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    result = stream(server.port, {"n": 4, "gap_s": 0.3}, {"X-Amzn-SageMaker-Inference-Id": "asgi-1"})
    assert result.status == 200 and result.complete
    assert result.headers["transfer-encoding"] == "chunked"
    assert result.headers["x-amzn-sagemaker-inference-id"] == "asgi-1"
    lines = [json.loads(line) for line in result.body.splitlines()]
    assert [line["i"] for line in lines] == [0, 1, 2, 3]
    assert {line["model"] for line in lines} == {"loaded"}  # /ping was 200 only after lifespan startup
    arrivals = [at for at, _ in result.chunks]
    assert len(arrivals) == 4 and arrivals[0] - result.sent_at < 0.25
    assert all(later - earlier > 0.2 for earlier, later in zip(arrivals, arrivals[1:]))
    assert server.wait_event("asgi_app_loaded")["app"] == "asgi_stream:app"
    assert server.wait_event("request", inference_id="asgi-1")["status"] == 200


def test_asgi_big_body_and_limit(start_server, opt_ml):
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})
    body = json.dumps({"mode": "size", "pad": "x" * 900_000})
    answer = server.invoke(body)
    assert answer.status == 200 and answer.json()["length"] == len(body)
    over = server.invoke(json.dumps({"mode": "size", "pad": "x" * (1024 * 1024)}))
    assert over.status == 413 and over.json()["status"] == 413


def test_asgi_websocket_on_the_bidirectional_route(start_server, opt_ml):
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app"})
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(ws.send(wsproto.events.Request(host="localhost", target="/invocations-bidirectional-stream")))
        replies: list[str] = []
        accepted = False
        sent = False
        deadline = time.monotonic() + 5
        while len(replies) < 2 and time.monotonic() < deadline:
            ws.receive_data(sock.recv(65536))
            for event in ws.events():
                if isinstance(event, wsproto.events.AcceptConnection):
                    accepted = True
                elif isinstance(event, wsproto.events.TextMessage):
                    replies.append(event.data)
                elif isinstance(event, wsproto.events.RejectConnection):
                    raise AssertionError(f"WebSocket rejected: {event.status_code}")
            if accepted and not sent:
                sock.sendall(ws.send(wsproto.events.TextMessage("hello")) + ws.send(wsproto.events.TextMessage("again")))
                sent = True
        assert replies == ["HELLO", "AGAIN"]
    finally:
        sock.close()


def test_asgi_and_wsgi_together_is_a_config_error(start_server, opt_ml):
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app", "SMC_WSGI_APP": "x:app"}, wait=False)
    assert server.wait_exit() == 5
    assert "both SMC_WSGI_APP" in server.output()


def test_asgi_app_missing_attribute_exits_4(start_server, opt_ml):
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:nope"}, wait=False)
    assert server.wait_exit() == 4
    assert "has no attribute 'nope' (SMC_ASGI_APP=asgi_stream:nope)" in server.output()


def test_drain_waits_for_an_asgi_request_from_before_sigterm(start_server, opt_ml):
    """ASGI workers mark their oldest request in flight, so the drain waits for a stream that
    started before SIGTERM (its answer was keep-alive) and answers its client's next request."""
    import http.client
    import signal

    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app", "SMC_DRAIN_SECONDS": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/invocations", body=json.dumps({"n": 4, "gap_s": 1.0}),
                 headers={"Content-Type": "application/json"})
    first = conn.getresponse()
    time.sleep(0.5)  # the stream is under way
    server.proc.send_signal(signal.SIGTERM)
    lines = first.read().splitlines()
    assert first.status == 200 and len(lines) == 4
    conn.request("POST", "/invocations", body=json.dumps({"mode": "size"}), headers={"Content-Type": "application/json"})
    second = conn.getresponse()
    assert second.status == 200 and second.will_close
    second.read()
    conn.close()
    assert server.wait_exit(20) == 0
    drained = server.events("drain_finished")[0]
    assert drained["elapsed_s"] >= 2.0, drained  # past the 1 s window: it waited for the stream
    assert drained["requests_from_before"] == 0, drained


def _install_broken(opt_ml) -> None:
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(APPS / "asgi_broken_startup.py", code / "asgi_broken_startup.py")


@pytest.mark.parametrize("how", ["raise", "failed"])
def test_asgi_lifespan_startup_failure_is_a_load_failure(start_server, opt_ml, how):
    """A lifespan startup that raises (uvicorn's "auto" mode takes that for "lifespan
    unsupported" and serves anyway) or sends startup.failed is the app failing to load: never
    ready, an error line with the cause, exit 4 as for an import error."""
    _install_broken(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_broken_startup:app", "ASGI_BROKEN": how}, wait=False)
    deadline = time.monotonic() + 20
    while server.proc.poll() is None and time.monotonic() < deadline:
        assert server.ping(timeout=1) != 200, server.output()
        time.sleep(0.05)
    assert server.wait_exit() == 4, server.output()
    failed = server.events("asgi_startup_failed")
    assert failed and "weights.bin is missing" in failed[0]["error"], server.output()
    assert failed[0]["level"] == "error"
    assert not server.events("model_ready"), server.output()


def test_sigterm_closes_an_idle_websocket_with_1001_without_waiting_the_grace(start_server, opt_ml):
    """An idle WebSocket used to hold the stop to the end of the grace (exit 124), its client cut
    without a close frame: the drain closes it with 1001 (going away) and smc stops at once."""
    import signal

    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app", "SMC_STOP_GRACE_SECONDS": "12"})
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(ws.send(wsproto.events.Request(host="localhost", target="/invocations-bidirectional-stream")))
        events: list = []
        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in events):
            ws.receive_data(sock.recv(65536))
            events += list(ws.events())
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        closed = None
        sock.settimeout(10)
        while closed is None:
            data = sock.recv(65536)
            assert data, "the connection was cut without a close frame"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, wsproto.events.CloseConnection):
                    closed = event
        assert closed.code == 1001, closed
        assert time.monotonic() - stopped_at < 2.0
        sock.sendall(ws.send(closed.response()))
    finally:
        sock.close()
    assert server.wait_exit(20) == 0, server.output()
    assert time.monotonic() - stopped_at < 6.0, server.output()
    assert server.wait_event("websockets_closed")["count"] == 1


def test_an_asgi_app_that_raises_before_answering_gets_a_json_500(start_server, opt_ml):
    """uvicorn answered a plain-text "Internal Server Error" and logged a sentence as the event
    (issue 24 item 16): smc writes that answer, so it is its JSON error, logged as a fact."""
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app"})
    answer = server.invoke({"mode": "raise"}, headers={"X-Amzn-SageMaker-Inference-Id": "asgi-500"})
    assert answer.status == 500 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "Internal Server Error", "status": 500,
                             "message": "internal error in the model server"}
    failed = server.wait_event("asgi_request_failed")
    assert failed["level"] == "error" and "the model is not ready" in failed["error"]
    assert "RuntimeError" in failed.get("exception", "") or "RuntimeError" in json.dumps(failed)
    assert not [r for r in server.lines() if r.get("event", "").startswith("Exception in ASGI")]
    assert server.invoke({"mode": "size"}).status == 200


def test_an_app_in_the_images_code_dir_serves_without_a_model_dir(start_server, opt_ml):
    """One rule for where an app lives (issue 24 items 1 and 2): code/ in model.tar.gz, then the
    image's /opt/ml/code (where the README's Dockerfile copies code); and an app needs no
    /opt/ml/model. Both used to be exit 4 / exit 5."""
    shutil.rmtree(opt_ml / "model", ignore_errors=True)
    (opt_ml / "code").mkdir(exist_ok=True)
    shutil.copy(APPS / "asgi_stream.py", opt_ml / "code" / "asgi_stream.py")
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app"})
    assert server.invoke({"mode": "size"}).status == 200
    assert server.wait_event("asgi_app_loaded")["code_dir"] == str(opt_ml / "code")


def test_an_app_found_nowhere_names_every_place_and_the_rule(start_server, opt_ml):
    server = start_server(None, env={"SMC_ASGI_APP": "main:app"}, wait=False)
    assert server.wait_exit() == 4
    failed = server.events("command_failed")[0]
    assert str(opt_ml / "model" / "code") in failed["hint"] and str(opt_ml / "code") in failed["hint"], failed
    assert "SAGEMAKER_SUBMIT_DIRECTORY" in failed["hint"], failed


def test_a_foreign_log_sentence_is_a_field_of_a_snake_case_event(start_server, opt_ml):
    """uvicorn's traceback line arrived as the event "Exception in ASGI application\\n" (issue 24
    item 7): every event is a snake_case name, the sentence goes into `message`."""
    _install(opt_ml)
    server = start_server(None, env={"SMC_ASGI_APP": "asgi_stream:app"})
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(ws.send(wsproto.events.Request(host="localhost", target="/invocations-bidirectional-stream")))
        events: list = []
        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in events):
            ws.receive_data(sock.recv(65536))
            events += list(ws.events())
        sock.sendall(ws.send(wsproto.events.TextMessage("raise")))
        line = server.wait_event("log", logger="uvicorn.error")
    finally:
        sock.close()
    assert line["message"] == "Exception in ASGI application" and line["level"] == "error", line
    assert "the echo broke" in json.dumps(line), line
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", r["event"]) for r in server.lines()), \
        [r["event"] for r in server.lines() if not re.fullmatch(r"[a-z][a-z0-9_]*", r["event"])]
