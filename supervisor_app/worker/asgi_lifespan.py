"""The ASGI lifespan startup, watched: a startup that fails is the app failing to load.

uvicorn's lifespan="auto" takes any exception from the lifespan scope for "this app does not
speak lifespan" and serves anyway, so an app whose startup raised (its model never loaded) would
be reported ready. "on" would refuse the many plain ASGI apps that do raise on an unknown scope
type. The line between the two: an app that has received `lifespan.startup` speaks lifespan, and
an exception after that is its startup failing; it becomes `lifespan.startup.failed`, which
uvicorn honours by not serving. The failure's text is kept for smc's error line.
"""

from __future__ import annotations

import traceback
from typing import Any


class WatchedLifespan:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.failure: str | None = None  # why the startup failed, once it has
        self.traceback: str | None = None  # where, when it raised

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await self.app(scope, receive, send)
            return
        state = {"received_startup": False, "answered": False}

        async def watched_receive() -> dict:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                state["received_startup"] = True
            return message

        async def watched_send(message: dict) -> None:
            kind = message.get("type")
            if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
                state["answered"] = True
                if kind == "lifespan.startup.failed":
                    self.failure = str(message.get("message") or "the app sent lifespan.startup.failed")
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except BaseException as exc:
            if not state["received_startup"] or state["answered"]:
                raise  # lifespan unsupported (uvicorn's "auto" serves on), or a shutdown error
            self.failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.traceback = traceback.format_exc()
            await send({"type": "lifespan.startup.failed"})  # no message: smc logs the error itself
            raise


__all__ = ["WatchedLifespan"]
