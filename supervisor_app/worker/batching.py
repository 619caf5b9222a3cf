"""Dynamic batching (SMC_BATCH_SIZE > 1): requests of one worker meet in a queue, and one thread
runs them as one batch_predict_fn(inputs, model) call.

Each request runs on its own thread of the worker (worker/batch_worker.py): input_fn, then
predict() here, which queues the decoded input and waits; the batcher thread takes the first
queued input, waits up to SMC_BATCH_DELAY_MS for companions (or until the batch is full), calls
run_batch once, and hands each request its own prediction or error; output_fn runs back on the
request's thread. The wait is bounded by the request's own deadline: a request that waited too
long answers 504 alone and, if its batch already runs, its prediction is dropped.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, List, Optional

from supervisor_app.metrics import recorder as metrics

_deadline = threading.local()  # the current request thread's deadline (monotonic s), set by the app


class BatchTimeout(Exception):
    """The request's deadline passed while it waited for its batch's answer."""


def set_deadline(at_s: float) -> None:
    _deadline.at = at_s


class _Pending:
    __slots__ = ("data", "context", "queued_s", "done", "value", "error", "abandoned")

    def __init__(self, data: Any, context: Any) -> None:
        self.data = data
        self.context = context
        self.queued_s = time.monotonic()
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.abandoned = False  # its request answered 504 already: not worth a place in a batch


RunBatch = Callable[[List[Any], List[Any]], List[Any]]  # (inputs, contexts) -> one value or exception each


class Batcher:
    def __init__(self, run_batch: RunBatch, size: int, delay_s: float, timeout_s: float, log: Any) -> None:
        self.run_batch = run_batch
        self.size = size
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self.log = log
        self.running_since = 0.0  # monotonic start of the batch running now; 0.0 between batches
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid = 0  # the process whose thread runs batches: a fork (preload) starts its own

    def predict(self, data: Any, context: Any) -> Any:
        """The prediction for one input, computed in a batch; raises what the batch decided for it."""
        if self._pid != os.getpid():
            self._start()
        pending = _Pending(data, context)
        self._queue.put(pending)
        deadline = getattr(_deadline, "at", 0.0) or pending.queued_s + self.timeout_s
        if not pending.done.wait(max(0.0, deadline - time.monotonic())):
            pending.abandoned = True
            raise BatchTimeout()
        if pending.error is not None:
            raise pending.error
        return pending.value

    def stuck(self, now_s: float) -> bool:
        """A batch has run longer than one invocation may: the worker should be recycled."""
        since = self.running_since
        return since > 0.0 and now_s - since > self.timeout_s

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()  # a fork's copy of the master's queue holds nothing of ours
            threading.Thread(target=self._loop, name="smc-batcher", daemon=True).start()
            self._pid = os.getpid()

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                self._run(batch)

    def _collect(self) -> list[_Pending]:
        get = self._queue.get
        first = get()
        batch = [first]
        until = first.queued_s + self.delay_s
        while len(batch) < self.size:
            left = until - time.monotonic()
            try:
                batch.append(get(timeout=left) if left > 0 else get(block=False))
            except queue.Empty:
                break
        return [p for p in batch if not p.abandoned]

    def _run(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        self.running_since = started
        try:
            results = self.run_batch([p.data for p in batch], [p.context for p in batch])
        except BaseException as exc:  # the batch failed as a whole: every request gets the error
            results = [exc] * len(batch)
        finally:
            self.running_since = 0.0
        for pending, result in zip(batch, results):
            if isinstance(result, BaseException):
                pending.error = result
            else:
                pending.value = result
            pending.done.set()
        metrics.observe_batch(len(batch), [started - p.queued_s for p in batch])
        self.log.debug("batch_ran", size=len(batch), run_s=round(time.monotonic() - started, 6))


__all__ = ["BatchTimeout", "Batcher", "set_deadline"]
