"""Send a sequence (tests/mhcs/sequences.py) to one server and describe each answer in terms that
compare across servers: status, the SageMaker response headers with ids and times normalized, and
the body's kind."""

from __future__ import annotations

import calendar
import http.client
import json
import re
import time
from dataclasses import dataclass

from tests.mhcs.sequences import Sequence, Step

# The runtime API's NewSessionResponseHeader: `<id>; Expires=YYYY-MM-DDThh:mm:ssZ`, 256 at most,
# the id matching its SessionId pattern.
NEW_SESSION_VALUE = re.compile(
    r"^([a-zA-Z0-9](?:-*[a-zA-Z0-9])*); Expires=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")
NEW_SESSION_MAX_CHARS = 256
EXPIRY_SLACK_S = 3  # the header has whole seconds; the servers take their time
SAGEMAKER_PREFIX = "x-amzn-sagemaker-"
REQUEST_TIMEOUT_S = 20


@dataclass(frozen=True)
class Outcome:
    status: int
    headers: dict[str, str]  # x-amzn-sagemaker-* response headers, normalized
    body_kind: str  # "empty" | "json" | "text"
    text: str | None  # a text body with the ids named ("Session {s1} created"); None for others
    body: bytes  # as received: shown in failure reports, never compared

    def shown(self) -> str:
        return f"{self.status} {self.headers} {self.body_kind} {self.body[:160]!r}"


def substitute(value: str, names: dict[str, str]) -> str:
    for name, real in names.items():
        value = value.replace("{" + name + "}", real)
    return value


def encode(step: Step, names: dict[str, str]) -> bytes | None:
    if step.body is None:
        return None
    if isinstance(step.body, (dict, list)):
        return substitute(json.dumps(step.body), names).encode()
    raw = step.body.decode() if isinstance(step.body, bytes) else step.body
    return substitute(raw, names).encode()


def body_kind(body: bytes, content_type: str | None) -> str:
    if not body:
        return "empty"
    if content_type and "json" in content_type:
        try:
            json.loads(body)
            return "json"
        except ValueError:
            pass
    return "text"


def named(value: str, names: dict[str, str]) -> str:
    """`value` with every id the sequence learned written as its name."""
    for label, real in names.items():
        if real and real in value:
            value = value.replace(real, "{" + label + "}")
    return value


def normalize(name: str, value: str, names: dict[str, str], sent_at: float,
              ttl_s: int) -> tuple[str, str | None]:
    """(normalized value, the real session id it announced, if it opened one)."""
    if name != "x-amzn-sagemaker-new-session-id":
        return named(value, names), None
    found = NEW_SESSION_VALUE.match(value)
    if not found or len(value) > NEW_SESSION_MAX_CHARS:
        return f"MALFORMED {value!r}", None
    expires = calendar.timegm(time.strptime(found.group(2), "%Y-%m-%dT%H:%M:%SZ"))
    off_s = expires - (sent_at + ttl_s)
    when = "Expires=now+ttl" if abs(off_s) <= EXPIRY_SLACK_S else f"Expires off by {off_s:+.0f} s"
    return f"<new id>; {when}", found.group(1)


def send(port: int, step: Step, names: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    headers = {k: substitute(v, names) for k, v in step.headers.items()}
    if step.content_type:
        headers["Content-Type"] = step.content_type
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(step.method, substitute(step.path, names), body=encode(step, names), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def run(port: int, sequence: Sequence, given: dict[str, str]) -> list[Outcome]:
    """Every step's Outcome, in order; `given` holds the runner's own names ({adapter_dir})."""
    names = dict(given)
    outcomes = []
    for step in sequence.steps:
        if step.wait_s:
            time.sleep(step.wait_s)
        sent_at = time.time()
        status, headers, body = send(port, step, names)
        shown = {}
        for name, value in sorted(headers.items()):
            if not name.startswith(SAGEMAKER_PREFIX):
                continue
            shown[name], opened = normalize(name, value, names, sent_at, sequence.ttl_s)
            if opened:  # a step that opens one unasked still names it, so its echoes compare
                names[step.opens or f"opened_by_{step.name}"] = opened
        kind = body_kind(body, headers.get("content-type"))
        text = named(body.decode("utf-8", "replace"), names) if kind == "text" else None
        outcomes.append(Outcome(status, shown, kind, text, body))
    return outcomes
