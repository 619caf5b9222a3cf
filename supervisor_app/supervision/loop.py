"""The core of smc's supervision loops, in the spirit of gunicorn's arbiter and tini: one thread,
one selector. Signal handlers only queue (signal.set_wakeup_fd), children's pipes are relayed line
by line, an optional notify pipe carries JSON events from the children. Timers (health checks,
restart backoff, the stop grace) set the select timeout; nothing polls on a fixed tick.

Phases: BOOTING -> SERVING -> STOPPING. A child that exits unexpectedly is restarted with backoff
until it fails restart_limit times within restart_window_s; one that never ran ends start-up. The
first stop signal stops the children gracefully (the stop grace bounds it), a second kills them.

Loops built on it (serve/supervision.py, engine mode, the sidecar-only loop of `smc train`)
override the hooks: _start, _relay, _serving_timers, _stopping_waits, _grace_expired,
_check_health, _on_notify, _on_exit, _stop_children, _finished.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from supervisor_app import exitcodes, process
from supervisor_app.supervision import causes
from supervisor_app.supervision.children import Child, LineRelay, State, flush_pipes, relay_pipe
from supervisor_app.supervision.types import Outcome, Outputs, Phase, Policy, backoff_s


class Loop:
    # The signals that stop the loop (a drained stop) and those it ignores with a line saying why;
    # serve's come from signal_policy.py, train's programs stop on TERM and INT only.
    stop_signals: tuple[int, ...] = process.STOP_SIGNALS
    ignored_signals: Mapping[int, str] = {}

    def __init__(self, children: Sequence[Child], policy: Policy, outputs: Outputs, notify_fd: int | None = None) -> None:
        self.children: tuple[Child, ...] = tuple(children)
        self.main_children: tuple[Child, ...] = self.children  # the ones a stop asks first (sidecars come after)
        self.policy = policy
        self.log = outputs.log
        self.now_iso = outputs.now_iso
        self.out = outputs.out
        self.err = outputs.err
        self.notify_fd = notify_fd
        self.notify_pending = b""
        self.phase = Phase.BOOTING
        self.started = time.monotonic()
        self.outcome: Outcome | None = None
        self.stop_deadline = 0.0
        self.next_health = 0.0
        self.selector = selectors.DefaultSelector()
        self.signals_seen = 0
        self.kill_reasons: dict[int, str] = {}  # pid -> why smc itself killed it
        self.oom = causes.OomCounter()  # the baseline: a later SIGKILL is the OOM killer's only if it grew

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        self._install_signals()
        if self.notify_fd is not None:
            os.set_blocking(self.notify_fd, False)
            self.selector.register(self.notify_fd, selectors.EVENT_READ, ("notify", None))
        self._start()
        while self.outcome is None or self._alive():
            timeout = self._timers()
            if self.outcome is not None and not self._alive():
                break
            for key, _ in self.selector.select(timeout):
                kind, relay = key.data
                if kind == "signals":
                    self._read_signals(key.fd)
                elif kind == "notify":
                    self._read_notify()
                else:
                    relay_pipe(self.selector, key.fileobj, relay)
        flush_pipes(self.selector)
        self._finished()
        assert self.outcome is not None
        return self.outcome

    def _start(self) -> None:
        for child in self.main_children:
            self._spawn(child)

    def _finished(self) -> None:
        """After the last child was reaped and its output relayed."""

    def _alive(self) -> bool:
        return any(child.pid for child in self.children)

    def _install_signals(self) -> int:
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in (*self.stop_signals, *self.ignored_signals, signal.SIGCHLD):
            signal.signal(signum, lambda s, f: None)  # NO work here: the wakeup fd carries the number
        self.selector.register(read_fd, selectors.EVENT_READ, ("signals", None))
        return read_fd

    def _spawn(self, child: Child) -> None:
        child.spawn()
        for stream, name in child.pipes():
            os.set_blocking(stream.fileno(), False)
            out = self.out if name == "stdout" else self.err
            self.selector.register(stream, selectors.EVENT_READ, ("pipe", self._relay(child, name, out)))
        self.log.info("child_started", child=child.name, child_pid=child.pid)

    def _relay(self, child: Child, stream: str, out: Any) -> LineRelay:
        return LineRelay(child.name, stream, out, self.now_iso)

    def _running(self, child: Child) -> None:
        child.to(State.RUNNING)
        self.log.info("child_running", child=child.name, child_pid=child.pid,
                      elapsed_s=round(time.monotonic() - child.started_at, 3))

    # -- timers ----------------------------------------------------------------------------------
    def _timers(self) -> float:
        """Run what is due; return seconds until the next timer."""
        now = time.monotonic()
        waits = [self.policy.health_interval_s]
        if self.phase is Phase.STOPPING:
            if now >= self.stop_deadline:
                self._grace_expired()
            else:
                waits.append(self.stop_deadline - now)
            waits += self._stopping_waits(now)
            return max(0.0, min(waits))
        self._restart_due(now, waits)
        if not self._serving_timers(now, waits):
            return 0.0
        if now >= self.next_health:
            self._check_health()
            self.next_health = now + self.policy.health_interval_s
        waits.append(self.next_health - now)
        return max(0.0, min(waits))

    def _serving_timers(self, now: float, waits: list[float]) -> bool:
        """A loop's own deadlines while not stopping (append to waits); False: go round at once."""
        return True

    def _stopping_waits(self, now: float) -> list[float]:
        """A loop's own timers while stopping (e.g. the drain)."""
        return []

    def _grace_expired(self) -> None:
        self._kill_all("grace_expired")

    def _check_health(self) -> None:
        """Probe the children (no probe by default: supervisord has none either)."""

    def _restart_due(self, now: float, waits: list[float]) -> None:
        """Restart the children whose backoff is over; the others' restart times bound the wait."""
        for child in self.children:
            if child.state is State.BACKOFF:
                if now >= child.restart_at:
                    self._restart(child)
                else:
                    waits.append(child.restart_at - now)

    def _restart(self, child: Child) -> None:
        self._spawn(child)

    # -- events ----------------------------------------------------------------------------------
    def _read_signals(self, fd: int) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        if signal.SIGCHLD in data:
            self._reap()
        for signum in data:
            if signum in self.stop_signals:
                self._on_stop_signal(signum)
            elif signum in self.ignored_signals:
                self.log.info("signal_ignored", signal=process.signal_name(signum), why=self.ignored_signals[signum])

    def _on_stop_signal(self, signum: int) -> None:
        name = process.signal_name(signum)
        self.signals_seen += 1
        if self.signals_seen == 1 and (self.outcome is None or self.outcome.exit_code == 0):
            self.log.info("stop_requested", signal=name, grace_s=self.policy.grace_s)
            self._stop(Outcome(exitcodes.OK, f"stopped by {name}"))
        else:
            self.log.warning("stop_forced", signal=name)
            if self.outcome is None or self.outcome.exit_code == 0:
                self.outcome = Outcome(exitcodes.from_signal(signum), f"forced stop by a second {name}",
                                       cause=f"a second {name}: smc killed the children at once")
            self._kill_all("second_signal")  # a failure already being stopped keeps its own exit code

    def _read_notify(self) -> None:
        assert self.notify_fd is not None
        try:
            data = os.read(self.notify_fd, 65536)
        except BlockingIOError:
            return
        *lines, self.notify_pending = (self.notify_pending + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._on_notify(event)

    def _on_notify(self, event: dict[str, Any]) -> None:
        """One JSON event from the notify pipe."""

    # -- exits, restarts, give-up ----------------------------------------------------------------
    def _reap(self) -> None:
        for pid, status in process.reap():
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                self.log.info("orphan_reaped", orphan_pid=pid, exit_code=process.exit_code(status))
                continue
            self._on_exit(child, process.exit_code(status))

    def _exited(self, child: Child, code: int, *, kill_group: bool = True) -> tuple[int, str | None]:
        """Record a child's exit, SIGKILL what its process group left behind, log it with its cause;
        the child's pid and the cause."""
        expected = child.state is State.STOPPING or self.phase is Phase.STOPPING
        pid = child.pid
        child.exited(code)
        if kill_group:
            child.kill_group(pid)  # workers of a dead master, nginx workers of a dead nginx master
        cause = self._cause(pid, code)
        log = self.log.info if expected else self.log.error
        log("child_exited", child=child.name, child_pid=pid, exit_code=code, cause=cause, expected=expected)
        return pid, cause

    def _on_exit(self, child: Child, code: int) -> None:
        _, cause = self._exited(child, code)
        if self.phase is Phase.STOPPING:
            child.to(State.STOPPED)
            return
        self._restart_or_give_up(child, code, cause or "exit code 0")

    def _restart_or_give_up(self, child: Child, code: int, cause: str | None) -> None:
        """An unexpected exit: end start-up if it never ran, give up after restart_limit failures
        within restart_window_s, otherwise restart it after a backoff."""
        if not child.ever_running:
            self._stop(Outcome(exitcodes.BOOT, f"{child.name} exited during start-up ({cause})"))
            return
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < self.policy.restart_window_s] + [now]
        if len(child.restarts) >= self.policy.restart_limit:
            self.log.error("giving_up", child=child.name, failures=len(child.restarts),
                           window_s=self.policy.restart_window_s, exit_code=code)
            self._stop(Outcome(code or exitcodes.FAILURE,
                               f"{child.name} failed {len(child.restarts)} times within "
                               f"{self.policy.restart_window_s:g} s; last: {cause}", cause=cause))
            return
        delay = backoff_s(len(child.restarts))
        child.backoff(now + delay)
        self.log.warning("child_restarting", child=child.name, attempt=len(child.restarts), delay_s=delay)

    def _cause(self, pid: int, code: int) -> str | None:
        """The real cause of a child's exit: smc's own kill, the OOM killer, or what the status says."""
        why = self.kill_reasons.pop(pid, None)
        if not code and not why:
            return None
        return causes.describe(code, killed_by_smc=why, oom_kills=self.oom.new_kills())

    # -- stopping --------------------------------------------------------------------------------
    def _stop(self, outcome: Outcome) -> None:
        """Enter STOPPING with `outcome` (the first one wins) and ask the children to stop."""
        if self.phase is Phase.STOPPING:
            return
        failed_boot = outcome.exit_code != 0 and self.phase is Phase.BOOTING
        self.outcome = outcome
        self.phase = Phase.STOPPING
        self.stop_deadline = time.monotonic() + self.policy.grace_s
        self._stopping_began()
        if outcome.exit_code:
            self.log.error("stopping", reason=outcome.reason, exit_code=outcome.exit_code)
        else:
            self.log.info("stopping", reason=outcome.reason)
        for child in self.children:
            if child.state is State.BACKOFF:
                child.to(State.STOPPED)
        self._stop_children(outcome, failed_boot)

    def _stopping_began(self) -> None:
        """Right when STOPPING begins, before any child is asked to stop (serve: /ping 503)."""

    def _stop_children(self, outcome: Outcome, failed_boot: bool) -> None:
        """Ask the main children to stop, last started first; the stop grace bounds the wait."""
        for child in reversed(self.main_children):
            if child.pid:
                self._stop_child(child)

    def _stop_child(self, child: Child) -> None:
        child.to(State.STOPPING)
        child.signal(child.stop_signal)

    def _kill_all(self, why: str) -> None:
        for child in self.children:
            if child.pid:
                self.log.warning("child_killed", child=child.name, child_pid=child.pid, why=why)
                self.kill_reasons[child.pid] = why.replace("_", " ")
                child.to(State.STOPPING)
                child.kill_group()
        self.stop_deadline = time.monotonic() + 3600  # nothing left to escalate to: wait for the reaping
        if self.outcome is None:
            self.outcome = Outcome(exitcodes.FAILURE, why)
        self.phase = Phase.STOPPING


__all__ = ["Loop"]
