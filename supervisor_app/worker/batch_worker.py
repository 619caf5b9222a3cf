"""The worker class with dynamic batching on (SMC_BATCH_SIZE > 1): NginxWorker's request path,
run on up to SMC_BATCH_SIZE threads at once so that a batch can form (worker/batching.py).

The main thread keeps gunicorn's accept loop; each accepted connection goes to a free request
thread, and when all are taken the accept loop waits for one (the next connections stay in the
socket's backlog for the other workers). The busy mark holds the start of the oldest request in
flight, so the drain waits for every batch in flight; on SIGTERM the accept loop ends and the worker
exits only after its request threads are done. A batch that runs past the invocation timeout
stops the heartbeat, so gunicorn's arbiter recycles the worker (its batch's requests are lost,
the others answered 504 at their own deadline).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict

from supervisor_app.worker.marked_worker import MarkedWorker
from supervisor_app.worker.sync_worker import NginxWorker


class BatchingWorker(MarkedWorker):
    batch_size = 1
    _pool: ThreadPoolExecutor | None = None

    def init_process(self) -> None:
        config = getattr(self.app, "config", None)
        self.batch_size = max(1, int(getattr(config, "batch_size", 1)))
        self._free = threading.BoundedSemaphore(self.batch_size)
        self._pool = ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="smc-request")
        self._started: Dict[int, float] = {}  # request thread id -> monotonic start
        self._marks = threading.Lock()
        super().init_process()

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # the requests (and batches) in flight are answered first

    def notify(self) -> None:
        batcher = getattr(self.app, "batcher", None)  # set by ModelServer.load (gunicorn_app.py)
        if batcher is not None and batcher.stuck(time.monotonic()):
            return  # let the arbiter take this worker for hung (see the module docstring)
        super().notify()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        while not self._free.acquire(timeout=1.0):
            self.notify()  # every thread is busy: the worker is alive, waiting for a free one
        assert self._pool is not None
        try:
            self._pool.submit(self._handle_on_thread, listener, client, addr)
        except RuntimeError:  # shutting down
            self._free.release()
            client.close()

    def _handle_on_thread(self, listener: Any, client: Any, addr: Any) -> None:
        key = threading.get_ident()
        self._mark(key, time.monotonic())
        try:
            NginxWorker.handle(self, listener, client, addr)
        finally:
            self._mark(key, None)
            self._free.release()

    def _mark(self, key: int, started: float | None) -> None:
        busy = self.busy
        with self._marks:
            if started is None:
                self._started.pop(key, None)
            else:
                self._started[key] = started
            if busy is not None:
                busy.set(min(self._started.values()) if self._started else 0.0)


__all__ = ["BatchingWorker"]
