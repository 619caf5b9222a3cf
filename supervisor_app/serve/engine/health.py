"""The engine's health check, run in a thread so the supervision loop never blocks on it.

The poller sends GET HEALTH_PATH to the engine and reports each verdict that matters to the loop
as one JSON line on a pipe (the loop's selector wakes on it): `engine_healthy` on the first 2xx
after anything else, `engine_probe_failed` on every failure after that. A starting engine is
checked every 50 ms, so /ping turns 200 within 50 ms of the engine's own readiness; a healthy one
every interval. The loop owns the readiness file; the poller only reports.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

STARTING_INTERVAL_S = 0.05


def probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """(healthy, why): healthy only on a 2xx answer within the deadline. A raw HTTP/1.1 request
    (http.client would cost ~10 ms of imports at every start for one status line)."""
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: smc-health\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        return False, f"GET {path}: {type(exc).__name__}: {exc}" if str(exc) else f"GET {path}: {type(exc).__name__}"
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False, f"GET {path}: not an HTTP answer: {head[:80]!r}"
    status = int(parts[1])
    if 200 <= status < 300:
        return True, ""
    return False, f"GET {path} answered {status}"


class HealthPoller:
    def __init__(self, host: str, port: int, path: str, interval_s: float, timeout_s: float, notify_fd: int) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.notify_fd = notify_fd
        self._generation = 0  # which engine start the verdicts belong to; 0: nothing to check
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="smc-engine-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, generation: int) -> None:
        """A new engine process started (or 0: none running): check it from scratch, quickly."""
        self._generation = generation
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._generation = 0
        self._wake.set()

    def _loop(self) -> None:
        last_healthy = ever_healthy = False
        watched = 0
        while not self._stopped:
            generation = self._generation
            if not generation:
                self._wake.wait()
                self._wake.clear()
                continue
            if generation != watched:
                watched, last_healthy, ever_healthy = generation, False, False
            started = time.monotonic()
            healthy, why = probe(self.host, self.port, self.path, self.timeout_s)
            if generation != self._generation:
                continue  # the engine was restarted meanwhile: this verdict is about the old one
            if healthy and not last_healthy:
                self._send({"event": "engine_healthy", "generation": generation})
            elif not healthy and ever_healthy:
                self._send({"event": "engine_probe_failed", "generation": generation, "why": why})
            last_healthy = healthy
            ever_healthy = ever_healthy or healthy
            interval = self.interval_s if ever_healthy else STARTING_INTERVAL_S
            self._wake.wait(max(0.0, interval - (time.monotonic() - started)))
            self._wake.clear()

    def _send(self, event: dict) -> None:
        try:
            os.write(self.notify_fd, json.dumps(event).encode() + b"\n")
        except OSError:
            pass
