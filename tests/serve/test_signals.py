"""SIGTERM drains, a second signal stops at once, the grace is bounded, and smc reaps as PID 1."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from tests.serve.conftest import Response, descendants, proc_state


def _in_flight(server, seconds: float) -> tuple[threading.Thread, list]:
    results: list = []

    def call() -> None:
        try:
            results.append(server.invoke({"sleep": seconds}, timeout=30))
        except OSError as exc:
            results.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)  # the request is inside predict_fn now
    return thread, results


def test_sigterm_finishes_in_flight_request_then_exits_0(start_server):
    server = start_server("echo")
    thread, results = _in_flight(server, 1.5)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert server.ping() != 200  # 503 or refused: no longer taking traffic
    thread.join()
    assert isinstance(results[0], Response) and results[0].status == 200, results
    assert server.wait_exit(20) == 0
    assert time.monotonic() - started < 5
    order = [(r["child"]) for r in server.events("child_exited")]
    assert order == ["nginx", "gunicorn"]
    assert server.events("serve_stopped")


def test_sigint_also_drains(start_server):
    server = start_server("echo")
    assert server.stop(signal.SIGINT) == 0
    assert server.events("stop_requested")[0]["signal"] == "SIGINT"


def test_second_signal_stops_at_once(start_server):
    server = start_server("echo")
    thread, _ = _in_flight(server, 20)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 3
    thread.join()
    assert server.events("stop_forced")


def test_grace_bounds_the_drain_and_cutting_requests_exits_124(start_server):
    server = start_server("echo", env={"SMC_STOP_GRACE_SECONDS": "1.5"})
    thread, _ = _in_flight(server, 20)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 124  # documented: the grace expired and requests were cut
    assert time.monotonic() - started < 4
    thread.join()
    assert server.events("child_killed")
    causes = {r["child"]: r["cause"] for r in server.events("child_exited")}
    assert "killed by smc (grace expired)" in causes.values(), causes
    failed = server.events("serve_failed")[0]
    assert failed["exit_code"] == 124 and "SMC_STOP_GRACE_SECONDS" in failed["reason"]


def test_pid1_in_a_pid_namespace_drains_and_leaves_no_zombies(start_server):
    assert subprocess.run(["unshare", "--help"], check=False, capture_output=True).returncode == 0, "unshare (util-linux) needed"
    server = start_server("orphans", wrapper=["unshare", "--pid", "--fork", "--mount-proc"])
    time.sleep(1.0)  # the orphaned grandchildren (one per worker) have exited by now
    tree = descendants(server.proc.pid)
    states = {pid: proc_state(pid) for pid in tree}
    assert len(tree) >= 5, states  # bootloader (PID 1), smc, gunicorn master + workers, nginx
    assert "Z" not in states.values(), states
    assert server.events("orphan_reaped"), server.output()
    pid1 = children_of_unshare(server.proc.pid)
    subprocess.run(["kill", "-TERM", str(pid1)], check=True)
    assert server.wait_exit(20) == 0, server.output()
    assert server.events("serve_stopped")
    assert not [pid for pid in tree if proc_state(pid) not in (None,)]


def children_of_unshare(unshare_pid: int) -> int:
    """The single child of a wrapper process (unshare, runuser)."""
    from tests.serve.conftest import children_of

    (pid1,) = children_of(unshare_pid)
    return pid1


def test_runs_as_non_root_user_with_nginx_logs_relayed(smc_binary, tmp_path_factory):
    """nginx started by a non-root smc writes to pipes smc created (it could not open a root-owned /dev/stdout)."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from tests.conftest import free_port
    from tests.serve.conftest import Server, install_handler, nginx_required

    nginx_required()
    assert shutil.which("runuser"), "runuser (util-linux) needed"
    base = Path(tempfile.mkdtemp(prefix="smc-nonroot-")) / "opt_ml"
    try:
        (base / "model").mkdir(parents=True)
        install_handler(base, "example", {"feature_names": ["a", "b", "c"], "weights": [1, 1, 1], "intercept": 0})
        binary = base.parent / "smc"
        shutil.copy(smc_binary, binary)
        for path in [base.parent, *base.parent.rglob("*")]:
            os.chmod(path, 0o777 if path.is_dir() else 0o755)
        server = Server(binary, base, free_port(), {}, wrapper=["runuser", "-u", "nobody", "--"])
        server.wait_ready()
        assert server.invoke("1,2,3\n", content_type="text/csv").json() == {"predictions": [6.0]}
        bootloader = children_of_unshare(server.proc.pid)
        os.kill(bootloader, signal.SIGTERM)  # runuser itself would answer SIGTERM by killing its child
        try:
            code = server.wait_exit(20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"smc did not stop within 20 s of SIGTERM:\n{server.output()[-4000:]}") from None
        assert code == 0, server.output()
        time.sleep(1.2)  # nginx flushes its buffered access log at least once a second
        assert server.events("request"), server.output()
    finally:
        shutil.rmtree(base.parent, ignore_errors=True)


def test_sigterm_during_start_up_exits_with_its_code_and_says_so(start_server, tmp_path):
    # Before the supervision loop takes the signals over there is nothing to drain: smc used to die
    # of the signal without a word. A GPU probe that hangs (a stand-in nvidia-smi: no GPU here)
    # holds smc at a known point of its start-up.
    from tests.serve.test_parity_features import fake_nvidia_smi

    mark = tmp_path / "probe-started"
    server = start_server("echo", wait=False, env=fake_nvidia_smi(tmp_path, f"echo $$ > {mark}.tmp; mv {mark}.tmp {mark}; exec sleep 30"))
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mark.exists(), server.output()
    probe_pid = int(mark.read_text())
    started = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 3
    assert server.events("stopped_by_signal")[0]["signal"] == "SIGTERM", server.output()
    time.sleep(0.2)  # its reaper (init here) may take a moment
    assert proc_state(probe_pid) in (None, "Z"), "the GPU probe outlived smc"


def test_sigquit_is_a_drained_stop(start_server):
    """SIGQUIT (nginx's and gunicorn's graceful stop) used to end smc at once, cutting the request
    in flight, logging nothing and leaving its run directory (issue 24 item 15)."""
    import shutil
    import tempfile
    from pathlib import Path

    run_tmp = Path(tempfile.mkdtemp(prefix="smc-q-"))  # short: the run dir holds unix sockets
    run_tmp.chmod(0o755)  # nginx's workers (another user) look into the run dir
    server = start_server("echo", env={"TMPDIR": str(run_tmp)})
    assert list(run_tmp.glob("smc-serve-*"))
    thread, results = _in_flight(server, 1.5)
    server.proc.send_signal(signal.SIGQUIT)
    thread.join()
    assert isinstance(results[0], Response) and results[0].status == 200, results
    assert server.wait_exit(20) == 0, server.output()
    assert server.events("stop_requested")[0]["signal"] == "SIGQUIT"
    assert not list(run_tmp.glob("smc-serve-*"))
    shutil.rmtree(run_tmp, ignore_errors=True)


def test_sighup_sigusr1_and_sigusr2_are_ignored_and_logged(start_server):
    server = start_server("echo")
    thread, results = _in_flight(server, 1.0)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        server.proc.send_signal(sig)
        time.sleep(0.05)
    thread.join()
    assert isinstance(results[0], Response) and results[0].status == 200, results
    for name in ("SIGHUP", "SIGUSR1", "SIGUSR2"):
        assert server.wait_event("signal_ignored", signal=name)["why"]
    assert server.proc.poll() is None and server.ping() == 200
    assert server.stop() == 0


def test_during_start_up_sighup_is_ignored_and_sigquit_stops(start_server, tmp_path):
    """Before the supervision loop takes the signals over, the same decisions hold."""
    from tests.serve.test_parity_features import fake_nvidia_smi

    mark = tmp_path / "probe-started"
    server = start_server("echo", wait=False, env=fake_nvidia_smi(tmp_path, f"touch {mark}; exec sleep 30"))
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mark.exists(), server.output()
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert server.proc.poll() is None, server.output()
    assert server.stop(signal.SIGQUIT, timeout=10) == 128 + signal.SIGQUIT
    assert server.events("stopped_by_signal")[0]["signal"] == "SIGQUIT", server.output()
