"""A gunicorn sync worker with a lean request path for the only client it ever has: nginx.

The socket lives in smc's private run dir, so every request comes from the nginx smc configured:
one request per connection, the body sent with Content-Length (buffered by nginx, or streamed as it
arrives when it is 10 MB or more: serve/nginx.py, worker/bodies.py). For that subset gunicorn's
general HTTP parser, Request/Response objects and config lookups are most of a request's cost
(about half of the worker's CPU in bench/serve). The body is read into one buffer of its final
size, so a 1 GB body costs one body of memory and linear time. Responses are written by
worker/response.py: buffered in one send, or streamed (HTTP/1.1 chunked) when the app returns a
generator or calls write(). Everything else is gunicorn's SyncWorker unchanged: accept loop,
heartbeat, timeouts, graceful exit, max requests.
"""

from __future__ import annotations

import errno
import io
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from gunicorn.workers.sync import SyncWorker

from supervisor_app import logs
from supervisor_app.worker import early_signals
from supervisor_app.worker.bodies import BodyError, read_body
from supervisor_app.worker.response import ResponseWriter, StreamAborted, buffered_bytes
from supervisor_app.worker.wsgi import error_body

_MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 256 * 1024  # the head and a body up to about this size arrive in one recv: one syscall
_QUIET_ERRNOS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


class BadRequest(Exception):
    pass


class NginxWorker(SyncWorker):
    _writer: ResponseWriter | None = None

    def init_signals(self) -> None:
        super().init_signals()
        early_signals.replay(self)

    def handle_exit(self, sig: Any, frame: Any) -> None:
        writer = self._writer
        if writer is not None and writer.head_sent:
            # A stream is in flight: it goes on until it ends or the grace period (then SIGKILL)
            # ends it; this line says which stream was at stake.
            try:
                logs.get_logger("worker").warning("stream_draining", bytes_sent=writer.bytes_sent,
                                                  grace_s=self.cfg.graceful_timeout)
            except RuntimeError:
                pass  # the signal came in the middle of another line's write (reentrant call)
        super().handle_exit(sig, frame)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        writer = None
        try:
            # Heartbeats inside a request touch gunicorn's liveness file only: a subclass's notify()
            # may do work meant for between requests (the MME worker syncs its models there).
            request = read_request(client, self.tmp.notify)
            if request is None:
                return  # a health probe: connected and closed
            self.nr += 1
            if self.nr >= self.max_requests:
                self.alive = False
            environ = build_environ(*request)
            environ["smc.client"] = client  # streams watch it for the client leaving (worker/streaming.py)
            writer = self._writer = ResponseWriter(client, environ["REQUEST_METHOD"] == "HEAD", self.tmp.notify,
                                                   stall_s=self._stall_s())
            self._respond(environ, writer)
        except (BadRequest, BodyError) as exc:
            self._send_quietly(client, buffered_bytes("400 Bad Request", [("Content-Type", "application/json")],
                                                      error_body(400, str(exc))))
        except StreamAborted:
            pass  # logged where it was decided; closing without the last chunk tells nginx and the client
        except OSError as exc:
            if exc.errno not in _QUIET_ERRNOS:
                self.log.exception("Socket error processing request.")
        except Exception as exc:
            if writer is not None and writer.head_sent:
                # Mid-stream: too late for a status; the connection closes without the last chunk.
                logs.get_logger("worker").error("stream_failed", error=f"{type(exc).__name__}: {exc}",
                                                bytes_sent=writer.bytes_sent, exc_info=True)
            else:
                self.log.exception("Error handling request")
                self._send_quietly(client, buffered_bytes("500 Internal Server Error",
                                                          [("Content-Type", "application/json")],
                                                          error_body(500, "internal error in the model server")))
        finally:
            self._writer = None
            client.close()

    def _respond(self, environ: dict[str, Any], writer: ResponseWriter) -> None:
        result = self.wsgi(environ, writer.start_response)
        try:
            if type(result) is list and not writer.head_sent:
                writer.sendall(writer.buffered(result))  # the fast path: one send
            else:
                writer.stream(result)
        finally:
            if hasattr(result, "close"):
                result.close()  # for a generator: GeneratorExit in the handler, e.g. when the client left

    def _stall_s(self) -> float:
        # The invocation timeout: below gunicorn's own (timeout + 5 s), so a stalled client ends
        # its answer before the arbiter could take the worker for hung.
        config = getattr(self.app, "config", None)
        return float(getattr(config, "timeout_s", 60.0))

    @staticmethod
    def _send_quietly(client: Any, data: bytes) -> None:
        try:
            client.sendall(data)
        except OSError:
            pass


def read_request(client: Any, heartbeat: Callable[[], None] | None = None) -> tuple[bytes, list[bytes], io.BytesIO] | None:
    """(request line, header lines, body) from one connection; None if closed before any byte.
    heartbeat: called while a big body streams in (worker/bodies.py)."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(data) > _MAX_HEAD_BYTES:
            raise BadRequest("request head over 64 KiB")
        chunk = client.recv(_RECV_BYTES)
        if not chunk:
            if not data:
                return None
            raise BadRequest("connection closed inside the request head")
        data += chunk
    request_line, *header_lines = data[:end].split(b"\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            if not value.strip().isdigit():
                raise BadRequest("bad Content-Length")
            length = int(value)
        elif lowered == b"transfer-encoding":
            raise BadRequest("chunked bodies reach the worker only through nginx, which de-chunks them")
    start = end + 4
    if len(data) - start >= length:
        return request_line, header_lines, io.BytesIO(data[start:start + length])
    return request_line, header_lines, read_body(client, memoryview(data)[start:], length, heartbeat)


def build_environ(request_line: bytes, header_lines: list[bytes], body: io.BytesIO) -> dict[str, Any]:
    try:
        method, target, protocol = request_line.decode("latin-1").split(" ", 2)
    except ValueError:
        raise BadRequest(f"malformed request line {request_line[:100]!r}") from None
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": protocol,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "",
        "CONTENT_LENGTH": str(len(body.getvalue())),  # getvalue() shares the buffer: no copy
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for line in header_lines:
        raw_name, sep, raw_value = line.partition(b":")
        name = raw_name.decode("latin-1").strip()
        if not sep or not name or "_" in name:
            continue  # a header with "_" could pose as another after CGI renaming; gunicorn drops them too
        value = raw_value.decode("latin-1").strip()
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if key == "CONTENT_LENGTH":
            continue
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if "HTTP_X_FORWARDED_FOR" in environ:
        environ["REMOTE_ADDR"] = environ["HTTP_X_FORWARDED_FOR"].split(",")[-1].strip()
    return environ
