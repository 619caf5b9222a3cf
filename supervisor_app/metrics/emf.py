"""CloudWatch Embedded Metric Format: one JSON line per interval on stdout, which SageMaker
forwards to CloudWatch Logs, which extracts the metrics (no agent, no API calls).

Values are for the interval (deltas between two snapshots). EMF has no histogram type, so
latency is sent as estimated percentiles and the mean, in milliseconds.
"""

from __future__ import annotations

import json
import time

from supervisor_app.metrics.aggregate import Snapshot, quantile


def line(now: Snapshot, before: Snapshot | None, namespace: str, workers: int, interval_s: float,
         timestamp_ms: int | None = None) -> bytes:
    counts = _delta_statuses(now, before)
    values: dict[str, tuple[float, str]] = {
        "Invocations": (sum(counts.values()), "Count"),
        "Invocation2XX": (sum(n for c, n in counts.items() if 200 <= c < 300), "Count"),
        "Invocation4XX": (sum(n for c, n in counts.items() if 400 <= c < 500), "Count"),
        "Invocation5XX": (sum(n for c, n in counts.items() if 500 <= c < 600), "Count"),
        "InvocationsInFlight": (now.in_flight, "Count"),
        "WorkerRestarts": (max(0, now.worker_starts - max(workers, before.worker_starts if before else 0)), "Count"),
    }
    _latency(values, "InvocationLatency", now.latency, before.latency if before else None)
    _latency(values, "TimeToFirstByte", now.ttfb, before.ttfb if before else None)
    loads = now.model_loads - (before.model_loads if before else 0)
    if loads > 0:
        load_s = now.model_load_s_sum - (before.model_load_s_sum if before else 0.0)
        values["ModelLoadTime"] = (round(load_s / loads, 3), "Seconds")
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[]],
                "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
            }],
        },
        "level": "info",
        "component": "metrics",
        "event": "metrics",
        "interval_s": interval_s,
    }
    document.update({name: value for name, (value, _) in values.items()})
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _delta_statuses(now: Snapshot, before: Snapshot | None) -> dict[int, int]:
    if before is None:
        return dict(now.statuses)
    return {code: n - before.statuses.get(code, 0) for code, n in now.statuses.items()}


def _latency(values: dict[str, tuple[float, str]], name: str, now: tuple[list[float], float, float],
             before: tuple[list[float], float, float] | None) -> None:
    buckets, total_s, count = now
    if before is not None:
        buckets = [a - b for a, b in zip(buckets, before[0])]
        total_s, count = total_s - before[1], count - before[2]
    if count <= 0:
        return
    values[f"{name}Avg"] = (round(total_s / count * 1000, 3), "Milliseconds")
    for label, q in (("P50", 0.5), ("P90", 0.9), ("P99", 0.99)):
        estimate = quantile(buckets, q)
        if estimate is not None:
            values[f"{name}{label}"] = (round(estimate * 1000, 3), "Milliseconds")
