"""Sidecar programs run by a supervision loop beside nginx and gunicorn, the engine, or alone
(`smc train`'s programs), with
supervisord's per-program policy: autostart, startsecs, startretries (then FATAL), autorestart
(true / false / unexpected against exitcodes), stopsignal and stopwaitsecs, priority order.

SidecarsMixin is mixed into a loop (supervision/loop.py, or the serving loops built on it): the
loop, signal handling, output relay and reaping stay the loop's. A sidecar that gives up never stops the
server unless its section says smc_required=true. On stop, sidecars are asked to stop after the
servers have exited (they may be what the server needs while draining), in reverse priority order.
"""

from __future__ import annotations

import os
import time
from typing import Any

from supervisor_app import exitcodes, process
from supervisor_app.programs.parse import ProgramSpec, user_popen_kwargs
from supervisor_app.supervision.children import Child, State
from supervisor_app.supervision.types import Outcome, Phase


class Sidecar(Child):
    spec: ProgramSpec
    start_failures: int = 0
    fatal: bool = False
    signalled: bool = False
    kill_at: float = 0.0

    def signal(self, signum: int) -> None:
        if not self.pid:
            return
        if self.spec.stopasgroup:
            process.killpg(self.pid, signum)
            return
        try:
            os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def make_sidecar(spec: ProgramSpec, environ: dict[str, str], log: Any) -> Sidecar:
    env = dict(environ)
    env.update(spec.environment)
    env.setdefault("SUPERVISOR_PROCESS_NAME", spec.name)  # as supervisord sets it
    child = Sidecar(spec.name, ["/bin/sh", "-c", spec.command], env, stop_signal=spec.stopsignal)
    child.spec = spec
    child.popen_kwargs = user_popen_kwargs(spec)
    if spec.uid is not None and os.geteuid() != 0 and spec.uid != os.geteuid():
        log.warning("program_user_ignored", program=spec.name, uid=spec.uid,
                    why="smc is not running as root, so it cannot switch users")
    return child


class SidecarsMixin:
    """Needs: children, main_children, phase, log, kill_reasons, _spawn, _stop, _kill_all, _cause (from Loop)."""

    sidecars: tuple[Sidecar, ...] = ()
    _sidecars_started = False

    def add_sidecars(self, sidecars: tuple[Sidecar, ...]) -> None:
        self.main_children = tuple(self.children)  # type: ignore[has-type]
        self.sidecars = sidecars
        self.children = (*self.main_children, *sidecars)

    # -- loop hooks --------------------------------------------------------------------------------
    def _timers(self) -> float:
        now = time.monotonic()
        waits = []
        if not self._sidecars_started:
            self._sidecars_started = True
            for car in self.sidecars:
                if car.spec.autostart:
                    self._spawn(car)  # type: ignore[attr-defined]
        for car in self.sidecars:
            if car.state is State.STARTING and car.pid:
                due = car.started_at + car.spec.startsecs
                if now >= due:
                    car.to(State.RUNNING)
                    car.start_failures = 0
                    self.log.info("program_running", program=car.name, child_pid=car.pid,  # type: ignore[attr-defined]
                                  startsecs=car.spec.startsecs)
                else:
                    waits.append(due - now)
        if self.phase is Phase.STOPPING:  # type: ignore[attr-defined]
            waits += self._stop_sidecars(now)
        base = super()._timers()  # type: ignore[misc]
        return max(0.0, min([base, *waits]))

    def _stop_sidecars(self, now: float) -> list[float]:
        waits = []
        if any(child.pid for child in self.main_children):
            return waits  # servers first: sidecars may be what they need while draining
        for car in sorted(self.sidecars, key=lambda c: -c.spec.priority):
            if car.state is State.BACKOFF:
                car.to(State.STOPPED)
            if not car.pid:
                continue
            if not car.signalled:
                car.signalled = True
                car.to(State.STOPPING)
                car.kill_at = now + car.spec.stopwaitsecs
                car.signal(car.spec.stopsignal)
            elif now >= car.kill_at:
                self.log.warning("child_killed", child=car.name, child_pid=car.pid,  # type: ignore[attr-defined]
                                 why="stopwaitsecs_expired")
                self.kill_reasons[car.pid] = "stopwaitsecs expired"  # type: ignore[attr-defined]
                car.kill_group()
                car.kill_at = now + 3600
            else:
                waits.append(car.kill_at - now)
        return waits

    def _check_health(self) -> None:
        # Sidecars have no probe (supervisord has none either): only the servers are probed.
        children = self.children
        self.children = self.main_children
        try:
            super()._check_health()  # type: ignore[misc]
        finally:
            self.children = children

    def _on_exit(self, child: Child, code: int) -> None:
        if not isinstance(child, Sidecar):
            super()._on_exit(child, code)  # type: ignore[misc]
            return
        pid = child.pid
        was = child.state
        child.exited(code)
        child.kill_group(pid)
        cause = self._cause(pid, code) or "exit code 0"  # type: ignore[attr-defined]
        if self.phase is Phase.STOPPING or was is State.STOPPING:  # type: ignore[attr-defined]
            child.to(State.STOPPED)
            self.log.info("child_exited", child=child.name, child_pid=pid, exit_code=code, cause=cause,  # type: ignore[attr-defined]
                          expected=True)
            return
        spec = child.spec
        if was is State.STARTING:
            # Exited before startsecs: a failed start, retried up to startretries (supervisord's BACKOFF).
            child.start_failures += 1
            if child.start_failures > spec.startretries:
                child.to(State.STOPPED)
                child.fatal = True
                self.log.error("program_fatal", program=child.name, child_pid=pid, exit_code=code, cause=cause,  # type: ignore[attr-defined]
                               start_failures=child.start_failures, startretries=spec.startretries,
                               required=spec.required)
                if spec.required:
                    self._stop(Outcome(exitcodes.FAILURE, f"required program {child.name} gave up: {cause} "  # type: ignore[attr-defined]
                                       f"({child.start_failures} failed starts, startretries={spec.startretries})"))
                return
            self._backoff(child, float(child.start_failures), code, cause)
            return
        expected = code in spec.exitcodes
        restart = spec.autorestart == "true" or (spec.autorestart == "unexpected" and not expected)
        log = self.log.info if expected else self.log.error  # type: ignore[attr-defined]
        log("child_exited", child=child.name, child_pid=pid, exit_code=code, cause=cause, expected=expected)
        if not restart:
            child.to(State.STOPPED)
            if spec.required and not expected:
                self._stop(Outcome(exitcodes.FAILURE, f"required program {child.name} exited: {cause}"))  # type: ignore[attr-defined]
            return
        self._backoff(child, 0.0, code, cause)

    def _backoff(self, child: Sidecar, delay_s: float, code: int, cause: str) -> None:
        child.backoff(time.monotonic() + delay_s)
        self.log.warning("child_restarting", child=child.name, delay_s=delay_s, exit_code=code, cause=cause,  # type: ignore[attr-defined]
                         start_failures=child.start_failures)

    def _kill_all(self, why: str) -> None:
        super()._kill_all(why)  # type: ignore[misc]
        for car in self.sidecars:
            car.signalled = True


def with_sidecars(base: type) -> type:
    """The supervisor class `base` with sidecar programs mixed in."""
    return type(f"{base.__name__}WithSidecars", (SidecarsMixin, base), {})


__all__ = ["Sidecar", "SidecarsMixin", "make_sidecar", "with_sidecars"]
