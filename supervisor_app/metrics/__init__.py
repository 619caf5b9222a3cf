"""Serving metrics: counters each gunicorn worker keeps in a small shared file (recorder.py),
summed by smc's exporter (aggregate.py) into Prometheus text (prometheus.py, on
SMC_METRICS_PORT) and CloudWatch Embedded Metric Format lines (emf.py, SMC_METRICS=emf).
See docs/metrics.md."""
