"""LoRA adapters in handler mode (frozen binary, real nginx and gunicorn): load_adapter_fn and
unload_adapter_fn run in every worker; the header's adapter reaches predict_fn as context.adapter."""

from __future__ import annotations

import http.client
import json
import threading
import time

IDENTIFIER = "X-Amzn-SageMaker-Adapter-Identifier"
WORKERS = 3


def _post(server, path, body, headers=None, timeout=20):
    data = json.dumps(body) if isinstance(body, dict) else body
    return server.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})}, timeout)


def _log(opt_ml):
    path = opt_ml / "model" / "adapters.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_hooks_run_in_every_worker_and_context_names_the_adapter(start_server, opt_ml, tmp_path):
    server = start_server("lora", env={"SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS)})
    a1 = tmp_path / "a1"
    a1.mkdir()
    (a1 / "adapter_config.json").write_text(json.dumps({"r": 8}))
    answer = _post(server, "/adapters", {"name": "a1", "src": str(a1)})
    assert answer.status == 200 and answer.body == b"Adapter a1 registered", answer.body
    loads = [entry for entry in _log(opt_ml) if entry[:2] == ["load", "a1"]]
    assert len({entry[2] for entry in loads}) == WORKERS  # every worker ran load_adapter_fn, once
    assert len(loads) == WORKERS

    pids = set()
    for _ in range(12):
        answer = _post(server, "/invocations", {"x": 1}, {IDENTIFIER: "a1"})
        assert answer.status == 200, answer.body
        seen = answer.json()
        assert seen["adapter"] == "a1" and seen["adapter_model"]["rank"] == 8 and "a1" in seen["loaded"]
        assert seen["adapter_model"]["pid"] == seen["pid"]  # this worker's own load
        pids.add(seen["pid"])
    plain = _post(server, "/invocations", {"x": 1}).json()
    assert plain["adapter"] is None and plain["adapter_model"] is None

    # bad input, as in engine mode
    assert _post(server, "/adapters", {"name": "a1", "src": str(a1)}).status == 409
    for name in ("../a1", "a/b", "..", "x" * 200):
        answer = _post(server, "/adapters", {"name": name, "src": str(a1)})
        assert answer.status == 400 and "name" in answer.json()["message"], name
    answer = _post(server, "/adapters", {"name": "a2", "src": str(tmp_path / "nowhere")})
    assert answer.status == 404 and "nowhere" in answer.json()["message"]
    assert "`src`" in _post(server, "/adapters?name=a2", "").json()["message"]
    answer = _post(server, "/invocations", {"x": 1}, {IDENTIFIER: "a2"})
    assert answer.status == 404 and "'a2'" in answer.json()["message"]
    answer = _post(server, "/adapters", {"name": "broken", "src": str(a1)})
    assert answer.status == 500 and "load_adapter_fn raised ValueError" in answer.json()["message"]
    assert _post(server, "/invocations", {"x": 1}, {IDENTIFIER: "broken"}).status == 404
    # the query-string form, with a src relative to the model directory
    (opt_ml / "model" / "adapters" / "a2").mkdir(parents=True)
    (opt_ml / "model" / "adapters" / "a2" / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert _post(server, "/adapters?name=a2&src=adapters/a2", "").status == 200
    listed = server.request("GET", "/adapters").json()["adapters"]
    assert listed == [{"name": "a1", "src": str(a1)}, {"name": "a2", "src": "adapters/a2"}]
    assert _post(server, "/invocations", {"x": 1}, {IDENTIFIER: "a2"}).json()["adapter_model"]["rank"] == 4

    # a streamed answer names it in every chunk
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/invocations", json.dumps({"stream": True}),
                 {"Content-Type": "application/json", IDENTIFIER: "a2"})
    chunks = [json.loads(line) for line in conn.getresponse().read().splitlines()]
    assert [c["adapter"] for c in chunks] == ["a2"] * 3
    conn.close()

    # DELETE while a request uses it: that request finishes with it, then every worker unloads
    slow = {}
    using = threading.Thread(target=lambda: slow.update(
        answer=_post(server, "/invocations", {"sleep": 1.0}, {IDENTIFIER: "a1"})))
    using.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert server.request("DELETE", "/adapters/a1", timeout=20).status == 200
    waited = time.monotonic() - started
    using.join(10)
    assert slow["answer"].status == 200 and slow["answer"].json()["adapter"] == "a1"
    assert waited > 0.4  # the worker in that request unloaded after it
    unloads = [entry for entry in _log(opt_ml) if entry[:2] == ["unload", "a1"]]
    assert len({entry[2] for entry in unloads}) == WORKERS
    assert _post(server, "/invocations", {"x": 1}, {IDENTIFIER: "a1"}).status == 404
    assert server.request("DELETE", "/adapters/a1").status == 404
    assert server.stop() == 0


def test_without_the_hooks_adapters_says_which_to_add(start_server, tmp_path):
    server = start_server("echo")
    answer = _post(server, "/adapters", {"name": "a1", "src": str(tmp_path)})
    assert answer.status == 501 and "load_adapter_fn(name, src, model)" in answer.json()["message"]
    answer = _post(server, "/invocations", {"x": 1}, {IDENTIFIER: "a1"})
    assert answer.status == 404 and "'a1'" in answer.json()["message"]
    assert server.request("GET", "/adapters").json() == {"adapters": []}
    assert _post(server, "/invocations", {"x": 1}).json() == {"x": 1}
    assert server.stop() == 0
