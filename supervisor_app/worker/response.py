"""Writing one WSGI response to nginx: buffered in one send, or streamed as the app produces it.

A list or tuple body (the handler contract's answers, most WSGI apps' answers) is joined and sent
with its head in one sendall: the fast path. Any other iterable, and the PEP 3333 write()
callable, stream: the head goes out with the first non-empty piece, then each piece as it is
produced. Without a Content-Length the pieces are HTTP/1.1 chunks, so nginx tells a complete
stream (last chunk) from a broken one (connection closed first) and passes that on to the client.
`X-Accel-Buffering: no` makes nginx forward each piece at once instead of filling its buffers.

A client that stops reading fills nginx's buffers and then the socket's, and a blocking send would
hold the worker until gunicorn killed it as hung (a crash, counted toward SMC_WORKER_CRASH_LIMIT:
a few stalled readers could end the server). So sends wait in short polls, beating the heartbeat,
and a send that makes no progress for the invocation timeout ends that one answer instead
(`client_stalled`, the connection closed without its last chunk).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from supervisor_app import logs

# Hop-by-hop headers (RFC 9110 7.6.1) describe one connection; an app must not set them
# (PEP 3333) and the worker decides framing itself, so they are dropped from the app's headers.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
_LARGE_PIECE_BYTES = 64 * 1024  # above this a piece is sent apart from its chunk framing, not copied
_HEARTBEAT_EVERY_S = 1.0
_SEND_POLL_S = 1.0  # a blocked send wakes this often to beat the heartbeat and check the stall limit
LAST_CHUNK = b"0\r\n\r\n"


def clean_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]


def head_bytes(status: str, headers: list[tuple[str, str]], extra: str = "", version: str = "HTTP/1.0") -> bytes:
    lines = [f"{version} {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if extra:
        lines.append(extra)
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def buffered_bytes(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A whole response in one buffer; Content-Length added when the app gave none."""
    lines = [f"HTTP/1.0 {status}"]
    sized = False
    for name, value in headers:  # one pass: this is every buffered answer's path
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            continue
        sized = sized or lowered == "content-length"
        lines.append(f"{name}: {value}")
    if not sized:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


class ResponseWriter:
    """start_response, write() and the body of one response on one client socket."""

    def __init__(self, sock: Any, head_only: bool, heartbeat: Callable[[], None], stall_s: float = 60.0) -> None:
        self.sock = sock
        self.stall_s = stall_s  # a send with no progress for this long ends the answer
        self.head_only = head_only
        self.heartbeat = heartbeat
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        self.bytes_sent = 0
        self._last_beat = 0.0  # the first piece of a stream beats at once

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and self.head_sent:
            raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to change the answer
        self.status, self.headers = status, headers
        return self.write

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """socket.sendall that gives up on a client that stops reading (see the module docstring).
        MSG_DONTWAIT rather than a socket timeout: the socket stays blocking for the reads that
        watch for the client leaving (worker/streaming.py), and a send with room costs no poll."""
        view = memoryview(data).cast("B")
        stalled_since = 0.0
        while view:
            try:
                view = view[self.sock.send(view, socket.MSG_DONTWAIT):]
                stalled_since = 0.0
                continue
            except BlockingIOError:
                pass
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since >= self.stall_s:
                logs.get_logger("worker").warning("client_stalled", status=self.status.split(" ", 1)[0],
                                                  bytes_sent=self.bytes_sent, stalled_s=round(now - stalled_since, 1),
                                                  why="the client stopped reading the answer; its connection is closed")
                raise StreamAborted()
            poller = select.poll()
            poller.register(self.sock, select.POLLOUT)
            poller.poll(_SEND_POLL_S * 1000)
            self.heartbeat()

    def buffered(self, body: Iterable[bytes]) -> bytes:
        return buffered_bytes(self.status, self.headers, b"" if self.head_only else b"".join(body))

    def write(self, data: bytes) -> None:
        """PEP 3333's write() callable, and each piece of a streamed body."""
        if not data:
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a WSGI body piece must be bytes, not {type(data).__name__}")
        if not self.head_sent:
            self._send_head_with(data)
        elif not self.head_only:
            self._send_piece(data)
        now = time.monotonic()
        if now - self._last_beat >= _HEARTBEAT_EVERY_S:
            # gunicorn's arbiter kills a worker that stays silent for its timeout; a long stream is
            # not a stuck worker (the stream's own limit is the per-chunk deadline).
            self._last_beat = now
            self.heartbeat()

    def stream(self, body: Iterable[bytes]) -> None:
        for piece in body:
            self.write(piece)
        self.finish()

    def finish(self) -> None:
        if not self.head_sent:
            self.sendall(buffered_bytes(self.status, self.headers, b""))
            self.head_sent = True
        elif self.chunked and not self.head_only:
            self.sendall(LAST_CHUNK)

    def _send_head_with(self, data: bytes) -> None:
        if not self.status:
            raise AssertionError("the WSGI app wrote body bytes before calling start_response")
        headers = clean_headers(self.headers)
        names = {name.lower() for name, _ in headers}
        extra = []
        if "x-accel-buffering" not in names:
            extra.append("X-Accel-Buffering: no")
        self.chunked = "content-length" not in names and not self.head_only
        if self.chunked:
            extra.append("Transfer-Encoding: chunked")
        head = head_bytes(self.status, headers, "\r\n".join(extra), version="HTTP/1.1")
        self.head_sent = True
        if self.head_only:
            self.sendall(head)
        elif len(data) < _LARGE_PIECE_BYTES:
            self.sendall(head + self._framed(data))
            self.bytes_sent += len(data)
        else:
            self.sendall(head)
            self._send_piece(data)

    def _send_piece(self, data: bytes) -> None:
        if len(data) < _LARGE_PIECE_BYTES:
            self.sendall(self._framed(data))
        elif self.chunked:
            self.sendall(b"%x\r\n" % len(data))
            self.sendall(data)
            self.sendall(b"\r\n")
        else:
            self.sendall(data)
        self.bytes_sent += len(data)

    def _framed(self, data: bytes) -> bytes:
        if self.chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return bytes(data)


__all__ = ["HOP_BY_HOP", "LAST_CHUNK", "ResponseWriter", "StreamAborted", "buffered_bytes", "clean_headers", "head_bytes"]


class StreamAborted(Exception):
    """Raised by a body iterable that has ended its stream on purpose (handler error, chunk
    deadline) and logged why: the worker closes the connection without the last chunk."""
