"""A raw-socket HTTP/1.1 client that timestamps each chunk as it arrives (no buffering library)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Streamed:
    status: int
    headers: dict[str, str]
    sent_at: float
    head_at: float
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    complete: bool = False  # the last chunk (or the whole Content-Length) arrived

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.chunks)

    def json(self):
        return json.loads(self.body)


class ChunkReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def open_stream(port: int, body: bytes | str | dict, headers: dict[str, str] | None = None,
                path: str = "/invocations", timeout: float = 10) -> tuple[socket.socket, ChunkReader, Streamed]:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {"Host": "localhost", "Content-Type": "application/json", "Content-Length": str(len(body)),
                   **(headers or {})}
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    sent_at = time.monotonic()
    sock.sendall(head.encode() + body)
    reader = ChunkReader(sock)
    status_line = reader.line()
    assert status_line, "connection closed before the status line"
    result_headers = {}
    while True:
        line = reader.line()
        assert line is not None, "connection closed inside the head"
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        result_headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    return sock, reader, Streamed(status, result_headers, sent_at, time.monotonic())


def read_chunks(reader: ChunkReader, result: Streamed, limit: int | None = None) -> Streamed:
    """Read chunks until the end (or `limit` chunks), each stamped with its arrival time."""
    if result.headers.get("transfer-encoding") != "chunked":
        length = int(result.headers.get("content-length", "0"))
        data = reader.exactly(length) if length else b""
        if data:
            result.chunks.append((time.monotonic(), data))
        result.complete = data is not None
        return result
    while limit is None or len(result.chunks) < limit:
        size_line = reader.line()
        if size_line is None:
            return result  # closed without the last chunk: a failed stream
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            reader.line()
            result.complete = True
            return result
        data = reader.exactly(size + 2)
        if data is None:
            return result
        result.chunks.append((time.monotonic(), data[:-2]))
    return result


def stream(port: int, body, headers=None, timeout: float = 10) -> Streamed:
    sock, reader, result = open_stream(port, body, headers, timeout=timeout)
    try:
        return read_chunks(reader, result)
    finally:
        sock.close()
