"""What smc's supervision loops (supervision/loop.py and the serve loops built on it, sidecars)
take and give: their phases, restart/stop policy and outputs, and the outcome that becomes smc's
exit."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Phase(enum.Enum):
    BOOTING = "booting"
    SERVING = "serving"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Policy:
    grace_s: float
    health_interval_s: float
    health_timeout_s: float
    restart_limit: int
    restart_window_s: float
    startup_timeout_s: float
    drain_s: float = 0.0
    worker_crash_limit: int = 10
    worker_crash_window_s: float = 60.0


@dataclass(frozen=True)
class Outputs:
    """smc's logger, and where the children's relayed lines go."""

    log: Any
    now_iso: Callable[[], str]
    out: Any
    err: Any


@dataclass
class Outcome:
    exit_code: int
    reason: str
    load_error: dict[str, str] | None = None  # message/hint reported by a worker that failed to load
    cause: str | None = None  # why the process behind exit_code ended, when smc knows better than the code


def backoff_s(failures: int) -> float:
    """0.25 s, 0.5 s, 1 s, ... capped at 8 s."""
    return min(0.25 * 2 ** max(failures - 1, 0), 8.0)
