"""Prometheus text exposition (format 0.0.4) of a metrics snapshot."""

from __future__ import annotations

from supervisor_app.metrics import layout
from supervisor_app.metrics.aggregate import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(snap: Snapshot, workers: int) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, doc: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {_num(value)}" for labels, value in samples)

    metric("smc_invocations_total", "counter", "POST /invocations answered by a worker, by HTTP status.",
           [(f'{{status="{code}"}}', n) for code, n in sorted(snap.statuses.items())])
    _histogram(lines, "smc_invocation_duration_seconds",
               "Time in the worker from request to the whole answer (handler included).", snap.latency)
    _histogram(lines, "smc_stream_first_byte_seconds", "Time to the first byte of streamed answers.", snap.ttfb)
    if snap.batch_sizes[2]:  # only with dynamic batching (SMC_BATCH_SIZE > 1)
        _histogram(lines, "smc_batch_size", "Requests per batch_predict_fn call.", snap.batch_sizes,
                   layout.BATCH_SIZE_BUCKETS)
        _histogram(lines, "smc_batch_wait_seconds", "Time a request waited in the queue for its batch to start.",
                   snap.batch_wait)
    metric("smc_invocations_in_flight", "gauge", "Invocations a worker is handling now.", [("", snap.in_flight)])
    metric("smc_workers", "gauge", "Worker processes alive.", [("", snap.workers_alive)])
    metric("smc_worker_starts_total", "counter", "Worker processes started (initial ones included).",
           [("", snap.worker_starts)])
    metric("smc_worker_restarts_total", "counter", f"Worker processes started beyond the {workers} configured.",
           [("", max(0, snap.worker_starts - workers))])
    lines.append("# HELP smc_model_load_seconds Time model_fn took, per load (each worker, or the master with "
                 "SMC_PRELOAD_MODEL).")
    lines.append("# TYPE smc_model_load_seconds summary")
    lines.append(f"smc_model_load_seconds_sum {_num(snap.model_load_s_sum)}")
    lines.append(f"smc_model_load_seconds_count {snap.model_loads}")
    if snap.model_load_s_max is not None:
        metric("smc_model_load_seconds_max", "gauge", "The slowest model load among live processes.",
               [("", snap.model_load_s_max)])
    return "\n".join(lines) + "\n"


def _histogram(lines: list[str], name: str, doc: str, hist: tuple[list[float], float, float],
               bounds: tuple[float, ...] = layout.BUCKETS_S) -> None:
    buckets, total_s, count = hist
    lines.append(f"# HELP {name} {doc}")
    lines.append(f"# TYPE {name} histogram")
    cumulative = 0.0
    for bound, n in zip(bounds, buckets):
        cumulative += n
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {_num(cumulative)}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {_num(count)}')
    lines.append(f"{name}_sum {_num(total_s)}")
    lines.append(f"{name}_count {_num(count)}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(float(value), 6))
