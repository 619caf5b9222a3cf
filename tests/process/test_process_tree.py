"""No process outlives smc (issue 9, items 2 and 3), tested against the frozen binary outside a
container: a kill -9 of the onefile bootloader (the smc a user sees) stops smc proper and its
children and frees the port; setsid()/double-forked descendants of a training script or of a
handler are signalled, given the grace period, then SIGKILLed when smc exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import clean_env
from tests.serve.conftest import descendants, nginx_required, proc_state

# A training script whose grandchild leaves the process group and session (setsid + double
# fork) and writes its pid; IGNORE=1 makes the grandchild ignore SIGTERM too.
DAEMONIZING_SCRIPT = """
import os, signal, sys, time
out = os.environ['SM_OUTPUT_DATA_DIR']
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        if os.environ.get('IGNORE') == '1':
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(os.path.join(out, 'daemon.pid'), 'w') as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
while not os.path.exists(os.path.join(out, 'daemon.pid')):
    time.sleep(0.01)
if os.environ.get('HANG') == '1':
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    state = proc_state(pid)
    return state is not None and state != "Z"


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def _wait_file(path: Path, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _train_job(tmp_path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from trainkit import make_job, script

    base = make_job(tmp_path)
    script(base, "train.py", DAEMONIZING_SCRIPT)
    return base


def _train_env(base: Path, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SMC_LOG_FORMAT": "json", "SMC_PYTHON": sys.executable,
                "SAGEMAKER_PROGRAM": "train.py"})
    env.update(extra)
    return env


def test_kill_9_of_the_bootloader_stops_serve_and_frees_the_port(start_server):
    nginx_required()
    server = start_server("echo", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    bootloader = server.proc.pid
    tree = descendants(bootloader)
    assert len(tree) >= 5, tree  # smc proper, gunicorn master, 2 workers, nginx master (+ workers)
    bundle = _bundle_dir(tree[0])
    assert bundle.is_dir()
    os.kill(bootloader, signal.SIGKILL)
    server.proc.wait(timeout=5)
    left = _wait_gone(tree, 15)
    assert not left, f"still running after kill -9 of the bootloader: {left}\n{server.output()}"
    assert _port_free(server.port)
    assert server.events("serve_stopped")  # smc proper stopped in order, not killed
    assert not bundle.exists(), "the unpacked bundle the killed bootloader left was not removed"


def _bundle_dir(pid: int) -> Path:
    """The onefile bundle directory ($TMPDIR/_MEI...) a process of the frozen binary runs from."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(e for e in environ if e.startswith(b"_PYI_APPLICATION_HOME_DIR="))
    return Path(value.split(b"=", 1)[1].decode())


def test_kill_9_of_the_bootloader_stops_train_and_the_script(smc_binary, tmp_path):
    base = _train_job(tmp_path)
    proc = subprocess.Popen([str(smc_binary), "train"], env=_train_env(base, HANG="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemon = int(_wait_file(base / "output/data/daemon.pid"))
    tree = descendants(proc.pid)
    assert daemon in tree and len(tree) >= 3, tree  # smc proper, the script, its setsid grandchild
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    assert not _wait_gone(tree, 15)


def test_setsid_grandchild_of_a_training_script_is_stopped_when_the_job_ends(smc_binary, tmp_path):
    base = _train_job(tmp_path)
    started = time.monotonic()
    done = subprocess.run([str(smc_binary), "train"], env=_train_env(base), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    daemon = int((base / "output/data/daemon.pid").read_text())
    assert not _alive(daemon), "the setsid() grandchild outlived smc train"
    assert time.monotonic() - started < 20
    assert '"event":"descendants_stopping"' in done.stdout + done.stderr


def test_grandchild_ignoring_sigterm_is_killed_after_the_grace(smc_binary, tmp_path):
    base = _train_job(tmp_path)
    started = time.monotonic()
    done = subprocess.run([str(smc_binary), "train"], env=_train_env(base, IGNORE="1", SMC_STOP_GRACE_SECONDS="1"),
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert not _alive(int((base / "output/data/daemon.pid").read_text()))
    assert elapsed >= 1.0, "smc did not give the grace period"
    assert '"event":"descendants_killed"' in done.stdout + done.stderr


def test_serve_stops_a_handler_daemon_on_exit(start_server, opt_ml):
    server = start_server("daemon", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    daemon = int(_wait_file(opt_ml / "model" / "daemon.pid").splitlines()[0])
    assert _alive(daemon)
    assert server.stop() == 0, server.output()
    assert not _wait_gone([daemon], 2), "a handler's setsid() daemon outlived smc serve"
    assert server.events("descendants_stopping")
