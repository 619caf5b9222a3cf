"""The session protocol as model-hosting-container-standards (MHCS) speaks it, pure: what a request
asks for (classify) and the answers to NEW_SESSION and CLOSE (created / closed). No I/O here.

A session request is a JSON object body whose only key is `requestType`, NEW_SESSION or CLOSE; any
other JSON object with a top-level `requestType` is a malformed one (400, as MHCS). Everything else
is inference, bound to a session when it carries X-Amzn-SageMaker-Session-Id (docs/serve.md,
"Stateful sessions", lists each answer and where smc differs from MHCS).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

HEADER_ID = "X-Amzn-SageMaker-Session-Id"
HEADER_NEW_ID = "X-Amzn-SageMaker-New-Session-Id"
HEADER_CLOSED_ID = "X-Amzn-SageMaker-Closed-Session-Id"
ENVIRON_ID = "HTTP_X_AMZN_SAGEMAKER_SESSION_ID"  # the WSGI spelling of HEADER_ID
NEW_SESSION = "NEW_SESSION"
CLOSE = "CLOSE"
REQUEST_TYPE = "requestType"
MAX_ID_CHARS = 256  # SageMaker Runtime's SessionId: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$, at most 256
ID_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
ENABLE_ENV = "SAGEMAKER_ENABLE_STATEFUL_SESSIONS"
EXPIRATION_ENV = "SAGEMAKER_SESSIONS_EXPIRATION"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | {"-"}
_MARKER = b'"' + REQUEST_TYPE.encode() + b'"'
_OPEN_HOW = 'open one with the body {"requestType": "NEW_SESSION"}'
TEXT = "text/plain; charset=utf-8"
_OFF_CHECK_BYTES = 1024

Headers = List[Tuple[str, str]]


class SessionError(Exception):
    """A session request or id that cannot be served: the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Open:
    pass


@dataclass(frozen=True)
class Close:
    session_id: str


@dataclass(frozen=True)
class Use:
    """Inference inside a session."""

    session_id: str


Op = Any  # Open | Close | Use | None (plain inference)


def is_session_id(value: str) -> bool:
    """The RT pattern, without a regex: letters, digits and hyphens, a letter or digit at both ends."""
    return (0 < len(value) <= MAX_ID_CHARS and value[0] in _ALNUM and value[-1] in _ALNUM
            and all(c in _ID_CHARS for c in value))


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


def check_id(value: str) -> str:
    if not is_session_id(value):
        raise SessionError(400, f"{HEADER_ID} {_shown(value)} is not a session id: expected 1 to {MAX_ID_CHARS} "
                                f"letters, digits and inner hyphens ({ID_PATTERN}), as smc returned it in "
                                f"{HEADER_NEW_ID}")
    return value


def session_request(body: bytes) -> Optional[str]:
    """NEW_SESSION or CLOSE when the body is a session request, None when it is inference; a JSON
    object with `requestType` and anything else is a SessionError. The substring test first: most
    bodies are never parsed here."""
    if _MARKER not in body:
        return None
    try:
        document = json.loads(body)
    except ValueError:  # UnicodeDecodeError included: not JSON, so inference
        return None
    if not isinstance(document, dict) or REQUEST_TYPE not in document:
        return None
    kind = document[REQUEST_TYPE]
    if kind not in (NEW_SESSION, CLOSE):
        raise SessionError(400, f'"{REQUEST_TYPE}" is {json.dumps(kind)[:80]}; expected "{NEW_SESSION}" or '
                                f'"{CLOSE}" (a body with a top-level "{REQUEST_TYPE}" is a session request)')
    extra = sorted(key for key in document if key != REQUEST_TYPE)
    if extra:
        names = ", ".join(json.dumps(k) for k in extra[:10]) + (", ..." if len(extra) > 10 else "")
        raise SessionError(400, f'a session request body holds "{REQUEST_TYPE}" alone; this one also has {names}: '
                                f'send {{"{REQUEST_TYPE}": "{kind}"}} by itself')
    return str(kind)


def classify(body: bytes, header: Optional[str], enabled: bool) -> Op:
    """What the request asks for; SessionError for what no one can serve. `header` is the
    Session-Id header's value (None or empty: absent)."""
    if not enabled:
        try:
            # A session request is a few dozen bytes: larger bodies are not searched when sessions are off.
            kind = session_request(body) if len(body) <= _OFF_CHECK_BYTES else None
        except SessionError:  # not a well-formed session request: inference, as before sessions existed
            kind = None
        if kind is not None:
            raise SessionError(400, f'{{"{REQUEST_TYPE}": "{kind}"}} is a session request, but stateful sessions '
                                    f"are off: set {ENABLE_ENV}=true to serve them")
        if header:
            raise SessionError(400, f"{HEADER_ID} is set but stateful sessions are off: set {ENABLE_ENV}=true, "
                                    "or send the request without it")
        return None
    kind = session_request(body)
    if kind == NEW_SESSION:
        return Open()  # a Session-Id header on it (SDK callers send NEW_SESSION) is ignored, as MHCS does
    if kind == CLOSE:
        if not header or header == NEW_SESSION:
            raise SessionError(424, f'{{"{REQUEST_TYPE}": "{CLOSE}"}} needs the id of the session to close in the '
                                    f"{HEADER_ID} header")
        return Close(check_id(header))
    if not header or header == NEW_SESSION:
        return None  # NEW_SESSION as the header of a plain request is ignored (MHCS)
    return Use(check_id(header))


def expires_text(expires_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_s))


def created(session_id: str, expires_s: float) -> Tuple[int, Headers, bytes]:
    return 200, [("Content-Type", TEXT), (HEADER_NEW_ID, f"{session_id}; Expires={expires_text(expires_s)}")], \
        f"Session {session_id} created".encode()


def closed(session_id: str) -> Tuple[int, Headers, bytes]:
    return 200, [("Content-Type", TEXT), (HEADER_CLOSED_ID, session_id)], f"Session {session_id} closed".encode()


def unknown(session_id: str) -> SessionError:
    return SessionError(400, f"session not found: {session_id} ({HEADER_ID}): it was never opened here, was closed, "
                             f"or expired and was removed; {_OPEN_HOW}")


def expired(session_id: str, expires_s: float, status: int = 400) -> SessionError:
    return SessionError(status, f"session {session_id} expired at {expires_text(expires_s)} ({EXPIRATION_ENV} counts "
                                f"from its creation) and is removed now; {_OPEN_HOW}")


__all__ = ["CLOSE", "Close", "ENVIRON_ID", "HEADER_CLOSED_ID", "HEADER_ID", "HEADER_NEW_ID", "NEW_SESSION", "Open",
           "SessionError", "Use", "check_id", "classify", "closed", "created", "expired", "expires_text",
           "is_session_id", "session_request", "unknown"]
