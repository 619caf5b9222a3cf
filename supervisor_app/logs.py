"""smc's own log lines: structlog, one JSON object per line, or a console format for people.

Lines below ERROR go to stdout, ERROR and above to stderr. Every line carries ts (ISO-8601 UTC),
level, event, component and pid. Events are snake_case facts; details are fields.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, BinaryIO, TextIO

import structlog

_ERROR_METHODS = frozenset({"error", "critical", "exception", "fatal", "err"})


class _SplitStreamLogger:
    """Writes each rendered line to stdout, or stderr for errors, flushing at once (pipes stay live)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out = out
        self._err = err

    def _write(self, stream: TextIO, line: str) -> None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # a closed reader must not crash the supervisor

    def __getattr__(self, method: str):
        stream = self._err if method in _ERROR_METHODS else self._out

        def log(line: str) -> None:
            self._write(stream, line)

        return log


class _SplitLoggerFactory:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._logger = _SplitStreamLogger(out, err)

    def __call__(self, *args: Any) -> _SplitStreamLogger:
        return self._logger


def _add_pid(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event.setdefault("pid", os.getpid())
    return event


def _rename_to_ts(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    if "timestamp" in event:
        event["ts"] = event.pop("timestamp")
    return event


def _order_keys(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    # Fixed leading keys make the lines easy to scan; everything else follows.
    head = {k: event.pop(k) for k in ("ts", "level", "component", "event", "pid") if k in event}
    head.update(event)
    return head


def _json_dumps(event: dict[str, Any], **kw: Any) -> str:
    return json.dumps(event, default=str, ensure_ascii=False, separators=(",", ":"))


def wants_console(log_format: str, stream: TextIO) -> bool:
    if log_format == "console":
        return True
    if log_format == "json":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure(level: int, log_format: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """Set up structlog once per process; safe to call again (e.g. in a forked child)."""
    out = out or sys.stdout
    err = err or sys.stderr
    console = wants_console(log_format, out)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _rename_to_ts,
        _add_pid,
    ]
    if console:
        processors.append(structlog.dev.ConsoleRenderer(colors=_isatty(out), timestamp_key="ts"))
    else:
        processors += [
            structlog.processors.format_exc_info,
            _order_keys,
            structlog.processors.JSONRenderer(serializer=_json_dumps),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_SplitLoggerFactory(out, err),
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ConsoleLines:
    """Binary stream adapter for relayed child output: JSON lines written to it come out in the
    console format, so a terminal shows one format, not smc's console lines mixed with JSON."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._render = structlog.dev.ConsoleRenderer(colors=_isatty(stream), timestamp_key="ts")

    def write(self, data: bytes) -> int:
        rendered = []
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                record = json.loads(line)
                text = self._render(None, str(record.get("level", "info")), record)
                rendered.append(text.encode("utf-8", "replace"))
            except (ValueError, AttributeError, TypeError):
                rendered.append(line)
        if rendered:
            self._stream.write(b"\n".join(rendered) + b"\n")
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


def get_logger(component: str, **fields: Any) -> Any:
    return structlog.get_logger().bind(component=component, **fields)
