"""Run the frozen `smc serve` with real nginx and gunicorn, talk HTTP to it, read its JSON log."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, free_port

HANDLERS = ROOT / "tests" / "fixtures" / "handlers"
EXAMPLE = ROOT / "examples" / "tabular" / "code" / "inference.py"
DEMO_MODEL = {"feature_names": ["x1", "x2", "x3"], "weights": [1.0, 2.0, 3.0], "intercept": 0.5}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def nginx_required() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    assert path, "nginx is required for the serve tests: apt-get install -y nginx-light"
    return path


class Server:
    """One `smc serve` process; stdout/stderr go to files so a full pipe never stalls it."""

    python = "embedded"  # SMC_PYTHON (the serve_python fixture sets it per module)

    def __init__(self, binary: Path, base: Path, port: int, env: dict[str, str], wrapper: list[str] | None = None):
        self.base = base
        self.port = port
        self.out_path = base / "serve.out"
        self.err_path = base / "serve.err"
        full_env = clean_env()
        full_env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
                         "SMC_LOG_FORMAT": "json", "SMC_PYTHON": self.python})
        full_env.update(env)
        self.started = time.monotonic()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*(wrapper or []), str(binary), "serve"], env=full_env, stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL)

    def ping(self, timeout: float = 2) -> int | None:
        try:
            return request(self.port, "GET", "/ping", timeout=timeout).status
        except OSError:
            return None

    def wait_ready(self, timeout: float = 20) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping() == 200:
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise AssertionError(f"smc serve exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"not ready after {timeout} s:\n{self.output()}")

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 10) -> Response:
        return request(self.port, method, path, body, headers, timeout)

    def invoke(self, body, content_type="application/json", accept=None, headers=None, timeout: float = 10):
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if accept:
            all_headers["Accept"] = accept
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return self.request("POST", "/invocations", body, all_headers, timeout)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + "\n--- stderr ---\n" + self.err_path.read_text(errors="replace")

    def lines(self) -> list[dict]:
        """Every log line, stdout then stderr; asserts each one is a JSON object."""
        records = []
        for path in (self.out_path, self.err_path):
            for line in path.read_text(errors="replace").splitlines():
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        raise AssertionError(f"not a JSON line in {path.name}: {line!r}") from None
        return records

    def events(self, name: str) -> list[dict]:
        return [r for r in self.lines() if r.get("event") == name]

    def wait_event(self, name: str, timeout: float = 10, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.events(name):
                if all(record.get(k) == v for k, v in fields.items()):
                    return record
            time.sleep(0.05)
        raise AssertionError(f"no {name} {fields} within {timeout} s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def install_handler(base: Path, name: str, model: dict | None = None) -> None:
    code = base / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    source = EXAMPLE if name == "example" else HANDLERS / f"{name}.py"
    shutil.copy(source, code / "inference.py")
    if model is not None:
        (base / "model" / "model.json").write_text(json.dumps(model))


@pytest.fixture
def start_server(smc_binary, opt_ml):
    """start_server(handler, env={...}, wait=True) -> Server; stopped (SIGTERM, then SIGKILL) afterwards."""
    nginx_required()
    servers: list[Server] = []

    def start(handler: str | None = "echo", env: dict[str, str] | None = None, wait: bool = True,
              port: int | None = None, wrapper: list[str] | None = None) -> Server:
        if handler:
            install_handler(opt_ml, handler, DEMO_MODEL if handler == "example" else None)
        server = Server(smc_binary, opt_ml, port or free_port(), env or {}, wrapper)
        servers.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()


def children_of(pid: int) -> list[int]:
    """Direct children of pid (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            result.append(child)
            todo.append(child)
    return result


def proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def echo_server(smc_binary, tmp_path_factory, serve_python):
    """One shared server (echo handler, 2 workers, 2 s timeout, 1 MiB limit) for read-only route tests;
    one per Python in a both_pythons module (serve_python makes pytest build it again for each)."""
    nginx_required()
    base = tmp_path_factory.mktemp("echo") / "opt_ml"
    (base / "model").mkdir(parents=True)
    install_handler(base, "echo")
    server = Server(smc_binary, base, free_port(), {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1",
    })
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.output()
