"""The benches' one readiness wait: GET /ping on loopback until it answers 200."""

from __future__ import annotations

import http.client
import subprocess
import time

_POLL_S = 0.005


def ping(port: int, timeout_s: float = 1.0) -> int | None:
    """The status of GET /ping, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_ping(port: int, timeout_s: float, *, proc: subprocess.Popen | None = None, since: float | None = None,
              required: bool = True) -> float | None:
    """Seconds from `since` (a time.perf_counter() reading; default: now) until GET /ping answers
    200, polling every 5 ms. RuntimeError when `proc` exits first; when timeout_s passes, a
    RuntimeError too, or None if not `required` (a bench that reports a server never ready)."""
    start = time.perf_counter() if since is None else since
    while time.perf_counter() - start < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {proc.returncode} before /ping answered 200")
        if ping(port) == 200:
            return time.perf_counter() - start
        time.sleep(_POLL_S)
    if required:
        raise RuntimeError(f"/ping on port {port} not 200 within {timeout_s:g} s")
    return None


__all__ = ["ping", "wait_ping"]
