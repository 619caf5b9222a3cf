"""SMC_ENGINE_ADAPTERS=vllm|sglang: the hop in smc that nginx sends the adapter routes and the
invocations carrying X-Amzn-SageMaker-Adapter-Identifier to (a unix socket in the run dir).

Unlike the routing hop (router.py), this one must change the body (its `model` field), so it
carries the request to the engine itself and relays the engine's answer, byte for byte and as
it arrives (nginx has buffering off for it): chunked and server-sent-event answers stream.
Both hops keep their connections alive (nginx's upstream keepalive; a pool to the engine,
upstream.py), so a request costs neither side a connection set-up. Invocations without the
header never come here.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any
from urllib.parse import unquote

from supervisor_app.config.engine import AUTO_ROUTE
from supervisor_app.serve.engine.adapters import Adapters
from supervisor_app.serve.engine.router import RouteError, route_for
from supervisor_app.serve.engine.unix_hop import Request, UnixHop
from supervisor_app.serve.engine.upstream import EngineGone, EnginePool, EngineSlow
from supervisor_app.worker.adapter_requests import (
    ALIAS_HEADER,
    IDENTIFIER_HEADER,
    MAX_CONTROL_BODY_BYTES,
    AdapterError,
    as_aliased,
    check_name,
    error_json,
    name_in_path,
    parse_registration,
)

SOCKET_NAME = "adapters.sock"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade",
                         "proxy-connection", "trailer"})
# As nginx's map in nginx_conf.py: `route=/v1/...` in the custom attributes, no `..`.
_ATTRIBUTE_ROUTE = re.compile(r"(?:^|[\s,;])route=(?!\S*\.\.)(/[A-Za-z0-9_./-]+)")


def _answer(status: int, payload: Any, content_type: str = "application/json") -> bytes:
    from http import HTTPStatus

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _error(status: int, message: str) -> bytes:
    return _answer(status, error_json(status, message))


class AdapterProxy(UnixHop):
    thread_name = "smc-adapter-proxy"

    def __init__(self, path: str, adapters: Adapters, engine_host: str, engine_port: int, invocations_path: str,
                 timeout_s: float, log: Any) -> None:
        super().__init__(path)
        self.adapters = adapters
        self.engine = (engine_host, engine_port)
        self.invocations_path = invocations_path
        self.timeout_s = timeout_s
        self.log = log
        self.pool = EnginePool(engine_host, engine_port, timeout_s)
        self.sessions: Any = None  # engine/sessions.py's EngineSessions when smc owns stateful sessions

    def stop(self) -> None:
        super().stop()
        self.pool.close()

    def handle(self, request: Request, conn: socket.socket) -> bool:
        if request.path == "/adapters" or request.path.startswith("/adapters/"):
            conn.sendall(self.control(request))
            return True
        return self.invoke(request, conn)

    # -- /adapters ----------------------------------------------------------------------------------
    def control(self, request: Request) -> bytes:
        try:
            name = name_in_path(unquote(request.path))
            if request.method == "GET":
                if name is None:
                    return _answer(200, {"adapters": self.adapters.listing()})
                return _answer(200, self.adapters.describe(name))
            if request.method == "POST" and name is None:
                if len(request.body) > MAX_CONTROL_BODY_BYTES:
                    raise AdapterError(413, f"POST /adapters bodies are small JSON objects; got {len(request.body)} bytes")
                registration = parse_registration(bytes(request.body), request.query)
                text = as_aliased(self.adapters.register(registration), request.header(ALIAS_HEADER))
                return _answer(200, text.encode(), "text/plain; charset=utf-8")
            if request.method == "DELETE" and name is not None:
                text = as_aliased(self.adapters.unregister(name), request.header(ALIAS_HEADER))
                return _answer(200, text.encode(), "text/plain; charset=utf-8")
            allowed = "GET, POST" if name is None else "GET, DELETE"
            raise AdapterError(405, f"{request.method} not allowed on {request.path}; use {allowed}")
        except AdapterError as exc:
            return _error(exc.status, exc.message)

    # -- invocations naming an adapter ------------------------------------------------------------------
    def invoke(self, request: Request, conn: socket.socket) -> bool:
        """Answer one invocation naming an adapter; True when `conn` may carry another request."""
        if self.sessions is not None and request.path == "/invocations":
            # With sessions on, an invocation naming an adapter is a session request like any other.
            done = self.sessions.check(request.body, request.lowered_headers())
            if done is not None:
                conn.sendall(done)
                return True
        try:
            name = check_name(request.header(IDENTIFIER_HEADER), IDENTIFIER_HEADER)
            adapter = self.adapters.acquire(name)  # unknown: 404 naming it, whatever the body
        except AdapterError as exc:
            conn.sendall(_error(exc.status, exc.message))
            return True
        try:
            try:
                path, body = self._rewrite(request, name)
            except AdapterError as exc:
                conn.sendall(_error(exc.status, exc.message))
                return True
            head = [f"POST {path} HTTP/1.1"]
            head += [f"{k}: {v}" for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
            head += [f"Content-Length: {len(body)}", "", ""]
            request.body = bytearray()  # not held twice while the answer streams
            try:
                return self.pool.relay("\r\n".join(head).encode("latin-1") + body, conn)
            except EngineSlow:
                conn.sendall(_error(504, f"the engine did not answer within {self.timeout_s:g} s "
                                         "(SAGEMAKER_MODEL_SERVER_TIMEOUT)"))
            except EngineGone as exc:
                conn.sendall(_error(502, f"the engine at {self.engine[0]}:{self.engine[1]} did not answer: {exc}"))
            return True
        finally:
            self.adapters.release(adapter)

    def _rewrite(self, request: Request, name: str) -> tuple[str, bytes]:
        try:
            document = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AdapterError(400, f"{IDENTIFIER_HEADER} names the adapter in the JSON body's `model`, but this "
                                    f"body is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise AdapterError(400, f"{IDENTIFIER_HEADER} names the adapter in the JSON body's `model`, but this "
                                    f"body is a JSON {type(document).__name__}, not an object")
        path = request.path
        if path == "/invocations":
            path = self.invocations_path
            if path == AUTO_ROUTE:
                route = _ATTRIBUTE_ROUTE.search(request.header("X-Amzn-SageMaker-Custom-Attributes") or "")
                try:
                    path = route.group(1) if route else route_for(request.body)
                except RouteError as exc:
                    raise AdapterError(400, exc.message) from None
        document["model"] = self.adapters.model_field(name, document.get("model"))
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return path + ("?" + request.query if request.query else ""), body


__all__ = ["AdapterProxy", "SOCKET_NAME"]
