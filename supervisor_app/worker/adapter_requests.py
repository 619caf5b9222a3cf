"""LoRA adapter requests, parsed and checked (pure: no I/O besides looking at a local `src`).

Shared by engine mode (serve/engine/adapters.py, in the supervisor) and handler mode
(worker/adapters.py, in gunicorn workers), so both answer the same statuses:

  POST /adapters {"name", "src"} (JSON body, or the query string ?name=...&src=..., as
       model-hosting-container-standards falls back to it)      -> 400 missing/bad field
  an adapter name                                                  -> 400 unless it matches NAME_RULE
  a local `src` that does not exist                                -> 404 naming it

A name becomes a directory name on disk, a URL path segment (/adapters/{name}) and, for SGLang,
half of `model` as `<base>:<name>`; so it is a plain word: letters, digits, `.`, `_`, `-`,
starting with a letter or digit, no `..`, at most 128 characters (SageMaker's inference
component names, which adapters are usually named after, are at most 63 of `[a-zA-Z0-9-]`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

IDENTIFIER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"
IDENTIFIER_ENVIRON = "HTTP_X_AMZN_SAGEMAKER_ADAPTER_IDENTIFIER"
ALIAS_HEADER = "X-Amzn-SageMaker-Adapter-Alias"  # a display name for the answer's text (as MHCS words it)
ALIAS_ENVIRON = "HTTP_X_AMZN_SAGEMAKER_ADAPTER_ALIAS"
MAX_NAME_CHARS = 128
MAX_CONTROL_BODY_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_RULE = ("letters, digits, '.', '_' and '-', starting with a letter or digit, no '..', "
             f"at most {MAX_NAME_CHARS} characters")
_USAGE = 'POST /adapters takes {"name": "NAME", "src": "/path/to/adapter"} as JSON, or ?name=NAME&src=/path'


class AdapterError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Registration:
    name: str
    src: str


def check_name(name: object, where: str = "name") -> str:
    """The adapter name, or AdapterError 400 saying what a name may be."""
    if not isinstance(name, str) or not name:
        raise AdapterError(400, f"`{where}` is missing or empty; {_USAGE}")
    if len(name) > MAX_NAME_CHARS or not _NAME.match(name) or ".." in name:
        raise AdapterError(400, f"adapter name {name[:MAX_NAME_CHARS + 8]!r} (from {where}) is not allowed: "
                                f"use {NAME_RULE}")
    return name


def parse_registration(body: bytes, query: str) -> Registration:
    """POST /adapters: a JSON object body, else the query string."""
    fields: dict[str, object] = {}
    text = body.strip()
    if text:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            fields = document
        elif document is not None:
            raise AdapterError(400, f"the body is a JSON {type(document).__name__}, not an object; {_USAGE}")
    if not fields:
        fields = dict(parse_qsl(query, keep_blank_values=True))
        if not fields and text:
            raise AdapterError(400, f"the body is not JSON and there is no query string; {_USAGE}")
    name = check_name(fields.get("name"), "name")
    src = fields.get("src")
    if not isinstance(src, str) or not src.strip():
        raise AdapterError(400, f"`src` is missing or empty for adapter {name!r}: it names the adapter's directory "
                                "or .tar.gz (a local path or s3://); " + _USAGE)
    return Registration(name, src.strip())


def local_path(src: str, base_dir: str) -> str:
    """A local `src` as an absolute path (relative ones are inside the model directory); 404
    when nothing is there."""
    raw = src[len("file://"):] if src.startswith("file://") else src
    path = os.path.normpath(os.path.join(base_dir, raw))
    if not os.path.exists(path):
        raise AdapterError(404, f"`src` {src!r} of the adapter does not exist (looked at {path}); give the "
                                "adapter's directory or .tar.gz")
    return path


def name_in_path(path: str) -> str | None:
    """/adapters/{name} -> name (None for /adapters itself); 400 for a bad name."""
    rest = path[len("/adapters"):]
    if rest in ("", "/"):
        return None
    return check_name(rest[1:], "the path /adapters/{name}")


def unknown_adapter(name: str, loading: bool = False) -> AdapterError:
    state = " (it is still loading)" if loading else ""
    return AdapterError(404, f"adapter {name!r} ({IDENTIFIER_HEADER}) is not loaded{state}; load it with "
                             "POST /adapters first (GET /adapters lists the loaded ones)")


def as_aliased(text: str, alias: str | None) -> str:
    """`Adapter <name> registered` worded with the alias header's value when the request has one."""
    words = text.split(" ", 2)
    return f"{words[0]} {alias} {words[2]}" if alias and len(words) == 3 else text


def error_json(status: int, message: str) -> bytes:
    from http import HTTPStatus

    return json.dumps({"error": HTTPStatus(status).phrase, "status": status, "message": message}).encode()


__all__ = ["AdapterError", "IDENTIFIER_ENVIRON", "IDENTIFIER_HEADER", "MAX_CONTROL_BODY_BYTES", "NAME_RULE",
           "Registration", "check_name", "error_json", "local_path", "name_in_path", "parse_registration",
           "unknown_adapter"]
