"""Serving metrics: counters each gunicorn worker keeps in a small shared file (recorder.py),
summed by smc's exporter (aggregate.py) into Prometheus text (prometheus.py, on
SMC_METRICS_PORT) and CloudWatch Embedded Metric Format lines (emf.py, SMC_METRICS=emf).
See docs/metrics.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from supervisor_app.config.metrics import MetricsConfig


def start_exporter(config: MetricsConfig, run_dir: Path, workers: int, out: BinaryIO) -> Any:
    """The running exporter, or None when metrics are off (then http.server is never imported,
    which keeps smc serve's start as fast as before)."""
    if not config.enabled:
        return None
    from supervisor_app.metrics.exporter import start

    return start(config, run_dir, workers, out)
