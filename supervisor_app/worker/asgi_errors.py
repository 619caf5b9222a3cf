"""An ASGI app that raises before it started its answer gets smc's JSON 500, as WSGI and handler
apps do, instead of uvicorn's plain-text "Internal Server Error"; the error is logged as
`asgi_request_failed` with its traceback (uvicorn's own line was the sentence
"Exception in ASGI application"). An app that fails mid-answer cannot change its status any more:
that error goes on to uvicorn, which closes the connection (the client sees a cut answer)."""

from __future__ import annotations

from typing import Any

from supervisor_app import logs
from supervisor_app.worker.wsgi import error_body


class JsonServerErrors:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: dict) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:  # noqa: BLE001 - any app error becomes the 500 answer
            if started:
                raise
            logs.get_logger("asgi").error("asgi_request_failed", path=scope.get("path", ""),
                                          error=f"{type(exc).__name__}: {exc}", exc_info=True)
            body = error_body(500, "internal error in the model server")
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


__all__ = ["JsonServerErrors"]
