"""SMC_ENGINE_INVOCATIONS_PATH=auto and SMC_ENGINE_ARGS_FROM in the frozen binary, against the
stand-in engine's OpenAI routes (it records what reaches it)."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from tests.engine.conftest import engine_command
from tests.conftest import free_port

AUTO = {"SMC_ENGINE_INVOCATIONS_PATH": "auto"}


def _post(server, body, headers=None, path="/invocations", timeout=10):
    return server.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})}, timeout)


def test_auto_routes_each_body_to_its_openai_route(start_engine):
    server = start_engine(env=AUTO)
    for body, path in (({"messages": [{"role": "user", "content": "hi"}], "model": "m"}, "/v1/chat/completions"),
                       ({"prompt": "hello", "max_tokens": 3}, "/v1/completions"),
                       ({"input": ["a", "b"]}, "/v1/embeddings"),
                       ({"messages": [], "prompt": "both"}, "/v1/chat/completions")):  # chat first, as vLLM
        answer = _post(server, json.dumps(body), {"X-Amzn-SageMaker-Inference-Id": "inf-7"}, path="/invocations?x=1")
        assert answer.status == 200, answer.body
        seen = answer.json()
        assert seen["path"] == path and seen["method"] == "POST" and seen["query"] == "x=1"
        assert seen["keys"] == sorted(body) and seen["bytes"] == len(json.dumps(body))
        assert seen["content_type"] == "application/json"
        assert seen["headers"]["X-Amzn-SageMaker-Inference-Id"] == "inf-7"
        assert answer.headers["x-amzn-sagemaker-inference-id"] == "inf-7"
    # the container serves the OpenAI route itself too
    direct = _post(server, json.dumps({"messages": []}), path="/v1/chat/completions")
    assert direct.status == 200 and direct.json()["path"] == "/v1/chat/completions"
    assert server.events("engine_openai_routes_missing") == []
    assert server.stop() == 0


def test_custom_attribute_route_overrides_the_body(start_engine):
    server = start_engine(env=AUTO)
    answer = _post(server, json.dumps({"messages": []}),
                   {"X-Amzn-SageMaker-Custom-Attributes": "trace=1, route=/v1/embeddings"})
    assert answer.status == 200 and answer.json()["path"] == "/v1/embeddings"
    # it needs no JSON at all: the body goes untouched
    answer = _post(server, "not json", {"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/completions"})
    assert answer.json()["path"] == "/v1/completions" and answer.json()["head"] == "not json"
    # a route with `..` is not taken: the body decides
    answer = _post(server, json.dumps({"input": "x"}), {"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/../crash"})
    assert answer.json()["path"] == "/v1/embeddings"


def test_bodies_auto_cannot_route_get_a_json_400_naming_the_fields(start_engine, tmp_path):
    record = tmp_path / "seen.jsonl"
    server = start_engine("--record", str(record), env=AUTO)
    for body in (json.dumps({"inputs": "tgi style"}), "plain text, not json", "[1, 2]", ""):
        answer = _post(server, body)
        assert answer.status == 400, (body, answer.body)
        message = answer.json()["message"]
        assert answer.json()["status"] == 400
        for field in ("messages", "prompt", "input", "route="):
            assert field in message, message
    assert _post(server, "nope").json()["message"].count("not JSON") == 1
    assert not record.exists()  # none of them reached the engine


def test_a_large_body_is_routed_whole(start_engine):
    server = start_engine(env={**AUTO, "SAGEMAKER_MAX_PAYLOAD_IN_MB": "64"})
    body = json.dumps({"prompt": "x" * (50 * 1024 * 1024), "max_tokens": 1})
    answer = _post(server, body, timeout=60)
    assert answer.status == 200, answer.body[:300]
    seen = answer.json()
    assert seen["path"] == "/v1/completions" and seen["bytes"] == len(body)
    assert seen["head"] == body[:32]
    # sent chunked (no Content-Length), it still arrives whole
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/invocations", body=iter([body[:1000].encode(), body[1000:].encode()]),
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, encode_chunked=True)
    resp = conn.getresponse()
    seen = json.loads(resp.read())
    conn.close()
    assert resp.status == 200 and seen["bytes"] == len(body) and seen["path"] == "/v1/completions"


def _stream_arrivals(port: int, path: str, body: dict, headers=None) -> tuple[list[float], list[dict]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    started = time.monotonic()
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    arrivals, events = [], []
    while True:
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic() - started)
            if line.strip() == b"data: [DONE]":
                break
            events.append(json.loads(line[5:]))
    conn.close()
    return arrivals, events


@pytest.mark.parametrize("body,headers,path", [
    ({"messages": [], "stream": True}, None, "/v1/chat/completions"),
    ({"prompt": "p", "stream": True}, None, "/v1/completions"),
    ({"input": "i", "stream": True}, None, "/v1/embeddings"),
    ({"stream": True}, {"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/completions"}, "/v1/completions"),
])
def test_sse_streams_chunk_by_chunk_through_the_route(start_engine, body, headers, path):
    server = start_engine("--chunks", "5", "--chunk-delay-s", "0.3", env=AUTO)
    arrivals, events = _stream_arrivals(server.port, "/invocations", body, headers)
    assert [e["path"] for e in events] == [path] * 5
    assert arrivals[0] < 0.6, arrivals  # the first event long before the answer is complete (1.5 s)
    assert arrivals[4] - arrivals[0] > 0.9, arrivals  # not buffered into one write


def test_direct_chat_route_streams(start_engine):
    server = start_engine("--chunks", "4", "--chunk-delay-s", "0.3")  # no auto: served in every mode
    arrivals, events = _stream_arrivals(server.port, "/v1/chat/completions", {"messages": [], "stream": True})
    assert len(events) == 4 and arrivals[0] < 0.6 and arrivals[3] - arrivals[0] > 0.6, arrivals


def test_an_engine_without_openai_routes_is_said_at_start(start_engine):
    server = start_engine("--no-openai", env=AUTO)
    warning = server.wait_event("engine_openai_routes_missing", timeout=5)
    assert warning["path"] == "/v1/models" and "404" in warning["why"] and warning["level"] == "warning"


def test_fixed_path_keeps_the_direct_route(start_engine, tmp_path):
    """Without auto nothing changes: no routing hop in nginx.conf, /invocations straight to the path."""
    server = start_engine(env={"SMC_ENGINE_INVOCATIONS_PATH": "/v1/chat/completions"})
    answer = _post(server, "not json even", {"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/embeddings"})
    assert answer.status == 200 and answer.json()["path"] == "/v1/chat/completions"


def test_engine_flags_from_the_environment_reach_its_argv(start_engine, tmp_path):
    argv_file = tmp_path / "argv.json"
    server = start_engine("--argv-file", str(argv_file), env={
        "SMC_ENGINE_ARGS_FROM": "SM_VLLM_", "SM_VLLM_MAX_MODEL_LEN": "4096", "SM_VLLM_ENABLE_LORA": "true",
        "SM_VLLM_ENFORCE_EAGER": "False", "SM_VLLM_CHAT_TEMPLATE": "{{ a }} b  'c' $HOME",
        "SM_VLLM_TRUST_REMOTE_CODE": "", "SM_SGLANG_MEM_FRACTION": "0.8"})
    argv = json.loads(argv_file.read_text())
    assert argv[argv.index("--argv-file") + 2:] == [
        "--chat-template", "{{ a }} b  'c' $HOME", "--enable-lora", "--max-model-len", "4096",
        "--trust-remote-code"]
    logged = server.events("engine_args_from_env")[0]
    assert logged["prefix"] == "SM_VLLM_" and logged["flags"][:2] == ["--chat-template", "{{ a }} b  'c' $HOME"]
    assert "--max-model-len 4096" in logged["argv"][-1]


@pytest.mark.parametrize("prefix", ["sm_vllm_", "SM_VLLM", "SMC_", "SAGEMAKER_", "SM_", "S", "SM VLLM_"])
def test_bad_args_prefix_is_a_config_error(smc_binary, opt_ml, prefix):
    from tests.serve.conftest import Server

    port = free_port()
    server = Server(smc_binary, opt_ml, free_port(), {"SMC_ENGINE_URL": f"http://127.0.0.1:{port}",
                                                       "SMC_ENGINE_COMMAND": engine_command(port),
                                                       "SMC_ENGINE_ARGS_FROM": prefix})
    assert server.wait_exit(20) == 5
    assert "SMC_ENGINE_ARGS_FROM" in server.output()
