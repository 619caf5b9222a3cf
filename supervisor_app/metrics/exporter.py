"""smc serve's metrics exporter: a Prometheus /metrics endpoint on SMC_METRICS_PORT and/or EMF
lines every SMC_METRICS_INTERVAL_SECONDS, both from the workers' counters files.

It runs in smc's own process on daemon threads, away from the request path and from the
supervision loop: a scrape reads a few KiB per worker. The threads never log and take no lock
a forked child could need (smc forks only to exec nginx and gunicorn).
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any, BinaryIO

from supervisor_app.config.metrics import MetricsConfig
from supervisor_app.errors import BootError
from supervisor_app.metrics import emf, layout, prometheus
from supervisor_app.metrics.aggregate import Aggregator, Snapshot


class Exporter:
    def __init__(self, config: MetricsConfig, directory: Path, workers: int, out: BinaryIO) -> None:
        self.config = config
        self.aggregator = Aggregator(directory)
        self.workers = workers
        self.out = out
        self.stopping = threading.Event()
        self.server: http.server.HTTPServer | None = None
        self.threads: list[threading.Thread] = []
        self.emitted: Snapshot | None = None

    def start(self) -> None:
        if self.config.port:
            self.server = _bind(self.config.port, self)
            self._thread("smc-metrics-http", lambda: self.server.serve_forever(poll_interval=0.5))  # type: ignore[union-attr]
        if self.config.emf:
            self._thread("smc-metrics-emf", self._emf_loop)

    def _thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def prometheus_text(self) -> bytes:
        return prometheus.render(self.aggregator.snapshot(), self.workers).encode()

    def _emf_loop(self) -> None:
        while not self.stopping.wait(self.config.interval_s):
            self.emit()

    def emit(self) -> None:
        now = self.aggregator.snapshot()
        data = emf.line(now, self.emitted, self.config.namespace, self.workers, self.config.interval_s)
        self.emitted = now
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        """Stop the threads; with EMF on, one last line covers the time since the previous one."""
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=2)
        if self.config.emf:
            self.emit()


def start(config: MetricsConfig, run_dir: Path, workers: int, out: BinaryIO) -> Exporter | None:
    """Create the counters dir (which turns recording on in the workers) and start exporting."""
    if not config.enabled:
        return None
    directory = run_dir / layout.DIR_NAME
    directory.mkdir(mode=0o700, exist_ok=True)
    exporter = Exporter(config, directory, workers, out)
    exporter.start()
    return exporter


class _Handler(http.server.BaseHTTPRequestHandler):
    exporter: Exporter
    timeout = 10  # a client that stalls holds its own thread for 10 s at most, never a scrape

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (400 for a broken request line, 414, 501 for a method other
        than GET/HEAD) as JSON like every other answer of smc, not its HTML page."""
        phrase = self.responses.get(code, ("Error", ""))[0]
        self.close_connection = True
        self._send(code, "application/json", json.dumps(
            {"error": phrase, "status": code, "message": message or explain or phrase}).encode())

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(404, "application/json", json.dumps(
                {"error": "Not Found", "status": 404, "message": "the metrics port serves GET /metrics"}).encode())
            return
        self._send(200, prometheus.CONTENT_TYPE, self.exporter.prometheus_text())

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # scrapes are not worth a log line each


class _Server(http.server.ThreadingHTTPServer):
    # A thread per connection: one idle or slow client no longer delays every scrape by its 10 s.
    daemon_threads = True
    block_on_close = False


def _bind(port: int, exporter: Exporter) -> http.server.HTTPServer:
    handler = type("MetricsHandler", (_Handler,), {"exporter": exporter})
    try:
        server = _Server(("0.0.0.0", port), handler)
    except OSError as exc:
        raise BootError(f"metrics port {port} cannot be opened ({exc.strerror})",
                        hint="set SMC_METRICS_PORT to a free port, or unset it to turn /metrics off") from None
    return server
