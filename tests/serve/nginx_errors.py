"""Requests that nginx answers itself, sent as raw bytes (HTTP clients refuse to send most of
them), and what both of smc's nginx configurations must answer: JSON with the right status, and
the client's method and path in the access log. Shared by serve mode's and engine mode's tests."""

from __future__ import annotations

import json
import socket
import time

CASES: dict[str, tuple[bytes, int]] = {
    "TRACE": (b"TRACE /invocations HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "CONNECT": (b"CONNECT /invocations HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "CONNECT authority": (b"CONNECT example:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "64 KB header": (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n", 400),
    "1000 headers": (b"POST /invocations HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 80) for i in range(1000))
                     + b"Content-Length: 2\r\n\r\n{}", 400),
    "20 KB custom attributes": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Amzn-SageMaker-Custom-Attributes: "
                                + b"a" * 20000 + b"\r\nContent-Length: 2\r\n\r\n{}", 400),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "request line too long": (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "HTTP/2.0 request line": (b"GET /invocations HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "HTTP/3.0 request line": (b"POST /invocations HTTP/3.0\r\nHost: x\r\n\r\n", 505),
}

# (method, path, status) in the access log for some of the cases: the client's, never /_smc_error/.
# The too long request line's path is logged as far as nginx read it, so it is checked by its start.
LOGGED = {("TRACE", "/invocations", 405), ("GET", "/ping", 400), ("GET", "/invocations", 505),
          ("POST", "/invocations", 505)}


def raw(port: int, data: bytes, timeout: float = 5) -> tuple[int, dict, bytes]:
    """Send `data` on a new connection; the status, lower-cased headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def check_every_case_is_json(port: int) -> None:
    for name, (data, expected) in CASES.items():
        status, headers, body = raw(port, data)
        assert status == expected, (name, status, body[:200])
        assert headers.get("content-type") == "application/json", (name, headers, body[:200])
        assert json.loads(body)["status"] == status, (name, body)


def logged_errors(server, wanted: int, timeout_s: float = 5) -> set[tuple[str, str, int]]:
    """(method, path, status) of the access log's error lines, once `wanted` of them are there
    (nginx flushes its buffered access log every second); the 414 of a too long request line among
    them with the client's method and the start of its path."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len([r for r in server.events("request") if r["status"] >= 400]) < wanted:
        time.sleep(0.2)
    logged = {(r["method"], r["path"], r["status"]) for r in server.events("request") if r["status"] >= 400}
    assert any(entry[0] == "GET" and entry[1].startswith("/aaaa") and entry[2] == 414 for entry in logged), logged
    return logged
