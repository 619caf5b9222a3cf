"""Where smc serve's own log lines and its children's relayed lines go, and their timestamps:
shared by the handler server (serve/command.py) and engine mode (serve/engine/command.py)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from supervisor_app import logs
from supervisor_app.config import Config


def relay_streams(config: Config) -> tuple[Any, Any]:
    """Where children's lines go: as JSON, or rendered for people when smc logs to a terminal."""
    if logs.wants_console(config.log_format, sys.stdout):
        return logs.ConsoleLines(sys.stdout.buffer), logs.ConsoleLines(sys.stderr.buffer)
    return sys.stdout.buffer, sys.stderr.buffer


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
