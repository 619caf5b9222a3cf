"""Sidecar programs beside `smc train`: a separate smc process (`smc train --programs FILE`) runs
them with the shared supervision loop and sidecar policy (supervision/), because the training runner reaps every
child of its own process (waitpid(-1)) and must stay a simple loop around the script.

The training process starts it before the entry point and stops it (SIGTERM, bounded wait) when
the script has ended, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from supervisor_app import logs, process
from supervisor_app.config import Config
from supervisor_app.config.engine import load_engine_config
from supervisor_app.errors import UsageError
from supervisor_app.supervision.loop import Loop
from supervisor_app.supervision.types import Outputs, Policy

PROGRAMS_FLAG = "--programs"

def run_programs(config: Config, args: list[str]) -> int:
    """`smc train --programs FILE`: run the file's programs until SIGTERM."""
    from supervisor_app.programs.parse import load_programs
    from supervisor_app.supervision.sidecars import make_sidecar, with_sidecars

    if len(args) != 1:
        raise UsageError(f"{PROGRAMS_FLAG} FILE is internal to smc train")
    log = logs.get_logger("programs")
    programs = load_programs(args[0], config.environ)
    for warning in programs.warnings:
        log.warning("programs_file_warning", file=programs.path, message=warning)
    if programs.engine is not None:
        log.warning("engine_program_ignored", program=programs.engine.name,
                    why="smc train has no engine; it runs as an ordinary program")
    env = process.foreign_env(config.environ)
    sidecars = tuple(make_sidecar(spec, env, log) for spec in programs.programs)
    process.become_subreaper()
    cls: Any = with_sidecars(Loop)
    policy = Policy(max((s.spec.stopwaitsecs for s in sidecars), default=10) + 5.0, 5.0, 2.0, 5, 60.0, 1e9)
    supervisor = cls((), policy, Outputs(log, lambda: datetime.now(UTC).isoformat(), *_streams(config)))
    supervisor.add_sidecars(sidecars)
    outcome = supervisor.run()
    process.reap()
    return outcome.exit_code


def _streams(config: Config) -> tuple[Any, Any]:
    import sys

    if logs.wants_console(config.log_format, sys.stdout):
        return logs.ConsoleLines(sys.stdout.buffer), logs.ConsoleLines(sys.stderr.buffer)
    return sys.stdout.buffer, sys.stderr.buffer


@contextlib.contextmanager
def programs_beside_training(config: Config, log: Any) -> Iterator[None]:
    """Runs SMC_PROGRAMS' programs for the duration of the block (nothing when it is unset)."""
    path = load_engine_config(config).programs_file
    if not path:
        yield
        return
    from supervisor_app.programs.parse import load_programs

    programs = load_programs(path, config.environ)  # a bad file fails the job before the script runs
    wait_s = max((p.stopwaitsecs for p in programs.programs), default=10) + 5.0
    child = subprocess.Popen([*process.self_command(), "train", PROGRAMS_FLAG, path],
                             env=process.self_env(config.environ), stdin=subprocess.DEVNULL,
                             start_new_session=True)
    pidfd = os.pidfd_open(child.pid)
    log.info("programs_started", file=path, programs=[p.name for p in programs.programs], child_pid=child.pid)
    try:
        yield
    finally:
        # The training runner may already have reaped it (it reaps every child): watch the pidfd.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        if not select.select([pidfd], [], [], wait_s)[0]:
            process.killpg(child.pid, signal.SIGKILL)
        os.close(pidfd)
        with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
            child.wait(timeout=1)
        log.info("programs_stopped", file=path)


__all__ = ["PROGRAMS_FLAG", "programs_beside_training", "run_programs"]
