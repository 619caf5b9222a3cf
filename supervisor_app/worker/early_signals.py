"""Stop signals that reach a gunicorn worker before its own handlers exist.

From fork until Worker.init_signals, a new worker still runs the master's Python handler, which
only queues the signal in the worker's copy of the master's signal queue. When the master stops
just as it forks a worker (a SIGTERM right after the first worker got ready, while the second is
being spawned), its SIGTERM to that worker lands in that copy and is lost: the worker serves on
and the stop waits out the whole grace. Each worker class calls replay() once its handlers are
installed; a stop found in the copy (sent to the worker, or pending for a master about to stop
all workers anyway) is sent again, to the handler that now acts on it.
"""

from __future__ import annotations

import os
import queue
import signal
from typing import Any

from supervisor_app import logs

_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


def remember_master_queue(arbiter: Any, worker: Any) -> None:
    """post_fork, in the worker: keep the worker's copy of the master's signal queue."""
    worker.smc_master_signals = getattr(arbiter, "SIG_QUEUE", None)


def replay(worker: Any) -> None:
    """After the worker's own init_signals: send the first queued stop signal to this process."""
    pending = getattr(worker, "smc_master_signals", None)
    worker.smc_master_signals = None
    if pending is None:
        return
    while True:
        try:
            sig = pending.get_nowait()
        except (queue.Empty, AttributeError):
            return
        if sig in _STOP_SIGNALS:
            logs.get_logger("worker").info("early_stop_signal_replayed", signal=signal.Signals(sig).name)
            os.kill(os.getpid(), sig)
            return
