"""WebSocket sessions closed with 1001 ("going away") when the drain starts.

A WebSocket is one long connection: it never ends between requests as keep-alive HTTP does, so an
idle session would hold nginx's graceful stop, and with it the whole stop, to the end of the
grace (exit 124), and its client would see the connection cut without a close frame. The worker
watches for the drain file (serve/drain.py) while sessions are open and closes each accepted one
with 1001 at once, so the client knows to reconnect elsewhere; its app's receive() then returns
websocket.disconnect and uvicorn drops whatever it sends afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from supervisor_app import logs

GOING_AWAY = 1001
_WATCH_S = 0.1  # how often a worker with open sessions looks for the drain file


class WebSocketSessions:
    """ASGI middleware that keeps the `send` of each accepted WebSocket session."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open: dict[int, Any] = {}  # id of the session's scope -> its send, once accepted

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        key = id(scope)

        async def tracked_send(message: dict) -> None:
            kind = message.get("type")
            if kind == "websocket.accept":
                self.open[key] = send
            elif kind == "websocket.close":
                self.open.pop(key, None)
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            self.open.pop(key, None)

    async def close_all(self, reason: str) -> int:
        sends = list(self.open.values())
        self.open.clear()
        for send in sends:
            try:
                await send({"type": "websocket.close", "code": GOING_AWAY, "reason": reason})
            except Exception:  # noqa: BLE001 - a session already gone needs no close frame
                pass
        return len(sends)


async def close_at_drain(sessions: WebSocketSessions, drain_file: Path) -> None:
    """Runs for the worker's life: closes open sessions once the drain file exists."""
    log = logs.get_logger("asgi")
    while True:
        await asyncio.sleep(_WATCH_S)
        if sessions.open and drain_file.exists():
            closed = await sessions.close_all("server shutting down")
            log.info("websockets_closed", count=closed, code=GOING_AWAY, why="drain started")


__all__ = ["GOING_AWAY", "WebSocketSessions", "close_at_drain"]
