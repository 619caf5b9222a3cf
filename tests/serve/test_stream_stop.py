"""Streams under `docker stop` (SIGTERM to smc): finished within the grace period, or cut and logged."""

from __future__ import annotations

import signal
import threading
import time

from tests.serve.streamclient import stream


def _sigterm_during_a_stream(start_server, grace_s: int, tokens: int):
    """A stream of `tokens` chunks 0.25 s apart, SIGTERM to smc 0.6 s into it: (server, what the client got)."""
    server = start_server("stream", env={"SMC_STOP_GRACE_SECONDS": str(grace_s), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    results: list = []

    def run():
        results.append(stream(server.port, {"mode": "tokens", "n": tokens, "gap_s": 0.25},
                              {"X-Amzn-SageMaker-Inference-Id": "stop-1"}, timeout=30))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.6)
    server.proc.send_signal(signal.SIGTERM)
    thread.join(20)
    (result,) = results
    return server, result


def test_stream_in_flight_finishes_within_the_grace(start_server):
    server, result = _sigterm_during_a_stream(start_server, grace_s=10, tokens=8)
    assert result.complete and len(result.body.splitlines()) == 8
    assert server.wait_exit(20) == 0
    assert server.wait_event("stream_finished", inference_id="stop-1")["outcome"] == "complete"


def test_stream_longer_than_the_grace_is_cut_with_a_log_line(start_server):
    server, result = _sigterm_during_a_stream(start_server, grace_s=1, tokens=40)
    assert not result.complete and 2 <= len(result.chunks) < 40
    server.wait_exit(20)
    # The stream never logged its end; the supervisor says it cut the server at the grace's end.
    assert server.wait_event("child_killed", child="gunicorn")["why"] == "grace_expired"
    assert not [r for r in server.events("stream_finished") if r.get("outcome") == "complete"]
