"""The worker side: count invocations into this process's counters file, cheaply.

Off unless smc serve created the metrics dir (SMC_METRICS=emf or SMC_METRICS_PORT set); then
every /invocations costs a closure, two perf_counter() calls and a handful of float adds on a
shared mmap (measured in docs/metrics.md). Other routes pass straight through.

Call sites: `configure(dir)` in the gunicorn master, `worker_started()` after each fork,
`instrument(app)` around the WSGI app, `instrument_asgi(app)` around an ASGI app (in its worker,
after uvicorn's own wrapping), `model_loaded(seconds)`; a streaming response path that does not
iterate a WSGI body can call `observe_stream(ttfb_s)` itself.
"""

from __future__ import annotations

import bisect
import mmap
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from supervisor_app.metrics import layout

_dir: Path | None = None
_view: Any = None  # memoryview of float64 slots for this process, opened lazily; reset at fork
_at_fork_registered = False


def _forget_parent_file() -> None:
    global _view
    _view = None


def configure(directory: Path | None) -> None:
    """Enable recording into `directory` (None or missing: stay off)."""
    global _dir, _view, _at_fork_registered
    _dir = directory if directory is not None and directory.is_dir() else None
    _view = None
    if _dir is not None and not _at_fork_registered:
        # A forked worker must not count into its master's file; resetting here costs nothing
        # per request (no getpid() check on the request path).
        os.register_at_fork(after_in_child=_forget_parent_file)
        _at_fork_registered = True


def enabled() -> bool:
    return _dir is not None


def _slots() -> Any:
    global _view
    if _view is not None:
        return _view
    assert _dir is not None
    pid = os.getpid()
    fd = os.open(_dir / f"{pid}{layout.FILE_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size < layout.FILE_BYTES:
            os.ftruncate(fd, layout.FILE_BYTES)
        mapped = mmap.mmap(fd, layout.FILE_BYTES)
    finally:
        os.close(fd)
    view = memoryview(mapped).cast("d")
    view[layout.PID] = pid
    view[layout.IN_FLIGHT] = 0  # a reused pid's file: the dead process's request is not in flight
    _view = view
    return view


def worker_started() -> None:
    if _dir is not None:
        _slots()[layout.STARTS] += 1


def model_loaded(seconds: float) -> None:
    if _dir is not None:
        slots = _slots()
        slots[layout.MODEL_LOAD_S] += seconds
        slots[layout.MODEL_LOADS] += 1


def observe(status: int, seconds: float) -> None:
    slots = _slots()
    slots[layout.status_slot(status)] += 1
    base = layout.LATENCY
    slots[base + layout.bucket_index(seconds)] += 1
    slots[base + layout.N_BUCKETS] += seconds
    slots[base + layout.N_BUCKETS + 1] += 1


def observe_stream(ttfb_s: float) -> None:
    """Time to the first byte of a streamed answer (for a streaming path outside `instrument`)."""
    if _dir is None:
        return
    slots = _slots()
    base = layout.TTFB
    slots[base + layout.bucket_index(ttfb_s)] += 1
    slots[base + layout.N_BUCKETS] += ttfb_s
    slots[base + layout.N_BUCKETS + 1] += 1


def observe_batch(size: int, waits_s: list[float]) -> None:
    """One batch_predict_fn call of `size` requests, which waited waits_s each (worker/batching.py)."""
    if _dir is None:
        return
    slots = _slots()
    base = layout.BATCH_SIZE
    slots[base + bisect.bisect_left(layout.BATCH_SIZE_BUCKETS, size)] += 1
    slots[base + layout.N_BATCH_BUCKETS] += size
    slots[base + layout.N_BATCH_BUCKETS + 1] += 1
    base = layout.BATCH_WAIT
    for wait_s in waits_s:
        slots[base + layout.bucket_index(wait_s)] += 1
        slots[base + layout.N_BUCKETS] += wait_s
        slots[base + layout.N_BUCKETS + 1] += 1


def instrument(app: Callable[..., Iterable[bytes]], threaded: bool = False) -> Callable[..., Iterable[bytes]]:
    """Wrap a WSGI app so /invocations are counted; the app itself when metrics are off.
    threaded: requests run on several threads (batching), so each request's counting takes a lock."""
    if _dir is None:
        return app
    if threaded:
        return _instrument_threaded(app)
    perf_counter = time.perf_counter
    bisect_left = bisect.bisect_left
    bounds = layout.BUCKETS_S
    in_flight, latency = layout.IN_FLIGHT, layout.LATENCY
    latency_sum, latency_count = layout.LATENCY + layout.N_BUCKETS, layout.LATENCY + layout.N_BUCKETS + 1

    def metered(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # Hot path: locals only, no getpid(), no allocation beyond one closure and one list.
        path = environ.get("PATH_INFO")
        if path != "/invocations" and not (path.startswith("/models/") and path.endswith("/invoke")):
            return app(environ, start_response)  # /ping, /execution-parameters, the /models API
        status = [500]

        def recording_start_response(text: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(text[:3])
            return start_response(text, headers, exc_info)

        slots = _view if _view is not None else _slots()
        slots[in_flight] += 1
        started = perf_counter()
        try:
            result = app(environ, recording_start_response)
        except BaseException:
            slots[in_flight] -= 1
            observe(500, perf_counter() - started)
            raise
        if result.__class__ is not list and result.__class__ is not tuple:
            return _MeteredStream(result, status, started, slots)
        elapsed = perf_counter() - started  # the whole answer is ready: the common case
        slots[in_flight] -= 1
        slots[layout.status_slot(status[0])] += 1
        slots[latency + bisect_left(bounds, elapsed)] += 1
        slots[latency_sum] += elapsed
        slots[latency_count] += 1
        return result

    return metered


def _instrument_threaded(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """instrument() for a worker with request threads: a slot's += is a read and a write, so two
    threads could lose a count; the lock makes each update whole. Streams are counted as buffered
    answers are, when the app returns (their TTFB is recorded by the stream itself)."""
    import threading

    lock = threading.Lock()
    perf_counter = time.perf_counter

    def metered(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/invocations":
            return app(environ, start_response)
        status = [500]

        def recording_start_response(text: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(text[:3])
            return start_response(text, headers, exc_info)

        slots = _view if _view is not None else _slots()
        with lock:
            slots[layout.IN_FLIGHT] += 1
        started = perf_counter()
        try:
            return app(environ, recording_start_response)
        finally:
            with lock:
                slots[layout.IN_FLIGHT] -= 1
                observe(status[0], perf_counter() - started)

    return metered


def _is_invocation(path: str) -> bool:
    return path == "/invocations" or (path.startswith("/models/") and path.endswith("/invoke"))


def instrument_asgi(app: Any) -> Any:
    """Wrap an ASGI 3 app so /invocations are counted as for WSGI: status, latency to the end of
    the answer, time to the first byte of a streamed one; the app itself when metrics are off."""
    if _dir is None:
        return app

    async def metered(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http" or not _is_invocation(scope.get("path", "")):
            return await app(scope, receive, send)
        status = [500]
        streaming = [False]
        started = time.perf_counter()
        slots = _view if _view is not None else _slots()
        slots[layout.IN_FLIGHT] += 1

        async def recording_send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                status[0] = int(message["status"])
            elif kind == "http.response.body" and not streaming[0] and message.get("more_body"):
                streaming[0] = True  # more to come: a streamed answer, its first byte is now
                observe_stream(time.perf_counter() - started)
            await send(message)

        try:
            return await app(scope, receive, recording_send)
        finally:
            slots[layout.IN_FLIGHT] -= 1
            observe(status[0], time.perf_counter() - started)

    return metered


class _MeteredStream:
    """A streamed body: time to first byte at the first chunk, latency when it is closed."""

    def __init__(self, body: Iterable[bytes], status: list[int], started: float, slots: Any) -> None:
        self.body = body
        self.status = status
        self.started = started
        self.slots = slots
        self.first = True
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            if self.first and chunk:
                self.first = False
                observe_stream(time.perf_counter() - self.started)
            yield chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.slots[layout.IN_FLIGHT] -= 1
            observe(self.status[0], time.perf_counter() - self.started)
