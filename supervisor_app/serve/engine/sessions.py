"""Stateful sessions in engine mode, SMC_ENGINE_SESSIONS=smc (the default with sessions on): smc
answers the protocol in its routing hop (router.py) and the engine sees only inference.

nginx sends every POST /invocations to the hop, with the Session-Id and Custom-Attributes headers.
NEW_SESSION and CLOSE are answered there from the shared store (worker/sessions/); a malformed,
unknown or expired id is refused there; everything else is X-Accel-Redirected to the engine's
route (the fixed SMC_ENGINE_INVOCATIONS_PATH, or with `auto` the custom attribute's `route=` or the
body's fields), and nginx sends the request as the client sent it, Session-Id header included,
from its buffer. So the engine can key its own state (a KV cache) on the id, and never sees an id
smc did not issue. The answer streams from the engine to the client as on every route.
"""

from __future__ import annotations

import json
import re
import time
from http import HTTPStatus
from typing import Any, Dict, Optional

from supervisor_app.config.engine import AUTO_ROUTE
from supervisor_app.config.sessions import SessionsConfig
from supervisor_app.serve.engine.router import REDIRECT_PREFIX, RouteError, route_for
from supervisor_app.worker.sessions.gate import Gate
from supervisor_app.worker.sessions.protocol import HEADER_ID, Headers, SessionError
from supervisor_app.worker.sessions.store import SessionStore

# The same rule as nginx's map in nginx_conf.py (`route=/v1/...`, plain path characters, no `..`):
# with sessions on, nginx sends those requests to the hop too, so that their ids are checked.
_ATTRIBUTE_ROUTE = re.compile(r"(?:^|[\s,;])route=(?!\S*\.\.)(/[A-Za-z0-9_./-]+)")
_ID = HEADER_ID.lower()
_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"


def _http(status: int, headers: Headers, body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers),
            f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(head).encode("latin-1") + body


def _error(status: int, message: str) -> bytes:
    body = json.dumps({"error": HTTPStatus(status).phrase, "status": status, "message": message}).encode()
    return _http(status, [("Content-Type", "application/json")], body)


class EngineSessions:
    """The hop's answer (router.Router's `answer`) when smc owns the session protocol."""

    def __init__(self, store: SessionStore, invocations_path: str, timeout_s: float, log: Any) -> None:
        self.gate = Gate(store)
        self.invocations_path = invocations_path
        self.timeout_s = timeout_s
        self.log = log

    def route(self, body: bytes | bytearray, headers: Dict[str, str]) -> str:
        if self.invocations_path != AUTO_ROUTE:
            return self.invocations_path
        named = _ATTRIBUTE_ROUTE.search(headers.get(_ATTRIBUTES, ""))
        return named.group(1) if named else route_for(body)

    def answer(self, target: str, body: bytes | bytearray, headers: Optional[Dict[str, str]] = None) -> bytes:
        headers = headers or {}
        try:
            step = self.gate.route(body, headers.get(_ID), time.monotonic() + self.timeout_s, check=True)  # type: ignore[arg-type]
        except SessionError as exc:
            self.log.warning("session_request_refused", status=exc.status, error=exc.message)
            return _error(exc.status, exc.message)
        if isinstance(step, tuple):
            return _http(*step)
        try:
            path = self.route(body, headers)
        except RouteError as exc:
            return _error(400, exc.message)
        query = target.partition("?")[2]
        return _http(200, [("X-Accel-Redirect", REDIRECT_PREFIX + path + ("?" + query if query else ""))], b"")


def start(sessions: SessionsConfig, invocations_path: str, timeout_s: float, log: Any) -> EngineSessions:
    from supervisor_app.serve.sessions import prepare_store

    prepare_store(sessions, log, "engine")
    return EngineSessions(SessionStore(str(sessions.path), sessions.expiration_s), invocations_path, timeout_s, log)


__all__ = ["EngineSessions", "start"]
