"""nginx.conf for `smc serve`, rendered from the typed config (pure: a string, no I/O).

nginx answers GET /ping itself from a readiness file the supervisor creates once a worker has
loaded the model and removes when draining or restarting gunicorn: a stat() per ping, so /ping
never queues behind busy workers. Everything else goes to gunicorn on a unix socket. Errors nginx
generates itself (413, 502, 504, ...) get JSON bodies like the app's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

READY_FILE = "ready"
CONF_FILE = "nginx.conf"
BODY_DIR = "nginx/body"  # client_body_temp_path, relative to the run dir
BODY_FILE_HEADER = "X-Smc-Body-File"
BODY_LENGTH_HEADER = "X-Smc-Body-Length"
BODY_FILE_LOCATION = "/_smc_body_file"
BODY_FILE_MIN_BYTES = 10_000_000  # by digit count: Content-Length of 8 digits or more

_ACCESS_FORMAT = (
    '{"ts":"$time_iso8601","level":"info","component":"nginx","event":"request",'
    '"method":"$request_method","path":"$uri","status":$status,"bytes":$body_bytes_sent,'
    '"request_s":$request_time,"upstream_s":"$upstream_response_time",'
    '"inference_id":"$inference_id","remote":"$remote_addr","pid":$pid}'
)

# status -> (phrase, message) for answers nginx produces without the app
_NGINX_ERRORS = {
    400: ("Bad Request", "malformed HTTP request"),
    413: ("Payload Too Large", "request body over {limit} (SAGEMAKER_MAX_PAYLOAD_IN_MB)"),
    502: ("Bad Gateway", "the model server worker ended before answering; see the log for the cause"),
    503: ("Service Unavailable", "the model server is not ready"),
    504: ("Gateway Timeout", "no answer within {timeout} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"),
}


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
    user: str | None = None  # `user` directive when nginx starts as root
    asgi: bool = False  # SMC_ASGI_APP: unbuffered proxying and the WebSocket route
    # Big bodies as nginx's spooled file (X-Smc-Body-File): only smc's own worker (serve/worker.py)
    # reads that header, so only it may turn this on; any other upstream needs the body itself.
    body_file_handoff: bool = False


def _json_return(status: int, settings: NginxSettings) -> str:
    phrase, message = _NGINX_ERRORS[status]
    limit = f"{settings.max_body_bytes // (1024 * 1024)} MiB" if settings.max_body_bytes else "the limit"
    message = message.format(limit=limit, timeout=f"{settings.timeout_s:g}")
    return f"return {status} '{{\"error\":\"{phrase}\",\"status\":{status},\"message\":\"{message}\"}}';"


def render_nginx_conf(settings: NginxSettings) -> str:
    run = settings.run_dir
    temp = run / "nginx"
    read_timeout = math.ceil(settings.nginx_timeout_s)
    body_limit = settings.max_body_bytes
    ping_log = "access_log /dev/stdout smc buffer=64k flush=1s;" if settings.log_ping else "access_log off;"
    user = f"user {settings.user};\n" if settings.user else ""
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
    # Bodies of BODY_FILE_MIN_BYTES and more: nginx has spooled them to a file anyway, so it hands
    # the worker that file's name instead of copying the body through the socket (the worker reads
    # it once into the handler's buffer). Not for ASGI apps: uvicorn reads bodies from the socket.
    body_file_jump = "" if not settings.body_file_handoff else f"""
            if ($smc_body_to_file) {{
                rewrite ^ {BODY_FILE_LOCATION}$uri last;
            }}"""
    body_file_location = "" if not settings.body_file_handoff else f"""
        location {BODY_FILE_LOCATION}/ {{
            internal;
            client_body_in_file_only clean;
            proxy_pass_request_body off;
            proxy_pass http://smc_gunicorn$request_uri;
            proxy_set_header Content-Length "";
            proxy_set_header {BODY_FILE_HEADER} $request_body_file;
            proxy_set_header {BODY_LENGTH_HEADER} $content_length;
{proxy_common}
        }}
"""
    error_pages = "\n".join(
        f"        location = /_smc_error/{status} {{ internal; {_json_return(status, settings)} }}"
        for status in _NGINX_ERRORS
    )
    return f"""# Rendered by smc serve; lives only in {run}.
{user}worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile {max(1024, settings.worker_connections * 2)};

events {{
    worker_connections {settings.worker_connections};
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
    # Bodies over 1 MiB are spooled to the temp dir, not held in nginx's memory, and reach the
    # worker whole with a Content-Length (proxy_request_buffering on): over the limit is a 413
    # before any byte reaches Python.
    client_body_buffer_size 1m;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    map $http_x_amzn_sagemaker_inference_id $inference_id {{
        "" $request_id;
        default $http_x_amzn_sagemaker_inference_id;
    }}

    map $content_length $smc_body_to_file {{
        "~^[0-9]{{{len(str(BODY_FILE_MIN_BYTES))},}}$" 1;
        default "";
    }}

    upstream smc_gunicorn {{
        server unix:{settings.socket_path} max_fails=0;
    }}

    server {{
        listen {settings.port} deferred backlog=1024;
        server_name _;
        error_page 400 /_smc_error/400;
        error_page 413 /_smc_error/413;
        error_page 502 /_smc_error/502;
        error_page 503 /_smc_error/503;
        error_page 504 /_smc_error/504;

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

        location / {{{body_file_jump}
            proxy_pass http://smc_gunicorn;
            # HTTP/1.1 so the worker can stream chunked: nginx then knows a complete stream (last
            # chunk) from a broken one and never ends a failed stream normally for the client. A
            # streamed response carries X-Accel-Buffering: no, so nginx forwards each chunk at once;
            # buffered responses keep nginx's buffering (a slow client does not hold a worker).
            # Only nginx may name a body file, never a client.
            proxy_set_header {BODY_FILE_HEADER} "";
            proxy_set_header {BODY_LENGTH_HEADER} "";
{proxy_common}
        }}
{body_file_location}{websocket}
{error_pages}
    }}
}}
"""
