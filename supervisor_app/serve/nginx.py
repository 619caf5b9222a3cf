"""nginx.conf for `smc serve`, rendered from the typed config (pure: a string, no I/O).

nginx answers GET /ping itself from a readiness file the supervisor creates once a worker has
loaded the model and removes when draining or restarting gunicorn: a stat() per ping, so /ping
never queues behind busy workers. Everything else goes to gunicorn on a unix socket. Errors nginx
generates itself (400, 413, 502, 504, ...) get JSON bodies like the app's, from named locations:
those cannot be requested from outside, and they keep the client's method and path for the log.

Drain (SIGTERM): the supervisor creates the drain file; from then on every request passes once
through @smc_draining, whose `keepalive_timeout 0` makes nginx answer with `Connection: close`
and close the connection after the response, so keep-alive clients leave between requests
instead of having a request cut when nginx quits (see docs/reliability.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# Names in smc's private run dir.
READY_FILE = "ready"
DRAIN_FILE = "draining"
CONF_FILE = "nginx.conf"
SOCKET_NAME = "gunicorn.sock"  # gunicorn binds it, nginx proxies to it
BODY_DIR = "nginx/body"  # client_body_temp_path, relative to the run dir
STREAMED_BODY_LOCATION = "/_smc_streamed_body"
STREAMED_BODY_MIN_BYTES = 10_000_000  # by digit count: Content-Length of 8 digits or more

_ACCESS_FORMAT = (
    '{"ts":"$time_iso8601","level":"info","component":"nginx","event":"request",'
    '"method":"$smc_log_method","path":"$smc_log_path","status":$status,"bytes":$body_bytes_sent,'
    '"request_s":$request_time,"upstream_s":"$upstream_response_time",'
    '"inference_id":"$inference_id","target_model":"$http_x_amzn_sagemaker_target_model",'
    '"remote":"$remote_addr","pid":$pid}'
)

# status nginx produces without the app -> (status sent, phrase, message). 494 is nginx's internal
# code for a header over large_client_header_buffers; it answers 400, as nginx itself does.
_NGINX_ERRORS = {
    400: (400, "Bad Request", "malformed HTTP request"),
    404: (404, "Not Found", "no such path"),
    405: (405, "Method Not Allowed", "method not allowed (TRACE and CONNECT are never served)"),
    408: (408, "Request Timeout", "the request did not arrive in time"),
    411: (411, "Length Required", "send a Content-Length or a chunked body"),
    413: (413, "Payload Too Large", "request body over {limit} (SAGEMAKER_MAX_PAYLOAD_IN_MB)"),
    414: (414, "URI Too Long", "request line over {header_kib} KiB"),
    494: (400, "Bad Request", "request header too large: a header line over {header_kib} KiB, or all headers over "
          "{headers_kib} KiB"),
    500: (500, "Internal Server Error", "internal error in the front server"),
    501: (501, "Not Implemented", "unsupported Transfer-Encoding"),
    502: (502, "Bad Gateway", "the model server worker ended before answering; see the log for the cause"),
    503: (503, "Service Unavailable", "the model server is not ready"),
    504: (504, "Gateway Timeout", "no answer within {timeout} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"),
    505: (505, "HTTP Version Not Supported", "use HTTP/1.0 or HTTP/1.1"),
}
# large_client_header_buffers: one header line (or the request line) up to 16 KiB, all headers up
# to 4 x 16 KiB; SageMaker itself limits custom attributes to 1024 characters.
_HEADER_BUFFER_KIB = 16
_HEADER_BUFFERS = 4
_URI_ERROR_PAGES = (400, 414)
_URI_ERROR_PREFIX = "/_smc_error/"
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


def _json_return(status: int, settings: NginxSettings) -> str:
    sent, phrase, message = _NGINX_ERRORS[status]
    limit = f"{settings.max_body_bytes // (1024 * 1024)} MiB" if settings.max_body_bytes else "the limit"
    message = message.format(limit=limit, timeout=f"{settings.timeout_s:g}", header_kib=_HEADER_BUFFER_KIB,
                             headers_kib=_HEADER_BUFFER_KIB * _HEADER_BUFFERS)
    return f"return {sent} '{{\"error\":\"{phrase}\",\"status\":{sent},\"message\":\"{message}\"}}';"


def _error_pages(settings: NginxSettings) -> tuple[str, str]:
    """error_page lines and the locations answering them. Named locations are unreachable from
    outside and keep the client's method and URI. nginx refuses a named location for a request
    without a URI (a malformed or too long request line), so 400 and 414 go to `internal` URI
    locations; the access log then takes method and path from the request line ($smc_log_*)."""
    pages, locations = [], []
    for status in _NGINX_ERRORS:
        answer = _json_return(status, settings)
        if status in _URI_ERROR_PAGES:
            pages.append(f"        error_page {status} {_URI_ERROR_PREFIX}{status};")
            locations.append(f"        location = {_URI_ERROR_PREFIX}{status} {{ internal; {answer} }}")
        else:
            pages.append(f"        error_page {status} @smc_error_{status};")
            locations.append(f"        location @smc_error_{status} {{ {answer} }}")
    return "\n".join(pages), "\n".join(locations)


def access_log_maps() -> str:
    """The maps _ACCESS_FORMAT reads: the client's method and path, also after nginx redirected the
    request to one of its error pages, and the inference id (the client's, else nginx's request
    id). Shared by every nginx.conf smc renders."""
    return f"""    # The access log's method and path: the client's, also after a redirect to an error page or
    # to the location that streams big bodies.
    map $uri $smc_log_method {{
        ~^{_URI_ERROR_PREFIX} $smc_request_method;
        default $request_method;
    }}
    map $uri $smc_log_path {{
        ~^{_URI_ERROR_PREFIX} $smc_request_path;
        ~^{STREAMED_BODY_LOCATION}/ $smc_request_path;
        default $uri;
    }}
    map $request $smc_request_method {{
        "~^([^ ]+) " $1;
        default "";
    }}
    map $request $smc_request_path {{
        "~^\\S+ ([^ ?]*)" $1;
        default "";
    }}
    map $http_x_amzn_sagemaker_inference_id $inference_id {{
        "" $request_id;
        default $http_x_amzn_sagemaker_inference_id;
    }}"""


def temp_paths(temp: Path) -> str:
    """Every temp dir nginx may write, inside smc's private run dir (never nginx's built-in paths,
    which may be read-only or another user's)."""
    return f"""    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
"""


def render_nginx_conf(settings: NginxSettings) -> str:
    run = settings.run_dir
    temp = run / "nginx"
    read_timeout = math.ceil(settings.nginx_timeout_s)
    body_limit = settings.max_body_bytes
    ping_log = "access_log /dev/stdout smc buffer=64k flush=1s;" if settings.log_ping else "access_log off;"
    error_pages, error_locations = _error_pages(settings)
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
    log_format smc escape=json '{_ACCESS_FORMAT}';
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
    large_client_header_buffers {_HEADER_BUFFERS} {_HEADER_BUFFER_KIB}k;
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
{error_pages}

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
