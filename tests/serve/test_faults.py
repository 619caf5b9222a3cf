"""Bad input and faults against the frozen binary with real nginx and gunicorn: each ends with a
specific message and exit code, or is survived by a restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.serve.conftest import Response, children_of, cmdline

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons


def _failure(server, timeout: float = 20) -> tuple[int, dict]:
    code = server.wait_exit(timeout)
    failed = server.events("command_failed") or server.events("serve_failed")
    assert failed, server.output()
    return code, failed[-1]


def test_no_model_dir_exits_5_naming_the_directory(start_server, opt_ml):
    shutil.rmtree(opt_ml / "model")
    server = start_server(None, wait=False)
    code, failed = _failure(server)
    assert code == 5
    assert f"model directory {opt_ml / 'model'} does not exist" in failed["error"]
    assert "docker run -v" in failed["hint"]


def test_missing_handler_exits_4_with_hint(start_server, opt_ml):
    server = start_server(None, wait=False)
    code, failed = _failure(server)
    assert code == 4
    assert "inference.py not found" in failed["error"]
    assert str(opt_ml / "model" / "code") in failed["error"] and str(opt_ml / "code") in failed["error"]
    assert "SAGEMAKER_PROGRAM" in failed["hint"] and "SAGEMAKER_SUBMIT_DIRECTORY" in failed["hint"]


def test_a_handler_in_the_images_code_dir_is_served(start_server, opt_ml):
    """The same rule as for apps (issue 24 item 1): code/ in model.tar.gz first, then /opt/ml/code."""
    from tests.serve.conftest import HANDLERS

    (opt_ml / "code").mkdir(exist_ok=True)
    shutil.copy(HANDLERS / "echo.py", opt_ml / "code" / "inference.py")
    server = start_server(None)
    assert server.invoke({"x": 1}).status == 200
    assert server.wait_event("model_loaded")["module"] == str(opt_ml / "code" / "inference.py")


def test_handler_raising_on_import_exits_4_with_line(start_server):
    server = start_server("import_error", wait=False)
    code, failed = _failure(server)
    assert code == 4
    assert "inference.py raised JSONDecodeError on import" in failed["error"]
    assert "inference.py:4" in failed["hint"]
    assert server.events("handler_import_failed")[0]["exception"].count("Traceback") >= 1


def test_model_fn_raising_exits_4_and_does_not_restart(start_server):
    server = start_server("model_fn_raises", wait=False)
    code, failed = _failure(server)
    assert code == 4
    assert "model_fn raised FileNotFoundError: no weights in" in failed["error"]
    assert not server.events("child_restarting")


def test_transform_fn_with_input_fn_is_a_startup_error(start_server):
    server = start_server("transform_clash", wait=False)
    code, failed = _failure(server)
    assert code == 4
    assert "transform_fn together with input_fn" in failed["error"]


def test_nginx_missing_exits_3_with_install_hint(start_server):
    server = start_server("echo", env={"SMC_NGINX": "/nonexistent/nginx"}, wait=False)
    code, failed = _failure(server)
    assert code == 3
    assert "SMC_NGINX=/nonexistent/nginx is not an executable file" in failed["error"]
    without = start_server("echo", env={"PATH": "/nonexistent"}, wait=False)
    code, failed = _failure(without)
    assert code == 3
    assert failed["error"] == "nginx not found on PATH"
    assert "nginx-light" in failed["hint"]


def test_port_already_taken_exits_3(start_server, port):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = start_server("echo", port=port, wait=False)
        code, failed = _failure(server)
    assert code == 3
    assert f"port {port} is already in use" in failed["error"]
    assert "SAGEMAKER_BIND_TO_PORT" in failed["hint"]


def test_bad_setting_exits_5_naming_the_variable(start_server):
    server = start_server("echo", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "500"}, wait=False)
    assert server.wait_exit(20) == 5
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB='500' is outside 0..100" in server.output()


def test_worker_killed_mid_request_gives_json_502_and_is_replaced(start_server):
    server = start_server("echo", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    resp = server.invoke({"kill": True})
    assert resp.status == 502
    assert resp.json()["status"] == 502
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.invoke({"x": 1}).status != 200:
        time.sleep(0.1)
    assert server.invoke({"x": 1}).status == 200
    killed = server.wait_event("worker_killed", signal="SIGKILL")
    # Sent by this test, not the OOM killer: the memory cgroup's counter tells them apart.
    assert "out of memory" not in killed["cause"] and killed["component"] == "gunicorn", killed


def _child_pid(server, name: str) -> int:
    started = [r for r in server.events("child_started") if r["child"] == name]
    return started[-1]["child_pid"]


@pytest.mark.embedded_only("under the image's Python the master is that interpreter (test_image_python.py)")
def test_the_gunicorn_master_is_a_fork_of_smc_not_a_second_binary_start(start_server):
    """One onefile bootloader start per `smc serve`: the master is forked from smc proper (named
    smc-gunicorn) and shares its unpacked bundle."""
    server = start_server("echo", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    master = _child_pid(server, "gunicorn")
    status = {line.split(":")[0]: line.split(":", 1)[1].strip()
              for line in Path(f"/proc/{master}/status").read_text().splitlines()}
    assert status["Name"] == "smc-gunicorn"
    smc_proper = int(status["PPid"])
    assert os.readlink(f"/proc/{master}/exe") == os.readlink(f"/proc/{smc_proper}/exe")
    assert cmdline(master) == cmdline(smc_proper)  # forked: no `smc serve --gunicorn-master` exec
    assert len(children_of(master)) == 1
    assert server.invoke({"x": 1}).status == 200


def test_gunicorn_master_killed_is_restarted(start_server):
    server = start_server("echo")
    master = _child_pid(server, "gunicorn")
    workers = children_of(master)
    assert workers
    os.kill(master, signal.SIGKILL)
    exited = server.wait_event("child_exited", child="gunicorn", child_pid=master)
    assert exited["exit_code"] == 137 and "SIGKILL" in exited["cause"]
    server.wait_event("child_restarting", child="gunicorn")
    server.wait_ready(timeout=15)
    assert _child_pid(server, "gunicorn") != master
    assert server.invoke({"x": 1}).status == 200
    assert all("smc" not in cmdline(pid) for pid in workers)  # the old workers did not linger


def test_nginx_killed_is_restarted(start_server):
    server = start_server("echo")
    nginx = _child_pid(server, "nginx")
    server.wait_event("child_running", child="nginx", child_pid=nginx)  # dying before that is a boot failure
    os.kill(nginx, signal.SIGKILL)
    server.wait_event("child_exited", child="nginx", child_pid=nginx)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _child_pid(server, "nginx") == nginx:
        time.sleep(0.05)
    server.wait_ready(timeout=10)
    assert server.invoke({"x": 1}).status == 200


def test_child_failing_repeatedly_makes_smc_give_up_with_its_status(start_server):
    server = start_server("echo", env={"SMC_RESTART_LIMIT": "2", "SMC_RESTART_WINDOW_SECONDS": "60"})
    first = _child_pid(server, "gunicorn")
    os.kill(first, signal.SIGKILL)
    server.wait_event("child_restarting", child="gunicorn")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _child_pid(server, "gunicorn") == first:
        time.sleep(0.05)
    server.wait_event("child_running", child="gunicorn", child_pid=_child_pid(server, "gunicorn"))
    os.kill(_child_pid(server, "gunicorn"), signal.SIGKILL)
    assert server.wait_exit(20) == 137
    giving_up = server.wait_event("giving_up", child="gunicorn")
    assert giving_up["failures"] == 2
    failed = server.events("serve_failed")[0]
    assert failed["exit_code"] == 137
    assert failed["cause"] == "killed by SIGKILL (not by smc; OOM counter unchanged)", failed  # this test, not OOM
    assert server.ping() is None  # nginx was stopped too


def test_unhealthy_gunicorn_is_killed_and_restarted(start_server):
    server = start_server("echo", env={"SMC_HEALTH_INTERVAL_SECONDS": "0.2", "SMC_HEALTH_TIMEOUT_SECONDS": "0.5"})
    master = _child_pid(server, "gunicorn")
    # Alive but hung: its unix socket still takes connections into the backlog, only the
    # missing heartbeat of the master's loop tells.
    os.killpg(master, signal.SIGSTOP)
    try:
        server.wait_event("child_unhealthy", child="gunicorn", timeout=15)
        exited = server.wait_event("child_exited", child="gunicorn", child_pid=master)
        assert exited["cause"] == "killed by smc (unhealthy: 3 failed health probes)", exited
    finally:
        try:
            os.killpg(master, signal.SIGCONT)
        except ProcessLookupError:
            pass
    server.wait_ready(timeout=15)
    assert _child_pid(server, "gunicorn") != master


def test_oversize_body_on_realtime_limit_is_413(start_server):
    server = start_server("echo")
    results: list[Response] = []
    thread = threading.Thread(target=lambda: results.append(
        server.invoke(b"1" * (6 * 1024 * 1024 + 1), content_type="text/csv", timeout=30)))
    thread.start()
    thread.join()
    assert results[0].status == 413
    assert "6 MiB" in results[0].json()["message"]


def test_model_not_loaded_within_startup_timeout_exits_1(start_server):
    server = start_server("echo", env={"ECHO_LOAD_DELAY_S": "30", "SAGEMAKER_STARTUP_TIMEOUT": "1"}, wait=False)
    code, failed = _failure(server)
    assert code == 1
    assert "SAGEMAKER_STARTUP_TIMEOUT" in failed["reason"]


def test_smc_killed_hard_takes_its_children_along(start_server):
    from tests.serve.conftest import proc_state

    server = start_server("echo")
    (supervisor,) = children_of(server.proc.pid)  # the onefile bootloader's one child: smc's Python
    children = [_child_pid(server, "gunicorn"), _child_pid(server, "nginx")]
    os.kill(supervisor, signal.SIGKILL)
    server.wait_exit(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(proc_state(pid) not in (None, "Z") for pid in children):
        time.sleep(0.05)
    assert all(proc_state(pid) in (None, "Z") for pid in children)
    assert server.ping(timeout=1) is None  # the port is free again



def test_a_misspelt_handler_or_app_module_gets_a_did_you_mean(start_server, opt_ml):
    """handlr.py beside handler.py got no hint (issue 24 item 8)."""
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "handler.py").write_text("def model_fn(d):\n    return 1\ndef predict_fn(x, m):\n    return x\n")
    server = start_server(None, env={"SAGEMAKER_PROGRAM": "handlr.py"}, wait=False)
    code_, failed = _failure(server)
    assert code_ == 4 and f"did you mean {code / 'handler.py'}?" in failed["error"], failed
    app = start_server(None, env={"SMC_WSGI_APP": "handlr:app"}, wait=False)
    code_, failed = _failure(app)
    assert code_ == 4 and f"did you mean {code / 'handler.py'}?" in failed["error"], failed
