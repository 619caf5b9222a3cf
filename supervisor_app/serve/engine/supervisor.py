"""Supervision of engine mode: smc's serving loop (serve/supervision.py, on the shared core
supervision/loop.py) with the engine in the place of gunicorn.

The engine runs in its own process group; its stop signal and the final SIGKILL go to the whole
group (a `sh -c` wrapper, vLLM's or MLServer's worker processes). Health comes from the
HealthPoller thread through the loop's notify pipe; the readiness file nginx's /ping reads exists
only while the engine is healthy and smc is not stopping. A crash, or health failing
SMC_ENGINE_HEALTH_FAILURES times in a row, restarts the engine with backoff until
SMC_ENGINE_MAX_RESTARTS; then smc stops with exit 1, the cause and the engine's stderr tail.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from supervisor_app import exitcodes, process
from supervisor_app.config.engine import AUTO_ROUTE
from supervisor_app.serve.engine.health import HealthPoller
from supervisor_app.serve.engine.listener import serving_pid
from supervisor_app.serve.probes import http_ping_answers
from supervisor_app.serve.supervision import Supervisor, SupervisorSettings
from supervisor_app.supervision.children import Child, LineRelay, State
from supervisor_app.supervision.loop import Loop
from supervisor_app.supervision.types import Outcome, Outputs, Phase, backoff_s

_NGINX_PROBES_BEFORE_RESTART = 3
_TAIL_LINES = 20
_TAIL_BYTES = 2048
# A level word near a line's start, as logging, uvicorn, vLLM, TGI and Go/Rust loggers write it.
_STATED_LEVEL = re.compile(rb"(?i)(?:^|[\s\[|=\"])(debug|info|warn|warning|error|err|critical|fatal|panic)\b")
_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error",
           "err": "error", "critical": "critical", "fatal": "critical", "panic": "critical"}


class GroupChild(Child):
    """A child whose stop signal goes to its whole process group, not only its leader."""

    def signal(self, signum: int) -> None:
        if self.pid:
            process.killpg(self.pid, signum)


class TailRelay(LineRelay):
    """Relays the engine's stderr like LineRelay, and keeps the last lines for the cause when the
    engine fails. Servers log everything to stderr (uvicorn's access lines, one per health check),
    so a line keeps the level it states ("INFO:", "[error]", "level=warning") or is info, not the
    warning LineRelay gives other programs' stderr."""

    def __init__(self, *args: Any, tail: collections.deque[str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.tail = tail

    def _wrap(self, line: bytes) -> bytes:
        record = json.loads(super()._wrap(line))
        match = _STATED_LEVEL.search(line[:48])  # after a timestamp, before the message
        record["level"] = _LEVELS[match.group(1).lower().decode()] if match else "info"
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()

    def _write(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            if text.strip():
                self.tail.append(text[:_TAIL_BYTES])
        super()._write(lines)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail_text(lines: collections.deque[str]) -> str:
    """The last whole lines within _TAIL_BYTES: a tail that starts mid-line reads as garbage."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if kept and size + len(line) + 1 > _TAIL_BYTES:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))[-_TAIL_BYTES:]  # only one line longer than the limit is cut


class EngineSupervisor(Supervisor):
    adapters: Any = None  # SMC_ENGINE_ADAPTERS=vllm|sglang: serve/engine/adapters.Adapters

    def __init__(self, engine: GroupChild, nginx: Child, settings: SupervisorSettings, outputs: Outputs, *,
                 plan: Any, poller: HealthPoller) -> None:
        super().__init__(engine, nginx, settings, outputs)
        self.engine = engine
        self.plan = plan
        self.poller = poller
        self.generation = 0
        self.engine_failures: list[float] = []
        self.healthy_since = 0.0
        self.health_failures = 0
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.lingering_group = 0  # the engine's group, still running after its leader exited while stopping

    def _alive(self) -> bool:
        if self.lingering_group and not _group_alive(self.lingering_group):
            self.lingering_group = 0
        return super()._alive() or bool(self.lingering_group)

    def _kill_all(self, why: str) -> None:
        if self.lingering_group:
            self.log.warning("child_killed", child=self.engine.name, child_pgid=self.lingering_group, why=why)
            process.killpg(self.lingering_group, signal.SIGKILL)
            self.lingering_group = 0
        super()._kill_all(why)

    # -- starting --------------------------------------------------------------------------------
    def _relay(self, child: Child, stream: str, out: Any) -> LineRelay:
        if child is self.engine and stream == "stderr":
            return TailRelay(child.name, stream, out, self.now_iso, tail=self.stderr_tail)
        if child is self.nginx:
            # nginx's reports about broken engine answers become engine_* events
            return LineRelay(child.name, stream, out, self.now_iso, upstream="engine")
        return super()._relay(child, stream, out)

    def _spawn(self, child: Child) -> None:
        Loop._spawn(self, child)  # not the gunicorn start-up budget of Supervisor._spawn
        if child is self.engine:
            self.generation += 1
            self.health_failures = 0
            self.healthy_since = 0.0
            # Each start gets the full start-up budget to become healthy.
            self.ready_deadline = time.monotonic() + self.policy.startup_timeout_s
            self.poller.watch(self.generation)
            if self.nginx.state is State.STOPPED and self.phase is not Phase.STOPPING:
                self._spawn(self.nginx)  # /ping answers 503 while the engine warms up

    def _restart(self, child: Child) -> None:
        self._spawn(child)

    # -- timers ----------------------------------------------------------------------------------
    def _grace_expired(self) -> None:
        Loop._grace_expired(self)  # the engine's stop: its own grace, its exit code stays smc's

    def _serving_timers(self, now: float, waits: list[float]) -> bool:
        if not self._watch_nginx_start(now, waits):
            return False
        if self.engine.state is State.STARTING:
            if now > self.ready_deadline:
                self._engine_failed(
                    f"the engine did not answer GET {self.plan.health_path} on {self.plan.host}:{self.plan.port} "
                    f"with 2xx within {self.policy.startup_timeout_s:g} s (SAGEMAKER_STARTUP_TIMEOUT)",
                    give_up=True)
                return False
            waits.append(self.ready_deadline - now)
        return True

    def _check_health(self) -> None:
        """nginx's /ping; the engine's own health comes from the HealthPoller thread."""
        child = self.nginx
        if child.state is not State.RUNNING or not child.pid:
            return
        if http_ping_answers(self.port, self.policy.health_timeout_s):
            child.probe_failures = 0
            return
        child.probe_failures += 1
        self.log.warning("child_probe_failed", child=child.name, child_pid=child.pid, failures=child.probe_failures)
        if child.probe_failures >= _NGINX_PROBES_BEFORE_RESTART:
            self.log.error("child_unhealthy", child=child.name, child_pid=child.pid)
            self.kill_reasons[child.pid] = f"unhealthy: {_NGINX_PROBES_BEFORE_RESTART} failed health probes"
            child.kill_group()

    # -- health verdicts -------------------------------------------------------------------------
    def _on_notify(self, event: dict[str, Any]) -> None:
        if event.get("generation") != self.generation or not self.engine.pid or self.phase is Phase.STOPPING:
            return
        if event.get("event") == "engine_healthy":
            self._on_healthy()
        elif event.get("event") == "engine_probe_failed":
            self._on_probe_failed(str(event.get("why", "")))

    def _on_healthy(self) -> None:
        now = time.monotonic()
        first = self.engine.state is State.STARTING
        self.engine.to(State.RUNNING)
        self.health_failures = 0
        self.healthy_since = self.healthy_since or now
        # serving_pid: the process that listens on the engine's port, which a launcher
        # (`smc python engine.py`, a wrapper script) is not; first time per start only.
        served_by = serving_pid(self.plan.port, self.engine.pid) if first and self.engine.pid else None
        # The line before the ready file: whoever sees /ping 200 finds engine_healthy logged.
        self.log.info("engine_healthy", child=self.engine.name, child_pid=self.engine.pid,
                      elapsed_s=round(now - self.engine.started_at, 3),
                      since_start_s=round(now - self.started, 3), first=first,
                      **({"serving_pid": served_by} if served_by and served_by != self.engine.pid else {}))
        if first and self.plan.invocations_path == AUTO_ROUTE:
            self._check_openai_routes()
        if first and self.adapters is not None:
            self.adapters.engine_started(self.generation)  # before /ping is 200: reloads after a restart
        self.ready_file.touch()
        self.ready = True
        if self.phase is Phase.BOOTING and self.nginx.state is State.RUNNING:
            self.phase = Phase.SERVING

    def _check_openai_routes(self) -> None:
        """In a thread: the loop never waits on the engine. Each start is checked (a restarted
        engine may be another build)."""
        from supervisor_app.serve.engine.health import probe
        from supervisor_app.serve.engine.router import check_engine_routes

        threading.Thread(target=check_engine_routes, name="smc-engine-routes", daemon=True,
                         args=(self.plan.host, self.plan.port, self.policy.health_timeout_s,
                               self.log.warning, probe)).start()

    def _on_probe_failed(self, why: str) -> None:
        self.health_failures += 1
        if self.ready:
            self._unready()  # /ping 503 from the first failure: SageMaker stops routing here
        self.log.warning("engine_unhealthy", child=self.engine.name, child_pid=self.engine.pid,
                         failures=self.health_failures, limit=self.plan.health_failures, why=why)
        if self.health_failures >= self.plan.health_failures:
            self.log.error("engine_restart_unhealthy", child=self.engine.name, child_pid=self.engine.pid,
                           failures=self.health_failures)
            self.kill_reasons[self.engine.pid] = f"unhealthy: {self.health_failures} failed health checks"
            self.engine.kill_group()  # a hung engine will not stop gracefully; its exit restarts it

    def _running(self, child: Child) -> None:
        Loop._running(self, child)  # nginx: the engine's start does not wait for it
        if child is self.nginx and self.ready and self.phase is Phase.BOOTING:
            self.phase = Phase.SERVING

    # -- exits -----------------------------------------------------------------------------------
    def _on_exit(self, child: Child, code: int) -> None:
        if child is not self.engine:
            super()._on_exit(child, code)
            return
        pid, cause = self._exited(child, code, kill_group=False)
        if self.phase is Phase.STOPPING and _group_alive(pid):
            self.lingering_group = pid  # e.g. `cd x && engine`: the shell died, the engine still stops
        else:
            child.kill_group(pid)  # the engine's workers left behind
        self._unready()
        self.poller.watch(0)
        if self.phase is Phase.STOPPING:
            child.to(State.STOPPED)
            return
        if code in (exitcodes.NOT_FOUND, exitcodes.NOT_EXECUTABLE) and not child.ever_running:
            # The shell could not run the command: restarting would fail the same way.
            what = "not found" if code == exitcodes.NOT_FOUND else "not executable"
            self._engine_failed(f"engine command {what} (exit code {code}): {self.plan.command!r}",
                                give_up=True, exit_code=code)
            return
        self._engine_failed(f"the engine exited: {cause or 'exit code 0'}", give_up=False)

    def _engine_failed(self, cause: str, give_up: bool, exit_code: int = exitcodes.FAILURE) -> None:
        now = time.monotonic()
        if self.healthy_since and now - self.healthy_since >= self.policy.restart_window_s:
            self.engine_failures = []  # it served for a while: a new incident, a fresh budget
        self.engine_failures.append(now)
        restarts = len(self.engine_failures) - 1
        if not give_up and restarts < self.plan.max_restarts:
            # The first restart is immediate (a crash of a serving engine costs only its warm-up),
            # then 0.25 s, 0.5 s, 1 s, ... so a crash loop does not spin.
            delay = backoff_s(len(self.engine_failures) - 1) if len(self.engine_failures) > 1 else 0.0
            self.engine.backoff(now + delay)
            self.log.warning("child_restarting", child=self.engine.name, attempt=restarts + 1,
                             max_restarts=self.plan.max_restarts, delay_s=delay, cause=cause)
            return
        if not give_up:
            cause = (f"the engine failed {len(self.engine_failures)} times "
                     f"(SMC_ENGINE_MAX_RESTARTS={self.plan.max_restarts}); last: {cause.removeprefix('the engine ')}")
        if self.engine.pid:
            self.engine.to(State.STOPPING)
            self.kill_reasons[self.engine.pid] = cause.removeprefix("the engine ")
            self.engine.kill_group()
        tail = tail_text(self.stderr_tail)
        self.log.error("engine_failed", child=self.engine.name, cause=cause, command=self.plan.command,
                       stderr_tail=tail)
        reason = f"{cause}; engine stderr (last lines): {tail[-600:]}" if tail else cause
        self._stop(Outcome(exit_code, reason))


__all__ = ["EngineSupervisor", "GroupChild", "TailRelay"]
