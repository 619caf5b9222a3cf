"""The request sequences of the MHCS differential: plain data, no I/O.

A sequence is a list of steps sent in order to one fresh server. Values may name what an earlier
step learned or what the runner provides, as `{s1}` (the id a NEW_SESSION step opened, see
Step.opens) or `{adapter_dir}` (an adapter directory that exists): the runner substitutes them in
the path, the headers and the body, so one sequence runs unchanged against every server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JSON = "application/json"
SESSION = "X-Amzn-SageMaker-Session-Id"
ADAPTER = "X-Amzn-SageMaker-Adapter-Identifier"
ALIAS = "X-Amzn-SageMaker-Adapter-Alias"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
# Well-formed ids no server ever issued, the same on every server so their echoes compare.
UNKNOWN_ID = "0b7c1a52-5f4e-4c1d-9e1f-000000000000"


@dataclass(frozen=True)
class Step:
    name: str
    body: object = None  # dict/list -> JSON; str/bytes as is; None -> no body
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/invocations"
    content_type: str | None = JSON
    opens: str | None = None  # the session name this step's New-Session-Id binds
    wait_s: float = 0.0  # sleep before sending (expiry)


def chat(name: str, **headers: str) -> Step:
    return Step(name, CHAT, headers)


def session_op(name: str, request_type: str, session_id: str | None = None, opens: str | None = None,
               **extra) -> Step:
    headers = {SESSION: session_id} if session_id is not None else {}
    return Step(name, {"requestType": request_type, **extra}, headers, opens=opens)


@dataclass(frozen=True)
class Sequence:
    name: str
    steps: list[Step]
    sessions: bool = True  # SAGEMAKER_ENABLE_STATEFUL_SESSIONS
    ttl_s: int = 1200  # SAGEMAKER_SESSIONS_EXPIRATION
    adapters: bool = False  # needs the engine's adapter routes


SESSIONS = Sequence("sessions", [
    session_op("open", "NEW_SESSION", "NEW_SESSION", opens="s1"),
    chat("use", **{SESSION: "{s1}"}),
    chat("use_again", **{SESSION: "{s1}"}),
    session_op("open_without_header", "NEW_SESSION", opens="s2"),
    session_op("open_with_an_open_id", "NEW_SESSION", "{s1}", opens="s3"),
    chat("plain_with_new_session_header", **{SESSION: "NEW_SESSION"}),
    chat("plain_without_header"),
    session_op("close", "CLOSE", "{s1}"),
    chat("use_after_close", **{SESSION: "{s1}"}),
    session_op("close_again", "CLOSE", "{s1}"),
    chat("use_unknown_id", **{SESSION: UNKNOWN_ID}),
    session_op("close_unknown_id", "CLOSE", UNKNOWN_ID),
    chat("use_malformed_id", **{SESSION: "not a valid id!"}),
    chat("use_id_ending_in_dash", **{SESSION: "abc-"}),
    chat("use_id_over_256_chars", **{SESSION: "a" * 300}),
    session_op("open_with_extra_keys", "NEW_SESSION", "NEW_SESSION", ttl=5),
    session_op("close_with_extra_keys", "CLOSE", "{s2}", reason="done"),
    session_op("unknown_request_type", "OPEN", "NEW_SESSION"),
    session_op("close_without_id", "CLOSE"),
    Step("csv_body_no_session", "1,2\n", content_type="text/csv"),
    session_op("close_with_new_session_header", "CLOSE", "NEW_SESSION"),
    Step("open_sent_as_text_plain", {"requestType": "NEW_SESSION"}, content_type="text/plain", opens="s4"),
    session_op("close_fourth", "CLOSE", "{s4}"),
    session_op("close_second", "CLOSE", "{s2}"),
    session_op("close_third", "CLOSE", "{s3}"),
])

EXPIRED = Sequence("sessions_expired", [
    session_op("open", "NEW_SESSION", "NEW_SESSION", opens="s1"),
    session_op("open_second", "NEW_SESSION", "NEW_SESSION", opens="s2"),
    Step("use_expired", CHAT, {SESSION: "{s1}"}, wait_s=2.2),
    chat("use_expired_again", **{SESSION: "{s1}"}),
    session_op("close_expired", "CLOSE", "{s2}"),
], ttl_s=1)

DISABLED = Sequence("sessions_disabled", [
    session_op("open", "NEW_SESSION", "NEW_SESSION"),
    session_op("close", "CLOSE", UNKNOWN_ID),
    session_op("open_with_extra_keys", "NEW_SESSION", ttl=5),
    chat("use_id", **{SESSION: UNKNOWN_ID}),
    chat("plain_with_new_session_header", **{SESSION: "NEW_SESSION"}),
    chat("plain"),
], sessions=False)

ADAPTERS = Sequence("adapters", [
    Step("load_json", {"name": "a1", "src": "{adapter_dir}"}, path="/adapters"),
    Step("load_query", None, path="/adapters?name=a2&src={adapter_dir}", content_type=None),
    Step("load_duplicate", {"name": "a1", "src": "{adapter_dir}"}, path="/adapters"),
    chat("invoke_with_identifier", **{ADAPTER: "a1"}),
    chat("invoke_query_loaded", **{ADAPTER: "a2"}),
    chat("invoke_unknown_identifier", **{ADAPTER: "nope"}),
    chat("invoke_without_identifier"),
    Step("unload", method="DELETE", path="/adapters/a1", content_type=None),
    chat("invoke_unloaded", **{ADAPTER: "a1"}),
    Step("unload_again", method="DELETE", path="/adapters/a1", content_type=None),
    Step("unload_unknown", method="DELETE", path="/adapters/never-loaded", content_type=None),
    Step("load_name_with_slash", {"name": "a/b", "src": "{adapter_dir}"}, path="/adapters"),
    Step("load_name_dot_dot", {"name": "..", "src": "{adapter_dir}"}, path="/adapters"),
    Step("load_empty_name", {"name": "", "src": "{adapter_dir}"}, path="/adapters"),
    Step("load_missing_src", {"name": "a3"}, path="/adapters"),
    Step("load_src_missing_on_disk", {"name": "a4", "src": "/nonexistent/adapter"}, path="/adapters"),
    Step("load_no_body_no_query", None, path="/adapters", content_type=None),
    Step("load_json_array", ["a5", "{adapter_dir}"], path="/adapters"),
    Step("load_with_alias", {"name": "a6", "src": "{adapter_dir}"}, {ALIAS: "friendly"}, path="/adapters"),
    Step("unload_with_alias", headers={ALIAS: "friendly"}, method="DELETE", path="/adapters/a6",
         content_type=None),
    Step("invoke_identifier_csv_body", "1,2\n", {ADAPTER: "a2"}, content_type="text/csv"),
    Step("list", method="GET", path="/adapters", content_type=None),
    Step("delete_without_name", method="DELETE", path="/adapters", content_type=None),
    Step("unload_second", method="DELETE", path="/adapters/a2", content_type=None),
], sessions=False, adapters=True)

SESSION_SEQUENCES = [SESSIONS, EXPIRED, DISABLED]
ALL = [*SESSION_SEQUENCES, ADAPTERS]
