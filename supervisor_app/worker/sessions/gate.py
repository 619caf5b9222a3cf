"""One place that turns a request into a session answer or a session binding, for both modes:
handler mode (worker/wsgi.py, in each gunicorn worker) and engine mode (serve/engine/sessions.py,
smc's routing hop). NEW_SESSION and CLOSE are answered here; inference comes back as a Use (a valid
session id, checked against the store) or None (no session)."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

from supervisor_app import logs
from supervisor_app.worker.sessions.protocol import (Close, Headers, Open, SessionError, Use, classify, closed,
                                                     created)
from supervisor_app.worker.sessions.state import Session
from supervisor_app.worker.sessions.store import SessionStore

Reply = Tuple[int, Headers, bytes]


class Gate:
    """`store` None: sessions are off, and session requests and ids are refused (protocol.classify)."""

    def __init__(self, store: Optional[SessionStore]) -> None:
        self.store = store
        self.log = logs.get_logger("sessions")

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def route(self, body: bytes, header: Optional[str], deadline_s: float, check: bool = False) -> Union[Reply, Use, None]:
        """A Reply for NEW_SESSION and CLOSE, else the request's Use or None. `check`: make sure a
        Use names a live session now (engine mode; handler mode checks when it takes the lock).
        SessionError for every refusal."""
        op: Any = classify(body, header, self.store is not None)
        if op is None:
            return None
        store = self.store
        assert store is not None
        if isinstance(op, Open):
            try:
                session_id, expires_s = store.create()
            except OSError as exc:  # a full or read-only store: 424, as MHCS answers a failed create
                self.log.error("session_create_failed", path=store.root, error=str(exc))
                raise SessionError(424, f"could not create a session in {store.root} (SAGEMAKER_SESSIONS_PATH): "
                                        f"{exc.strerror or exc}") from None
            self.log.info("session_opened", session_id=session_id, expires_s=round(expires_s, 3))
            return created(session_id, expires_s)
        try:
            if isinstance(op, Close):
                store.close(op.session_id, deadline_s)
                self.log.info("session_closed", session_id=op.session_id)
                return closed(op.session_id)
            if check:
                store.check(op.session_id)
        except OSError as exc:
            raise self._store_failed(exc, 424 if isinstance(op, Close) else 500) from exc
        return op

    def enter(self, use: Use, deadline_s: float) -> Session:
        """The session of a request, locked until its release() (see state.py)."""
        assert self.store is not None
        try:
            return Session(self.store.acquire(use.session_id, deadline_s))
        except OSError as exc:
            raise self._store_failed(exc, 500) from exc

    def _store_failed(self, exc: OSError, status: int) -> SessionError:
        assert self.store is not None
        self.log.error("session_store_failed", path=self.store.root, error=str(exc))
        return SessionError(status, f"the session store {self.store.root} (SAGEMAKER_SESSIONS_PATH) failed: "
                                    f"{exc.strerror or exc}")


__all__ = ["Gate", "Reply"]
