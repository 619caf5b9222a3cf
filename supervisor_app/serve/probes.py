"""Health probes: is a child alive AND answering, within a deadline."""

from __future__ import annotations

import socket
from pathlib import Path


def unix_socket_answers(path: Path) -> bool:
    """The socket accepts connections; a full backlog (busy workers) still counts as alive."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            return True
        except OSError:
            return False
    return True


def http_ping_answers(port: int, timeout_s: float) -> bool:
    """nginx answers GET /ping (200 or 503: both mean nginx itself is working)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(b"GET /ping HTTP/1.0\r\nHost: smc-health\r\nUser-Agent: smc-health\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def tcp_port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
