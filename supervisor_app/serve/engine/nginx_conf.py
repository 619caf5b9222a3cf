"""nginx.conf for engine mode (pure: a string, no I/O).

/ping is answered by nginx from the readiness file the supervisor keeps in step with the engine's
health check (a stat() per ping, never a call to the engine). POST /invocations goes straight to
the engine's invocations path over keep-alive HTTP/1.1 with response buffering off, so chunked and
server-sent-event answers reach the client as the engine writes them. Every other path goes to the
engine unchanged. Errors nginx produces itself get JSON bodies that say what happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.serve.engine.router import REDIRECT_PREFIX

ADAPTER_PREFIX = "/_smc_adapter"  # the internal location in front of smc's adapter hop
from supervisor_app.serve.nginx import READY_FILE
from supervisor_app.serve.nginx_shared import (
    ACCESS_FORMAT,
    HEADER_BUFFERS_DIRECTIVE,
    access_log_maps,
    error_pages,
    json_return,
    temp_paths,
)

_NOT_READY = "the engine is not healthy yet, is restarting, or the server is stopping"
# The engine's own wording of the statuses that are about it; every other status reads as in serve mode.
_ENGINE_MESSAGES = {
    502: "$smc_engine_bad_gateway",  # worded by what the engine sent: see _bad_gateway_map
    503: _NOT_READY,
    504: "the engine did not answer within {timeout} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)",
}


@dataclass(frozen=True)
class EngineNginxSettings:
    run_dir: Path
    port: int
    engine_host: str
    engine_port: int
    invocations_path: str
    max_body_bytes: int  # 0: no limit
    timeout_s: float
    worker_connections: int
    keepalive_s: int
    log_ping: bool
    rlimit_nofile: int = 0  # worker_rlimit_nofile; 0: what worker_connections needs
    router_socket: Path | None = None  # SMC_ENGINE_INVOCATIONS_PATH=auto: the routing hop's unix socket
    sessions: bool = False  # smc answers stateful sessions in the hop (engine/sessions.py): every body goes there
    adapter_socket: Path | None = None  # SMC_ENGINE_ADAPTERS=vllm|sglang: the adapter hop's unix socket


def _bad_gateway_map(engine: str) -> str:
    """The 502 message: nginx answers 502 itself only before it sends a head, so an engine that sent
    bytes (a digit 1-9 in $upstream_bytes_received, one count per try) sent an answer nginx could
    not read as HTTP; one that sent none closed the connection or was not listening."""
    invalid = (f"the engine at {engine} sent something that is not a valid HTTP answer "
               "(a malformed, oversized or cut-short head); see the log")
    return f"""    map $upstream_bytes_received $smc_engine_bad_gateway {{
        "~[1-9]" "{invalid}";
        default "the engine at {engine} closed the connection or is not listening; see the log";
    }}"""


def _hop_upstream(name: str, socket_path: Path | None) -> str:
    """One of smc's own hops (routing, adapters) on its unix socket, when it runs."""
    if socket_path is None:
        return ""
    return f"""
    upstream {name} {{
        server unix:{socket_path} max_fails=0;
        keepalive 16;
    }}"""


def _adapter_jump(s: EngineNginxSettings) -> str:
    """An invocation naming an adapter goes through smc's adapter hop (its body's `model` is
    rewritten there); one without the header stays on the direct path to the engine."""
    if s.adapter_socket is None:
        return ""
    return f"""
            if ($http_x_amzn_sagemaker_adapter_identifier) {{
                rewrite ^ {ADAPTER_PREFIX}$uri last;
            }}"""


# Loading an adapter may download and unpack it before the engine loads it: more than one request's time.
_ADAPTER_LOAD_TIMEOUT_S = 600


def _adapter_locations(s: EngineNginxSettings, proxy: str, timeout: int) -> str:
    if s.adapter_socket is None:
        return ""
    control_timeout = max(timeout, _ADAPTER_LOAD_TIMEOUT_S)
    control = f"""if (!-f {s.run_dir}/{READY_FILE}) {{
                return 503;
            }}
            proxy_pass http://smc_adapters;
            proxy_http_version 1.1;
            proxy_set_header X-Amzn-SageMaker-Inference-Id $inference_id;
            proxy_read_timeout {control_timeout}s;
            proxy_send_timeout {control_timeout}s;
            proxy_next_upstream off;"""
    return f"""        # SMC_ENGINE_ADAPTERS: smc answers the adapter routes itself (adapters.py).
        location = /adapters {{
            {control}
        }}

        location ^~ /adapters/ {{
            {control}
        }}

        location ^~ {ADAPTER_PREFIX}/ {{
            internal;
            rewrite ^{ADAPTER_PREFIX}(/.*)$ $1 break;
            proxy_pass http://smc_adapters;
            proxy_request_buffering on;
            {proxy}
        }}
"""


def _upstream_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# `route=/v1/...` in X-Amzn-SageMaker-Custom-Attributes, as AWS's vLLM images read it; only
# plain path characters and no `..`, anything else is routed by the body.
_ROUTE_MAP = r"""    map $http_x_amzn_sagemaker_custom_attributes $smc_attribute_route {
        "~(?:^|[\s,;])route=(?!\S*\.\.)(?<smc_route>/[A-Za-z0-9_./-]+)" $smc_route;
        default "";
    }"""


def _invocations(s: EngineNginxSettings, proxy: str, timeout: int) -> str:
    ready = f"""if (!-f {s.run_dir}/{READY_FILE}) {{
                return 503;
            }}{_adapter_jump(s)}"""
    if s.router_socket is None:
        return f"""        location = /invocations {{
            {ready}
            proxy_pass http://smc_engine{s.invocations_path};
            {proxy}
        }}"""
    # Auto routing: the route named by the custom attribute goes straight to the engine; any other
    # body is read once by smc's routing hop, whose X-Accel-Redirect names the route (router.py).
    # nginx buffers the whole body first (proxy_request_buffering on), so the engine gets it again
    # from that buffer after the redirect, and the engine's answer streams as on any other route.
    return f"""        location = /invocations {{
            {ready}
            {_attribute_route_or_session_headers(s)}
            proxy_pass http://smc_router;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_headers off;
            proxy_request_buffering on;
            proxy_read_timeout {timeout}s;
            proxy_send_timeout {timeout}s;
            proxy_next_upstream off;
            add_header X-Amzn-SageMaker-Inference-Id $inference_id always;
        }}

        location ^~ {REDIRECT_PREFIX}/ {{
            internal;
            rewrite ^{REDIRECT_PREFIX}(/.*)$ $1 break;
            proxy_method POST;  # an X-Accel-Redirect turns the request into a GET; the body is kept
            proxy_pass http://smc_engine;
            {proxy}
        }}"""


def _attribute_route_or_session_headers(s: EngineNginxSettings) -> str:
    """Without sessions a `route=` custom attribute skips the hop. With sessions every request goes
    there, with the two headers it reads (the hop applies the same route rule: sessions.py)."""
    if s.sessions:
        return """proxy_set_header X-Amzn-SageMaker-Session-Id $http_x_amzn_sagemaker_session_id;
            proxy_set_header X-Amzn-SageMaker-Custom-Attributes $http_x_amzn_sagemaker_custom_attributes;"""
    return f"""if ($smc_attribute_route) {{
                rewrite ^ {REDIRECT_PREFIX}$smc_attribute_route last;
            }}"""


def render_engine_nginx_conf(s: EngineNginxSettings) -> str:
    run = s.run_dir
    temp = run / "nginx"
    timeout = math.ceil(s.timeout_s)
    ping_log = "access_log /dev/stdout smc buffer=64k flush=1s;" if s.log_ping else "access_log off;"
    engine = f"{s.engine_host}:{s.engine_port}"
    pages, error_locations = error_pages(
        max_body_bytes=s.max_body_bytes, timeout_s=s.timeout_s,
        messages={status: text.replace("{engine}", engine) for status, text in _ENGINE_MESSAGES.items()})
    proxy = f"""proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Amzn-SageMaker-Inference-Id $inference_id;
            # Streaming: chunked and SSE answers go out as the engine writes them.
            proxy_buffering off;
            proxy_cache off;
            proxy_connect_timeout 5s;
            proxy_send_timeout {timeout}s;
            proxy_read_timeout {timeout}s;
            proxy_next_upstream off;
            add_header X-Amzn-SageMaker-Inference-Id $inference_id always;"""
    return f"""# Rendered by smc serve (engine mode); lives only in {run}.
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile {s.rlimit_nofile or max(1024, s.worker_connections * 2 + 64)};

events {{
    worker_connections {s.worker_connections};
}}

http {{
    log_format smc escape=json '{ACCESS_FORMAT}';
    access_log /dev/stdout smc buffer=64k flush=1s;
    default_type application/json;
    server_tokens off;
    tcp_nodelay on;
    # SageMaker and session headers (X-Amzn-SageMaker-*) pass unchanged; some clients use underscores.
    underscores_in_headers on;
    keepalive_timeout {s.keepalive_s};
    client_max_body_size {s.max_body_bytes};
    client_body_buffer_size 1m;
    {HEADER_BUFFERS_DIRECTIVE}
{temp_paths(temp)}
{access_log_maps()}
{_bad_gateway_map(engine)}{chr(10) + _ROUTE_MAP if s.router_socket is not None else ""}

    upstream smc_engine {{
        server {_upstream_host(s.engine_host)}:{s.engine_port} max_fails=0;
        keepalive 64;
        keepalive_timeout 60s;
    }}{_hop_upstream("smc_router", s.router_socket)}{_hop_upstream("smc_adapters", s.adapter_socket)}

    server {{
        listen {s.port} deferred backlog=1024;
        server_name _;
{pages}

        location = /ping {{
            {ping_log}
            if ($request_method !~ ^(GET|HEAD)$) {{
                add_header Allow "GET, HEAD" always;
                return 405 '{{"error":"Method Not Allowed","status":405,"message":"use GET /ping"}}';
            }}
            if (!-f {run}/{READY_FILE}) {{
                {json_return(503, _NOT_READY)}
            }}
            return 200;
        }}

{_invocations(s, proxy, timeout)}

        # The OpenAI route served by the container itself (SageMaker's OpenAI-compatible endpoints may
        # send it here): to the engine unchanged, gated on readiness like /invocations.
        location = /v1/chat/completions {{
            if (!-f {run}/{READY_FILE}) {{
                return 503;
            }}{_adapter_jump(s)}
            proxy_pass http://smc_engine;
            {proxy}
        }}

{_adapter_locations(s, proxy, timeout)}
        location / {{
            proxy_pass http://smc_engine;
            {proxy}
        }}

{error_locations}
    }}
}}
"""


__all__ = ["EngineNginxSettings", "render_engine_nginx_conf"]
