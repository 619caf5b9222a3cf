"""The gunicorn master's reaping of its workers, with the real cause of each death.

gunicorn's own reap_workers calls every SIGKILL "Perhaps out of memory?", including the ones it
sends itself to workers past the timeout, and it does not tell smc's supervisor anything. This
one logs the cause (its own timeout kill, the OOM killer per the memory cgroup's counter, another
signal, an exit code) and reports each exit on the notify pipe, so the supervisor knows when no
worker holds a loaded model (/ping 503) and when workers are crash-looping.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.errors import HaltServer

from supervisor_app import exitcodes
from supervisor_app.worker import busy
from supervisor_app.supervision import causes

# Exits that are a worker doing what it was asked: a graceful stop, max-requests recycling.
_EXPECTED_CODES = frozenset({0, exitcodes.from_signal(signal.SIGTERM), exitcodes.from_signal(signal.SIGQUIT),
                             exitcodes.from_signal(signal.SIGINT)})


def reap_workers(arbiter: Any, oom: causes.OomCounter, timeout_s: float,
                 notify: Callable[..., None]) -> None:
    """gunicorn 27's Arbiter.reap_workers, plus the cause and a notify line per worker exit."""
    try:
        while True:
            wpid, status = os.waitpid(-1, os.WNOHANG)
            if not wpid:
                break
            if arbiter.reexec_pid == wpid:
                arbiter.reexec_pid = 0
                continue
            if getattr(arbiter, "dirty_arbiter_pid", 0) and arbiter.dirty_arbiter_pid == wpid:
                arbiter.handle_dirty_arbiter_exit(wpid, status)
                continue
            worker = arbiter.WORKERS.pop(wpid, None)
            if worker is None:
                continue  # an orphan re-parented to the master: reaped, not a worker
            code = exitcodes.exit_code(status)
            if arbiter.cfg.worker_tmp_dir:
                busy.forget(Path(arbiter.cfg.worker_tmp_dir), wpid)
            _report(arbiter, worker, wpid, code, oom, timeout_s, notify)
            if code == arbiter.WORKER_BOOT_ERROR:
                raise HaltServer("Worker failed to boot.", arbiter.WORKER_BOOT_ERROR)
            if code == arbiter.APP_LOAD_ERROR:
                raise HaltServer("App failed to load.", arbiter.APP_LOAD_ERROR)
            worker.tmp.close()
            arbiter.cfg.child_exit(arbiter, worker)
    except OSError as exc:
        if exc.errno != errno.ECHILD:
            raise


def _report(arbiter: Any, worker: Any, wpid: int, code: int, oom: causes.OomCounter, timeout_s: float,
            notify: Callable[..., None]) -> None:
    timed_out = bool(getattr(worker, "aborted", False))
    expected = code in _EXPECTED_CODES and not timed_out
    cause = None
    if not expected:
        cause = causes.describe(code, timed_out_s=timeout_s if timed_out else None, oom_kills=oom.new_kills())
        fields: dict[str, Any] = {"worker_pid": wpid, "exit_code": code, "cause": cause}
        if code > exitcodes.SIGNAL_BASE:
            fields["signal"] = exitcodes.signal_name(code - exitcodes.SIGNAL_BASE)
            arbiter.log.log_event("error", "worker_killed", **fields)
        else:
            arbiter.log.log_event("error", "worker_exited", **fields)
    notify("worker_exited", worker_pid=wpid, exit_code=code, expected=expected, cause=cause)
