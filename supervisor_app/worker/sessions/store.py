"""The session store: one directory per session under SAGEMAKER_SESSIONS_PATH, shared by every
process that answers requests (each gunicorn worker, or smc's routing hop in engine mode), so a
session lives whichever worker answers and outlives a worker that dies.

    ROOT/<id>/meta.json    {"id", "created_s", "expires_s"}: written before the directory has its name
    ROOT/<id>/state.json   the handler's state (state.py), replaced by rename, never rewritten in place
    ROOT/<id>/files/       the handler's own files (made on first use)
    ROOT/.new-* .gone-*    a session being created / removed (rename makes both steps atomic)

A request bound to a session holds an exclusive flock on the session's directory from before its
handler runs until its answer is saved (acquire), so one session's requests run one at a time in
every process; the kernel drops the lock of a process that dies. Expiry counts from creation
(SAGEMAKER_SESSIONS_EXPIRATION, wall-clock seconds, as MHCS): an expired session is removed when a
request names it and by the sweep each process runs at most once per sweep interval, on create.
Writes are not fsync'ed: what a killed process wrote is in the page cache (or /dev/shm), which
outlives it; a machine crash loses the store, as it loses /dev/shm.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

from supervisor_app.worker.sessions.protocol import SessionError, expired, unknown

META = "meta.json"
STATE = "state.json"
_STALE_S = 60.0  # a .new-/.gone- directory this old was left by a process that died mid-step
_NO_SUCH = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)  # a 256-character id is valid, and never a session


def _wait_for_lock(fd: int, deadline_s: float) -> bool:
    """flock(LOCK_EX) on fd, polling until the monotonic deadline (a blocking flock could not be
    bounded on a request thread, where no SIGALRM reaches)."""
    delay_s = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        left_s = deadline_s - time.monotonic()
        if left_s <= 0:
            return False
        time.sleep(min(delay_s, left_s))
        delay_s = min(delay_s * 2, 0.02)


class Held:
    """A session locked for one request: its directory's fd (the lock), id, expiry and saved state."""

    def __init__(self, fd: int, session_id: str, expires_s: float, state_text: Optional[str], path: str) -> None:
        self.fd = fd
        self.session_id = session_id
        self.expires_s = expires_s
        self.state_text = state_text  # None: nothing saved yet
        self.path = path

    def write_state(self, text: str) -> None:
        """Replace state.json in one rename: a reader (or a crash) sees the old or the new, whole."""
        tmp = f".state-{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=self.fd)
        try:
            data = text.encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, STATE, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        self.state_text = text

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the flock
            self.fd = -1


class SessionStore:
    def __init__(self, root: str, expiration_s: float, clock: Callable[[], float] = time.time,
                 sweep_interval_s: Optional[float] = None) -> None:
        self.root = root
        self.expiration_s = expiration_s
        self.clock = clock
        self.sweep_interval_s = min(60.0, expiration_s) if sweep_interval_s is None else sweep_interval_s
        self._last_sweep_s = 0.0  # monotonic; per process

    def _dir(self, session_id: str) -> str:
        return os.path.join(self.root, session_id)

    # -- lifecycle -------------------------------------------------------------------------------
    def create(self) -> Tuple[str, float]:
        """A new session: (id, expires_s). Its directory appears complete, under its name, at once."""
        if time.monotonic() - self._last_sweep_s >= self.sweep_interval_s:
            self.sweep()
        session_id = str(uuid.uuid4())
        now_s = self.clock()
        expires_s = now_s + self.expiration_s
        staging = os.path.join(self.root, f".new-{session_id}")
        os.mkdir(staging, 0o700)
        with open(os.path.join(staging, META), "w") as f:
            json.dump({"id": session_id, "created_s": now_s, "expires_s": expires_s}, f)
        os.rename(staging, self._dir(session_id))
        return session_id, expires_s

    def check(self, session_id: str) -> float:
        """The expiry of a live session; SessionError when it is unknown or expired (then removed)."""
        expires_s = self._read_meta(self._dir(session_id), session_id)
        if self.clock() > expires_s:
            self._remove(session_id)
            raise expired(session_id, expires_s)
        return expires_s

    def acquire(self, session_id: str, deadline_s: float) -> Held:
        """The session locked for one request (waiting for the request before it, until the monotonic
        deadline); SessionError when it is unknown, expired (removed) or still busy at the deadline."""
        fd = self._lock(session_id, deadline_s)
        try:
            expires_s = self._read_meta_at(fd, session_id)
            if self.clock() > expires_s:
                self._remove(session_id)
                raise expired(session_id, expires_s)
            try:
                state_fd = os.open(STATE, os.O_RDONLY, dir_fd=fd)
            except FileNotFoundError:
                state_text = None
            else:
                with os.fdopen(state_fd, "rb") as f:
                    state_text = f.read().decode()
        except BaseException:
            os.close(fd)
            raise
        return Held(fd, session_id, expires_s, state_text, self._dir(session_id))

    def close(self, session_id: str, deadline_s: float) -> None:
        """Remove a session once the request in flight on it (if any) is answered. Unknown: 400;
        expired: 424, as MHCS answers a CLOSE of an expired session (it is removed all the same)."""
        fd = self._lock(session_id, deadline_s)
        try:
            expires_s = self._read_meta_at(fd, session_id)
            self._remove(session_id)
            if self.clock() > expires_s:
                raise expired(session_id, expires_s, status=424)
        finally:
            os.close(fd)

    def sweep(self) -> int:
        """Remove expired sessions nobody holds, and leftovers of processes that died mid-step."""
        self._last_sweep_s = time.monotonic()
        removed = 0
        now_s = self.clock()
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0
        for entry in entries:
            if entry.name.startswith("."):
                if entry.name.startswith((".new-", ".gone-")) and _older_than(entry, _STALE_S):
                    shutil.rmtree(entry.path, ignore_errors=True)
                continue
            try:
                expires_s = self._read_meta(entry.path, entry.name)
            except SessionError:
                continue
            if now_s <= expires_s:
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: next sweep, or its next request
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                removed += self._remove(entry.name)
            finally:
                os.close(fd)
        return removed

    def count(self) -> int:
        try:
            return sum(1 for e in os.scandir(self.root) if not e.name.startswith("."))
        except OSError:
            return 0

    # -- parts -----------------------------------------------------------------------------------
    def _lock(self, session_id: str, deadline_s: float) -> int:
        """The session's directory fd, locked, still under its name (a CLOSE may have renamed it
        while this request waited)."""
        path = self._dir(session_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno in _NO_SUCH:
                raise unknown(session_id) from None
            raise
        try:
            if not _wait_for_lock(fd, deadline_s):
                raise SessionError(504, f"session {session_id}: the request before this one on the same session "
                                        "was still running at this request's deadline (SAGEMAKER_MODEL_SERVER_TIMEOUT); "
                                        "a session's requests run one at a time")
            try:
                now = os.stat(path)
            except FileNotFoundError:
                raise unknown(session_id) from None
            held = os.fstat(fd)
            if (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev):
                raise unknown(session_id)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_meta(self, path: str, session_id: str) -> float:
        try:
            with open(os.path.join(path, META), "rb") as f:
                return _expiry(f.read(), session_id)
        except OSError as exc:
            if exc.errno in _NO_SUCH:
                raise unknown(session_id) from None
            raise

    def _read_meta_at(self, fd: int, session_id: str) -> float:
        try:
            meta_fd = os.open(META, os.O_RDONLY, dir_fd=fd)
        except FileNotFoundError:
            raise unknown(session_id) from None
        with os.fdopen(meta_fd, "rb") as f:
            return _expiry(f.read(), session_id)

    def _remove(self, session_id: str) -> int:
        gone = os.path.join(self.root, f".gone-{session_id}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self._dir(session_id), gone)
        except FileNotFoundError:
            return 0  # removed by another process first
        try:  # the usual session holds two files: cheaper than rmtree's walk
            for name in os.listdir(gone):
                os.unlink(os.path.join(gone, name))
            os.rmdir(gone)
        except OSError:  # the handler's files/ directory
            shutil.rmtree(gone, ignore_errors=True)
        return 1


def _expiry(raw: bytes, session_id: str) -> float:
    try:
        meta: Dict[str, Any] = json.loads(raw)
        return float(meta["expires_s"])
    except (ValueError, KeyError, TypeError):
        raise unknown(session_id) from None


def _older_than(entry: Any, age_s: float) -> bool:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > age_s
    except OSError:
        return False


def prepare_root(path: str) -> None:
    """Make the store's directory (0700: sessions are private to the container's user)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", path)


__all__ = ["Held", "SessionStore", "prepare_root"]
