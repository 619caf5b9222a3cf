"""SMC_ENGINE_INVOCATIONS_PATH=auto: which OpenAI route a POST /invocations body goes to.

nginx cannot read JSON, so in auto mode it sends the (already buffered) request to this small
server on a unix socket in smc's run directory. It answers either a JSON 400 (not JSON, or none of
the fields it looks for) or an empty 200 with `X-Accel-Redirect: /_smc_engine/v1/...`: nginx then
sends the same request, its buffered body and headers, to the engine itself and streams the
engine's answer to the client. So this hop only reads the body once and never carries the answer
(streamed answers stay nginx -> client), and requests with a `route=` custom attribute never reach
it. It runs as a thread of the smc process (the supervisor), like the health poller.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

from supervisor_app.serve.engine.unix_hop import Request, UnixHop

# The fields looked for, in order: the first present wins (as vLLM's and TGI's /invocations try chat first).
ROUTES: tuple[tuple[str, str], ...] = (
    ("messages", "/v1/chat/completions"),
    ("prompt", "/v1/completions"),
    ("input", "/v1/embeddings"),
)
REDIRECT_PREFIX = "/_smc_engine"
SOCKET_NAME = "router.sock"


class RouteError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_HOW = "Send a JSON object with one of them, or name the route with X-Amzn-SageMaker-Custom-Attributes: route=/v1/..."


def route_for(body: bytes | bytearray) -> str:
    """The engine path for a JSON body; RouteError saying why there is none."""
    fields = ", ".join(f"`{field}` -> {path}" for field, path in ROUTES)
    needs = f"SMC_ENGINE_INVOCATIONS_PATH=auto picks the engine route by the JSON body's top-level field ({fields})"
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RouteError(f"{needs}; this body is not JSON ({exc}). {_HOW}") from None
    if not isinstance(document, dict):
        raise RouteError(f"{needs}; this body is a JSON {type(document).__name__}, not an object. {_HOW}")
    for field, path in ROUTES:
        if field in document:
            return path
    raise RouteError(f"{needs}; this JSON object has none of them. {_HOW}")


def _error(message: str) -> bytes:
    body = json.dumps({"error": "Bad Request", "status": 400, "message": message}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


def _redirect(path: str, query: str) -> bytes:
    target = REDIRECT_PREFIX + path + ("?" + query if query else "")
    return b"HTTP/1.1 200 OK\r\nX-Accel-Redirect: %s\r\nContent-Length: 0\r\n\r\n" % target.encode()


def answer(target: str, body: bytes | bytearray, headers: dict[str, str] | None = None) -> bytes:
    query = target.partition("?")[2]
    try:
        return _redirect(route_for(body), query)
    except RouteError as exc:
        return _error(exc.message)


class Router(UnixHop):
    """The routing hop: a thread per nginx connection (nginx keeps a few alive)."""

    thread_name = "smc-engine-router"

    def __init__(self, path: str, answer: Callable[..., bytes] = answer) -> None:
        super().__init__(path)
        self.answer = answer  # (target, body, headers) -> the raw HTTP reply; sessions.py has another

    def handle(self, request: Request, conn: socket.socket) -> bool:
        conn.sendall(self.answer(request.target, request.body, request.lowered_headers()))
        return True


def check_engine_routes(host: str, port: int, timeout_s: float, warn: Callable[..., None],
                        probe: Callable[[str, int, str, float], tuple[bool, str]]) -> None:
    """Auto routing sends bodies to the engine's /v1 routes: an engine that does not list its models
    at GET /v1/models (every OpenAI-compatible server does) is said at start, not at the first request."""
    started = time.monotonic()
    healthy, why = probe(host, port, "/v1/models", timeout_s)
    if not healthy:
        warn("engine_openai_routes_missing", path="/v1/models", why=why, elapsed_s=round(time.monotonic() - started, 3),
             consequence="SMC_ENGINE_INVOCATIONS_PATH=auto routes /invocations to /v1/chat/completions, "
                         "/v1/completions and /v1/embeddings; this engine may not serve them (is it OpenAI-compatible?)")


__all__ = ["REDIRECT_PREFIX", "ROUTES", "Router", "RouteError", "SOCKET_NAME", "answer", "check_engine_routes",
           "route_for"]
