"""Checks of stateful sessions (SAGEMAKER_ENABLE_STATEFUL_SESSIONS): the store can be made, /dev/shm
is large enough to hold it, and who speaks the protocol in engine mode."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor_app.config.serve import ServeConfig
from supervisor_app.config.sessions import SMC
from supervisor_app.doctor.findings import Finding, fail, ok, warn

SMALL_SHM_BYTES = 256 * 1024 * 1024  # Docker's default /dev/shm is 64 MB


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_sessions(serve: ServeConfig, engine_command: str | None) -> list[Finding]:
    """engine_command: the engine's command in engine mode, else None."""
    sessions = serve.sessions
    if not sessions.enabled:
        return []
    if engine_command is None and (serve.wsgi_app or serve.asgi_app):
        return [ok("sessions", "stateful sessions are left to your app (SMC_WSGI_APP/SMC_ASGI_APP)")]
    if engine_command is not None and sessions.engine_sessions != SMC:
        return [ok("sessions", "SMC_ENGINE_SESSIONS=passthrough: the engine speaks the session protocol itself")]
    findings: list[Finding] = []
    base = _nearest_existing(sessions.path)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        findings.append(fail("sessions_store", f"the session store {sessions.path} cannot be made: {base} is not a "
                                               "writable directory for this user",
                             "set SAGEMAKER_SESSIONS_PATH to a directory this user may write", str(sessions.path)))
    else:
        findings.append(ok("sessions_store", f"session store {sessions.path}, sessions live "
                                             f"{sessions.expiration_s} s", str(sessions.path)))
        try:
            stat = os.statvfs(base)
            size = stat.f_blocks * stat.f_frsize
        except OSError:
            size = 0
        if str(sessions.path).startswith("/dev/shm/") and 0 < size < SMALL_SHM_BYTES:
            findings.append(warn("sessions_shm", f"/dev/shm holds {size // (1024 * 1024)} MiB; sessions and the "
                                                 "files handlers keep under context.session.path count against it",
                                 "give the container more (docker run --shm-size=1g) or set SAGEMAKER_SESSIONS_PATH "
                                 "to a disk directory", "/dev/shm"))
    if engine_command is not None and "vllm" in engine_command.lower():
        findings.append(warn("sessions_engine", "smc answers the session protocol (SMC_ENGINE_SESSIONS=smc) in front of "
                                                "what looks like vLLM, whose builds with model-hosting-container-standards "
                                                "answer it themselves and refuse ids they did not issue",
                             "set SMC_ENGINE_SESSIONS=passthrough if this vLLM serves sessions itself"))
    return findings


__all__ = ["check_sessions"]
