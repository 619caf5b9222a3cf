"""`context.session`: the state of the session a request belongs to, as the handler sees it.

A dict of JSON values (read and written like any dict) plus the session's id, its expiry and a
directory for the handler's own files (tensors, caches: anything not JSON). The dict is loaded when
the request takes the session's lock (store.acquire) and saved, in one rename, before the answer
goes out (commit); a request that fails (an error answer, a timeout) saves nothing, so the next
request sees the state as the last answered request left it. Files under `path` are the handler's
own: they are neither rolled back nor written atomically by smc.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any, Dict, Iterator

from supervisor_app.worker.sessions.protocol import SessionError
from supervisor_app.worker.sessions.store import Held

FILES_DIR = "files"


class Session(MutableMapping):
    def __init__(self, held: Held) -> None:
        self._held = held
        self.id = held.session_id
        self.expires_at = held.expires_s  # Unix time (s) after which the session is gone
        self._data: Dict[str, Any] = json.loads(held.state_text) if held.state_text else {}

    @property
    def path(self) -> str:
        """A directory of this session's own, for the handler's files; removed with the session."""
        path = os.path.join(self._held.path, FILES_DIR)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session state keys are strings (JSON object keys), got {type(key).__name__}")
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<Session {self.id} {self._data!r}>"

    def commit(self) -> None:
        """Save the state if the request changed it; SessionError (500) when a value is not JSON."""
        try:
            text = json.dumps(self._data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            bad = [k for k, v in self._data.items() if not _is_json(v)]
            raise SessionError(500, f"the state of session {self.id} is not JSON ({exc}; key(s) {bad[:5]}): store "
                                    "str, numbers, booleans, None, lists and dicts of them in context.session, "
                                    "and anything else as files under context.session.path") from exc
        if text != (self._held.state_text or "{}"):
            self._held.write_state(text)

    def release(self) -> None:
        self._held.release()


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["Session"]
