"""The exporter side: sum every process's counters file into one snapshot.

Files of processes that are gone are folded into a running total and deleted, so counters never
go down when a worker restarts and the directory does not grow with restarts. Only the exporter
(one lock) reads, folds and deletes.
"""

from __future__ import annotations

import array
import threading
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.metrics import layout


@dataclass(frozen=True)
class Snapshot:
    statuses: dict[int, int]  # status code -> invocations
    latency: tuple[list[float], float, float]  # per-bucket counts (not cumulative), sum, count
    ttfb: tuple[list[float], float, float]
    in_flight: int
    worker_starts: int
    workers_alive: int
    model_load_s_sum: float  # every process loads the model once: summed over processes
    model_loads: int
    model_load_s_max: float | None  # the slowest load among live processes
    batch_sizes: tuple[list[float], float, float] = ([], 0.0, 0.0)  # over layout.BATCH_SIZE_BUCKETS
    batch_wait: tuple[list[float], float, float] = ([], 0.0, 0.0)  # seconds a request waited for its batch


class Aggregator:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.retired = array.array("d", bytes(layout.FILE_BYTES))
        self.lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self.lock:
            total = array.array("d", self.retired)
            alive = 0
            load_s: float | None = None  # max over live processes
            for path in self.directory.glob(f"*{layout.FILE_SUFFIX}"):
                slots = _read(path)
                if slots is None:
                    continue
                pid = int(slots[layout.PID])
                if _gone(pid):
                    slots[layout.IN_FLIGHT] = 0
                    _add(self.retired, slots)
                    path.unlink(missing_ok=True)
                else:
                    alive += slots[layout.STARTS] > 0
                    if slots[layout.MODEL_LOADS]:
                        load_s = max(load_s or 0.0, slots[layout.MODEL_LOAD_S])
                _add(total, slots)
            return _snapshot(total, alive, load_s)


def _read(path: Path) -> array.array | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < layout.FILE_BYTES:
        return None  # being created
    return array.array("d", data[: layout.FILE_BYTES])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2:][:1] == b"Z"


def _add(into: array.array, slots: array.array) -> None:
    for i in range(layout.STARTS, layout.SLOTS):
        into[i] += slots[i]


def _histogram(slots: array.array, base: int, n: int = layout.N_BUCKETS) -> tuple[list[float], float, float]:
    return list(slots[base:base + n]), slots[base + n], slots[base + n + 1]


def _snapshot(total: array.array, alive: int, load_s: float | None) -> Snapshot:
    statuses = {code: int(total[layout.status_slot(code)]) for code in range(layout.STATUS_MIN, layout.STATUS_MAX + 1)
                if total[layout.status_slot(code)]}
    return Snapshot(
        statuses=statuses,
        latency=_histogram(total, layout.LATENCY),
        ttfb=_histogram(total, layout.TTFB),
        in_flight=max(0, int(total[layout.IN_FLIGHT])),
        worker_starts=int(total[layout.STARTS]),
        workers_alive=alive,
        model_load_s_sum=total[layout.MODEL_LOAD_S],
        model_loads=int(total[layout.MODEL_LOADS]),
        model_load_s_max=load_s,
        batch_sizes=_histogram(total, layout.BATCH_SIZE, layout.N_BATCH_BUCKETS),
        batch_wait=_histogram(total, layout.BATCH_WAIT),
    )


def quantile(buckets: list[float], q: float) -> float | None:
    """Estimate a quantile (seconds) from bucket counts, interpolating inside the bucket as
    Prometheus' histogram_quantile does; None without observations."""
    count = sum(buckets)
    if not count:
        return None
    rank = q * count
    seen = 0.0
    for i, n in enumerate(buckets):
        if seen + n >= rank and n:
            low = layout.BUCKETS_S[i - 1] if i > 0 else 0.0
            if i >= len(layout.BUCKETS_S):
                return layout.BUCKETS_S[-1]  # +Inf bucket: the highest finite bound is all we know
            high = layout.BUCKETS_S[i]
            return low + (high - low) * (rank - seen) / n
        seen += n
    return layout.BUCKETS_S[-1]


__all__ = ["Aggregator", "Snapshot", "quantile"]
