"""The layout of one process's counters file: float64 slots, written by that process only.

Aligned 8-byte stores are atomic on the CPUs smc runs on, so a reader sees each slot either
before or after an update, never torn; counters only grow, so a sum is always a valid reading.
"""

from __future__ import annotations

import bisect

FILE_SUFFIX = ".metrics"
DIR_NAME = "metrics"  # inside smc serve's private run dir

# Latency buckets (seconds), upper bounds; the last implicit bucket is +Inf.
BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                                60.0)
N_BUCKETS = len(BUCKETS_S) + 1

STATUS_MIN, STATUS_MAX = 100, 599

PID = 0
STARTS = 1  # 1 once a gunicorn worker started in this process
IN_FLIGHT = 2
MODEL_LOAD_S = 3  # seconds this process spent loading the model (it loads once)
MODEL_LOADS = 4
STATUS = 5  # STATUS + (code - 100): invocations answered with that code
LATENCY = STATUS + STATUS_MAX - STATUS_MIN + 1  # N_BUCKETS bucket counts (not cumulative), then sum, count
TTFB = LATENCY + N_BUCKETS + 2  # same shape: time to first byte of streamed answers
# Dynamic batching (SMC_BATCH_SIZE > 1): requests per batch_predict_fn call, and the time each
# request waited in the queue for its batch to start (BUCKETS_S again).
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
N_BATCH_BUCKETS = len(BATCH_SIZE_BUCKETS) + 1
BATCH_SIZE = TTFB + N_BUCKETS + 2  # N_BATCH_BUCKETS counts, then sum, count
BATCH_WAIT = BATCH_SIZE + N_BATCH_BUCKETS + 2  # N_BUCKETS counts, then sum, count
SLOTS = BATCH_WAIT + N_BUCKETS + 2
FILE_BYTES = SLOTS * 8


def bucket_index(seconds: float) -> int:
    return bisect.bisect_left(BUCKETS_S, seconds)


def status_slot(code: int) -> int:
    if not STATUS_MIN <= code <= STATUS_MAX:
        code = 500
    return STATUS + code - STATUS_MIN
