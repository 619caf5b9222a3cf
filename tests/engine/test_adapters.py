"""SMC_ENGINE_ADAPTERS=vllm|sglang in the frozen binary: smc answers /adapters with the engine's
LoRA routes and rewrites `model` for invocations naming an adapter (the stand-in engine records
what reaches it)."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import threading
import time

IDENTIFIER = "X-Amzn-SageMaker-Adapter-Identifier"


def _adapter_dir(root, name):
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (path / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return path


def _tar(path, members):
    """members: (name, bytes or None for a directory)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _post(server, path, body=None, headers=None, timeout=10):
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    return server.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})}, timeout)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_vllm_adapters_load_invoke_list_unload_and_bad_input(start_engine, tmp_path):
    record = tmp_path / "lora.jsonl"
    server = start_engine("--lora-record", str(record),
                          env={"SMC_ENGINE_ADAPTERS": "vllm", "SMC_MAX_ARCHIVE_BYTES": "1M"})
    server.wait_event("engine_adapter_routes_found")
    a1 = _adapter_dir(tmp_path, "a1")
    answer = _post(server, "/adapters", {"name": "a1", "src": str(a1), "preload": True})
    assert answer.status == 200 and answer.body == b"Adapter a1 registered", answer.body
    assert _records(record)[-1]["path"] == "/v1/load_lora_adapter"
    assert _records(record)[-1]["body"] == {"lora_name": "a1", "lora_path": str(a1)}
    # the query-string form, with a .tar.gz holding the adapter's directory
    _adapter_dir(tmp_path / "pack", "a2")
    archive = tmp_path / "a2.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "pack" / "a2", arcname="a2")
    answer = _post(server, f"/adapters?name=a2&src={archive}", "")
    assert answer.status == 200, answer.body
    unpacked = _records(record)[-1]["body"]["lora_path"]
    assert unpacked.endswith("/a2") and unpacked != str(tmp_path / "pack" / "a2")

    # bad input: each a JSON error saying what is wrong
    for name in ("../x", "a/b", "..", "a..b", "-x", "x" * 200, ""):
        answer = _post(server, "/adapters", {"name": name, "src": str(a1)})
        assert answer.status == 400 and "name" in answer.json()["message"], (name, answer.body)
    answer = _post(server, "/adapters", {"name": "a3"})
    assert answer.status == 400 and "`src`" in answer.json()["message"]
    answer = _post(server, "/adapters", {"name": "a3", "src": str(tmp_path / "nowhere")})
    assert answer.status == 404 and "nowhere" in answer.json()["message"]
    bomb = _tar(tmp_path / "bomb.tar.gz", [("a3/adapter_model.bin", b"\0" * (2 << 20))])
    answer = _post(server, "/adapters", {"name": "a3", "src": str(bomb)})
    assert answer.status == 400 and "SMC_MAX_ARCHIVE_BYTES" in answer.json()["message"], answer.body
    escape = _tar(tmp_path / "escape.tar.gz", [("../evil.txt", b"x")])
    answer = _post(server, "/adapters", {"name": "a3", "src": str(escape)})
    assert answer.status == 400 and "'..'" in answer.json()["message"]
    assert not (tmp_path / "evil.txt").exists()
    answer = _post(server, "/adapters", {"name": "a1", "src": str(a1)})
    assert answer.status == 409 and "a1" in answer.json()["message"]
    loads = [r for r in _records(record) if r["path"] == "/v1/load_lora_adapter"]
    assert loads[0]["body"] == {}  # the start-up check of the route: a load without a name
    assert len(loads) == 3  # none of the refused ones reached the engine

    listed = server.request("GET", "/adapters").json()
    assert [a["name"] for a in listed["adapters"]] == ["a1", "a2"]
    assert server.request("GET", "/adapters/a1").json() == {"name": "a1", "src": str(a1)}

    # invocations: the header names the adapter in `model`; without it the body is untouched
    answer = _post(server, "/invocations", {"inputs": "hi", "model": "base"}, {IDENTIFIER: "a1"})
    assert answer.status == 200 and answer.json()["model"] == "a1", answer.body
    answer = _post(server, "/invocations", {"inputs": "hi"})
    assert answer.status == 200 and "model" not in answer.json()
    answer = _post(server, "/invocations", {"inputs": "hi"}, {IDENTIFIER: "nope"})
    assert answer.status == 404 and "'nope'" in answer.json()["message"] and IDENTIFIER in answer.json()["message"]
    answer = _post(server, "/invocations", {"inputs": "hi"}, {IDENTIFIER: "../a1"})
    assert answer.status == 400
    answer = _post(server, "/invocations", "not json", {IDENTIFIER: "a1"})
    assert answer.status == 400 and "not JSON" in answer.json()["message"]

    assert server.request("DELETE", "/adapters/a2").status == 200
    assert _records(record)[-1] == {"path": "/v1/unload_lora_adapter", "body": {"lora_name": "a2"},
                                    "pid": _records(record)[-1]["pid"]}
    assert _post(server, "/invocations", {"inputs": "hi"}, {IDENTIFIER: "a2"}).status == 404
    assert server.request("DELETE", "/adapters/a2").status == 404
    # nginx folds /adapters/.. into / itself; an encoded one reaches smc and is refused
    answer = server.request("DELETE", "/adapters/a%2F..%2Fb")
    assert answer.status == 400 and "not allowed" in answer.json()["message"]
    assert server.stop() == 0


def _stream(server, body, headers, timeout=15):
    """(status, [(arrival time, line)]) of a streamed answer."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request("POST", "/invocations", body=json.dumps(body),
                 headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    events = []
    while True:
        line = response.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            events.append((time.monotonic(), line.decode().strip()))
    conn.close()
    return response.status, events


def test_sglang_names_base_and_adapter_and_streams(start_engine, tmp_path):
    record = tmp_path / "lora.jsonl"
    seen = tmp_path / "seen.jsonl"
    server = start_engine("--lora-record", str(record), "--record", str(seen), "--chunks", "4",
                          "--chunk-delay-s", "0.25",
                          env={"SMC_ENGINE_ADAPTERS": "sglang", "SMC_ENGINE_INVOCATIONS_PATH": "auto"})
    a1 = _adapter_dir(tmp_path, "a1")
    assert _post(server, "/adapters", {"name": "a1", "src": str(a1)}).status == 200
    assert _records(record)[-1]["path"] == "/load_lora_adapter"
    status, events = _stream(server, {"prompt": "hi", "stream": True}, {IDENTIFIER: "a1"})
    assert status == 200 and len(events) == 5 and events[-1][1] == "data: [DONE]"
    assert events[-1][0] - events[0][0] > 0.5  # arrived as written, not at the end
    assert _records(seen)[-1]["model"] == "stand-in:a1" and _records(seen)[-1]["path"] == "/v1/completions"
    answer = _post(server, "/invocations", {"messages": [], "model": "stand-in"}, {IDENTIFIER: "a1"})
    assert answer.status == 200 and answer.json()["model"] == "stand-in:a1"
    # the route named by the custom attribute still holds
    answer = _post(server, "/invocations", {"input": "x"},
                   {IDENTIFIER: "a1", "X-Amzn-SageMaker-Custom-Attributes": "route=/v1/embeddings"})
    assert answer.json()["path"] == "/v1/embeddings" and answer.json()["model"] == "stand-in:a1"
    # the container's own OpenAI route takes the header too
    answer = _post(server, "/v1/chat/completions", {"messages": []}, {IDENTIFIER: "a1"})
    assert answer.status == 200 and answer.json()["model"] == "stand-in:a1"
    assert server.request("DELETE", "/adapters/a1").status == 200
    assert _records(record)[-1]["path"] == "/unload_lora_adapter"
    assert server.stop() == 0


def test_delete_waits_for_requests_using_the_adapter(start_engine, tmp_path):
    server = start_engine("--chunks", "5", "--chunk-delay-s", "0.3",
                          env={"SMC_ENGINE_ADAPTERS": "vllm", "SMC_ENGINE_INVOCATIONS_PATH": "/v1/completions"})
    a1 = _adapter_dir(tmp_path, "a1")
    assert _post(server, "/adapters", {"name": "a1", "src": str(a1)}).status == 200
    result = {}
    streaming = threading.Thread(target=lambda: result.update(
        stream=_stream(server, {"prompt": "hi", "stream": True}, {IDENTIFIER: "a1"})))
    streaming.start()
    time.sleep(0.4)  # the stream is under way
    started = time.monotonic()
    deleted = {}
    deleting = threading.Thread(target=lambda: deleted.update(answer=server.request("DELETE", "/adapters/a1")))
    deleting.start()
    time.sleep(0.2)
    # while it is being unloaded, new requests naming it are refused at once
    refused = _post(server, "/invocations", {"prompt": "x"}, {IDENTIFIER: "a1"})
    assert refused.status == 404
    deleting.join(15)
    streaming.join(15)
    assert deleted["answer"].status == 200
    status, events = result["stream"]
    assert status == 200 and events[-1][1] == "data: [DONE]"  # the request in flight finished whole
    assert time.monotonic() - started > 0.7  # the unload waited for it
    assert events[-1][0] <= time.monotonic()
    assert server.stop() == 0


def test_engine_restart_loads_the_adapters_again(start_engine, tmp_path):
    record = tmp_path / "lora.jsonl"
    server = start_engine("--lora-record", str(record), env={"SMC_ENGINE_ADAPTERS": "vllm"})
    a1 = _adapter_dir(tmp_path, "a1")
    assert _post(server, "/adapters", {"name": "a1", "src": str(a1)}).status == 200
    first_pid = _records(record)[-1]["pid"]
    _post(server, "/crash", {})
    server.wait_event("adapter_reloaded", timeout=20, adapter="a1")
    server.wait_ready()
    answer = _post(server, "/invocations", {"inputs": "hi"}, {IDENTIFIER: "a1"})
    assert answer.status == 200 and answer.json()["model"] == "a1"
    loads = [r for r in _records(record) if r["path"] == "/v1/load_lora_adapter" and r["body"]]
    assert len(loads) == 2 and loads[1]["pid"] != first_pid
    assert server.stop() == 0


def test_an_engine_without_the_load_route_is_reported_at_start(start_engine):
    server = start_engine("--no-lora", env={"SMC_ENGINE_ADAPTERS": "vllm"})
    event = server.wait_event("engine_adapter_routes_missing")
    assert event["path"] == "/v1/load_lora_adapter" and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in event["hint"]
    assert server.stop() == 0


def test_passthrough_leaves_adapters_to_the_engine(start_engine):
    server = start_engine()
    # the stand-in has no /adapters route: its own 404 comes back, not smc's
    answer = _post(server, "/adapters", {"name": "a1", "src": "/x"})
    assert answer.status == 404 and answer.json() == {"error": "not found"}
    answer = _post(server, "/invocations", {"inputs": "hi"}, {IDENTIFIER: "a1"})
    assert answer.status == 200 and answer.json()["headers"][IDENTIFIER] == "a1"
    assert server.stop() == 0
