"""The handler-mode gunicorn workers, following the adapter registry (worker/adapters.py) as the
multi-model worker follows its models (worker/mme/mme_worker.py): SIGUSR2 from a sibling that
changed the registry sets a flag; gunicorn's loop calls notify() before each accept and select(),
where the worker loads or unloads adapters between requests. A new worker syncs before its first
accept. Every worker handles SIGUSR2 (gunicorn's default for it would end the process)."""

from __future__ import annotations

import signal
from typing import Any

from supervisor_app.worker import adapters
from supervisor_app.worker.batch_worker import BatchingWorker
from supervisor_app.worker.marked_worker import MarkedWorker
from supervisor_app.worker.mme.registry import SYNC_SIGNAL


class AdapterSync:
    adapters_due = True

    def init_signals(self) -> None:
        super().init_signals()  # type: ignore[misc]
        signal.signal(SYNC_SIGNAL, self._on_adapter_signal)
        signal.siginterrupt(SYNC_SIGNAL, False)

    def _on_adapter_signal(self, signum: int, frame: Any) -> None:
        self.adapters_due = True  # only a flag: the loop does the work between requests

    def notify(self) -> None:
        super().notify()  # type: ignore[misc]
        if self.adapters_due:
            self.adapters_due = False
            app = adapters.current()
            if app is not None:
                app.heartbeat = self.tmp.notify  # type: ignore[attr-defined]
                app.sync()


class AdapterWorker(AdapterSync, MarkedWorker):
    pass


class AdapterBatchingWorker(AdapterSync, BatchingWorker):
    pass


__all__ = ["AdapterBatchingWorker", "AdapterWorker"]
