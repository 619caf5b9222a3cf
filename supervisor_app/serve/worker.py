"""A gunicorn sync worker with a lean request path for the only client it ever has: nginx.

The socket lives in smc's private run dir, so every request comes from the nginx smc configured:
HTTP/1.0, one request per connection, the body already buffered and sent with Content-Length.
For that subset gunicorn's general HTTP parser, Request/Response objects and config lookups are
most of a request's cost (about half of the worker's CPU in bench/serve). Everything else is
gunicorn's SyncWorker unchanged: accept loop, heartbeat, timeouts, graceful exit, max requests.
"""

from __future__ import annotations

import errno
import io
import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from gunicorn.workers.sync import SyncWorker

from supervisor_app.serve.wsgi import error_body

_MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 256 * 1024
_QUIET_ERRNOS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


class BadRequest(Exception):
    pass


class NginxWorker(SyncWorker):
    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        try:
            request = read_request(client)
            if request is None:
                return  # a health probe: connected and closed
            self.nr += 1
            if self.nr >= self.max_requests:
                self.alive = False
            client.sendall(self._respond(build_environ(*request)))
        except BadRequest as exc:
            self._send_quietly(client, _response_bytes("400 Bad Request", [("Content-Type", "application/json")],
                                                       error_body(400, str(exc))))
        except OSError as exc:
            if exc.errno not in _QUIET_ERRNOS:
                self.log.exception("Socket error processing request.")
        except Exception:
            self.log.exception("Error handling request")
            self._send_quietly(client, _response_bytes("500 Internal Server Error", [("Content-Type", "application/json")],
                                                       error_body(500, "internal error in the model server")))
        finally:
            client.close()

    def _respond(self, environ: dict[str, Any]) -> bytes:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return _no_write

        result = self.wsgi(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        return _response_bytes(status, headers, b"" if environ["REQUEST_METHOD"] == "HEAD" else body)

    @staticmethod
    def _send_quietly(client: Any, data: bytes) -> None:
        try:
            client.sendall(data)
        except OSError:
            pass


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable is not supported; return the body from the WSGI app")


def _response_bytes(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.0 {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() == "content-length" for name, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_request(client: Any) -> tuple[bytes, list[bytes], bytes] | None:
    """(request line, header lines, body) from one connection; None if closed before any byte."""
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
    head, body = data[:end], data[end + 4:]
    request_line, *header_lines = head.split(b"\r\n")
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
    while len(body) < length:
        chunk = client.recv(min(_RECV_BYTES, length - len(body)))
        if not chunk:
            raise BadRequest("connection closed inside the request body")
        body += chunk
    return request_line, header_lines, body[:length]


def build_environ(request_line: bytes, header_lines: list[bytes], body: bytes) -> dict[str, Any]:
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
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
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
