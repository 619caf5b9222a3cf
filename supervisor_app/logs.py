"""smc's own log lines: one JSON object per line, or a console format for people.

Lines below ERROR go to stdout, ERROR and above to stderr. Every line carries ts (ISO-8601 UTC),
level, event, component and pid. Events are snake_case facts; details are fields.

The JSON path is this module's own small bound logger with structlog's API and output (bind,
info/warning/error/exception, exc_info, context variables), not structlog itself: importing
structlog (it pulls asyncio) cost 40-55 ms per process, paid by the supervisor (and, when the
gunicorn master was still a re-executed binary, again by it) on every `smc serve` start.
structlog is imported only for the console format (its ConsoleRenderer) and when code binds
structlog.contextvars, which is merged.
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, BinaryIO, TextIO

_ERROR_METHODS = frozenset({"error", "critical", "exception", "fatal", "err"})
_LEVELS = {"debug": 10, "info": 20, "msg": 20, "warning": 30, "warn": 30, "error": 40, "err": 40,
           "exception": 40, "critical": 50, "fatal": 50}
_LEVEL_NAMES = {"warn": "warning", "exception": "error", "err": "error", "fatal": "critical", "msg": "info"}
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("smc_log_context")


def bind_context(**fields: Any) -> None:
    """Fields added to every line logged in this context (e.g. the request's inference_id)."""
    _context.set({**_context.get({}), **fields})


def unbind_context(*names: str) -> None:
    current = _context.get({})
    for name in names:
        if name in current:
            _context.set({k: v for k, v in current.items() if k not in names})
            return


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


def wants_console(log_format: str, stream: TextIO) -> bool:
    if log_format == "console":
        return True
    if log_format == "json":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Config:
    level = 20
    console: Any = None  # structlog's ConsoleRenderer when the console format is on
    logger: Any = None


_config = _Config()


def configure(level: int, log_format: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """Set up logging once per process; safe to call again (e.g. in a forked child)."""
    out = out or sys.stdout
    err = err or sys.stderr
    _config.level = level
    _config.logger = _SplitStreamLogger(out, err)
    _config.console = None
    if wants_console(log_format, out):
        import structlog.dev

        _config.console = structlog.dev.ConsoleRenderer(colors=_isatty(out), timestamp_key="ts")


def _exception_text(exc_info: Any) -> str | None:
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif not isinstance(exc_info, tuple):
        exc_info = sys.exc_info()
    if exc_info[0] is None:
        return None
    import traceback  # only when there is one to render

    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


class BoundLogger:
    """What structlog's filtering bound logger offered smc: bind() and one method per level."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def bind(self, **fields: Any) -> BoundLogger:
        return BoundLogger({**self._fields, **fields})

    def new(self, **fields: Any) -> BoundLogger:
        return BoundLogger(fields)

    def unbind(self, *names: str) -> BoundLogger:
        return BoundLogger({k: v for k, v in self._fields.items() if k not in names})

    try_unbind = unbind

    def _log(self, method: str, event: Any, fields: dict[str, Any]) -> None:
        if _LEVELS[method] < _config.level:
            return
        record = {**self._fields, **fields, "event": event}
        for key, value in _context.get({}).items():
            record.setdefault(key, value)
        structlog_context = sys.modules.get("structlog.contextvars")
        if structlog_context is not None:  # code that binds with structlog.contextvars directly
            for key, value in structlog_context.get_contextvars().items():
                record.setdefault(key, value)
        record["level"] = _LEVEL_NAMES.get(method, method)
        record["ts"] = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        record.setdefault("pid", os.getpid())
        if method == "exception":
            record.setdefault("exc_info", True)
        logger = _config.logger or _SplitStreamLogger(sys.stdout, sys.stderr)
        if _config.console is not None:
            getattr(logger, method)(_config.console(None, method, record))
            return
        exc_info = record.pop("exc_info", None)
        if exc_info:
            text = _exception_text(exc_info)
            if text:
                record["exception"] = text
        head = {k: record.pop(k) for k in ("ts", "level", "component", "event", "pid") if k in record}
        head.update(record)
        getattr(logger, method)(json.dumps(head, default=str, ensure_ascii=False, separators=(",", ":")))

    def debug(self, event: Any = None, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: Any = None, **fields: Any) -> None:
        self._log("info", event, fields)

    msg = info

    def warning(self, event: Any = None, **fields: Any) -> None:
        self._log("warning", event, fields)

    warn = warning

    def error(self, event: Any = None, **fields: Any) -> None:
        self._log("error", event, fields)

    err = error

    def exception(self, event: Any = None, **fields: Any) -> None:
        self._log("exception", event, fields)

    def critical(self, event: Any = None, **fields: Any) -> None:
        self._log("critical", event, fields)

    fatal = critical

    def log(self, level: int, event: Any = None, **fields: Any) -> None:
        name = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}.get(level, "info")
        self._log(name, event, fields)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ConsoleLines:
    """Binary stream adapter for relayed child output: JSON lines written to it come out in the
    console format, so a terminal shows one format, not smc's console lines mixed with JSON."""

    def __init__(self, stream: BinaryIO) -> None:
        import structlog.dev  # only for a terminal (or SMC_LOG_FORMAT=console)

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


def get_logger(component: str, **fields: Any) -> BoundLogger:
    return BoundLogger({"component": component, **fields})
