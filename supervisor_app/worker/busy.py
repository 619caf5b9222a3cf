"""Which gunicorn workers are inside a request, and since when, without a syscall per request.

Each worker maps an 8-byte file `busy-<pid>` in smc's run dir and writes the monotonic time a
request starts (0 when it ends); CLOCK_MONOTONIC is system-wide, so the supervisor can compare.
Async (ASGI) workers, with several requests at once, write the start of the oldest one
(MarkedAsgiApp). The drain uses it: a request that started before SIGTERM was given
`Connection: keep-alive`, so the drain lasts until those requests are answered and their clients
have sent the next request, which is then answered with `Connection: close`.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

_PREFIX = "busy-"
_STAMP = struct.Struct("d")


class BusyMark:
    def __init__(self, run_dir: Path) -> None:
        fd = os.open(run_dir / f"{_PREFIX}{os.getpid()}", os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, _STAMP.size)
            self.map = mmap.mmap(fd, _STAMP.size)
        finally:
            os.close(fd)

    def begin(self) -> None:
        _STAMP.pack_into(self.map, 0, time.monotonic())

    def end(self) -> None:
        _STAMP.pack_into(self.map, 0, 0.0)

    def set(self, since: float) -> None:
        """The start of the oldest request in flight (0.0: none), for workers with several at once."""
        _STAMP.pack_into(self.map, 0, since)


def open_mark(run_dir: Path) -> BusyMark | None:
    """This worker's mark; None when the run dir refuses it (the drain then relies on its window alone)."""
    try:
        return BusyMark(run_dir)
    except OSError:
        return None


class MarkedAsgiApp:
    """ASGI middleware keeping a worker's busy mark at the start of its oldest HTTP request in
    flight. WebSocket sessions are left out: an open-ended session would hold every drain to its
    hard stop; they are closed with 1001 when the drain starts instead (worker/asgi_websockets.py)."""

    def __init__(self, app: Any, mark: BusyMark) -> None:
        self.app = app
        self.mark = mark
        self.started: dict[int, float] = {}  # id of the request's scope -> monotonic start

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        key = id(scope)
        now = time.monotonic()
        self.started[key] = now
        if len(self.started) == 1:
            self.mark.set(now)
        try:
            return await self.app(scope, receive, send)
        finally:
            del self.started[key]
            self.mark.set(min(self.started.values()) if self.started else 0.0)


def busy_since(run_dir: Path) -> dict[int, float]:
    """pid -> monotonic start of the request each live worker is in (workers between requests omitted)."""
    found: dict[int, float] = {}
    try:
        names = [name for name in os.listdir(run_dir) if name.startswith(_PREFIX)]
    except OSError:
        return found
    for name in names:
        pid_text = name[len(_PREFIX):]
        if not pid_text.isdigit() or not os.path.exists(f"/proc/{pid_text}"):
            continue  # a dead worker's file
        try:
            with open(run_dir / name, "rb") as stamp:
                data = stamp.read(_STAMP.size)
        except OSError:
            continue
        if len(data) == _STAMP.size and (since := _STAMP.unpack(data)[0]) > 0:
            found[int(pid_text)] = since
    return found


def forget(run_dir: Path, pid: int) -> None:
    try:
        (run_dir / f"{_PREFIX}{pid}").unlink()
    except OSError:
        pass
