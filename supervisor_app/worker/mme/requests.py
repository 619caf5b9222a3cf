"""Validation of /models requests (pure: no I/O besides looking at the model directory).

SageMaker's model_name is opaque (often a hash of the TargetModel), but it becomes a path segment
(/models/{name}/invoke) and a key on disk, so names with '/', '\\', control characters, or the
names '.' and '..' are refused. A url must be a directory inside one of the allowed roots
(default /opt/ml/models), checked on the normalised path, so '..' cannot climb out.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

MAX_NAME_CHARS = 256
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")  # checked per invoke: a regex, not a loop


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LoadRequest:
    name: str
    url: str  # as given, echoed back as modelUrl
    path: Path  # the model directory


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise RequestError(400, "model_name must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise RequestError(400, f"model_name is {len(name)} characters; at most {MAX_NAME_CHARS} are allowed")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(400, f"model_name {name!r} is not valid Unicode text (a lone surrogate): names are "
                                "UTF-8 in the paths /models/{name} and /models/{name}/invoke") from None
    if name in (".", "..") or _BAD_NAME_CHARS.search(name):
        raise RequestError(400, f"model_name {name!r} is not allowed: no '/', '\\', control characters, "
                                "'.' or '..' (it becomes a URL path segment)")
    return name


def parse_load(body: bytes, roots: tuple[Path, ...]) -> LoadRequest:
    """POST /models body -> LoadRequest, or RequestError (400 bad body/name/url, 404 no such dir)."""
    try:
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise RequestError(400, f"the body is not JSON: {exc}; send "
                                '{"model_name": "NAME", "url": "/opt/ml/models/NAME/model"}') from None
    if not isinstance(data, dict):
        raise RequestError(400, 'the body must be a JSON object {"model_name": ..., "url": ...}')
    name = check_name(data.get("model_name"))
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise RequestError(400, "url must be a non-empty string: the model's directory")
    return LoadRequest(name, url, check_url(url, roots))


def check_url(url: str, roots: tuple[Path, ...]) -> Path:
    raw = url.removeprefix("file://")
    if not raw.startswith("/"):
        raise RequestError(400, f"url {url!r} must be an absolute directory path, e.g. /opt/ml/models/NAME/model")
    path = Path(os.path.normpath(raw))
    if not any(path == root or root in path.parents for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise RequestError(400, f"url {url!r} is outside the model directories ({allowed}); "
                                "set SMC_MME_MODEL_ROOTS to allow another directory")
    if not path.is_dir():
        raise RequestError(404, f"url {url!r}: no such model directory")
    try:
        entries = [entry.name for entry in os.scandir(path)]
    except OSError as exc:
        raise RequestError(400, f"url {url!r}: cannot read the directory: {exc.strerror}") from None
    if not [entry for entry in entries if entry != "code"]:
        raise RequestError(400, f"url {url!r} holds no model files (SageMaker unpacks model.tar.gz there)")
    return path


def page(names: list[str], max_results: str | None, token: str | None) -> tuple[list[str], str | None]:
    """A page of sorted names and the next token (the start index, as MMS pages)."""
    try:
        limit = int(max_results) if max_results else 100
        start = int(token) if token else 0
    except ValueError:
        raise RequestError(400, "max_results and next_page_token must be integers") from None
    if limit <= 0 or limit > 100:
        limit = 100
    start = max(start, 0)
    end = start + limit
    return names[start:end], (str(end) if end < len(names) else None)
