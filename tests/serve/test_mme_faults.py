"""Bad input and faults of the multi-model endpoint (frozen binary, real nginx and gunicorn)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from tests.serve.conftest import descendants
from tests.serve.mme_helpers import load, make_model, mme  # noqa: F401  (fixture)


def _names(server) -> list[str]:
    return [m["modelName"] for m in server.request("GET", "/models").json()["models"]]


def _tree_rss_mib(pid: int) -> float:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def test_bad_urls_and_names_are_refused_with_reasons(mme, tmp_path):
    server = mme(env={"SMC_MME_MODEL_ROOTS": f"{tmp_path}/opt_ml/models:{tmp_path}/extra"})
    base = server.base
    (base / "models" / "empty" / "model").mkdir(parents=True)
    (base / "models" / "codeonly" / "model" / "code").mkdir(parents=True)
    cases = {
        str(base / "models" / "empty" / "model"): (400, "holds no model files"),
        str(base / "models" / "codeonly" / "model"): (400, "holds no model files"),
        str(base / "models" / "nope" / "model"): (404, "no such model directory"),
        "/etc": (400, "outside the model directories"),
        f"{base}/models/../../../../etc": (400, "outside the model directories"),
        "relative/model": (400, "absolute"),
    }
    for url, (status, words) in cases.items():
        resp = load(server, "m", url)
        assert resp.status == status and words in resp.json()["message"], (url, resp.body)
    for name in ("a/b", "..", ".", "", "x" * 300, "bell\x07", 7, None):
        resp = load(server, name, make_model(base, "ok"))
        assert resp.status == 400 and "model_name" in resp.json()["message"], (name, resp.body)
    for body in (b"not json", b"[1]", b'{"model_name": "m"}'):
        assert server.request("POST", "/models", body, {"Content-Type": "application/json"}).status == 400
    # a configured extra root is allowed
    extra = tmp_path / "extra" / "m"
    extra.mkdir(parents=True)
    (extra / "model.json").write_text(json.dumps({"weights": [1, 1, 1], "intercept": 0}))
    assert load(server, "m", str(extra)).status == 200
    assert _names(server) == ["m"]


def test_a_model_that_cannot_load_leaves_nothing_behind(mme):
    server = mme()
    base = server.base
    broken = Path(make_model(base, "imp", own_code="h"))
    (broken / "code" / "inference.py").write_text("import no_such_module_anywhere\n")
    resp = load(server, "imp", str(broken))
    assert resp.status == 500
    message = resp.json()["message"]
    assert "model imp" in message and "inference.py raised ModuleNotFoundError" in message
    resp = load(server, "boom", make_model(base, "boom", extra={"fail": "weights are corrupt"}))
    assert resp.status == 500 and "model boom" in resp.json()["message"] and "weights are corrupt" in resp.json()["message"]
    server.wait_event("mme_load_failed", model="boom")
    assert _names(server) == []
    assert server.request("POST", "/models/boom/invoke", "1,2,3", {"Content-Type": "text/csv"}).status == 404
    # the same name loads once its model is fixed: no pending or half-registered state remains
    assert load(server, "boom", make_model(base, "boom2")).status == 200
    assert server.request("POST", "/models/boom/invoke", "1,2,3", {"Content-Type": "text/csv"}).status == 200


def test_507_when_memory_would_run_out(mme):
    server = mme(env={"SMC_MME_MEMORY_HEADROOM_MB": "0"}, workers=2)
    used = _tree_rss_mib(server.proc.pid)
    server.stop()
    # The limit counts gunicorn's processes only, `used` the whole tree (smc and nginx too): a
    # margin of 40 MiB over the tree is far below the 2 x 80 MiB the model needs in two workers.
    server = mme(env={"SMC_MME_MEMORY_LIMIT_MB": str(int(used + 40)), "SMC_MME_MEMORY_HEADROOM_MB": "0"}, workers=2)
    big = load(server, "big", make_model(server.base, "big", extra={"ballast_mb": 80}))
    assert big.status == 507, big.body  # 80 MiB here, 80 more in the other worker: over the limit
    assert "not enough memory" in big.json()["message"]
    assert _names(server) == []
    assert load(server, "small", make_model(server.base, "small")).status == 200


def test_fifty_models_loaded_then_unloaded_give_memory_back(mme):
    server = mme(workers=2)
    for i in range(50):
        make_model(server.base, f"m{i:02d}", extra={"ballast_mb": 2})
    # One load and unload first: what the first load imports for good (the handler machinery,
    # the workers' log context) is not a leak of the 50 that follow.
    assert load(server, "warm", make_model(server.base, "warm")).status == 200
    assert server.request("DELETE", "/models/warm").status == 200
    start = _tree_rss_mib(server.proc.pid)
    started = time.monotonic()
    for i in range(50):
        assert load(server, f"m{i:02d}", str(server.base / "models" / f"m{i:02d}" / "model")).status == 200
    load_s = time.monotonic() - started
    loaded = _tree_rss_mib(server.proc.pid)
    assert loaded - start > 150, (start, loaded)  # 50 x 2 MiB in each of 2 workers
    assert len(server.request("GET", "/models").json()["models"]) == 50
    for i in range(50):
        assert server.request("DELETE", f"/models/m{i:02d}").status == 200
    after = _tree_rss_mib(server.proc.pid)
    print(f"50 models: rss {start:.0f} -> {loaded:.0f} -> {after:.0f} MiB, loads {load_s:.2f} s")
    assert after - start < 25, (start, loaded, after)
    assert _names(server) == []


def test_invokes_racing_a_load_see_404_then_200_never_an_error(mme):
    server = mme(workers=2)
    url = make_model(server.base, "r", extra={"sleep_s": 0.4})
    statuses: list[int] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            statuses.append(server.request("POST", "/models/r/invoke", "1,2,3\n", {"Content-Type": "text/csv"}).status)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        second = []
        racer = threading.Thread(target=lambda: second.append(load(server, "r", url).status))
        racer.start()
        assert load(server, "r", url).status in (200, 409)
        racer.join()
        assert second[0] in (200, 409)
        after_load = len(statuses)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses) <= {200, 404}, statuses
    assert set(statuses[after_load:]) == {200}
    assert 404 in statuses


def test_a_worker_killed_with_sigkill_is_replaced_with_every_model(mme):
    server = mme(workers=2)
    for name in ("p", "q"):
        assert load(server, name, make_model(server.base, name, own_code=name)).status == 200

    def pids_answering(name, calls=20):
        return {server.request("POST", f"/models/{name}/invoke", "[1]", {"Content-Type": "application/json"}).json()["pid"]
                for _ in range(calls)}

    # Both workers must be known before the kill: otherwise the one that happened not to answer
    # these calls would later look like the replacement.
    before: set[int] = set()
    deadline = time.monotonic() + 20
    while len(before) < 2 and time.monotonic() < deadline:
        before |= pids_answering("p")
    assert len(before) == 2, before
    victim = next(iter(before))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    seen: set[int] = set()
    while time.monotonic() < deadline and not (seen - before):
        seen |= pids_answering("q", 4)
    assert seen - before, "the replacement worker never answered"
    new = (seen - before).pop()
    server.wait_event("mme_worker_synced", pid=new)
    assert sorted(server.wait_event("mme_worker_synced", pid=new)["loaded"]) == ["p", "q"]
    assert victim not in pids_answering("p", 10)


def test_a_model_that_loads_in_one_worker_but_not_another_is_dropped_everywhere(mme):
    server = mme(workers=2)
    model = Path(make_model(server.base, "half", own_code="h"))
    # Exactly one model_fn call wins the exclusive create; the other worker's raises.
    (model / "code" / "inference.py").write_text(
        "import os\n\n"
        "def model_fn(model_dir):\n"
        "    os.close(os.open(os.path.join(model_dir, 'first'), os.O_CREAT | os.O_EXCL))\n"
        "    return 1\n\n"
        "def predict_fn(data, model):\n"
        "    return data\n")
    resp = load(server, "half", str(model))
    assert resp.status == 500, resp.body
    assert "model half" in resp.json()["message"] and "FileExistsError" in resp.json()["message"]
    assert _names(server) == []
    statuses = {server.request("POST", "/models/half/invoke", "[1]", {"Content-Type": "application/json"}).status
                for _ in range(10)}
    assert statuses == {404}  # neither worker kept it
    (model / "first").unlink()
    (model / "code" / "inference.py").write_text("def model_fn(d):\n    return 1\n\ndef predict_fn(x, m):\n    return x\n")
    assert load(server, "half", str(model)).status == 200  # nothing half-registered blocks the name


def test_a_load_waits_for_a_worker_busy_with_a_long_request(mme):
    server = mme(workers=2, env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "10"})
    slow = server.base / "models" / "slow" / "model"
    (slow / "code").mkdir(parents=True)
    (slow / "weights.bin").write_bytes(b"0")
    (slow / "code" / "inference.py").write_text(
        "import time\n\ndef model_fn(d):\n    return 1\n\n"
        "def predict_fn(data, model):\n    time.sleep(float(data))\n    return data\n")
    assert load(server, "slow", str(slow)).status == 200
    busy = threading.Thread(target=lambda: server.request("POST", "/models/slow/invoke", "2",
                                                          {"Content-Type": "application/json"}))
    busy.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert load(server, "p", make_model(server.base, "p", own_code="p")).status == 200
    waited = time.monotonic() - started
    # answered only once the busy worker finished its request and loaded p too
    assert len((server.base / "models" / "p" / "model" / "loads.txt").read_text().split()) == 2
    assert waited > 1.0, waited
    busy.join()
