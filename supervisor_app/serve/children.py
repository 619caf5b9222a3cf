"""Children of the supervisor: spawned in their own process group with pipes smc creates, and
each line they print relayed as one JSON line.

smc owns the pipes because nginx running as another user cannot open a /dev/stdout that belongs
to root; relaying also makes every line JSON. Lines that already are JSON objects (smc's own
re-executed master, nginx's access log) pass through untouched, which keeps relaying cheap.
"""

from __future__ import annotations

import enum
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

_MAX_LINE = 64 * 1024
_PR_SET_PDEATHSIG = 1
_NGINX_LINE = re.compile(rb"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (\d+)#\d+: (?:\*\d+ )?(.*)$")
_NGINX_LEVELS = {b"emerg": "critical", b"alert": "critical", b"crit": "critical", b"error": "error",
                 b"warn": "warning", b"notice": "info", b"info": "info", b"debug": "debug"}


class State(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"  # spawned, not yet answering its probe
    RUNNING = "running"  # answered its probe
    BACKOFF = "backoff"  # exited unexpectedly, waiting to be restarted
    STOPPING = "stopping"  # asked to stop, waiting for it to exit


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    stop_signal: int  # graceful stop: nginx QUIT, gunicorn TERM
    death_signal: int = signal.SIGTERM  # sent by the kernel if smc itself dies (e.g. OOM-killed)
    pass_fds: tuple[int, ...] = ()
    pid: int = 0
    state: State = State.STOPPED
    started_at: float = 0.0
    ever_running: bool = False
    probe_failures: int = 0
    restarts: list[float] = field(default_factory=list)  # monotonic times of unexpected exits
    restart_at: float = 0.0
    last_exit_code: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    popen_kwargs: dict[str, Any] = field(default_factory=dict)  # cwd, user, group (sidecars, engine)

    def spawn(self) -> None:
        # start_new_session: a terminal's Ctrl-C reaches only smc, which stops children in order;
        # and the whole group (master + workers) can be killed when a master dies.
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=self.pass_fds, start_new_session=True,
            preexec_fn=_die_with_parent(self.death_signal),  # noqa: PLW1509 (the supervisor has one thread)
            **self.popen_kwargs,
        )
        self.pid = self.popen.pid
        self.state = State.STARTING
        self.started_at = time.monotonic()
        self.probe_failures = 0

    def signal(self, signum: int) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill_group(self, pgid: int = 0) -> None:
        """SIGKILL the child's whole process group (e.g. nginx workers or gunicorn workers left behind)."""
        pgid = pgid or self.pid
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def exited(self, code: int) -> None:
        if self.popen is not None:
            self.popen.returncode = code  # smc reaps with waitpid(-1); keep Popen consistent
        self.last_exit_code = code
        self.pid = 0

    def pipes(self) -> list[tuple[BinaryIO, str]]:
        if self.popen is None:
            return []
        return [(self.popen.stdout, "stdout"), (self.popen.stderr, "stderr")]  # type: ignore[list-item]


def _die_with_parent(signum: int) -> Callable[[], None] | None:
    """preexec_fn asking the kernel to signal the child when smc dies, so a SIGKILLed smc does not
    leave nginx holding the port. Children run in sessions of their own, so nothing else would."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: preexec must not import

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_death_signal


class LineRelay:
    """Splits a child's output into lines and writes each as JSON to smc's stdout or stderr."""

    def __init__(self, child_name: str, stream: str, out: BinaryIO, now: Callable[[], str]) -> None:
        self.child_name = child_name
        self.stream = stream
        self.out = out
        self.now = now
        self.pending = b""

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        *lines, self.pending = data.split(b"\n")
        if len(self.pending) > _MAX_LINE:
            lines.append(self.pending)
            self.pending = b""
        if lines:
            self._write(lines)

    def close(self) -> None:
        if self.pending:
            self._write([self.pending])
            self.pending = b""

    def _write(self, lines: Sequence[bytes]) -> None:
        chunks = []
        for line in lines:
            line = line.rstrip(b"\r")
            if not line.strip():
                continue
            if line.startswith(b"{") and line.endswith(b"}"):
                chunks.append(line)
            else:
                chunks.append(self._wrap(line))
        if not chunks:
            return
        try:
            self.out.write(b"\n".join(chunks) + b"\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _wrap(self, line: bytes) -> bytes:
        level = "info" if self.stream == "stdout" else "warning"
        record: dict[str, object] = {"ts": self.now(), "level": level, "component": self.child_name,
                                     "event": "output", "stream": self.stream}
        match = _NGINX_LINE.match(line) if self.child_name == "nginx" else None
        if match:
            record["level"] = _NGINX_LEVELS.get(match.group(1), "info")
            record["pid"] = int(match.group(2))
            record["message"] = match.group(3).decode("utf-8", "replace")
        else:
            record["message"] = line.decode("utf-8", "replace")
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
