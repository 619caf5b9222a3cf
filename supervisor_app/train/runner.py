"""Run one child the way tini would, plus what SageMaker needs from it.

- The child gets its own process group; SIGTERM/SIGINT to smc go to the whole group, and after
  the grace period the group gets SIGKILL. HUP, QUIT, USR1 and USR2 are forwarded as they are.
- Signal handlers only queue (set_wakeup_fd); one select() loop over the wakeup pipe and the
  child's stderr does all the work, with a timeout only while a grace period runs.
- smc is a subreaper: orphans of the script are re-parented to it and reaped here.
- The child's stdout is inherited untouched. Its stderr is copied chunk by chunk to smc's stderr
  as it arrives, and the last STDERR_TAIL_BYTES are kept for the failure file.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app import process
from supervisor_app.supervision import causes

STDERR_TAIL_BYTES = 64 * 1024
FAILURE_REASON_BYTES = 1024  # SageMaker keeps the first 1024 characters as FailureReason
_READ_BYTES = 64 * 1024
STOP_SIGNALS = process.STOP_SIGNALS
FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


@dataclass(frozen=True)
class Outcome:
    exit_code: int  # the child's code, or 128 + n when a signal n killed it
    stop_signal: int | None  # the signal that asked smc to stop, if any
    killed_after_grace: bool
    stderr_tail: bytes
    oom_kills: int | None = None  # OOM kills the memory cgroup counted while it ran; None: not readable

    def cause(self) -> str:
        """How the child ended, naming smc's own kill and the OOM killer only when they were it."""
        smc_killed = "SIGKILL after the stop grace" if self.killed_after_grace else None
        return causes.describe(self.exit_code, killed_by_smc=smc_killed, oom_kills=self.oom_kills)


class Tail:
    """The last `limit` bytes written, in one bounded buffer."""

    def __init__(self, limit: int = STDERR_TAIL_BYTES) -> None:
        self.limit = limit
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > self.limit:
            del self._data[: len(self._data) - self.limit]

    def value(self) -> bytes:
        return bytes(self._data)


def run(argv: list[str], env: Mapping[str, str], cwd: Path, grace_s: float, log: Any) -> Outcome:
    """Start argv and supervise it to the end. Raises OSError if it cannot be started."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    watched = (signal.SIGCHLD, *STOP_SIGNALS, *FORWARDED_SIGNALS)
    previous = {sig: signal.signal(sig, _queue_only) for sig in watched}
    previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    oom = causes.OomCounter()  # the baseline: a SIGKILL is the OOM killer's only if the count grew
    try:
        child = subprocess.Popen(
            argv, env=dict(env), cwd=str(cwd), stderr=subprocess.PIPE, process_group=0, close_fds=True
        )
        try:
            return _supervise(child, wake_r, grace_s, log, oom)
        finally:
            child.stderr.close()
            if child.returncode is None:
                child.returncode = 0  # reaped by us, not by Popen; keeps Popen from waiting again
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def _queue_only(signum: int, frame: Any) -> None:
    """Signal handler - nothing here: the wakeup fd already carries the signal number."""


def _supervise(child: subprocess.Popen, wake_r: int, grace_s: float, log: Any, oom: causes.OomCounter) -> Outcome:
    err_fd = child.stderr.fileno()
    tail = Tail()
    selector = selectors.DefaultSelector()
    selector.register(wake_r, selectors.EVENT_READ, "signal")
    selector.register(err_fd, selectors.EVENT_READ, "stderr")
    status: int | None = None
    stop_signal: int | None = None
    deadline: float | None = None
    killed = False
    while status is None:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        for key, _ in selector.select(timeout):
            if key.data == "stderr":
                if not _pump(err_fd, tail):
                    selector.unregister(err_fd)
                continue
            for signum in os.read(wake_r, 512):
                if signum in STOP_SIGNALS:
                    if stop_signal is None:
                        stop_signal = signum
                        deadline = time.monotonic() + grace_s
                        log.warning(
                            "stop_requested",
                            signal=process.signal_name(signum),
                            grace_s=grace_s,
                            child_pid=child.pid,
                        )
                    _signal_group(child.pid, signum)
                elif signum in FORWARDED_SIGNALS:
                    _signal_group(child.pid, signum)
        if deadline is not None and not killed and time.monotonic() >= deadline:
            log.warning("stop_grace_expired", grace_s=grace_s, signal="SIGKILL", child_pid=child.pid)
            _signal_group(child.pid, signal.SIGKILL)
            killed = True
            deadline = None
        for pid, raw in process.reap():
            if pid == child.pid:
                status = raw
            else:
                log.debug("orphan_reaped", orphan_pid=pid, exit_code=process.exit_code(raw))
    _drain(err_fd, tail)
    if stop_signal is not None:
        _signal_group(child.pid, signal.SIGKILL)  # a stop stops everything the script started
    child.returncode = process.exit_code(status)
    return Outcome(
        exit_code=process.exit_code(status),
        stop_signal=stop_signal,
        killed_after_grace=killed,
        stderr_tail=tail.value(),
        oom_kills=oom.new_kills(),
    )


def _pump(fd: int, tail: Tail) -> bool:
    """Copy one chunk of the child's stderr to ours; False at end of file."""
    try:
        chunk = os.read(fd, _READ_BYTES)
    except BlockingIOError:
        return True
    if not chunk:
        return False
    tail.add(chunk)
    _write_all(2, chunk)
    return True


def _drain(fd: int, tail: Tail) -> None:
    # Whatever the child wrote just before exiting; grandchildren may hold the pipe open, so
    # never wait for end of file.
    os.set_blocking(fd, False)
    while True:
        try:
            if not _pump(fd, tail):
                return
            if not _readable(fd):
                return
        except OSError:
            return


def _readable(fd: int) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF):
                return  # nobody reads our stderr any more; the tail still has it
            raise
        view = view[written:]


_signal_group = process.killpg


# ---- what the job leaves behind ----------------------------------------------------------------


def failure_text(cause: str, stderr_tail: bytes = b"", limit_bytes: int = FAILURE_REASON_BYTES) -> str:
    """The cause first, then as much of the end of stderr as fits in SageMaker's FailureReason."""
    cause = _fit(cause.strip(), limit_bytes)
    tail = stderr_tail.decode("utf-8", "replace").strip()
    if not tail:
        return cause
    header = "\n\nstderr (last lines):\n"
    room = limit_bytes - len((cause + header).encode("utf-8"))
    if room < 40:
        return cause
    kept = tail.encode("utf-8")[-room:].decode("utf-8", "ignore")
    if len(kept) < len(tail) and "\n" in kept[:-1]:
        kept = kept[kept.index("\n") + 1 :]  # start at a line boundary
    return cause + header + kept


def _fit(text: str, limit_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - 3].decode("utf-8", "ignore") + "..."


def write_failure(path: Path, text: str) -> bool:
    """Write the failure file unless the script already wrote its own (which SageMaker then shows)."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def write_success(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
