"""What every nginx.conf smc renders shares (serve mode and engine mode; pure strings, no I/O):
the JSON access log and its maps, the temp paths, the header limits and one set of JSON error
pages for every status nginx makes itself.

Error pages: named locations (`@smc_error_NNN`) cannot be requested from outside and keep the
client's method and URI for the log. nginx refuses a named location for a request it has no URI
for ("empty URI in redirect to named location"): a malformed request line (400), one too long
(414) and an unsupported HTTP version (505) are stopped while the request line is read, so those go
to `internal` URI locations, and the access log then takes method and path from the request line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

ACCESS_FORMAT = (
    '{"ts":"$time_iso8601","level":"info","component":"nginx","event":"request",'
    '"method":"$smc_log_method","path":"$smc_log_path","status":$smc_log_status,"bytes":$body_bytes_sent,'
    '"request_s":$request_time,"upstream_s":"$upstream_response_time",'
    '"inference_id":"$inference_id","target_model":"$http_x_amzn_sagemaker_target_model",'
    '"remote":"$remote_addr","pid":$pid,"connection":$connection}'
)

# large_client_header_buffers: one header line (or the request line) up to 16 KiB, all headers up
# to 4 x 16 KiB; SageMaker itself limits custom attributes to 1024 characters.
HEADER_BUFFER_KIB = 16
HEADER_BUFFERS = 4
HEADER_BUFFERS_DIRECTIVE = f"large_client_header_buffers {HEADER_BUFFERS} {HEADER_BUFFER_KIB}k;"

# status nginx produces without the app -> (status sent, phrase, message). 494 is nginx's internal
# code for a header over large_client_header_buffers; it answers 400, as nginx itself does.
# {limit}, {timeout} and {upstream} are filled per configuration; a mode may word 502-504 its own way.
ERRORS: dict[int, tuple[int, str, str]] = {
    400: (400, "Bad Request", "malformed HTTP request"),
    404: (404, "Not Found", "no such path"),
    405: (405, "Method Not Allowed", "method not allowed (TRACE and CONNECT are never served)"),
    408: (408, "Request Timeout", "the request did not arrive in time"),
    411: (411, "Length Required", "send a Content-Length or a chunked body"),
    413: (413, "Payload Too Large", "request body over {limit} (SAGEMAKER_MAX_PAYLOAD_IN_MB)"),
    414: (414, "URI Too Long", "request line over {header_kib} KiB"),
    494: (400, "Bad Request", ("request header too large: a header line over {header_kib} KiB, or all headers "
                               "over {headers_kib} KiB")),
    500: (500, "Internal Server Error", "internal error in the front server"),
    501: (501, "Not Implemented", "unsupported Transfer-Encoding"),
    502: (502, "Bad Gateway", "the model server worker ended before answering; see the log for the cause"),
    503: (503, "Service Unavailable", "the model server is not ready"),
    504: (504, "Gateway Timeout", "no answer within {timeout} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"),
    505: (505, "HTTP Version Not Supported", "use HTTP/1.0 or HTTP/1.1"),
}
URI_ERROR_PAGES = (400, 414, 505)  # nginx has no URI for these: see the module docstring
URI_ERROR_PREFIX = "/_smc_error/"
# Where serve mode streams big bodies to the worker (serve/nginx.py); the access log names the
# client's path instead.
STREAMED_BODY_LOCATION = "/_smc_streamed_body"


def json_return(status: int, message: str) -> str:
    """An nginx `return` with smc's JSON error body."""
    sent, phrase, _ = ERRORS[status]
    return f"return {sent} '{{\"error\":\"{phrase}\",\"status\":{sent},\"message\":\"{message}\"}}';"


def error_pages(*, max_body_bytes: int, timeout_s: float, messages: Mapping[int, str] | None = None) -> tuple[str, str]:
    """The error_page lines and the locations answering them, for a server block. `messages`
    replaces the wording of some statuses (engine mode names the engine in 502-504)."""
    limit = f"{max_body_bytes // (1024 * 1024)} MiB" if max_body_bytes else "the limit"
    values = {"limit": limit, "timeout": f"{timeout_s:g}", "header_kib": HEADER_BUFFER_KIB,
              "headers_kib": HEADER_BUFFER_KIB * HEADER_BUFFERS}
    pages, locations = [], []
    for status, (_, _, template) in ERRORS.items():
        answer = json_return(status, (messages or {}).get(status, template).format(**values))
        if status in URI_ERROR_PAGES:
            pages.append(f"        error_page {status} {URI_ERROR_PREFIX}{status};")
            locations.append(f"        location = {URI_ERROR_PREFIX}{status} {{ internal; {answer} }}")
        else:
            pages.append(f"        error_page {status} @smc_error_{status};")
            locations.append(f"        location @smc_error_{status} {{ {answer} }}")
    return "\n".join(pages), "\n".join(locations)


def access_log_maps() -> str:
    """The maps ACCESS_FORMAT reads: the status as a JSON number, the client's method and path,
    also after nginx redirected the request to one of its error pages, and the inference id (the
    client's, else nginx's request id)."""
    return f"""    # $status has three digits: 009 (an upstream answer passed on as HTTP/0.9, without a status
    # line) or 000 (nothing sent) would not be JSON numbers.
    map $status $smc_log_status {{
        "000" 0;
        "~^0+(?<smc_status_digits>[1-9][0-9]*)$" $smc_status_digits;
        default $status;
    }}
    # The access log's method and path: the client's, also after a redirect to an error page.
    map $uri $smc_log_method {{
        ~^{URI_ERROR_PREFIX} $smc_request_method;
        default $request_method;
    }}
    map $uri $smc_log_path {{
        ~^{URI_ERROR_PREFIX} $smc_request_path;
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


__all__ = ["ACCESS_FORMAT", "ERRORS", "HEADER_BUFFERS_DIRECTIVE", "access_log_maps", "error_pages", "json_return",
           "temp_paths"]
