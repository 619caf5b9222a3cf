"""Batch Transform's multi-record bodies (BatchStrategy=MultiRecord, SplitType=Line) for handlers
written for one JSON document per request.

MultiRecord packs many input lines into one body, so a JSON handler receives
`{"a": 1}\\n{"a": 2}\\n` and json.loads fails with "Extra data". Such a body (Content-Type
application/json holding several documents, one per line; or JSON Lines sent to a handler with its
own input_fn) is run record by record, each as an application/json request, and the answers are
joined one line per record, in order, so the output has exactly one line per input line
(AssembleWith=Line). A failing record fails the whole request, naming its line number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, List, Optional, Tuple

Record = Tuple[int, bytes]  # (line number from 1, the line)


def several_documents(body: bytes) -> Optional[List[Record]]:
    """The records of a JSON body that holds several documents, one per line; None for anything
    else. The usual one-line body costs one find(); a pretty-printed one fails on its first line
    ("{"), so only a body whose first line is a whole document is split."""
    newline = body.find(b"\n")
    if newline < 0 or not body[newline:].strip():
        return None
    try:
        json.loads(body[:newline])
    except ValueError:
        return None
    records = lines(body)
    return records if len(records) > 1 else None


def lines(body: bytes) -> List[Record]:
    return [(number, line) for number, line in enumerate(body.split(b"\n"), 1) if line.strip()]


def run(records: List[Record], answer: Callable[[bytes], Tuple[bytes, str]],
        failed: Callable[[int, Exception], Exception], failure: type) -> Tuple[bytes, str]:
    """(one line per record, the content type of the records' answers). answer(line) answers one
    record; a `failure` it raises becomes failed(line_number, error)."""
    out: List[bytes] = []
    kind = ""
    for number, line in records:
        try:
            body, kind = answer(line)
        except failure as exc:
            raise failed(number, exc) from exc
        out.append(body.rstrip(b"\n") + b"\n")
    return b"".join(out), kind


def record_accept(accept: Any, jsonlines_types: Tuple[str, ...]) -> Any:
    """A record is answered as JSON where the request asked for JSON Lines."""
    if isinstance(accept, str) and accept.split(";")[0].strip().lower() in jsonlines_types:
        return "application/json"
    return accept


__all__ = ["lines", "record_accept", "run", "several_documents"]
