"""sagemaker-inference 1.10.1 on multi-model-server, as a serving oracle for smc serve.

The toolkit and MMS (plus their numpy/scipy) go into a venv under ~/.cache/smc, built once (locked,
so parallel runs share it). A server is started the way a framework container starts it:
`model_server.start_model_server(handler_service=...)` with a handler service built from the
toolkit's own DefaultHandlerService, Transformer and DefaultInferenceHandler, so user code meets
the toolkit's unmodified request path. Two deviations keep tests isolated, not behaviour: the MMS
properties file goes to a private dir instead of /etc, and TMPDIR is private (MMS keeps its pid
file there, and refuses to start while another MMS's pid file exists).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

TOOLKIT_VERSION = "1.10.1"
MMS_VERSION = "1.1.11"
VENV = Path.home() / ".cache" / "smc" / f"serve-toolkit-{TOOLKIT_VERSION}"

_ENTRY = """
import sys
from sagemaker_inference import model_server
model_server.MMS_CONFIG_FILE = sys.argv[1]
model_server.start_model_server(handler_service="oracle_handler_service")
"""

_HANDLER_SERVICE = """
import os
import sys

from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.transformer import Transformer


class HandlerService(DefaultHandlerService):
    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=DefaultInferenceHandler()))


_service = HandlerService()


def handle(data, context):
    # MMS calls handle(None, context) once when it loads the model, then once per request batch.
    if data is None:
        # Models registered besides the first need their own code dir importable (the toolkit
        # puts only /opt/ml/model/code on PYTHONPATH); each model has its own worker process.
        code_dir = os.path.join(context.system_properties["model_dir"], "code")
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        _service.initialize(context)
        return None
    return _service.handle(data, context)
"""


def python() -> Path:
    """The toolkit venv's python, installing the venv on first use."""
    marker = VENV / ".ok"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f".serve-toolkit-{TOOLKIT_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                 f"sagemaker-inference=={TOOLKIT_VERSION}", f"multi-model-server=={MMS_VERSION}"],
                check=True, timeout=900,
            )
            marker.touch()
    return VENV / "bin" / "python"


def site_packages() -> Path:
    """The venv's site-packages: numpy and sagemaker_inference for smc's workers too, so user code
    that imports them (and the default numpy codecs) meets the same packages on both servers."""
    return next((VENV / "lib").glob("python3.*/site-packages"))


def low_free_port() -> int:
    """MMS 1.1.11 rejects ports above 32767 ("Invalid port number")."""
    for attempt in range(500):
        candidate = 20000 + (os.getpid() * 13 + attempt * 7919) % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError("no free port below 32768")


class ToolkitServer:
    """One MMS serving base/model with the toolkit; java is found on PATH (Java 17 works)."""

    def __init__(self, base: Path, env: dict[str, str] | None = None) -> None:
        assert shutil.which("java"), ("the serving differential test runs multi-model-server, which needs Java: "
                                      "apt-get install -y openjdk-17-jre-headless (build/system-deps.sh test)")
        self.base = base
        self.port = low_free_port()
        run = base / "toolkit-run"
        (run / "tmp").mkdir(parents=True, exist_ok=True)
        (run / "oracle_entry.py").write_text(_ENTRY)
        (run / "oracle_handler_service.py").write_text(_HANDLER_SERVICE)
        self.log_path = run / "toolkit.log"
        py = python()
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON", "_PYI_"))}
        full_env.update({
            "SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "PYTHONPATH": str(run), "TMPDIR": str(run / "tmp"),
            "PATH": f"{py.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        })
        full_env.update(env or {})
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([str(py), str(run / "oracle_entry.py"), str(run / "mms.properties")],
                                         env=full_env, stdout=out, stderr=out, cwd=str(run),
                                         start_new_session=True)

    def wait_ready(self, timeout_s: float = 120) -> float:
        """MMS answers /ping 200 as soon as it listens, even before the model loads, so readiness
        here is a 200 from /ping whose body says Healthy (a worker has loaded the model)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                raise AssertionError(f"toolkit server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2) as resp:
                    if resp.status == 200 and b'"Healthy"' in resp.read():
                        return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"toolkit server not healthy after {timeout_s} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        # MMS's java daemonizes away from the python launcher but stays in its session/group.
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)

    def register(self, name: str, model_dir: Path) -> None:
        """Load another model dir (its own code/inference.py) into the running MMS, served at
        POST /predictions/NAME through the same handler service: one JVM for every handler file."""
        query = urllib.parse.urlencode({"url": str(model_dir), "model_name": name, "initial_workers": 1,
                                        "synchronous": "true", "handler": "oracle_handler_service"})
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/models?{query}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"registering {name} failed: {exc.code} {exc.read()!r}\n{self.output()}") from None
