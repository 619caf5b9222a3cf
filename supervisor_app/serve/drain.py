"""The drain before a signalled stop of `smc serve`.

nginx keeps serving open connections, each answer with `Connection: close` (a drain file the
nginx config checks), so keep-alive clients leave between requests; nginx's own graceful stop
would close idle keep-alive connections at once and cut requests already on their way. The drain
lasts SMC_DRAIN_SECONDS, half the stop grace at most, and ends early once no client connection is
open. Requests that started before it were answered `keep-alive`: it waits for them (their
workers' busy marks, worker/busy.py), and a moment more for their clients' next request, up to a
share of the grace that leaves nginx and gunicorn time to stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor_app.worker.busy import busy_since
from supervisor_app.serve.connections import open_client_connections
from supervisor_app.worker.run_dir import DRAIN_FILE

_POLL_S = 0.1  # how often the drain looks for open client connections
_SETTLE_S = 0.5  # after the last request from before the drain: time for its client's next one
_MAX_SHARE_OF_GRACE = 0.8  # the drain never takes more of the grace: nginx and gunicorn stop in the rest


class Drain:
    def __init__(self, run_dir: Path, port: int, drain_s: float, grace_s: float, log: Any) -> None:
        self.run_dir = run_dir
        self.port = port
        self.drain_s = drain_s
        self.grace_s = grace_s
        self.log = log
        self.file = run_dir / DRAIN_FILE
        self.started = 0.0
        self.until = 0.0  # 0: not draining
        self.predrain_seen_at = -1e9

    @property
    def active(self) -> bool:
        return self.until > 0.0

    def start(self, now: float) -> bool:
        """Begin draining; False when the drain file cannot be written (stop without a drain)."""
        try:
            self.file.touch()
        except OSError as exc:
            self.log.warning("drain_skipped", error=str(exc))
            return False
        self.started = now
        self.until = now + min(self.drain_s, self.grace_s / 2)
        self.log.info("drain_started", drain_s=round(self.until - now, 3),
                      open_connections=open_client_connections(self.port))
        return True

    def tick(self, now: float, nginx_alive: bool) -> float | None:
        """Seconds until the next look, or None once the drain is over: its window ended (or no
        client connection is open) and no request from before it is still in a worker; or it
        reached its share of the grace; or nginx is gone."""
        if not nginx_alive:
            self._finish(now, None, [])
            return None
        predrain = [pid for pid, since in busy_since(self.run_dir).items() if since < self.started]
        if predrain:
            self.predrain_seen_at = now
        settled = not predrain and now >= self.predrain_seen_at + _SETTLE_S
        hard_stop = now >= self.started + self.grace_s * _MAX_SHARE_OF_GRACE
        open_now = open_client_connections(self.port)
        if hard_stop or (settled and (now >= self.until or open_now == 0)):
            self._finish(now, open_now, predrain)
            return None
        return _POLL_S

    def cancel(self) -> None:
        self.until = 0.0

    def remove_file(self) -> None:
        self.file.unlink(missing_ok=True)

    def _finish(self, now: float, open_now: int | None, predrain: list[int]) -> None:
        self.until = 0.0
        self.log.info("drain_finished", elapsed_s=round(now - self.started, 3), open_connections=open_now,
                      requests_from_before=len(predrain))
