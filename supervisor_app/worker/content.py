"""Content negotiation and the default codecs.

Media types are compared without parameters (`text/csv; charset=utf-8` is text/csv). Accept lists
are ranked by q-value, then by order. numpy is never imported unless it is installed for the
user's code: with numpy, JSON/CSV decode to arrays as sagemaker-inference does; without it they
decode to lists, and the npy/npz types answer 415 with a hint.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from typing import Any

JSON = "application/json"
CSV = "text/csv"
TEXT = "text/plain"
NPY = "application/x-npy"
NPZ = "application/x-npz"
JSONLINES = "application/jsonlines"  # one JSON document per line: Batch Transform records
JSONLINES_TYPES = (JSONLINES, "application/x-jsonlines")
DECODABLE = (JSON, CSV, TEXT, NPY, NPZ) + JSONLINES_TYPES
ENCODABLE = (JSON, CSV, TEXT, NPY, NPZ) + JSONLINES_TYPES


class ContentError(Exception):
    """A request the server cannot take: carries the HTTP status (400, 406, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """'Text/CSV; charset=UTF-8' -> ('text/csv', {'charset': 'UTF-8'})."""
    kind, *raw_params = value.split(";")
    params: dict[str, str] = {}
    for raw in raw_params:
        name, _, param_value = raw.partition("=")
        if name.strip():
            params[name.strip().lower()] = param_value.strip().strip('"')
    return kind.strip().lower(), params


def parse_accept(header: str) -> list[tuple[str, float]]:
    """Media ranges with q > 0, best first (stable for equal q)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        if not item.strip():
            continue
        kind, params = parse_media_type(item)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranked.append((-quality, index, kind))
    ranked.sort()
    return [(kind, -neg_q) for neg_q, _, kind in ranked]


def _matches(media_range: str, kind: str) -> bool:
    if media_range in ("*/*", "*"):
        return True
    if media_range.endswith("/*"):
        return kind.split("/", 1)[0] == media_range[:-2]
    return media_range == kind


def effective_accept(header: str | None, default: str) -> str:
    """No Accept, or only */*, means the configured default type."""
    if not header or not header.strip():
        return default
    ranked = parse_accept(header)
    if not ranked or ranked[0][0] in ("*/*", "*"):
        return default
    return header


def preferred_type(header: str | None, default: str) -> str:
    """The single type a user's output_fn is handed: the client's first choice by q-value."""
    ranked = parse_accept(effective_accept(header, default))
    if not ranked:
        return default
    kind = ranked[0][0]
    return default if "*" in kind and _matches(kind, default) else kind


def choose(header: str | None, available: tuple[str, ...], default: str) -> str:
    """Best type in `available` for the Accept header; ContentError 406 if none is acceptable."""
    accepted = parse_accept(effective_accept(header, default))
    for media_range, _ in accepted:
        if media_range in ("*/*", "*") and default in available:
            return default
        for kind in available:
            if _matches(media_range, kind):
                return kind
    raise ContentError(
        406,
        f"cannot answer with any type in Accept: {header!r}; this server can produce {', '.join(available)}",
    )


def numpy_available() -> bool:
    return importlib.util.find_spec("numpy") is not None


def _numpy() -> Any:
    import numpy  # only when the user's environment has it

    return numpy


def _text(body: bytes, params: dict[str, str]) -> str:
    charset = params.get("charset", "utf-8")
    try:
        return body.decode(charset)
    except LookupError:
        raise ContentError(415, f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise ContentError(400, f"body is not valid {charset}: {exc.reason} at byte {exc.start}") from None


def _number(text: str) -> Any:
    # int before float, as the toolkit's np.genfromtxt(dtype=None) infers: "1,2" answers [[2, 4]].
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def decode(body: bytes, content_type: str, use_numpy: bool) -> Any:
    """Default input_fn: bytes of a known type to Python (or numpy) data; 400/415 as ContentError."""
    kind, params = parse_media_type(content_type)
    if kind == JSON:
        try:
            data = json.loads(_text(body, params))
        except json.JSONDecodeError as exc:
            raise ContentError(400, f"malformed JSON body: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        return _numpy().array(data) if use_numpy else data
    if kind in JSONLINES_TYPES:
        return decode_json_lines(_text(body, params))
    if kind == CSV:
        rows = [[_number(cell.strip()) for cell in row] for row in csv.reader(io.StringIO(_text(body, params))) if row]
        if use_numpy:
            return _numpy().array(rows)
        return rows
    if kind == TEXT:
        return _text(body, params)
    if kind in (NPY, NPZ):
        if not use_numpy:
            raise ContentError(415, f"{kind} needs numpy, which is not installed: smc python -m pip install numpy")
        np = _numpy()
        try:
            loaded = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ContentError(400, f"malformed {kind} body: {exc}") from None
        return dict(loaded) if kind == NPZ else loaded
    raise ContentError(
        415, f"unsupported Content-Type {content_type!r}; the default input_fn takes {', '.join(DECODABLE)}"
    )


def decode_json_lines(text: str) -> list[Any]:
    """The records of a JSON Lines body, blank lines skipped; a bad one is named by its line number."""
    records = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ContentError(400, f"malformed JSON Lines body: line {number}: {exc.msg} (column {exc.colno})") from None
    return records


def _plain(obj: Any) -> Any:
    """numpy arrays and scalars to lists and numbers, for JSON and CSV."""
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _csv_line(row: Any) -> str:
    if isinstance(row, (list, tuple)):
        return ",".join(_csv_cell(cell) for cell in row)
    return _csv_cell(row)


def _csv_cell(cell: Any) -> str:
    text = str(cell)
    if any(ch in text for ch in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def encode(prediction: Any, kind: str) -> bytes:
    """Default output_fn; TypeError/ValueError mean the prediction does not fit the type (500)."""
    if isinstance(prediction, (bytes, bytearray)):
        return bytes(prediction)
    if kind == JSON:
        # json.dumps' default separators, as the toolkit's encoder: byte-identical answers.
        return json.dumps(prediction, default=_plain).encode()
    if kind in JSONLINES_TYPES:
        value = prediction.tolist() if callable(getattr(prediction, "tolist", None)) else prediction
        records = value if isinstance(value, (list, tuple)) else [value]
        return "".join(json.dumps(record, default=_plain) + "\n" for record in records).encode()
    if kind == CSV:
        value = prediction.tolist() if callable(getattr(prediction, "tolist", None)) else prediction
        rows = value if isinstance(value, (list, tuple)) else [value]
        return ("\n".join(_csv_line(row) for row in rows) + "\n").encode()
    if kind == TEXT:
        return str(prediction).encode()
    if kind in (NPY, NPZ):
        np = _numpy()
        buffer = io.BytesIO()
        if kind == NPY:
            np.save(buffer, np.asarray(prediction), allow_pickle=False)
        else:
            np.savez(buffer, **prediction) if isinstance(prediction, dict) else np.savez(buffer, prediction)
        return buffer.getvalue()
    raise ValueError(f"no encoder for {kind}")


def encodable(use_numpy: bool) -> tuple[str, ...]:
    return ENCODABLE if use_numpy else (JSON, CSV, TEXT) + JSONLINES_TYPES

