"""A hop nginx talks to on a unix socket in smc's run directory: a thread of the smc process that
accepts nginx's connections and serves each on a thread of its own (nginx keeps a few alive).
router.py (the routing and session hop) and adapter_proxy.py (the adapter hop) are two of them;
read_request() reads what nginx sends either."""

from __future__ import annotations

import os
import socket
import threading

_MAX_HEAD_BYTES = 64 * 1024


class Request:
    """One request nginx sent to a hop: the head as it came, the body whole."""

    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], body: bytearray) -> None:
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def lowered_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers}


def read_request(conn: socket.socket, pending: bytearray) -> Request | None:
    """One request from nginx on a keep-alive connection, or None at its end (or for a head nginx
    would never send). nginx always sends Content-Length here: it buffers the body, chunked or not,
    before a hop."""
    while b"\r\n\r\n" not in pending:
        if len(pending) > _MAX_HEAD_BYTES:
            return None
        chunk = conn.recv(65536)
        if not chunk:
            return None
        pending += chunk
    head_end = pending.index(b"\r\n\r\n") + 4
    lines = bytes(pending[:head_end - 4]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 3:
        return None
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0") or 0)
    del pending[:head_end]
    # One buffer of the body's size, filled in place: growing one would briefly hold it twice.
    body = bytearray(length)
    have = min(length, len(pending))
    body[:have] = pending[:have]
    del pending[:have]
    view = memoryview(body)
    while have < length:
        got = conn.recv_into(view[have:], min(1 << 20, length - have))
        if not got:
            return None
        have += got
    view.release()
    return Request(parts[0], parts[1], headers, body)  # json.loads reads a bytearray as it is


class UnixHop:
    thread_name = "smc-hop"

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._stopped = False

    def start(self) -> None:
        self._sock.bind(self.path)
        os.chmod(self.path, 0o666)  # nginx's workers may run as another user
        self._sock.listen(256)
        threading.Thread(target=self._accept, name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """Answer the requests of one nginx keep-alive connection in turn, then close it."""
        pending = bytearray()
        with conn:
            try:
                while True:
                    request = read_request(conn, pending)
                    if request is None or not self.handle(request, conn):
                        return
                    request = None  # a body is not held while the connection waits for its next request
            except (OSError, ValueError):
                return

    def handle(self, request: Request, conn: socket.socket) -> bool:
        """Answer one request on conn; False closes the connection."""
        raise NotImplementedError


__all__ = ["Request", "UnixHop", "read_request"]
