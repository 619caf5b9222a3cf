"""Pure parts of metrics and limits: quantile estimates, the exposition text, EMF documents,
size parsing, the counters file summed across processes and folded when a process is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor_app.config.archive import parse_bytes
from supervisor_app.errors import ConfigError
from supervisor_app.metrics import emf, layout, prometheus, recorder
from supervisor_app.metrics.aggregate import Aggregator, quantile


def test_quantile_interpolates_inside_the_bucket():
    buckets = [0.0] * layout.N_BUCKETS
    i = layout.BUCKETS_S.index(0.01)
    buckets[i] = 10  # all between 5 ms and 10 ms
    assert quantile(buckets, 0.5) == pytest.approx(0.0075)
    assert quantile([0.0] * layout.N_BUCKETS, 0.5) is None
    buckets = [0.0] * layout.N_BUCKETS
    buckets[-1] = 3  # +Inf
    assert quantile(buckets, 0.99) == layout.BUCKETS_S[-1]


def test_bytes_accept_binary_suffixes_and_refuse_nonsense():
    assert parse_bytes("X", "1024") == 1024
    assert parse_bytes("X", "4G") == 4 << 30
    assert parse_bytes("X", "512MiB") == 512 << 20
    for bad in ("0", "-1", "lots", "1.5G", "1X"):
        with pytest.raises(ConfigError, match="is not a size in bytes"):
            parse_bytes("X", bad)


def test_counts_from_several_processes_add_up_and_survive_their_exit(tmp_path):
    recorder.configure(tmp_path)
    try:
        script = ("import sys; from pathlib import Path; from supervisor_app.metrics import recorder;"
                  "recorder.configure(Path(sys.argv[1])); recorder.worker_started(); recorder.observe(200, 0.003);"
                  "recorder.observe(503, 2.0); recorder.model_loaded(1.5)")
        root = Path(__file__).resolve().parents[2]
        for _ in range(2):
            subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=root,
                           env={**os.environ, "PYTHONPATH": str(root)})
        recorder.worker_started()
        app = recorder.instrument(lambda environ, start_response: (start_response("201 Created", []), [b"x"])[1])
        assert app({"PATH_INFO": "/invocations"}, lambda *a: None) == [b"x"]
        aggregator = Aggregator(tmp_path)
        snap = aggregator.snapshot()
        assert snap.statuses == {200: 2, 201: 1, 503: 2}
        assert snap.worker_starts == 3 and snap.workers_alive == 1  # the two children are gone
        assert snap.model_loads == 2 and snap.model_load_s_sum == pytest.approx(3.0)
        assert len(list(tmp_path.iterdir())) == 1  # gone processes' files folded and deleted
        assert aggregator.snapshot().statuses == snap.statuses  # folded counts stay
        text = prometheus.render(snap, workers=2)
        assert 'smc_invocations_total{status="503"} 2' in text
        assert "smc_worker_restarts_total 1" in text
        assert 'smc_invocation_duration_seconds_bucket{le="+Inf"} 5' in text
        doc = json.loads(emf.line(snap, None, "ns", 2, 60.0, timestamp_ms=1))
        assert doc["Invocations"] == 5 and doc["Invocation5XX"] == 2 and doc["Invocation2XX"] == 3
        assert {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]} <= set(doc)
        assert json.loads(emf.line(snap, snap, "ns", 2, 60.0))["Invocations"] == 0
    finally:
        recorder.configure(None)


def test_instrument_is_the_app_itself_when_metrics_are_off():
    recorder.configure(None)

    def app(environ, start_response):
        return [b""]

    assert recorder.instrument(app) is app
