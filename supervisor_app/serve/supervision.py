"""smc's supervision loop for gunicorn and nginx, built on the shared loop core
(supervision/loop.py: selector, signals, reaping, restarts with backoff, the stop grace).

Readiness is a file nginx stats on every /ping: present while at least one gunicorn worker holds a
loaded model (workers report loading, the master reports their exits), removed when the last one
dies, when gunicorn goes away or when smc starts stopping.

A signalled stop drains first: a drain file makes nginx answer every request with
`Connection: close` for up to SMC_DRAIN_SECONDS (ending early once no client connection is open),
then nginx stops accepting (QUIT) and finishes in-flight requests, then gunicorn (TERM).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app import exitcodes, signal_policy
from supervisor_app.serve.drain import Drain
from supervisor_app.serve.probes import http_ping_answers, tcp_port_answers, unix_socket_answers
from supervisor_app.supervision.children import Child, State
from supervisor_app.supervision.loop import Loop
from supervisor_app.supervision.types import Outcome, Outputs, Phase, Policy

_NGINX_BOOT_S = 10.0  # nginx binds within milliseconds; longer means it is stuck
_PROBES_BEFORE_RESTART = 3
_HEARTBEAT_SLACK_S = 3.0  # the master beats about once a second; allow for a slow fork or GC pause


@dataclass(frozen=True)
class SupervisorSettings:
    """Where the children meet smc: the run dir, gunicorn's socket, nginx's readiness file, the
    port, the notify pipe's read end, and the restart/stop policy."""

    run_dir: Path
    socket_path: Path
    ready_file: Path
    port: int
    notify_fd: int
    policy: Policy


class Supervisor(Loop):
    stop_signals = signal_policy.STOP  # TERM, INT and QUIT drain; HUP, USR1, USR2 are ignored
    ignored_signals = signal_policy.IGNORED

    def __init__(self, gunicorn: Child, nginx: Child, settings: SupervisorSettings, outputs: Outputs) -> None:
        super().__init__((gunicorn, nginx), settings.policy, outputs, settings.notify_fd)
        self.gunicorn = gunicorn
        self.nginx = nginx
        self.run_dir = settings.run_dir
        self.socket_path = settings.socket_path
        self.ready_file = settings.ready_file
        self.port = settings.port
        self.load_error: dict[str, str] | None = None
        self.ready = False
        self.last_heartbeat = 0.0
        self.ready_deadline = 0.0
        self.drain = Drain(settings.run_dir, settings.port, settings.policy.drain_s, settings.policy.grace_s, outputs.log)
        self.ready_workers: set[int] = set()  # workers that loaded the model and are alive
        self.worker_crashes: list[float] = []  # monotonic times of unexpected worker exits
        self.capacity_lost_at = 0.0

    # -- starting --------------------------------------------------------------------------------
    def _start(self) -> None:
        # Both at once: nginx binds while gunicorn imports and loads the model (the cold start is
        # the longer of the two, not their sum). Until a worker is ready nginx answers /ping 503
        # from the missing ready file, and anything else 502 JSON.
        self._spawn(self.gunicorn)
        if self.nginx.state is State.STOPPED:  # engine mode's _spawn already started it with the engine
            self._spawn(self.nginx)

    def _spawn(self, child: Child) -> None:
        super()._spawn(child)
        if child is self.gunicorn:
            # Each gunicorn start gets the full start-up budget to load the model.
            self.ready_deadline = time.monotonic() + self.policy.startup_timeout_s

    def _finished(self) -> None:
        self._unready()
        self.drain.remove_file()

    # -- timers ----------------------------------------------------------------------------------
    def _grace_expired(self) -> None:
        if self.outcome is not None and self.outcome.exit_code == exitcodes.OK:
            self.outcome = Outcome(exitcodes.GRACE_EXPIRED,
                                   f"the stop grace of {self.policy.grace_s:g} s (SMC_STOP_GRACE_SECONDS) "
                                   "expired with requests in flight; they were cut",
                                   cause="stop grace expired: smc killed the children")
        self._kill_all("grace_expired")

    def _stopping_waits(self, now: float) -> list[float]:
        if not self.drain.active:
            return []
        drain_wait = self.drain.tick(now, nginx_alive=bool(self.nginx.pid))
        if drain_wait is None:
            self._stop_first_child()
        return [0.0 if drain_wait is None else drain_wait]

    def _serving_timers(self, now: float, waits: list[float]) -> bool:
        if not self._watch_nginx_start(now, waits):
            return False
        loading = not self.ready and self.gunicorn.state in (State.STARTING, State.RUNNING)
        if loading and now > self.ready_deadline:
            self._stop(Outcome(exitcodes.FAILURE, f"no worker loaded the model within {self.policy.startup_timeout_s:g} s "
                               "(SAGEMAKER_STARTUP_TIMEOUT)"))
            return False
        if loading:
            waits.append(self.ready_deadline - now)
        return True

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
    def _on_notify(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "listening" and self.gunicorn.pid:
            if unix_socket_answers(self.socket_path) and self.gunicorn.state is State.STARTING:
                self._running(self.gunicorn)
        elif name == "heartbeat":
            self.last_heartbeat = time.monotonic()
        elif name == "worker_ready":
            self._on_worker_ready(event.get("pid"))
        elif name == "worker_exited":
            self._on_worker_exit(event)
        elif name in ("app_load_failed", "boot_failed"):  # boot_failed: worker/boot.py, the image's Python
            self.load_error = {"message": str(event.get("message", "")), "hint": str(event.get("hint", "")),
                               "kind": name}

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
        super()._running(child)
        if child is self.gunicorn and self.nginx.state is State.STOPPED and self.phase is not Phase.STOPPING:
            self._spawn(self.nginx)
        if child is self.nginx and self.ready and self.phase is Phase.BOOTING:
            self.phase = Phase.SERVING

    # -- exits, restarts -------------------------------------------------------------------------
    def _on_exit(self, child: Child, code: int) -> None:
        if child is self.gunicorn:
            self._unready()
        _, cause = self._exited(child, code)
        if self.phase is Phase.STOPPING:
            child.to(State.STOPPED)
            if child is self.nginx and self.gunicorn.pid:
                self._stop_child(self.gunicorn)  # nginx drained: gunicorn has nothing in flight
            return
        if child is self.gunicorn and (code in (exitcodes.APP_LOAD, exitcodes.BOOT) or (self.load_error and code)):
            # gunicorn halted: the handler or model cannot load, restarting would fail the same way.
            reason = (self.load_error or {}).get("message") or "gunicorn halted: a worker failed to boot"
            booted = self.load_error is None or self.load_error.get("kind") != "boot_failed"
            self._stop(Outcome(exitcodes.APP_LOAD if self.load_error and booted else code, reason, self.load_error))
            return
        self._restart_or_give_up(child, code, cause)

    def _restart(self, child: Child) -> None:
        if child is self.gunicorn:
            self.socket_path.unlink(missing_ok=True)
        if child is self.nginx and self.gunicorn.state is not State.RUNNING:
            child.to(State.STOPPED)  # started again once gunicorn listens
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
    def _stopping_began(self) -> None:
        self._unready()  # /ping answers 503 from now on

    def _stop_children(self, outcome: Outcome, failed_boot: bool) -> None:
        """Reverse start order: nginx drains its in-flight requests, then gunicorn."""
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

    def _kill_all(self, why: str) -> None:
        super()._kill_all(why)
        self.drain.cancel()

    def _unready(self) -> None:
        self.ready = False
        self.ready_workers.clear()
        self.ready_file.unlink(missing_ok=True)
