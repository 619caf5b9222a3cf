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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from supervisor_app import process

_MAX_LINE = 64 * 1024
_NGINX_LINE = re.compile(rb"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (\d+)#\d+: (?:\*\d+ )?(.*)$")
_NGINX_LEVELS = {b"emerg": "critical", b"alert": "critical", b"crit": "critical", b"error": "error",
                 b"warn": "warning", b"notice": "info", b"info": "info", b"debug": "debug"}


class State(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"  # spawned, not yet answering its probe
    RUNNING = "running"  # answered its probe
    BACKOFF = "backoff"  # exited unexpectedly, waiting to be restarted
    STOPPING = "stopping"  # asked to stop, waiting for it to exit


_TRANSITIONS: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.BACKOFF, State.STOPPING, State.STOPPED}),
    State.RUNNING: frozenset({State.BACKOFF, State.STOPPING, State.STOPPED}),
    State.BACKOFF: frozenset({State.STARTING, State.STOPPED}),
    State.STOPPING: frozenset({State.STOPPED}),
}


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
            # the kernel signals the child if smc dies (e.g. OOM-killed), so nginx never keeps the port
            preexec_fn=process.death_signal_setter(self.death_signal),  # noqa: PLW1509 (no lock is taken in it)
            **self.popen_kwargs,
        )
        self.pid = self.popen.pid
        self.probe_failures = 0
        self.started_at = time.monotonic()
        self.to(State.STARTING)

    def to(self, state: State) -> None:
        """Change state; an impossible transition is a bug in the supervisor, said loudly."""
        if state is not self.state and state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.name}: no transition {self.state.value} -> {state.value}")
        self.state = state
        if state is State.RUNNING:
            self.ever_running = True

    def backoff(self, restart_at: float) -> None:
        self.restart_at = restart_at
        self.to(State.BACKOFF)

    def signal(self, signum: int) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Ask for a graceful stop (nginx QUIT, gunicorn TERM)."""
        self.to(State.STOPPING)
        self.signal(self.stop_signal)

    def kill_group(self, pgid: int = 0) -> None:
        """SIGKILL the child's whole process group (e.g. nginx workers or gunicorn workers left behind)."""
        process.killpg(pgid or self.pid, signal.SIGKILL)

    def exited(self, code: int) -> None:
        if self.popen is not None:
            self.popen.returncode = code  # smc reaps with waitpid(-1); keep Popen consistent
        self.last_exit_code = code
        self.pid = 0

    def pipes(self) -> list[tuple[BinaryIO, str]]:
        if self.popen is None:
            return []
        return [(self.popen.stdout, "stdout"), (self.popen.stderr, "stderr")]  # type: ignore[list-item]


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
