"""Engine mode in the frozen binary: /ping from the engine's health, proxying (headers, bodies,
streaming), and the faults the issue lists, each with a real engine process."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

from tests.conftest import free_port
from tests.serve.conftest import descendants, request
from tests.serve.nginx_errors import CASES, LOGGED, check_every_case_is_json, logged_errors


def test_ping_follows_engine_health_and_invocations_pass_everything(start_engine):
    server = start_engine("--warmup-s", "1.0", wait=False)
    deadline = time.monotonic() + 5
    while server.ping() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # nginx starts with the engine: /ping answers long before the engine is healthy
    assert server.ping() == 503
    answer = server.invoke({"x": 1})
    assert answer.status == 503 and answer.json()["status"] == 503  # JSON, not nginx's HTML
    ready_s = server.wait_ready()
    assert ready_s < 1.0 + 4  # the engine's own warm-up plus start-up on a loaded machine
    healthy = server.events("engine_healthy")[0]
    assert healthy["elapsed_s"] < 1.0 + 2  # its python start + 50 ms polling
    assert [e["child"] for e in server.events("child_started")].count("nginx") == 1  # one nginx, started once
    answer = server.invoke("hello", headers={
        "Custom-Attributes": "trace=1", "X-Amzn-SageMaker-Inference-Id": "inf-42",
        "X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
    assert answer.status == 200
    body = answer.json()
    assert body["path"] == "/invocations" and body["bytes"] == 5
    assert body["headers"]["Custom-Attributes"] == "trace=1"
    assert body["headers"]["X-Amzn-SageMaker-Inference-Id"] == "inf-42"
    assert answer.headers["x-amzn-sagemaker-new-session-id"].startswith("sess-1")
    assert answer.headers["custom-attributes"] == "engine=stand-in"
    assert answer.headers["x-amzn-sagemaker-inference-id"] == "inf-42"
    closed = server.invoke("bye", headers={"X-Amzn-SageMaker-Session-Id": "sess-1"})
    assert closed.headers["x-amzn-sagemaker-closed-session-id"] == "sess-1"
    big = server.invoke(b"x" * (5 * 1024 * 1024), content_type="application/octet-stream", timeout=30)
    assert big.status == 200 and big.json()["bytes"] == 5 * 1024 * 1024
    too_big = server.invoke(b"x" * (7 * 1024 * 1024), content_type="application/octet-stream", timeout=30)
    assert too_big.status == 413 and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in too_big.json()["message"]
    # keep-alive client, concurrent requests
    errors: list = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            for i in range(30):
                conn.request("POST", "/invocations", body=json.dumps({"i": i}), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors.append(resp.status)
        except OSError as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    server.wait_event("request", inference_id="inf-42", timeout=5)
    assert server.stop() == 0


def test_invocations_path_maps_to_the_engine_route(start_engine):
    server = start_engine(env={"SMC_ENGINE_INVOCATIONS_PATH": "/v1/predict"})
    body = server.request("POST", "/invocations?verbose=1", "{}", {"Content-Type": "application/json"}).json()
    assert body["path"] == "/v1/predict" and body["query"] == "verbose=1"


def test_streamed_chunks_arrive_as_the_engine_writes_them(start_engine):
    server = start_engine("--chunks", "5", "--chunk-delay-s", "0.3")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    started = time.monotonic()
    conn.request("POST", "/stream", body="{}", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    arrivals = []
    while True:
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic() - started)
        if len(arrivals) == 5:
            break
    conn.close()
    assert len(arrivals) == 5
    assert arrivals[0] < 0.6, arrivals  # the first token long before the answer is complete (1.5 s)
    assert arrivals[-1] - arrivals[0] > 0.9, arrivals


def _engine_python_pid(server) -> int:
    for pid in descendants(server.proc.pid):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"stand_in_engine.py" in cmd and not cmd.startswith(b"/bin/sh"):
            return pid
    raise AssertionError("engine process not found")


def test_engine_killed_under_load_recovers_and_only_in_flight_requests_fail(start_engine):
    server = start_engine("--warmup-s", "0.5")
    results: list = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 8
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                results.append(server.invoke({"a": 1}, timeout=5).status)
            except OSError as exc:
                results.append(type(exc).__name__)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(_engine_python_pid(server), signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(0.1)
    assert server.ping() == 503
    server.wait_ready(timeout=10)
    recovered_s = time.monotonic() - killed
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert recovered_s < 0.5 + 0.5 + 1.5, recovered_s  # backoff + warm-up + a loaded machine
    failures = [r for r in results if r != 200]
    assert all(r in (502, 503) for r in failures), failures  # JSON errors, never a hang or reset
    assert len(failures) < len(results)
    assert results[-1] == 200
    assert server.events("child_restarting")[0]["child"] == "engine"
    exited = next(e for e in server.events("child_exited") if e["child"] == "engine")
    assert exited["cause"] == "killed by SIGKILL (not by smc; OOM counter unchanged)", exited  # this test, not OOM
    assert server.stop() == 0


def test_engine_that_always_exits_gives_up_with_its_stderr_tail(start_engine):
    server = start_engine("--exit-code", "7", wait=False, env={"SMC_ENGINE_MAX_RESTARTS": "2"})
    assert server.wait_exit(20) == 1
    elapsed = time.monotonic() - server.started
    assert elapsed < 6, elapsed
    assert len(server.events("child_restarting")) == 2
    failed = server.events("engine_failed")[0]
    assert "refuses to start (exit 7)" in failed["stderr_tail"]
    assert "exit code 7" in failed["cause"] and "3 times" in failed["cause"]
    assert "refuses to start" in server.events("serve_failed")[0]["reason"]


def test_engine_command_not_found_exits_127_without_restarting(start_engine):
    server = start_engine(command="no-such-engine-binary --port 1", wait=False)
    assert server.wait_exit(10) == 127
    assert "no-such-engine-binary" in server.err_path.read_text()
    # found by the shell only at run time: still no restart loop
    server = start_engine(command="cd / && no-such-engine-binary", wait=False)
    assert server.wait_exit(10) == 127
    assert not server.events("child_restarting")
    assert "not found" in server.events("engine_failed")[0]["cause"]


def test_engine_never_healthy_hits_the_startup_timeout(start_engine):
    server = start_engine("--health-status", "500", wait=False, env={"SAGEMAKER_STARTUP_TIMEOUT": "2"})
    assert server.wait_exit(15) == 1
    cause = server.events("engine_failed")[0]["cause"]
    assert "SAGEMAKER_STARTUP_TIMEOUT" in cause and "/health" in cause
    assert time.monotonic() - server.started < 6


def test_sigterm_drains_in_flight_then_stops_the_engine(start_engine):
    server = start_engine()
    results: list = []
    thread = threading.Thread(target=lambda: results.append(
        server.request("POST", "/sleep?s=1.5", "{}", {"Content-Type": "application/json"}, timeout=10)))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert server.ping() != 200
    thread.join()
    assert results[0].status == 200
    assert server.wait_exit(10) == 0
    assert time.monotonic() - started < 4
    assert [e["child"] for e in server.events("child_exited")] == ["nginx", "engine"]


def test_idle_sigterm_exits_fast(start_engine):
    server = start_engine()
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 1.5


def test_engine_ignoring_sigterm_is_killed_after_the_grace(start_engine):
    server = start_engine("--ignore-term", env={"SMC_STOP_GRACE_SECONDS": "1.5"})
    pids = descendants(server.proc.pid)
    started = time.monotonic()
    assert server.stop() == 0
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 4, elapsed
    assert any(e.get("why") == "grace_expired" for e in server.events("child_killed"))
    time.sleep(0.2)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]


def test_unhealthy_engine_turns_ping_503_and_is_restarted(start_engine, tmp_path):
    flag = tmp_path / "sick"
    server = start_engine("--unhealthy-file", str(flag), env={
        "SMC_ENGINE_HEALTH_INTERVAL_SECONDS": "0.2", "SMC_ENGINE_HEALTH_FAILURES": "3"})
    flag.touch()
    deadline = time.monotonic() + 3
    while server.ping() == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.ping() == 503
    server.wait_event("engine_restart_unhealthy", timeout=5)
    flag.unlink()
    server.wait_ready(timeout=10)
    exited = server.wait_event("child_exited", child="engine")
    assert exited["cause"] == "killed by smc (unhealthy: 3 failed health checks)", exited  # smc's own kill
    assert server.stop() == 0


def test_engine_url_on_the_sagemaker_port_is_refused(smc, opt_ml):
    port = free_port()
    result = smc("serve", env={"SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_BIND_TO_PORT": str(port),
                               "SMC_ENGINE_COMMAND": "true", "SMC_ENGINE_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 5, result.stderr
    assert "SMC_ENGINE_URL" in result.stderr


def test_bad_engine_url_is_a_config_error(smc, opt_ml):
    result = smc("serve", env={"SAGEMAKER_BASE_DIR": str(opt_ml), "SMC_ENGINE_COMMAND": "true",
                               "SMC_ENGINE_URL": "127.0.0.1:8000/x"})
    assert result.returncode == 5 and "SMC_ENGINE_URL" in result.stderr


def test_engine_down_gives_json_502(start_engine):
    server = start_engine()
    body = server.request("POST", "/crash", "{}", {"Content-Type": "application/json"})
    assert body.status == 502 and body.json()["status"] == 502
    server.wait_event("child_restarting", child="engine")
    deadline = time.monotonic() + 10
    while len(server.events("engine_healthy")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.wait_ready(timeout=10)
    assert request(server.port, "POST", "/invocations", "{}").status == 200


def test_compound_command_engine_still_stops_gracefully(start_engine):
    port = free_port()
    from tests.engine.conftest import engine_command

    server = start_engine(command=f"cd / && {engine_command(port)}", env={"SMC_ENGINE_URL": f"http://127.0.0.1:{port}"})
    assert server.stop() == 0
    # the shell died on SIGTERM; the engine (re-parented to smc) finished its own stop: exit 0, not SIGKILL
    assert [e["exit_code"] for e in server.events("orphan_reaped")] == [0]


def test_launch_command_and_max_start_retries_aliases(smc_binary, opt_ml):
    from tests.engine.conftest import engine_command
    from tests.serve.conftest import Server

    port = free_port()
    server = Server(smc_binary, opt_ml, free_port(), {
        "LAUNCH_COMMAND": engine_command(port, "--exit-code", "9"), "ENGINE_MAX_START_RETRIES": "1",
        "SMC_ENGINE_URL": f"http://127.0.0.1:{port}"})
    assert server.wait_exit(15) == 1
    assert len(server.events("child_restarting")) == 1
    assert "exit code 9" in server.events("engine_failed")[0]["cause"]


def test_engine_port_already_taken_is_refused_before_starting(smc, opt_ml):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = smc("serve", env={"SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_BIND_TO_PORT": str(free_port()),
                                   "SMC_ENGINE_COMMAND": "true", "SMC_ENGINE_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 3, result.stderr
    assert "already accepts connections" in result.stderr


def test_sigterm_lets_a_stream_in_flight_finish(start_engine):
    server = start_engine("--chunks", "6", "--chunk-delay-s", "0.25")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/stream", body="{}", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.readline().startswith(b"data:")  # the first token is out: the stream is in flight
    server.proc.send_signal(signal.SIGTERM)
    body = resp.read()  # the rest of the stream, then the chunked terminator
    conn.close()
    assert body.count(b"data:") == 5, body
    assert server.wait_exit(10) == 0


def test_every_error_nginx_makes_is_json_with_the_clients_method_and_path(start_engine):
    # The same error pages as serve mode: 414, 494 (a 64 KB header), TRACE and HTTP/2.0 were HTML.
    server = start_engine()
    check_every_case_is_json(server.port)
    logged = logged_errors(server, wanted=len(CASES))
    assert LOGGED <= logged, logged
    assert not [r for r in server.events("request") if r["path"].startswith("/_smc_error")]


def test_engine_stderr_keeps_its_stated_level_and_the_tail_starts_at_a_line(start_engine, tmp_path):
    """Every engine stderr line was a warning (an access line per health check became a warning a
    second), and stderr_tail started mid-line (issue 24 item 7)."""
    script = tmp_path / "noisy_engine.py"
    script.write_text(
        "import sys\n"
        "for i in range(40):\n"
        "    print(f'line-{i:03d}-' + 'x' * 90, file=sys.stderr)\n"
        "print('INFO:     engine says hello', file=sys.stderr)\n"
        "print('2026-01-01T00:00:00Z ERROR engine says boom', file=sys.stderr)\n"
        "print('a plain line', file=sys.stderr)\n"
        "sys.exit(7)\n")
    server = start_engine(command=f"python3 {script}", wait=False, env={"SMC_ENGINE_MAX_RESTARTS": "0"})
    assert server.wait_exit(20) == 1
    tail = server.events("engine_failed")[0]["stderr_tail"]
    assert tail.startswith("line-") and tail.endswith("a plain line"), tail
    levels = {r["message"][:30]: r["level"] for r in server.lines() if r.get("component") == "engine" and "message" in r}
    assert levels["INFO:     engine says hello"] == "info"
    assert levels["2026-01-01T00:00:00Z ERROR eng"] == "error"
    assert levels["a plain line"] == "info"
    assert levels["line-000-" + "x" * 21] == "info"


def test_an_engine_run_by_smc_python_logs_the_pid_that_serves(start_engine, smc_binary):
    """`smc python engine.py` (an image without Python) starts a launcher, the onefile bootloader:
    the logged child_pid was not the process that serves (issue 24 item 6)."""
    from tests.engine.conftest import STAND_IN

    port = free_port()
    server = start_engine(command=f"{smc_binary} python {STAND_IN} --port {port}",
                          env={"SMC_ENGINE_URL": f"http://127.0.0.1:{port}"})
    healthy = server.events("engine_healthy")[0]
    serving = healthy.get("serving_pid")
    assert serving and serving != healthy["child_pid"], healthy
    parent = int(Path(f"/proc/{serving}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert parent == healthy["child_pid"], (parent, healthy)  # the bootloader's Python child
    assert server.stop() == 0


def test_a_low_open_file_limit_is_said_and_nginx_asks_for_no_more_than_it_can_get(smc_binary, opt_ml):
    """Engine mode asked nginx for worker_rlimit_nofile above the hard limit (nginx logged a
    critical setrlimit failure on every start in Docker) and never logged open_file_limit_low as
    handler mode does (issue 24 item 5). prlimit makes the hard limit 1500 here."""
    from tests.engine.conftest import engine_command
    from tests.serve.conftest import Server

    engine_port = free_port()
    env = {"SMC_ENGINE_URL": f"http://127.0.0.1:{engine_port}", "SMC_ENGINE_COMMAND": engine_command(engine_port),
           "SMC_NGINX_WORKER_CONNECTIONS": "4096"}
    server = Server(smc_binary, opt_ml, free_port(), env, wrapper=["prlimit", "--nofile=1500:1500"])
    try:
        server.wait_ready()
        low = server.events("open_file_limit_low")
        assert low and low[0]["hard"] == 1500 and low[0]["wanted"] > 1500, low
        assert "setrlimit" not in server.output(), server.output()[-2000:]
    finally:
        assert server.stop() == 0
