"""Keep-alive POST clients for drain tests: each keeps one HTTP/1.1 connection and reuses it
until the server says `Connection: close`, as a pooled client does. A request counts as lost when
it was written on an open connection and no response came back (reset, empty reply); a refused
new connection is not lost (nothing was sent, a client may retry it safely)."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadStats:
    sent: int = 0
    answered: int = 0
    lost: int = 0  # written, no response
    lost_on_reused: int = 0  # of those, written on a kept-alive connection (the drain's concern)
    refused: int = 0
    told_to_close: int = 0  # responses with Connection: close
    fresh_losses_at: list[float] = field(default_factory=list)  # wall-clock times of losses on new connections
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class KeepAliveLoad:
    def __init__(self, host: str, port: int, clients: int = 16, think_s: float = 0.3, sleep_s: float = 0.02,
                 seed: int = 9) -> None:
        self.host, self.port = host, port
        self.think_s, self.sleep_s = think_s, sleep_s
        self.stats = LoadStats()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.random = random.Random(seed)
        self.threads = [threading.Thread(target=self._client, args=(self.random.random(),), daemon=True)
                        for _ in range(clients)]

    def __enter__(self) -> KeepAliveLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadStats:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=40)
        return self.stats

    def _count(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def _client(self, phase: float) -> None:
        time.sleep(phase * self.think_s)  # spread the clients over the think time
        body = json.dumps({"sleep": self.sleep_s})
        conn: http.client.HTTPConnection | None = None
        reused = False
        while not self.stopping.is_set():
            if conn is None:
                reused = False
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                try:
                    conn.connect()
                except OSError:
                    self._count(refused=1)
                    conn = None
                    time.sleep(0.05)
                    continue
            self._count(sent=1)
            try:
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.stats.lost += 1
                    self.stats.lost_on_reused += reused
                    if not reused:
                        self.stats.fresh_losses_at.append(time.time())
                    self.stats.errors.append(repr(exc))
                conn.close()
                conn = None
                time.sleep(0.05)
                continue
            with self.lock:
                self.stats.answered += 1
                self.stats.statuses[resp.status] = self.stats.statuses.get(resp.status, 0) + 1
                if resp.will_close:
                    self.stats.told_to_close += 1
            if resp.will_close:
                conn.close()
                conn = None
            reused = True
            time.sleep(self.think_s * self.random.random())
