"""Stateful sessions without a server: the protocol's decisions, the store under several processes
(one killed while it holds a session), the routing hop's answers and the settings."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from supervisor_app.config.sessions import load_sessions_config
from supervisor_app.errors import ConfigError
from supervisor_app.serve.engine.nginx_conf import EngineNginxSettings, render_engine_nginx_conf
from supervisor_app.serve.engine.sessions import EngineSessions
from supervisor_app.worker.sessions import protocol
from supervisor_app.worker.sessions.gate import Gate
from supervisor_app.worker.sessions.protocol import Close, Open, SessionError, Use, classify, is_session_id
from supervisor_app.worker.sessions.store import SessionStore


def _status(body: bytes, header: str | None, enabled: bool = True) -> int:
    try:
        classify(body, header, enabled)
    except SessionError as exc:
        return exc.status
    return 200


@pytest.mark.parametrize("value,ok", [("a", True), ("a-b--c9", True), ("x" * 256, True), ("", False),
                                      ("-a", False), ("a-", False), ("a b", False), ("a_b", False),
                                      ("x" * 257, False), ("ä", False), ("a/b", False)])
def test_ids_follow_the_runtime_pattern(value, ok):
    import re

    assert is_session_id(value) is ok
    # the same answer as SageMaker Runtime's own pattern (is_session_id does it without a regex)
    assert ok == (re.fullmatch(protocol.ID_PATTERN[1:-1], value, re.ASCII) is not None and len(value) <= 256)


def test_classify():
    assert classify(b'{"requestType": "NEW_SESSION"}', None, True) == Open()
    assert classify(b' {"requestType":"NEW_SESSION"} ', "any-id", True) == Open()
    assert classify(b'{"requestType": "CLOSE"}', "abc", True) == Close("abc")
    assert classify(b'{"x": 1}', "abc", True) == Use("abc")
    assert classify(b'{"x": 1}', "NEW_SESSION", True) is None
    assert classify(b'{"x": 1}', None, True) is None
    assert classify(b'not json "requestType"', None, True) is None
    assert classify(b'["requestType"]', None, True) is None
    assert _status(b'{"requestType": "CLOSE"}', None) == 424
    assert _status(b'{"requestType": "CLOSE"}', "NEW_SESSION") == 424
    assert _status(b'{"requestType": "NEW_SESSION", "a": 1}', None) == 400
    assert _status(b'{"requestType": null}', None) == 400
    assert _status(b'{}', "bad id") == 400
    # off: exact session requests and any Session-Id header are refused, the rest is inference
    assert _status(b'{"requestType": "NEW_SESSION"}', None, enabled=False) == 400
    assert _status(b'{}', "NEW_SESSION", enabled=False) == 400
    assert classify(b'{"requestType": "x", "y": 1}', None, False) is None


def _hold_and_die(root: str, session_id: str, ready: "multiprocessing.synchronize.Event") -> None:
    session = Gate(SessionStore(root, 60)).enter(Use(session_id), time.monotonic() + 5)
    session["n"] = 99  # never committed
    ready.set()
    time.sleep(60)


def test_a_process_killed_holding_a_session_leaves_the_saved_state_and_no_lock(tmp_path):
    root = str(tmp_path)
    gate = Gate(SessionStore(root, 60))
    session_id = gate.store.create()[0]
    session = gate.enter(Use(session_id), time.monotonic() + 1)
    session["n"] = 1
    session.commit()
    session.release()
    ready = multiprocessing.get_context("fork").Event()
    child = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(root, session_id, ready))
    child.start()
    assert ready.wait(10)
    with pytest.raises(SessionError) as busy:
        gate.enter(Use(session_id), time.monotonic() + 0.05)
    assert busy.value.status == 504 and "one at a time" in busy.value.message
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    session = gate.enter(Use(session_id), time.monotonic() + 1)
    assert dict(session) == {"n": 1}
    session.release()


def test_close_waits_for_the_request_in_flight_and_a_waiter_then_finds_it_gone(tmp_path):
    gate = Gate(SessionStore(str(tmp_path), 60))
    session_id = gate.store.create()[0]
    held = gate.enter(Use(session_id), time.monotonic() + 1)
    with pytest.raises(SessionError) as busy:
        gate.store.close(session_id, time.monotonic() + 0.05)
    assert busy.value.status == 504
    held.release()
    gate.store.close(session_id, time.monotonic() + 1)
    with pytest.raises(SessionError) as gone:
        gate.enter(Use(session_id), time.monotonic() + 1)
    assert gone.value.status == 400 and "session not found" in gone.value.message
    assert os.listdir(tmp_path) == []


def test_sweep_removes_expired_sessions_and_leftovers_but_not_held_ones(tmp_path):
    now = [1000.0]
    store = SessionStore(str(tmp_path), 10, clock=lambda: now[0])
    free, held = store.create()[0], store.create()[0]
    holding = Gate(store).enter(Use(held), time.monotonic() + 1)
    (tmp_path / ".new-dead").mkdir()
    os.utime(tmp_path / ".new-dead", (0, 0))
    now[0] += 11
    assert store.sweep() == 1
    assert sorted(os.listdir(tmp_path)) == [held]
    holding.release()
    assert store.sweep() == 1 and os.listdir(tmp_path) == []


def _hop(tmp_path, path="/invocations"):
    log = type("Log", (), {"warning": lambda *a, **k: None, "info": lambda *a, **k: None})()
    return EngineSessions(SessionStore(str(tmp_path), 60), path, 5.0, log)


def _parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_the_routing_hop_answers_sessions_and_redirects_the_rest(tmp_path):
    hop = _hop(tmp_path)
    status, headers, body = _parse(hop.answer("/invocations", b'{"requestType":"NEW_SESSION"}', {}))
    session_id = headers[protocol.HEADER_NEW_ID].split(";")[0]
    assert status == 200 and body == f"Session {session_id} created".encode()
    ident = {"x-amzn-sagemaker-session-id": session_id}
    assert _parse(hop.answer("/invocations?a=1", b"{}", ident))[1]["X-Accel-Redirect"] == "/_smc_engine/invocations?a=1"
    status, _, body = _parse(hop.answer("/invocations", b"{}", {"x-amzn-sagemaker-session-id": "nope"}))
    assert status == 400 and "session not found" in json.loads(body)["message"]
    assert _parse(hop.answer("/invocations", b'{"requestType":"CLOSE"}', ident))[1][protocol.HEADER_CLOSED_ID] == session_id
    assert _parse(hop.answer("/invocations", b"{}", {}))[0] == 200  # no session: straight on
    auto = _hop(tmp_path, "auto")
    assert _parse(auto.answer("/invocations", b'{"messages": []}', {}))[1]["X-Accel-Redirect"] == \
        "/_smc_engine/v1/chat/completions"
    named = {"x-amzn-sagemaker-custom-attributes": "a=1, route=/v1/embeddings"}
    assert _parse(auto.answer("/invocations", b"plain", named))[1]["X-Accel-Redirect"] == "/_smc_engine/v1/embeddings"
    assert _parse(auto.answer("/invocations", b"plain", {}))[0] == 400


def test_nginx_sends_every_invocation_to_the_hop_with_the_session_headers(tmp_path):
    base = dict(run_dir=tmp_path, port=8080, engine_host="127.0.0.1", engine_port=8000, invocations_path="/invocations",
                max_body_bytes=0, timeout_s=60, worker_connections=1024, keepalive_s=75, log_ping=False)
    plain = render_engine_nginx_conf(EngineNginxSettings(**base))
    assert "smc_router" not in plain and "session_id" not in plain
    with_sessions = render_engine_nginx_conf(EngineNginxSettings(**base, router_socket=tmp_path / "r.sock",
                                                                 sessions=True))
    assert "proxy_set_header X-Amzn-SageMaker-Session-Id $http_x_amzn_sagemaker_session_id;" in with_sessions
    assert "rewrite ^ /_smc_engine$smc_attribute_route" not in with_sessions  # the hop checks those too


def test_settings(tmp_path):
    off = load_sessions_config({}, tmp_path)
    assert (off.enabled, off.expiration_s, off.engine_sessions) == (False, 1200, "smc")
    assert off.path.name == "sagemaker_sessions"
    on = load_sessions_config({"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "1", "SAGEMAKER_SESSIONS_EXPIRATION": "5",
                               "SAGEMAKER_SESSIONS_PATH": "/x/y", "SMC_ENGINE_SESSIONS": "passthrough"}, tmp_path)
    assert (on.enabled, on.expiration_s, on.path, on.smc_owns_engine_protocol) == (True, 5, Path("/x/y"), False)
    for name, value in (("SAGEMAKER_SESSIONS_EXPIRATION", "0"), ("SAGEMAKER_SESSIONS_EXPIRATION", "-3"),
                        ("SAGEMAKER_SESSIONS_EXPIRATION", "1.5"), ("SAGEMAKER_SESSIONS_PATH", "rel"),
                        ("SMC_ENGINE_SESSIONS", "vllm"), ("SAGEMAKER_ENABLE_STATEFUL_SESSIONS", "maybe")):
        with pytest.raises(ConfigError) as bad:
            load_sessions_config({name: value}, tmp_path)
        assert name in bad.value.message and bad.value.hint
    with pytest.raises(ConfigError) as mme:
        load_sessions_config({"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true"}, tmp_path, multi_model=True)
    assert "SAGEMAKER_MULTI_MODEL" in mme.value.message


def test_doctor_checks_the_store_and_who_speaks_the_protocol(tmp_path):
    from dataclasses import replace

    from supervisor_app.config import load_config
    from supervisor_app.config.serve import load_serve_config
    from supervisor_app.doctor.checks_sessions import check_sessions

    env = {"SAGEMAKER_BASE_DIR": str(tmp_path), "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true",
           "SAGEMAKER_SESSIONS_PATH": str(tmp_path / "a" / "store")}
    serve = load_serve_config(load_config(env))
    assert [(f.check, f.status) for f in check_sessions(serve, None)] == [("sessions_store", "ok")]
    blocked = tmp_path / "file"
    blocked.write_text("")
    bad = replace(serve, sessions=replace(serve.sessions, path=blocked / "store"))
    assert [(f.check, f.status) for f in check_sessions(bad, None)] == [("sessions_store", "fail")]
    vllm = [(f.check, f.status) for f in check_sessions(serve, "vllm serve /opt/ml/model")]
    assert ("sessions_engine", "warn") in vllm
    passthrough = replace(serve, sessions=replace(serve.sessions, engine_sessions="passthrough"))
    assert [f.status for f in check_sessions(passthrough, "vllm serve m")] == ["ok"]
    off = replace(serve, sessions=replace(serve.sessions, enabled=False))
    assert check_sessions(off, None) == []
