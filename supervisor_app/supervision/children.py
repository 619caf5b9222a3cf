"""Children of the supervisor: spawned in their own process group with pipes smc creates, and
each line they print relayed as one JSON line.

smc owns the pipes because nginx running as another user cannot open a /dev/stdout that belongs
to root; relaying also makes every line JSON. Lines that already are JSON objects (smc's own
forked gunicorn master, nginx's access log) pass through untouched, which keeps relaying cheap.

A child is either a program (argv, exec'd) or a Python callable run in a fork of smc itself
(`target`): the gunicorn master is forked, not re-executed, because starting the onefile binary
again costs ~0.12 s of the cold start (bootloader, interpreter, imports) and a fork ~1 ms.
"""

from __future__ import annotations

import enum
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from supervisor_app import process
from supervisor_app.supervision import nginx_lines

_MAX_LINE = 64 * 1024


class State(enum.Enum):
    """A child's state; the loops change it only through Child.to(), which refuses a transition
    _TRANSITIONS does not list (a bug in a loop, said loudly instead of supervised wrongly)."""

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
    target: Callable[[], int] | None = None  # run in a fork of smc instead of exec'ing argv
    streams: list[tuple[BinaryIO, str]] = field(default_factory=list)

    def spawn(self) -> None:
        if self.target is not None:
            self.pid, self.streams = fork_call(self.target, self.pass_fds, self.death_signal)
        else:
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
        """Wait out a restart delay: the loop starts it again at restart_at (monotonic)."""
        self.to(State.BACKOFF)
        self.restart_at = restart_at

    def signal(self, signum: int) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill_group(self, pgid: int = 0) -> None:
        """SIGKILL the child's whole process group (e.g. nginx workers or gunicorn workers left behind)."""
        process.killpg(pgid or self.pid, signal.SIGKILL)

    def exited(self, code: int) -> None:
        if self.popen is not None:
            self.popen.returncode = code  # smc reaps with waitpid(-1); keep Popen consistent
        self.last_exit_code = code
        self.pid = 0

    def pipes(self) -> list[tuple[BinaryIO, str]]:
        if self.target is not None:
            return self.streams
        if self.popen is None:
            return []
        return [(self.popen.stdout, "stdout"), (self.popen.stderr, "stderr")]  # type: ignore[list-item]


# Reset to their defaults in a forked child, and held back until it has: the supervisor's own handlers.
_FORK_BLOCKED = (*process.STOP_SIGNALS, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT)


def fork_call(target: Callable[[], int], keep_fds: Sequence[int], death_signal: int) -> tuple[int, list[tuple[BinaryIO, str]]]:
    """Run target() in a forked child with what an exec'd child would get: its own session, the
    death signal, /dev/null stdin, stdout/stderr on pipes smc reads, no inherited fd but keep_fds,
    default signal dispositions. The child ends with os._exit(target's code): it never returns
    into smc's own stack (finally blocks, atexit, the bootloader bundle's cleanup)."""
    set_death_signal = process.death_signal_setter(death_signal)
    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # nothing buffered in smc is written twice
    parent = os.getpid()
    # Stop signals wait (blocked) across the fork: until the child has its own dispositions, the
    # supervisor's handlers would write a signal meant for the child into the supervisor's pipe.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORK_BLOCKED)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if pid == 0:
        _exit_code = 1
        try:
            _become_child(out_write, err_write, keep_fds, set_death_signal)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if os.getppid() != parent:  # smc died before the death signal was asked for
                os._exit(1)
            _exit_code = target()
        except SystemExit as exc:
            _exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - a child that cannot start says why, then exits
            import traceback

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - exiting anyway
                    pass
            os._exit(_exit_code)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(out_write)
    os.close(err_write)
    return pid, [(os.fdopen(out_read, "rb", buffering=0), "stdout"), (os.fdopen(err_read, "rb", buffering=0), "stderr")]


def _close_fds_except(keep: set[int]) -> None:
    """Close every descriptor from 3 on but `keep`. The open ones are listed from /proc: closing
    the whole range one by one (os.closerange where the interpreter has no close_range(), as
    glibc before 2.34 has none) costs ~90 ms at a limit of 1M descriptors."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every number up to the limit
        open_fds = list(range(3, os.sysconf("SC_OPEN_MAX")))
    for fd in open_fds:
        if fd >= 3 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already


def _become_child(out_fd: int, err_fd: int, keep_fds: Sequence[int], set_death_signal: Callable[[], None] | None) -> None:
    os.setsid()
    if set_death_signal is not None:
        set_death_signal()
    signal.set_wakeup_fd(-1)  # smc's wakeup pipe is the supervisor's, not this child's
    for signum in _FORK_BLOCKED:
        signal.signal(signum, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    keep = set(keep_fds)
    for fd in keep:
        os.set_inheritable(fd, False)  # ours, not the next exec's
    _close_fds_except(keep)
    # Fresh stream objects: the parent's may hold a lock taken by one of its threads (metrics).
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115


class LineRelay:
    """Splits a child's output into lines and writes each as JSON to smc's stdout or stderr."""

    def __init__(self, child_name: str, stream: str, out: BinaryIO, now: Callable[[], str],
                 upstream: str = "upstream") -> None:
        self.child_name = child_name
        self.stream = stream
        self.out = out
        self.now = now
        self.upstream = upstream  # what nginx proxies to: names its fault events (nginx_lines)
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
        fields = nginx_lines.parse(line, self.upstream) if self.child_name == "nginx" else None
        if fields:
            record.update(fields)
        else:
            record["message"] = line.decode("utf-8", "replace")
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def relay_pipe(selector: selectors.BaseSelector, stream: Any, relay: LineRelay) -> None:
    """Relay what a child's pipe holds; at its end, stop watching it and close it."""
    try:
        data = os.read(stream.fileno(), 65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        relay.feed(data)
        return
    relay.close()
    selector.unregister(stream)
    stream.close()


def flush_pipes(selector: selectors.BaseSelector, budget_s: float = 0.5) -> None:
    """Relay what children wrote before exiting (bounded: grandchildren may hold a pipe open).
    The selector's pipes carry ("pipe", relay) as their data."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        if not any(key.data[0] == "pipe" for key in selector.get_map().values()):
            return
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            if key.data[0] == "pipe":
                relay_pipe(selector, key.fileobj, key.data[1])
