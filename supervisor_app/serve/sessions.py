"""Start-up of the session store (SAGEMAKER_SESSIONS_PATH), in the supervisor before any worker
or the routing hop uses it: one clear error now rather than a 424 on every NEW_SESSION later."""

from __future__ import annotations

from typing import Any

from supervisor_app.config.sessions import SessionsConfig
from supervisor_app.errors import BootError
from supervisor_app.worker.sessions.store import SessionStore, prepare_root


def prepare_store(sessions: SessionsConfig, log: Any, mode: str) -> None:
    path = str(sessions.path)
    try:
        prepare_root(path)
    except OSError as exc:
        named = f"SAGEMAKER_SESSIONS_PATH={sessions.path_requested}" if sessions.path_requested else \
            f"the default session store {path}"
        raise BootError(f"cannot use {named} for stateful sessions: {exc.strerror or exc}",
                        hint="set SAGEMAKER_SESSIONS_PATH to a directory this user may create and write "
                             "(e.g. under $TMPDIR), or unset SAGEMAKER_ENABLE_STATEFUL_SESSIONS") from None
    # Sessions left by an earlier run in the same store stay usable until they expire (as MHCS reloads them).
    store = SessionStore(path, sessions.expiration_s)
    removed = store.sweep()
    log.info("sessions_on", mode=mode, path=path, expiration_s=sessions.expiration_s, kept=store.count(),
             expired_removed=removed)


__all__ = ["prepare_store"]
