"""Stateful sessions in engine mode (docs/engines.md, "Stateful sessions") against the stand-in
engine: smc answers the protocol in its routing hop and the engine sees the client's Session-Id
header on inference; `passthrough` leaves everything to the engine."""

from __future__ import annotations

import json
import os

OPEN = '{"requestType": "NEW_SESSION"}'
CLOSE = '{"requestType": "CLOSE"}'
ID = "X-Amzn-SageMaker-Session-Id"


def _post(server, body, headers=None, path="/invocations"):
    return server.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})


def _env(tmp_path, **more):
    return {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true", "SAGEMAKER_SESSIONS_PATH": str(tmp_path / "store"), **more}


def test_smc_answers_the_protocol_and_the_engine_sees_the_session_header(start_engine, tmp_path):
    server = start_engine(env=_env(tmp_path))
    opened = _post(server, OPEN, {ID: "NEW_SESSION"})
    assert opened.status == 200, opened.body
    session_id = opened.headers["x-amzn-sagemaker-new-session-id"].split(";")[0]
    assert opened.body.decode() == f"Session {session_id} created" and "x-amzn-sagemaker-inference-id" in opened.headers
    assert os.listdir(tmp_path / "store") == [session_id]
    answer = _post(server, json.dumps({"x": 1}), {ID: session_id, "X-Amzn-SageMaker-Inference-Id": "inf-1"},
                   path="/invocations?q=2")
    assert answer.status == 200, answer.body
    seen = answer.json()  # the stand-in echoes what reached it
    assert seen["path"] == "/invocations" and seen["query"] == "q=2" and seen["bytes"] == len('{"x": 1}')
    assert seen["headers"][ID] == session_id and seen["headers"]["X-Amzn-SageMaker-Inference-Id"] == "inf-1"
    assert _post(server, "{}").json()["headers"].get(ID) is None  # no session: plain inference
    # refused by smc, never sent to the engine
    for headers, body, status, words in (({ID: "unknown-id"}, "{}", 400, "session not found"),
                                         ({ID: "bad id"}, "{}", 400, "is not a session id"),
                                         ({}, '{"requestType": "NEW_SESSION", "x": 1}', 400, '"x"'),
                                         ({}, CLOSE, 424, ID)):
        refused = _post(server, body, headers)
        assert refused.status == status and words in refused.json()["message"], refused.body
    closed = _post(server, CLOSE, {ID: session_id})
    assert closed.status == 200 and closed.headers["x-amzn-sagemaker-closed-session-id"] == session_id
    assert _post(server, "{}", {ID: session_id}).status == 400
    assert server.events("sessions_on")[0]["mode"] == "engine"
    assert server.stop() == 0


def test_sessions_combine_with_auto_routing(start_engine, tmp_path):
    record = tmp_path / "seen.jsonl"
    server = start_engine("--record", str(record), env=_env(tmp_path, SMC_ENGINE_INVOCATIONS_PATH="auto"))
    session_id = _post(server, OPEN).headers["x-amzn-sagemaker-new-session-id"].split(";")[0]
    chat = _post(server, json.dumps({"messages": [{"role": "user", "content": "hi"}]}), {ID: session_id})
    assert chat.status == 200 and chat.json()["path"] == "/v1/chat/completions"
    assert chat.json()["headers"][ID] == session_id
    # a route= custom attribute no longer skips the hop: the id is checked there too
    named = {"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/embeddings"}
    assert _post(server, "not json", {**named, ID: "unknown-id"}).status == 400
    routed = _post(server, "not json", {**named, ID: session_id})
    assert routed.status == 200 and routed.json()["path"] == "/v1/embeddings"
    streamed = _post(server, json.dumps({"prompt": "x", "stream": True}), {ID: session_id})
    assert streamed.status == 200 and streamed.body.endswith(b"data: [DONE]\n\n")
    assert _post(server, "[1]", {ID: session_id}).status == 400  # auto still names the fields it looks for
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert [s["path"] for s in seen] == ["/v1/chat/completions", "/v1/embeddings", "/v1/completions"]
    assert all(s["headers"][ID] == session_id for s in seen)


def test_passthrough_leaves_the_protocol_to_the_engine(start_engine, tmp_path):
    server = start_engine(env=_env(tmp_path, SMC_ENGINE_SESSIONS="passthrough"))
    opened = _post(server, OPEN, {ID: "NEW_SESSION"})
    # the stand-in's own answer (its id, its body echo), and smc kept no store
    assert opened.headers["x-amzn-sagemaker-new-session-id"].startswith("sess-1;")
    assert opened.json()["bytes"] == len(OPEN)
    assert _post(server, "{}", {ID: "any-id"}).json()["headers"][ID] == "any-id"
    assert not (tmp_path / "store").exists() and server.events("sessions_on") == []
