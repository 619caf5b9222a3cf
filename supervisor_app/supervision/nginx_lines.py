"""nginx's error-log lines as fields of one JSON record (pure: bytes in, dict out).

Every line gives the level nginx states, its pid and the message (with the connection number, which
the access log carries too). A few lines are the only trace of an upstream answer nginx could not
use, and some of those answers reach the client in a form that looks like nothing went wrong (an
answer with no status line is passed on as HTTP/0.9 on a connection kept alive; a broken chunked
body ends the client's connection under a logged 200). Those become snake_case events, named for the upstream (`engine_`
in engine mode), with the reason in words: what the upstream did and what the client got.
"""

from __future__ import annotations

import re

_LINE = re.compile(rb"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (\d+)#\d+: (?:\*(\d+) )?(.*)$")
_LEVELS = {b"emerg": "critical", b"alert": "critical", b"crit": "critical", b"error": "error",
           b"warn": "warning", b"notice": "info", b"info": "info", b"debug": "debug"}
_REQUEST = re.compile(r', request: "((?:[^"\\]|\\.)*)"')
_UPSTREAM = re.compile(r', upstream: "([^"]*)"')
_BEFORE_HEAD = "while reading response header from upstream"

# (what nginx says, event suffix, reason before the answer's head went out, reason after it).
# {who} is "the engine" or "the upstream". nginx itself answers 502 for every fault it sees before
# it sends the head, except an answer with no status line, which it passes on (see docs/engines.md).
_FAULTS: tuple[tuple[str, str, str, str], ...] = (
    ("upstream sent no valid HTTP/1.0 header", "answer_not_http",
     "{who}'s answer is not HTTP (no status line); nginx passed its bytes to the client unchanged, "
     "without a status line or headers (HTTP/0.9), and keeps the client's connection open as after "
     "a complete answer; HTTP clients fail on it", ""),
    ("upstream sent invalid chunked response", "chunked_body_invalid",
     "{who}'s chunked body is not valid chunked encoding; nginx closed the client's connection at "
     "once: the client got nothing, or the head and the body up to the broken chunk, never the "
     "chunked end, so it sees a cut answer (the access line keeps the status of the head)",
     "{who}'s chunked body is not valid chunked encoding; nginx closed the client's connection at "
     "once: the client got the head and the body up to the broken chunk, never the chunked end, so "
     "it sees a cut answer (the access line keeps the status of the head)"),
    ("upstream sent invalid header", "answer_invalid_header",
     "{who}'s answer has a header line that is not valid HTTP; the client got a JSON 502", ""),
    ("upstream sent too big header", "answer_header_too_big",
     "{who}'s answer head is larger than nginx's buffer for it (proxy_buffer_size); the client got a JSON 502",
     ""),
    ("upstream prematurely closed connection", "closed_early",
     "{who} closed the connection before its answer's head was complete; the client got a JSON 502",
     "{who} closed the connection before its answer was complete; the client got a cut answer"),
)


def parse(line: bytes, upstream: str = "upstream") -> dict[str, object] | None:
    """The record's fields for one nginx error-log line, or None when it is not one. `upstream`
    names what nginx proxies to ("engine"): it prefixes the fault events and words the reason."""
    match = _LINE.match(line)
    if not match:
        return None
    message = match.group(4).decode("utf-8", "replace")
    record: dict[str, object] = {"level": _LEVELS.get(match.group(1), "info"), "pid": int(match.group(2))}
    if match.group(3):
        record["connection"] = int(match.group(3))
    record["message"] = message
    for text, suffix, before_head, after_head in _FAULTS:
        if message.startswith(text):
            reason = before_head if _BEFORE_HEAD in message or not after_head else after_head
            record["event"] = f"{upstream}_{suffix}"
            record["reason"] = reason.format(who=f"the {upstream}")
            for key, pattern in (("request", _REQUEST), ("upstream_url", _UPSTREAM)):
                found = pattern.search(message)
                if found:
                    record[key] = found.group(1)
            break
    return record


__all__ = ["parse"]
