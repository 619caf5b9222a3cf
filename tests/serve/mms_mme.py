"""sagemaker-inference 1.10.1 on multi-model-server in multi-model mode (SAGEMAKER_MULTI_MODEL=true),
started by the toolkit's own model_server.start_model_server(): the oracle for smc's /models API.

The venv is bench/serve/run.py's (~/.cache/smc/bench-mms-1.1.11: the versions of
tests/serve/toolkit_oracle.py, pinned), created under a lock when missing.
Two things differ from a container, neither changes what MMS answers: the toolkit's properties
file goes to a temp dir instead of /etc (parallel runs would overwrite each other's port), and the
toolkit runs in its own PID namespace (`unshare --pid`), because it refuses to start when it sees
another MMS on the machine ("multiple mms model servers are not supported").
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.serve.toolkit_oracle import MMS_VERSION, TOOLKIT_VERSION

CACHE = Path.home() / ".cache" / "smc"
MMS_VENV = CACHE / f"bench-mms-{MMS_VERSION}"
MMS_PACKAGES = [f"multi-model-server=={MMS_VERSION}", f"sagemaker-inference=={TOOLKIT_VERSION}"]

ENTRY = """
import os, sys
from sagemaker_inference import model_server
model_server.MMS_CONFIG_FILE = os.path.join(os.environ["MME_ORACLE_DIR"], "sagemaker-mms.properties")
model_server.start_model_server()
"""


def ensure_venv() -> Path:
    python = MMS_VENV / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "bench-mms.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (MMS_VENV / ".ok").exists():
            subprocess.run([sys.executable, "-m", "venv", str(MMS_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *MMS_PACKAGES],
                           check=True)
            (MMS_VENV / ".ok").write_text(" ".join(MMS_PACKAGES))
    return python


def java_required() -> str:
    java = shutil.which("java")
    assert java, "the MMS oracle needs Java (apt-get install -y openjdk-17-jre-headless)"
    return java


def free_low_port() -> int:
    """MMS 1.1.11 refuses ports above 32767."""
    import socket

    for attempt in range(200):
        port = 20000 + (os.getpid() * 7 + attempt * 131) % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below 32768")


_UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


def _pid_namespaces_work() -> bool:
    """Root with util-linux's unshare, and allowed to use it (not in every container)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run([*_UNSHARE, "true"], capture_output=True, timeout=10, check=False).returncode == 0


def start(base: Path, port: int, workers: int, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """The toolkit with SAGEMAKER_MULTI_MODEL=true; models load from base/models (SAGEMAKER_BASE_DIR)."""
    python = ensure_venv()
    java_required()
    helper = base / "mms-oracle"
    helper.mkdir(parents=True, exist_ok=True)
    (helper / "entry.py").write_text(ENTRY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "PYTHON"))}
    env.update({"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_BIND_TO_PORT": str(port),
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "SAGEMAKER_BASE_DIR": str(base),
                "MME_ORACLE_DIR": str(helper), "PATH": f"{python.parent}:{env.get('PATH', '')}",
                # MMS writes its pid file to TMPDIR: a private one, so the pid it has inside the PID
                # namespace never lands in the shared /tmp, where any later MMS would take that
                # (host) pid for a running server and refuse to start.
                "TMPDIR": str(_private_tmp(helper)),
                **(extra_env or {})})
    argv = [str(python), str(helper / "entry.py")]
    if _pid_namespaces_work():
        argv = [*_UNSHARE, *argv]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out, start_new_session=True, cwd=str(helper))


def _private_tmp(helper: Path) -> Path:
    tmp = helper / "tmp"
    tmp.mkdir(exist_ok=True)
    return tmp


def wait_ping(port: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"MMS exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"MMS /ping not 200 within {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    """The whole session: the toolkit, MMS's java and its Python workers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    for pid in _session(proc.pid):  # MMS's java leaves the process group, not the session
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _session(sid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            found.append(int(stat.parent.name))
    return found
