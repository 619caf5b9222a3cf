"""The gunicorn worker of a multi-model endpoint: smc's NginxWorker plus keeping in step with the
shared model registry (worker/mme/registry.py).

gunicorn's sync worker loop calls notify() before every accept and select(); a worker syncs
there, so it never takes a request with a stale set of models. SIGUSR2 from a sibling that
changed the registry sets the flag; gunicorn's wakeup fd turns the signal into a select()
wake-up, so an idle worker follows within milliseconds. A new worker (also one gunicorn starts
after a crash or kill -9) syncs before its first accept: it loads every registered model.
"""

from __future__ import annotations

import signal
from typing import Any

from supervisor_app.worker.mme.registry import SYNC_SIGNAL
from supervisor_app.worker.marked_worker import MarkedWorker


class MmeWorker(MarkedWorker):
    sync_due = True

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(SYNC_SIGNAL, self._on_sync_signal)
        signal.siginterrupt(SYNC_SIGNAL, False)

    def _on_sync_signal(self, signum: int, frame: Any) -> None:
        self.sync_due = True  # only a flag: the loop does the work between requests

    def notify(self) -> None:
        super().notify()
        if self.sync_due:
            self.sync_due = False
            app = self.wsgi
            app.heartbeat = self.tmp.notify
            app.sync()

    def init_process(self) -> None:
        try:
            super().init_process()
        finally:
            app = getattr(self, "wsgi", None)
            if app is not None and hasattr(app, "registry"):
                app.registry.forget_self()
