"""smc's supervision loop for gunicorn and nginx, in the spirit of gunicorn's arbiter and tini.

One thread, one selector: signal handlers only queue (signal.set_wakeup_fd), child pipes are
relayed line by line, the gunicorn master and its workers report through a notify pipe. Timers
(health checks, restart backoff, stop grace) set the select timeout; nothing polls on a fixed tick.

Phases: BOOTING -> SERVING -> STOPPING. Readiness is a file nginx stats on every /ping: present
while at least one gunicorn worker holds a loaded model (workers report loading, the master reports
their exits), removed when the last one dies, when gunicorn goes away or when smc starts stopping.

A signalled stop drains first: a drain file makes nginx answer every request with
`Connection: close` for up to SMC_DRAIN_SECONDS (ending early once no client connection is open),
then nginx stops accepting (QUIT) and finishes in-flight requests, then gunicorn (TERM).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from typing import Any

from supervisor_app import exitcodes, process, signal_policy
from supervisor_app.serve import causes
from supervisor_app.serve.children import Child, LineRelay, State, flush_pipes, relay_pipe
from supervisor_app.serve.drain import Drain
from supervisor_app.serve.probes import http_ping_answers, tcp_port_answers, unix_socket_answers
from supervisor_app.serve.supervision_types import Outcome, Outputs, Phase, SupervisorSettings, backoff_s

_NGINX_BOOT_S = 10.0  # nginx binds within milliseconds; longer means it is stuck
_PROBES_BEFORE_RESTART = 3
_HEARTBEAT_SLACK_S = 3.0  # the master beats about once a second; allow for a slow fork or GC pause


class Supervisor:
    def __init__(self, gunicorn: Child, nginx: Child, settings: SupervisorSettings, outputs: Outputs) -> None:
        self.gunicorn = gunicorn
        self.nginx = nginx
        self.children = (gunicorn, nginx)
        self.run_dir = settings.run_dir
        self.socket_path = settings.socket_path
        self.ready_file = settings.ready_file
        self.port = settings.port
        self.notify_fd = settings.notify_fd
        self.policy = settings.policy
        self.log = outputs.log
        self.now_iso = outputs.now_iso
        self.out = outputs.out
        self.err = outputs.err
        self.phase = Phase.BOOTING
        self.started = time.monotonic()
        self.outcome: Outcome | None = None
        self.stop_deadline = 0.0
        self.next_health = 0.0
        self.load_error: dict[str, str] | None = None
        self.ready = False
        self.selector = selectors.DefaultSelector()
        self.notify_pending = b""
        self.signals_seen = 0
        self.last_heartbeat = 0.0
        self.ready_deadline = 0.0
        self.drain = Drain(settings.run_dir, settings.port, settings.policy.drain_s, settings.policy.grace_s, outputs.log)
        self.kill_reasons: dict[int, str] = {}  # pid -> why smc itself killed it
        self.ready_workers: set[int] = set()  # workers that loaded the model and are alive
        self.worker_crashes: list[float] = []  # monotonic times of unexpected worker exits
        self.oom = causes.OomCounter()
        self.capacity_lost_at = 0.0

    # -- setup -----------------------------------------------------------------------------------
    def _install_signals(self) -> int:
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in (*signal_policy.STOP, *signal_policy.IGNORED, signal.SIGCHLD):
            signal.signal(signum, lambda s, f: None)  # NO work here: the wakeup fd carries the number
        self.selector.register(read_fd, selectors.EVENT_READ, ("signals", None))
        return read_fd

    def _spawn(self, child: Child) -> None:
        child.spawn()
        for stream, name in child.pipes():
            os.set_blocking(stream.fileno(), False)
            out = self.out if name == "stdout" else self.err
            self.selector.register(stream, selectors.EVENT_READ, ("pipe", LineRelay(child.name, name, out, self.now_iso)))
        if child is self.gunicorn:
            # Each gunicorn start gets the full start-up budget to load the model.
            self.ready_deadline = time.monotonic() + self.policy.startup_timeout_s
        self.log.info("child_started", child=child.name, child_pid=child.pid)

    # -- main loop -------------------------------------------------------------------------------
    def run(self) -> Outcome:
        self._install_signals()
        os.set_blocking(self.notify_fd, False)
        self.selector.register(self.notify_fd, selectors.EVENT_READ, ("notify", None))
        # Both at once: nginx binds while gunicorn imports and loads the model (the cold start is
        # the longer of the two, not their sum). Until a worker is ready nginx answers /ping 503
        # from the missing ready file, and anything else 502 JSON.
        self._spawn(self.gunicorn)
        if self.nginx.state is State.STOPPED:  # engine mode's _spawn already started it with the engine
            self._spawn(self.nginx)
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
        self._unready()
        self.drain.remove_file()
        assert self.outcome is not None
        return self.outcome

    def _alive(self) -> bool:
        return any(child.pid for child in self.children)

    def _timers(self) -> float:
        """Run what is due; return seconds until the next timer."""
        now = time.monotonic()
        waits = [self.policy.health_interval_s]
        if self.phase is Phase.STOPPING:
            if now >= self.stop_deadline:
                if self.outcome is not None and self.outcome.exit_code == exitcodes.OK:
                    self.outcome = Outcome(exitcodes.GRACE_EXPIRED,
                                           f"the stop grace of {self.policy.grace_s:g} s (SMC_STOP_GRACE_SECONDS) "
                                           "expired with requests in flight; they were cut",
                                           cause="stop grace expired: smc killed the children")
                self._kill_all("grace_expired")
            else:
                waits.append(self.stop_deadline - now)
            if self.drain.active:
                drain_wait = self.drain.tick(now, nginx_alive=bool(self.nginx.pid))
                if drain_wait is None:
                    self._stop_first_child()
                waits.append(0.0 if drain_wait is None else drain_wait)
            return max(0.0, min(waits))
        self._restart_due(now, waits)
        if not self._watch_nginx_start(now, waits):
            return 0.0
        loading = not self.ready and self.gunicorn.state in (State.STARTING, State.RUNNING)
        if loading and now > self.ready_deadline:
            self._stop(Outcome(exitcodes.FAILURE, f"no worker loaded the model within {self.policy.startup_timeout_s:g} s "
                               "(SAGEMAKER_STARTUP_TIMEOUT)"))
            return 0.0
        if loading:
            waits.append(self.ready_deadline - now)
        if now >= self.next_health:
            self._check_health()
            self.next_health = now + self.policy.health_interval_s
        waits.append(self.next_health - now)
        return max(0.0, min(waits))

    def _restart_due(self, now: float, waits: list[float]) -> None:
        """Restart the children whose backoff is over; the others' restart times bound the wait."""
        for child in self.children:
            if child.state is State.BACKOFF:
                if now >= child.restart_at:
                    self._restart(child)
                else:
                    waits.append(child.restart_at - now)

    def _watch_nginx_start(self, now: float, waits: list[float]) -> bool:
        """Mark nginx running once its port answers; False when it never did (smc is stopping)."""
        if self.nginx.state is not State.STARTING:
            return True
        if tcp_port_answers(self.port):
            self._running(self.nginx)
        elif now - self.nginx.started_at > _NGINX_BOOT_S:
            self._stop(Outcome(exitcodes.BOOT, f"nginx did not listen on port {self.port} within {_NGINX_BOOT_S:g} s"))
            return False
        else:
            waits.append(0.02)  # nginx binds in milliseconds: a short bounded wait, only at start
        return True

    # -- events ----------------------------------------------------------------------------------
    def _read_signals(self, fd: int) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        if signal.SIGCHLD in data:
            self._reap()
        for signum in data:
            if signum in signal_policy.STOP:
                self._on_stop_signal(signum)
            elif signum in signal_policy.IGNORED:
                self.log.info("signal_ignored", signal=process.signal_name(signum), why=signal_policy.IGNORED[signum])

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
            name = event.get("event")
            if name == "listening" and self.gunicorn.pid:
                if unix_socket_answers(self.socket_path):
                    self._running(self.gunicorn)
            elif name == "heartbeat":
                self.last_heartbeat = time.monotonic()
            elif name == "worker_ready":
                self._on_worker_ready(event.get("pid"))
            elif name == "worker_exited":
                self._on_worker_exit(event)
            elif name == "app_load_failed":
                self.load_error = {"message": str(event.get("message", "")), "hint": str(event.get("hint", ""))}

    def _on_worker_ready(self, worker_pid: Any) -> None:
        if self.phase is Phase.STOPPING or not self.gunicorn.pid:
            return
        if isinstance(worker_pid, int):
            self.ready_workers.add(worker_pid)
        if self.ready:
            return
        self.ready_file.touch()
        self.ready = True
        now = time.monotonic()
        # elapsed_s: since this gunicorn start or since the last worker holding the model died,
        # whichever is later (a restart loads the model again); since_start_s: since smc started.
        since = max(self.gunicorn.started_at, self.capacity_lost_at)
        self.log.info("model_ready", worker_pid=worker_pid, elapsed_s=round(now - since, 3),
                      since_start_s=round(now - self.started, 3), gunicorn_starts=len(self.gunicorn.restarts) + 1)
        if self.phase is Phase.BOOTING and self.nginx.state is State.RUNNING:
            self.phase = Phase.SERVING

    def _on_worker_exit(self, event: dict[str, Any]) -> None:
        """The gunicorn master reaped a worker: capacity may be gone, and crashes may be looping."""
        self.ready_workers.discard(event.get("worker_pid"))  # type: ignore[arg-type]
        if self.ready and not self.ready_workers and self.phase is not Phase.STOPPING:
            self._unready()  # /ping 503 until a replacement worker has loaded the model
            self.capacity_lost_at = time.monotonic()
            self.log.warning("no_worker_ready", why="the last worker holding the model exited; /ping answers 503 "
                             "until a new worker has loaded it")
        if event.get("expected") or self.phase is Phase.STOPPING:
            return
        now = time.monotonic()
        window_s = self.policy.worker_crash_window_s
        self.worker_crashes = [t for t in self.worker_crashes if now - t < window_s] + [now]
        if len(self.worker_crashes) >= self.policy.worker_crash_limit:
            cause = event.get("cause") or "unknown cause"
            self.log.error("giving_up", child="gunicorn_worker", failures=len(self.worker_crashes), window_s=window_s,
                           cause=cause)
            self._stop(Outcome(exitcodes.FAILURE,
                               f"gunicorn workers died {len(self.worker_crashes)} times within {window_s:g} s "
                               f"(SMC_WORKER_CRASH_LIMIT/SMC_WORKER_CRASH_WINDOW_SECONDS); last: {cause}",
                               cause=f"worker crash loop; last: {cause}"))

    def _running(self, child: Child) -> None:
        child.state = State.RUNNING
        child.ever_running = True
        self.log.info("child_running", child=child.name, child_pid=child.pid,
                      elapsed_s=round(time.monotonic() - child.started_at, 3))
        if child is self.gunicorn and self.nginx.state is State.STOPPED and self.phase is not Phase.STOPPING:
            self._spawn(self.nginx)
        if child is self.nginx and self.ready and self.phase is Phase.BOOTING:
            self.phase = Phase.SERVING

    # -- exits, restarts, give-up ----------------------------------------------------------------
    def _reap(self) -> None:
        for pid, status in process.reap():
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                self.log.info("orphan_reaped", orphan_pid=pid, exit_code=process.exit_code(status))
                continue
            self._on_exit(child, process.exit_code(status))

    def _on_exit(self, child: Child, code: int) -> None:
        expected = child.state is State.STOPPING or self.phase is Phase.STOPPING
        pid = child.pid
        child.exited(code)
        child.kill_group(pid)  # workers of a dead master, nginx workers of a dead nginx master
        if child is self.gunicorn:
            self._unready()
        log = self.log.info if expected else self.log.error
        cause = self._cause(pid, code)
        log("child_exited", child=child.name, child_pid=pid, exit_code=code, cause=cause, expected=expected)
        if self.phase is Phase.STOPPING:
            child.state = State.STOPPED
            if child is self.nginx and self.gunicorn.pid:
                self._stop_child(self.gunicorn)  # nginx drained: gunicorn has nothing in flight
            return
        if child is self.gunicorn and (code in (exitcodes.APP_LOAD, exitcodes.BOOT) or (self.load_error and code)):
            # gunicorn halted: the handler or model cannot load, restarting would fail the same way.
            reason = (self.load_error or {}).get("message") or "gunicorn halted: a worker failed to boot"
            self._stop(Outcome(exitcodes.APP_LOAD if self.load_error else code, reason, self.load_error))
            return
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
        child.state = State.BACKOFF
        child.restart_at = now + delay
        self.log.warning("child_restarting", child=child.name, attempt=len(child.restarts), delay_s=delay)

    def _restart(self, child: Child) -> None:
        if child is self.gunicorn:
            self.socket_path.unlink(missing_ok=True)
        if child is self.nginx and self.gunicorn.state is not State.RUNNING:
            child.state = State.STOPPED  # started again once gunicorn listens
            return
        self._spawn(child)

    def _check_health(self) -> None:
        for child in self.children:
            if child.state is not State.RUNNING or not child.pid:
                continue
            if child is self.gunicorn:
                beat_age_s = time.monotonic() - max(self.last_heartbeat, child.started_at)
                healthy = unix_socket_answers(self.socket_path) and \
                    beat_age_s <= self.policy.health_timeout_s + _HEARTBEAT_SLACK_S
            else:
                healthy = http_ping_answers(self.port, self.policy.health_timeout_s)
            if healthy:
                child.probe_failures = 0
                continue
            child.probe_failures += 1
            self.log.warning("child_probe_failed", child=child.name, child_pid=child.pid,
                             failures=child.probe_failures)
            if child.probe_failures >= _PROBES_BEFORE_RESTART:
                self.log.error("child_unhealthy", child=child.name, child_pid=child.pid)
                self.kill_reasons[child.pid] = f"unhealthy: {_PROBES_BEFORE_RESTART} failed health probes"
                child.kill_group()  # a hung process will not stop gracefully; its exit restarts it

    # -- stopping --------------------------------------------------------------------------------
    def _stop(self, outcome: Outcome) -> None:
        """Stop in reverse start order: nginx drains its in-flight requests, then gunicorn."""
        if self.phase is Phase.STOPPING:
            return
        failed_boot = outcome.exit_code != 0 and self.phase is Phase.BOOTING
        self.outcome = outcome
        self.phase = Phase.STOPPING
        self.stop_deadline = time.monotonic() + self.policy.grace_s
        self._unready()  # /ping answers 503 from now on
        if outcome.exit_code:
            self.log.error("stopping", reason=outcome.reason, exit_code=outcome.exit_code)
        else:
            self.log.info("stopping", reason=outcome.reason)
        for child in self.children:
            if child.state is State.BACKOFF:
                child.state = State.STOPPED
        if failed_boot:
            self._kill_all("start_up_failed")  # nothing was served yet: no requests to drain
        # nginx may already listen (and /ping answer 200) before this loop's next probe marks it
        # RUNNING: a STARTING nginx with a pid is drained too (with no client connection, at once).
        elif (outcome.exit_code == exitcodes.OK and self.policy.drain_s > 0 and self.nginx.pid
              and self.nginx.state in (State.RUNNING, State.STARTING)):
            if not self.drain.start(time.monotonic()):
                self._stop_first_child()
        else:
            self._stop_first_child()

    def _stop_first_child(self) -> None:
        if self.nginx.pid:
            self._stop_child(self.nginx)
        elif self.gunicorn.pid:
            self._stop_child(self.gunicorn)

    def _stop_child(self, child: Child) -> None:
        child.state = State.STOPPING
        child.signal(child.stop_signal)

    def _kill_all(self, why: str) -> None:
        for child in self.children:
            if child.pid:
                self.log.warning("child_killed", child=child.name, child_pid=child.pid, why=why)
                self.kill_reasons[child.pid] = why.replace("_", " ")
                child.state = State.STOPPING
                child.kill_group()
        self.drain.cancel()
        self.stop_deadline = time.monotonic() + 3600  # nothing left to escalate to: wait for the reaping
        if self.outcome is None:
            self.outcome = Outcome(exitcodes.FAILURE, why)
        self.phase = Phase.STOPPING

    def _cause(self, pid: int, code: int) -> str | None:
        """The real cause of a child's exit: smc's own kill, the OOM killer, or what the status says."""
        why = self.kill_reasons.pop(pid, None)
        if not code and not why:
            return None
        return causes.describe(code, killed_by_smc=why, oom_kills=self.oom.new_kills())

    def _unready(self) -> None:
        self.ready = False
        self.ready_workers.clear()
        self.ready_file.unlink(missing_ok=True)
