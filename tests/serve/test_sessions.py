"""Stateful sessions in handler mode (docs/serve.md, "Stateful sessions"), against the frozen binary
with real nginx and gunicorn: the protocol's answers, bad input, expiry, 1,000 sessions at once,
state shared by several workers, and a worker killed while it holds a session."""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import free_port
from tests.serve.conftest import install_handler

OPEN = '{"requestType": "NEW_SESSION"}'
CLOSE = '{"requestType": "CLOSE"}'
ID = "X-Amzn-SageMaker-Session-Id"
NEW_ID = re.compile(r"^([0-9a-f-]{36}); Expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _env(tmp_path, **more):
    return {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true", "SAGEMAKER_SESSIONS_PATH": str(tmp_path / "store"),
            **more}


def _open(server) -> str:
    answer = server.invoke(OPEN)
    assert answer.status == 200, answer.body
    match = NEW_ID.match(answer.headers["x-amzn-sagemaker-new-session-id"])
    assert match, answer.headers
    assert answer.body.decode() == f"Session {match.group(1)} created"
    return match.group(1)


def _use(server, session_id, body=None, timeout=10):
    return server.invoke(json.dumps(body or {}), headers={ID: session_id}, timeout=timeout)


def _refused(answer, status, *words):
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"] == "application/json"
    message = answer.json()["message"]
    assert all(word in message for word in words), message
    return message


@pytest.mark.both_pythons  # the session code runs in the workers: under the image's Python too
def test_state_is_shared_by_every_worker_and_requests_of_a_session_run_one_at_a_time(start_server, tmp_path):
    server = start_server("sessions", _env(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="4"))
    session_id = _open(server)
    other = _open(server)
    # 8 clients at once on one session, each request on its own connection: no update is lost.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _use(server, session_id, {"sleep": 0.01}), range(40)))
    assert [a.status for a in answers] == [200] * 40
    counts = sorted(a.json()["n"] for a in answers)
    assert counts == list(range(1, 41))
    assert len({a.json()["pid"] for a in answers}) >= 2  # answered by several workers
    assert _use(server, other).json()["n"] == 1  # sessions are separate
    # files under context.session.path live with the session
    assert _use(server, session_id, {"file": "a"}).status == 200
    assert _use(server, session_id, {"read_file": True}).json()["note"] == "a"
    # a failed request saves nothing; a state that is not JSON is a 500 naming the key
    assert _use(server, session_id, {"crash": True}).status == 500
    _refused(_use(server, session_id, {"not_json": True}), 500, "not JSON", "bad", "context.session.path")
    assert _use(server, session_id).json()["n"] == 43
    # a stream: the state is saved before the head goes out; the generator's later changes are not
    assert _use(server, session_id, {"stream": True}).body == b"n=44;late=True"
    assert _use(server, session_id).json()["late"] is None
    # no session header: context.session is None; NEW_SESSION as a plain request's header is ignored
    assert server.invoke("{}").json()["session"] is None
    assert server.invoke("{}", headers={ID: "NEW_SESSION"}).json()["session"] is None
    # close: 200 with the closed id; then the id is unknown (400) for inference and CLOSE alike
    closed = server.invoke(CLOSE, headers={ID: session_id})
    assert closed.status == 200 and closed.body.decode() == f"Session {session_id} closed"
    assert closed.headers["x-amzn-sagemaker-closed-session-id"] == session_id
    _refused(_use(server, session_id), 400, "session not found", session_id)
    _refused(server.invoke(CLOSE, headers={ID: session_id}), 400, "session not found")
    assert sorted(os.listdir(tmp_path / "store")) == [other]
    assert server.events("sessions_on")[0]["path"] == str(tmp_path / "store")


def test_bad_session_input_gets_a_json_error_naming_what_was_expected(start_server, tmp_path):
    server = start_server("sessions", _env(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1"))
    for bad in ("has space", "-leading", "trailing-", "a/../b", "x" * 257, "ünï"):
        _refused(_use(server, bad), 400, ID, "is not a session id", "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    _refused(server.invoke(CLOSE, headers={ID: "bad id"}), 400, "is not a session id")
    _refused(_use(server, "x" * 256), 400, "session not found")  # the longest valid id, unknown
    _refused(server.invoke('{"requestType": "NEW_SESSION", "model": "m"}'), 400, '"model"', "by itself")
    _refused(server.invoke('{"requestType": "OPEN"}'), 400, '"OPEN"', '"NEW_SESSION" or "CLOSE"')
    _refused(server.invoke('{"inputs": [1], "requestType": 3}'), 400, "requestType")
    _refused(server.invoke(CLOSE), 424, ID)
    # a NEW_SESSION's Session-Id header (SDK callers send NEW_SESSION, others anything) is ignored
    assert server.invoke(OPEN, headers={ID: "whatever-id"}).status == 200
    # not JSON, or JSON without requestType: inference
    assert server.invoke("requestType,1", content_type="text/csv").status == 200
    assert server.invoke('[{"requestType": "CLOSE"}]').status == 200


def test_sessions_expire_from_creation(start_server, tmp_path):
    server = start_server("sessions", _env(tmp_path, SAGEMAKER_SESSIONS_EXPIRATION="1",
                                           SAGEMAKER_MODEL_SERVER_WORKERS="2"))
    first, second = _open(server), _open(server)
    assert _use(server, first).json()["n"] == 1
    time.sleep(1.3)
    _refused(_use(server, first), 400, "expired at", "SAGEMAKER_SESSIONS_EXPIRATION")
    _refused(_use(server, first), 400, "session not found")  # removed by the first refusal
    _refused(server.invoke(CLOSE, headers={ID: second}), 424, "expired")  # as MHCS answers it
    third = _open(server)  # creating sweeps what expired
    assert os.listdir(tmp_path / "store") == [third]


def test_sessions_off_refuses_session_requests_and_ids(start_server, tmp_path):
    server = start_server("sessions", {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    _refused(server.invoke(OPEN), 400, "SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true")
    _refused(server.invoke("{}", headers={ID: "abc"}), 400, ID, "SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true")
    # a body that merely has a requestType key is the handler's business, as before sessions existed
    assert server.invoke('{"requestType": "mine", "x": 1}').status == 200


def test_a_thousand_sessions_open_at_once(start_server, tmp_path):
    server = start_server("sessions", _env(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    def post(body, session_id=None):
        conn.request("POST", "/invocations", body=body,
                     headers={"Content-Type": "application/json", **({ID: session_id} if session_id else {})})
        response = conn.getresponse()
        return response.status, response.getheader("X-Amzn-SageMaker-New-Session-Id"), response.read()

    ids = []
    for _ in range(1000):
        status, header, _ = post(OPEN)
        assert status == 200
        ids.append(header.split(";")[0])
    assert len(set(ids)) == 1000 and len(os.listdir(tmp_path / "store")) == 1000
    for session_id in ids[::10]:
        status, _, body = post("{}", session_id)
        assert status == 200 and json.loads(body)["n"] == 1
    for session_id in ids:
        assert post(CLOSE, session_id)[0] == 200
    conn.close()
    assert os.listdir(tmp_path / "store") == []


def test_a_worker_killed_holding_a_session_loses_nothing_answered(start_server, tmp_path):
    server = start_server("sessions", _env(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2"))
    session_id = _open(server)
    assert [_use(server, session_id).json()["n"] for _ in range(3)] == [1, 2, 3]
    killed = _use(server, session_id, {"kill": True})
    assert killed.status >= 500  # the worker died with the change unsaved, holding the session's lock
    # the kernel dropped the lock with the process: the next request gets the session at once,
    # with the state the last answered request saved
    started = time.monotonic()
    answer = _use(server, session_id)
    assert answer.status == 200 and answer.json()["n"] == 4, answer.body
    assert time.monotonic() - started < 5


def test_batching_gives_each_request_its_own_session(start_server, tmp_path):
    server = start_server("sessions", _env(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SMC_BATCH_SIZE="8",
                                           SMC_BATCH_DELAY_MS="50"))
    ids = [_open(server) for _ in range(3)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: _use(server, ids[i % 3]), range(12)))
    assert [a.status for a in answers] == [200] * 12
    for session_id in ids:
        assert sorted(a.json()["n"] for a in answers if a.json()["session"] == session_id) == [1, 2, 3, 4]
    assert max(a.json()["batch"] for a in answers) >= 2  # sessions did not stop batches from forming


def test_bad_session_settings_stop_serve_at_start(smc, opt_ml):
    for name, value, words in (("SAGEMAKER_SESSIONS_EXPIRATION", "0", "positive whole number of seconds"),
                               ("SAGEMAKER_SESSIONS_EXPIRATION", "20m", "SAGEMAKER_SESSIONS_EXPIRATION"),
                               ("SAGEMAKER_ENABLE_STATEFUL_SESSIONS", "maybe", "not a boolean"),
                               ("SAGEMAKER_SESSIONS_PATH", "relative/dir", "absolute"),
                               ("SMC_ENGINE_SESSIONS", "vllm", "smc, passthrough")):
        done = smc("serve", env={"SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true",
                                 name: value}, timeout=30)
        assert done.returncode != 0 and words in done.stdout + done.stderr, (name, done.stdout, done.stderr)
    blocker = opt_ml / "file"
    blocker.write_text("")
    install_handler(opt_ml, "sessions")
    done = smc("serve", env={"SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "1",
                             "SAGEMAKER_BIND_TO_PORT": str(free_port()),
                             "SAGEMAKER_SESSIONS_PATH": str(blocker / "store"), "SMC_LOG_FORMAT": "json"}, timeout=30)
    assert done.returncode != 0 and "SAGEMAKER_SESSIONS_PATH" in done.stdout + done.stderr, done.stdout + done.stderr
