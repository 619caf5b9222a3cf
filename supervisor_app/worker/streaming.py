"""The WSGI body of a streamed handler answer (a generator from transform_fn/output_fn/predict_fn).

The worker sends each chunk as this iterable yields it (worker/response.py). Each wait for the next
chunk runs under the invocation deadline, so SAGEMAKER_MODEL_SERVER_TIMEOUT bounds the time to the
first chunk and every gap between chunks, not the stream's length. While the handler works on a
chunk, a timer ticks every WATCH_TICK_S: it ends the wait at the deadline, and as soon as nginx has
closed the worker's connection (the client left) it raises ClientGone inside the handler, so a
handler busy between two yields is stopped then, not at its next yield. A handler error or a missed
deadline after the first chunk is logged here and raised as StreamAborted: the worker then closes
the connection without the last chunk, which nginx and the client see as a failed stream.
close() closes the handler's generator (GeneratorExit at its `yield`) and writes the stream's one
log line.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

from supervisor_app import logs
from supervisor_app.worker.response import StreamAborted


WATCH_TICK_S = 0.25


class ClientGone(BaseException):
    """Raised inside the handler's generator when the client has gone. BaseException, so a
    handler's `except Exception` does not swallow it; `finally:` blocks run."""


def peer_closed(client: Any) -> bool:
    """nginx never sends more after the request: a readable connection means it was closed."""
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class StreamBody:
    def __init__(
        self,
        first: bytes,
        rest: Iterator[bytes],
        source: Iterator[Any],
        client: Any,
        deadline_error: type[BaseException],
        timeout_s: float,
        log: Any,
        inference_id: str,
        started: float,
    ) -> None:
        self._first: bytes | None = first
        self._rest = rest
        self._source = source  # the handler's own iterator, closed at the end
        self._client = client  # the worker's socket to nginx (None: no disconnect watch)
        self._deadline_error = deadline_error
        self.timeout_s = timeout_s
        self.log = log
        self.inference_id = inference_id
        self.started = started
        self.first_at = time.monotonic()
        self.chunks = 0
        self.bytes = 0
        self.outcome = "client_disconnected"  # unless the stream ends, fails or times out first
        self._closed = False

    def __iter__(self) -> StreamBody:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
        else:
            logs.bind_context(inference_id=self.inference_id)
            try:
                chunk = self._next_watched()
            except StopIteration:
                self.outcome = "complete"
                raise
            except ClientGone:
                raise StreamAborted() from None  # outcome stays client_disconnected
            except BaseException as exc:
                if isinstance(exc, self._deadline_error):
                    self.outcome = "timed_out"
                    self.log.error("stream_timed_out", timeout_s=self.timeout_s, chunks=self.chunks, bytes=self.bytes)
                    raise StreamAborted() from None
                if not isinstance(exc, Exception):
                    raise
                self.outcome = "failed"
                self.log.error("stream_failed", error=f"{type(exc).__name__}: {exc}", chunks=self.chunks,
                               bytes=self.bytes, exc_info=exc)
                raise StreamAborted() from exc
        self.chunks += 1
        self.bytes += len(chunk)
        return chunk

    def _next_watched(self) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        client = self._client

        def on_tick(signum: int, frame: Any) -> None:
            if client is not None and peer_closed(client):
                raise ClientGone()
            if time.monotonic() >= deadline:
                raise self._deadline_error()

        previous = signal.signal(signal.SIGALRM, on_tick)
        tick = min(WATCH_TICK_S, self.timeout_s)
        signal.setitimer(signal.ITIMER_REAL, tick, tick)
        try:
            return next(self._rest)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        logs.bind_context(inference_id=self.inference_id)
        try:
            for iterator in (self._rest, self._source):
                close = getattr(iterator, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception as exc:  # e.g. a generator that yields again after GeneratorExit
                        self.log.warning("stream_close_failed", error=f"{type(exc).__name__}: {exc}")
            now = time.monotonic()
            self.log.info(
                "stream_finished", outcome=self.outcome, chunks=self.chunks, bytes=self.bytes,
                time_to_first_chunk_s=round(self.first_at - self.started, 6),
                duration_s=round(now - self.started, 6),
            )
        finally:
            logs.unbind_context("inference_id")


__all__ = ["StreamBody"]
