"""nginx.conf for `smc serve`, rendered from the typed config (pure: a string, no I/O).

nginx answers GET /ping itself from a readiness file the supervisor creates once a worker has
loaded the model and removes when draining or restarting gunicorn: a stat() per ping, so /ping
never queues behind busy workers. Everything else goes to gunicorn on a unix socket. Errors nginx
generates itself (400, 413, 502, 504, ...) get JSON bodies like the app's (serve/nginx_shared.py:
the same pages as engine mode's).

Drain (SIGTERM): the supervisor creates the drain file; from then on every request passes once
through @smc_draining, whose `keepalive_timeout 0` makes nginx answer with `Connection: close`
and close the connection after the response, so keep-alive clients leave between requests
instead of having a request cut when nginx quits (see docs/reliability.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.worker.run_dir import DRAIN_FILE, SOCKET_NAME
from supervisor_app.serve.nginx_shared import (
    ACCESS_FORMAT,
    HEADER_BUFFERS_DIRECTIVE,
    STREAMED_BODY_LOCATION,
    access_log_maps,
    error_pages,
    temp_paths,
)

# Names in smc's private run dir.
READY_FILE = "ready"
CONF_FILE = "nginx.conf"
BODY_DIR = "nginx/body"  # client_body_temp_path, relative to the run dir
STREAMED_BODY_MIN_BYTES = 10_000_000  # by digit count: Content-Length of 8 digits or more

_LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


@dataclass(frozen=True)
class NginxSettings:
    run_dir: Path
    socket_path: Path
    port: int
    max_body_bytes: int  # 0: no limit
    timeout_s: float  # the app's limit; nginx adds its own margin (ServeConfig.nginx_timeout_s)
    nginx_timeout_s: float
    worker_connections: int
    keepalive_s: int
    log_ping: bool
    rlimit_nofile: int = 0  # worker_rlimit_nofile; 0: what worker_connections needs
    asgi: bool = False  # SMC_ASGI_APP: unbuffered proxying and the WebSocket route


def render_nginx_conf(settings: NginxSettings) -> str:
    run = settings.run_dir
    temp = run / "nginx"
    read_timeout = math.ceil(settings.nginx_timeout_s)
    body_limit = settings.max_body_bytes
    ping_log = "access_log /dev/stdout smc buffer=64k flush=1s;" if settings.log_ping else "access_log off;"
    pages, error_locations = error_pages(max_body_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s)
    # An async server holds a slow client cheaply and streams without X-Accel-Buffering, so for
    # ASGI apps nginx never buffers answers; WebSocket upgrades pass on SageMaker's bidirectional route.
    asgi = """
            proxy_buffering off;""" if settings.asgi else ""
    websocket = f"""
        location = /invocations-bidirectional-stream {{
            proxy_pass http://smc_gunicorn;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Amzn-SageMaker-Inference-Id $inference_id;
            proxy_read_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
        }}
""" if settings.asgi else ""
    proxy_common = f"""            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Amzn-SageMaker-Inference-Id $inference_id;
            proxy_set_header Connection "";
            proxy_connect_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
            proxy_read_timeout {read_timeout}s;
            proxy_next_upstream off;
            proxy_buffer_size 64k;
            proxy_buffers 16 64k;
            proxy_busy_buffers_size 128k;{asgi}
            add_header X-Amzn-SageMaker-Inference-Id $inference_id always;"""
    # Bodies of STREAMED_BODY_MIN_BYTES and more (with a Content-Length; chunked ones are always
    # buffered) go to the worker as they arrive: spooling them to a file first and reading it back
    # cost ~2x the upload itself (bench/streaming.py), the copy through the socket overlaps the
    # upload. The size limit is still checked on the Content-Length before a byte moves (413).
    # The worker is busy for the upload's duration: fine for SageMaker's own senders (Batch
    # Transform, Async Inference), and small bodies, where slow clients are common, stay buffered.
    streamed_body_jump = f"""
            if ($smc_stream_body) {{
                rewrite ^ {STREAMED_BODY_LOCATION}$uri last;
            }}"""
    streamed_body_location = f"""
        location {STREAMED_BODY_LOCATION}/ {{
            internal;
            proxy_request_buffering off;
            proxy_pass http://smc_gunicorn$request_uri;
{proxy_common}
        }}
"""
    return f"""# Rendered by smc serve; lives only in {run}.
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile {settings.rlimit_nofile or worker_rlimit_nofile(settings.worker_connections)};

events {{
    worker_connections {settings.worker_connections};
    multi_accept on;
}}

http {{
    log_format smc escape=json '{ACCESS_FORMAT}';
    # Buffered: one write per 64 KiB or per second instead of one per request (the relay in smc
    # and nginx both save a syscall per request); lines still show up within a second.
    access_log /dev/stdout smc buffer=64k flush=1s;
    default_type application/json;
    server_tokens off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout {settings.keepalive_s};
    client_max_body_size {body_limit};
    # Bodies over 1 MiB and under STREAMED_BODY_MIN_BYTES (and all chunked ones) are spooled to the
    # temp dir, not held in nginx's memory, and reach the worker whole with a Content-Length
    # (proxy_request_buffering on). Over the limit is a 413 before any byte reaches Python.
    client_body_buffer_size 1m;
    {HEADER_BUFFERS_DIRECTIVE}
    uninitialized_variable_warn off;  # $smc_drained is set only on a request's second pass (drain)
{temp_paths(temp)}
{access_log_maps()}

    map $content_length $smc_stream_body {{
        "~^[0-9]{{{len(str(STREAMED_BODY_MIN_BYTES))},}}$" 1;
        default "";
    }}

    upstream smc_gunicorn {{
        server unix:{settings.socket_path} max_fails=0;
    }}

    server {{
        listen {settings.port} deferred backlog={_LISTEN_BACKLOG};
        server_name _;
{pages}

        # Drain: while the drain file exists, each request's first pass jumps to @smc_draining,
        # which turns keep-alive off for it and sends it back through the normal locations.
        error_page 418 = @smc_draining;
        set $smc_drain "$smc_drained";
        if (-f {run}/{DRAIN_FILE}) {{
            set $smc_drain "${{smc_drain}}d";
        }}
        if ($smc_drain = "d") {{
            return 418;
        }}
        location @smc_draining {{
            keepalive_timeout 0;
            set $smc_drained 1;
            rewrite ^ $uri last;
        }}

        location = /ping {{
            {ping_log}
            if ($request_method !~ ^(GET|HEAD)$) {{
                add_header Allow "GET, HEAD" always;
                return 405 '{{"error":"Method Not Allowed","status":405,"message":"use GET /ping"}}';
            }}
            if (!-f {run}/{READY_FILE}) {{
                return 503 '{{"error":"Service Unavailable","status":503,"message":"the model is not loaded yet, or the server is stopping"}}';
            }}
            return 200;
        }}

        location / {{{streamed_body_jump}
            proxy_pass http://smc_gunicorn;
            # HTTP/1.1 so the worker can stream chunked: nginx then knows a complete stream (last
            # chunk) from a broken one and never ends a failed stream normally for the client. A
            # streamed response carries X-Accel-Buffering: no, so nginx forwards each chunk at once;
            # buffered responses keep nginx's buffering (a slow client does not hold a worker).
{proxy_common}
        }}
{streamed_body_location}{websocket}
{error_locations}
    }}
}}
"""


def worker_rlimit_nofile(worker_connections: int) -> int:
    """A client connection and its upstream connection each take a descriptor."""
    return max(1024, worker_connections * 2 + 64)
