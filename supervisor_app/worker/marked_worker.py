"""The gunicorn worker class smc runs: NginxWorker plus a busy mark around each request
(worker/busy.py), which the drain reads. Kept apart from busy.py so the supervisor, which reads
the marks, never imports gunicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor_app.worker.busy import BusyMark, open_mark
from supervisor_app.worker.sync_worker import NginxWorker


class MarkedWorker(NginxWorker):
    """NginxWorker that marks each request's start and end in its busy file."""

    busy: BusyMark | None = None

    def init_process(self) -> None:
        self.busy = open_mark(Path(self.cfg.worker_tmp_dir))
        super().init_process()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        busy = self.busy
        if busy is None:
            super().handle(listener, client, addr)
            return
        busy.begin()
        try:
            super().handle(listener, client, addr)
        finally:
            busy.end()
