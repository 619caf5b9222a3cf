"""The WSGI app each gunicorn worker runs: /ping, /invocations, /execution-parameters.

A plain WSGI callable rather than Flask: three routes do not need a framework, and skipping
Flask's request/response objects is a large share of the per-request cost (see bench/serve).
Every error answer is JSON; tracebacks go to the log only.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from supervisor_app import logs
from supervisor_app.worker.batching import BatchTimeout, set_deadline
from supervisor_app.worker.handlers import Context, HandlerError, InferenceService, Result
from supervisor_app.worker.sessions.gate import Gate
from supervisor_app.worker.sessions.protocol import ENVIRON_ID, SessionError
from supervisor_app.worker.streaming import StreamBody

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

_ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",), "/execution-parameters": ("GET", "HEAD")}
_SAGEMAKER_PREFIX = "HTTP_X_AMZN_SAGEMAKER_"


class Deadline(BaseException):
    """Raised in the handler when SAGEMAKER_MODEL_SERVER_TIMEOUT passes. BaseException, so a
    user's `except Exception` cannot swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Deadline()


def error_body(status: int, message: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    return json.dumps({"error": phrase, "status": status, "message": message}).encode()


class App:
    def __init__(
        self,
        service: InferenceService,
        timeout_s: float,
        max_payload_bytes: int,
        execution_parameters: dict[str, Any],
        threaded: bool = False,
        sessions: Gate | None = None,
    ) -> None:
        self.service = service
        self.sessions = sessions or Gate(None)  # off: session requests and ids are refused
        self.timeout_s = timeout_s
        self.max_payload_bytes = max_payload_bytes
        self.execution_defaults = execution_parameters
        self.log = logs.get_logger("app")
        signal.signal(signal.SIGALRM, _on_alarm)
        if threaded:
            # Requests run on threads (batching, worker/batch_worker.py), and SIGALRM reaches the main
            # thread only: the deadline bounds the wait for the batch instead (worker/batching.py).
            self._with_deadline = self._deadline_for_batch  # type: ignore[method-assign]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        allowed = _ROUTES.get(path)
        if allowed is None:
            return self._error(start_response, 404, f"no route {path!r}; routes: {', '.join(_ROUTES)}")
        if method not in allowed:
            return self._error(
                start_response, 405, f"{method} not allowed on {path}; use {', '.join(allowed)}",
                [("Allow", ", ".join(allowed))],
            )
        if path == "/invocations":
            return self._invocations(environ, start_response)
        if path == "/ping":
            # Reached only when a client talks to gunicorn directly; nginx answers /ping itself.
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        return self._execution_parameters(environ, start_response)

    def _invocations(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        inference_id = environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID")
        extra: list[tuple[str, str]] = []
        if not inference_id:
            inference_id = uuid.uuid4().hex
            extra.append(("X-Amzn-SageMaker-Inference-Id", inference_id))
        logs.bind_context(inference_id=inference_id)
        try:
            body = self._read_body(environ)
            if body is None:
                limit_mb = self.max_payload_bytes // (1024 * 1024)
                return self._error(start_response, 413, f"request body over {limit_mb} MiB "
                                   "(SAGEMAKER_MAX_PAYLOAD_IN_MB)", extra)
            headers = _request_headers(environ)
            context = Context(self.service.model_dir, headers, inference_id)
            adapter = environ.get("smc.adapter")  # worker/adapters.py: the header named a loaded one
            if adapter is not None:
                context.adapter = adapter
                context.adapter_model = environ.get("smc.adapter_model")
            content_type = environ.get("CONTENT_TYPE") or environ.get("HTTP_CONTENTTYPE") or "application/json"
            accept = environ.get("HTTP_ACCEPT")
            try:
                # NEW_SESSION and CLOSE are answered here, before input_fn (worker/sessions/gate.py).
                use = self.sessions.route(body, environ.get(ENVIRON_ID), time.monotonic() + self.timeout_s)
                if isinstance(use, tuple):
                    return self._reply(start_response, use, extra)
                # One deadline for the session's lock, the handler and, for a stream, its first chunk.
                result, first, rest = self._with_deadline(
                    lambda: self._in_session(use, context, lambda: self._start(
                        self.service.invoke(body, content_type, accept, context)))
                )
            except HandlerError as exc:
                self._log_failure(exc)
                return self._error(start_response, exc.status, exc.message, extra)
            except SessionError as exc:
                self.log.warning("session_request_refused", status=exc.status, error=exc.message)
                return self._error(start_response, exc.status, exc.message, extra)
            except (Deadline, BatchTimeout):
                self.log.error("invocation_timed_out", timeout_s=self.timeout_s)
                return self._error(
                    start_response, 504,
                    f"the handler did not answer within {self.timeout_s:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)", extra,
                )
            status = HTTPStatus(result.status)
            response_headers = [("Content-Type", result.content_type)]
            response_headers += list(result.headers.items()) + extra
            if rest is None or first is None:
                if rest is not None:  # a stream that yielded nothing: an empty answer
                    empty = StreamBody(b"", iter(()), result.chunks, None, Deadline, self.timeout_s,
                                       self.log, inference_id, started)
                    empty.outcome = "complete"
                    empty.close()
                response_headers.insert(1, ("Content-Length", str(len(result.body))))
                start_response(f"{status.value} {status.phrase}", response_headers)
                return [result.body]
            start_response(f"{status.value} {status.phrase}", response_headers)
            # The worker sends it chunk by chunk (no Content-Length: HTTP/1.1 chunked, unbuffered).
            return StreamBody(first, rest, result.chunks, environ.get("smc.client"), Deadline, self.timeout_s,
                              self.log, inference_id, started)
        finally:
            logs.unbind_context("inference_id")

    def _in_session(self, use: Any, context: Context, run: Callable[[], Any]) -> Any:
        """run() with the request's session (if any) locked in context.session; its state is saved
        before the answer goes out, and only when run() answered (worker/sessions/state.py)."""
        if use is None:
            return run()
        context.session = self.sessions.enter(use, time.monotonic() + self.timeout_s)
        try:
            answer = run()
            context.session.commit()
            return answer
        finally:
            context.session.release()

    def _reply(self, start_response: StartResponse, reply: tuple[int, list[tuple[str, str]], bytes],
               extra: list[tuple[str, str]]) -> Iterable[bytes]:
        status, headers, body = reply
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [*headers, ("Content-Length", str(len(body)))] + extra)
        return [body]

    def _start(self, result: Result) -> tuple[Result, bytes | None, Any]:
        if result.chunks is None:
            return result, None, None
        first, rest = self.service.first_chunk(result)
        return result, first, rest

    def _with_deadline(self, run: Callable[[], Any]) -> Any:
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            return run()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _deadline_for_batch(self, run: Callable[[], Any]) -> Any:
        set_deadline(time.monotonic() + self.timeout_s)
        return run()

    def _log_failure(self, exc: HandlerError) -> None:
        if exc.status >= 500:
            # The cause (user traceback) is chained on the HandlerError.
            self.log.error("invocation_failed", status=exc.status, hook=exc.hook or None, error=exc.message,
                           exc_info=exc.__cause__ or exc)
        else:
            self.log.warning("invocation_rejected", status=exc.status, hook=exc.hook or None, error=exc.message)

    def _read_body(self, environ: Environ) -> bytes | None:
        """The request body, or None when it is over the limit."""
        stream = environ["wsgi.input"]
        limit = self.max_payload_bytes
        length_text = environ.get("CONTENT_LENGTH") or ""
        if length_text.isdigit():
            length = int(length_text)
            if limit and length > limit:
                return None
            return stream.read(length) if length else b""
        data = stream.read(limit + 1) if limit else stream.read()
        if limit and len(data) > limit:
            return None
        return data

    def _execution_parameters(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        context = Context(self.service.model_dir, _request_headers(environ))
        try:
            answer = self.service.execution_parameters(dict(self.execution_defaults), context)
        except HandlerError as exc:
            self._log_failure(exc)
            return self._error(start_response, exc.status, exc.message)
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _error(
        self, start_response: StartResponse, status: int, message: str, extra: list[tuple[str, str]] | None = None
    ) -> Iterable[bytes]:
        body = error_body(status, message)
        phrase = HTTPStatus(status).phrase
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + (extra or [])
        start_response(f"{status} {phrase}", headers)
        return [body]


def _request_headers(environ: Environ) -> dict[str, str]:
    """Content-Type, Accept and every X-Amzn-SageMaker-* header, with their HTTP spelling."""
    headers: dict[str, str] = {}
    for key in ("CONTENT_TYPE", "HTTP_ACCEPT"):
        if environ.get(key):
            headers[key.removeprefix("HTTP_").replace("_", "-").title()] = environ[key]
    for key, value in environ.items():
        if key.startswith(_SAGEMAKER_PREFIX):
            name = "X-Amzn-SageMaker-" + key[len(_SAGEMAKER_PREFIX):].replace("_", "-").title()
            headers[name] = value
    return headers
