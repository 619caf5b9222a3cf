"""Streaming answers of inference.py through the frozen binary, real nginx and gunicorn, read by a
raw-socket client that stamps every chunk as it arrives."""

from __future__ import annotations

import json
import time

import pytest

from tests.serve.streamclient import open_stream, read_chunks, stream

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons


def test_chunks_arrive_as_the_handler_yields_them(start_server):
    server = start_server("stream", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    result = stream(server.port, {"mode": "tokens", "n": 4, "gap_s": 0.4}, {"X-Amzn-SageMaker-Inference-Id": "s-1"})
    assert result.status == 200 and result.complete
    assert result.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in result.headers and "x-accel-buffering" not in result.headers
    assert result.headers["content-type"] == "application/jsonlines"
    lines = [json.loads(line) for line in result.body.decode().splitlines()]
    assert [line["i"] for line in lines] == [0, 1, 2, 3]
    arrivals = [at for at, _ in result.chunks]
    assert len(arrivals) == 4, result.chunks  # one network chunk per yield: nothing coalesced them
    assert arrivals[0] - result.sent_at < 0.3  # the first chunk does not wait for the rest
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert all(gap > 0.25 for gap in gaps), gaps
    # Each chunk is at the client within a moment of its yield (handler clock = test clock).
    delays = [at_wall - line["t"] for line, at_wall in zip(lines, _wall(result, arrivals))]
    assert max(delays) < 0.1, delays
    finished = server.wait_event("stream_finished", inference_id="s-1")
    assert finished["outcome"] == "complete" and finished["chunks"] == 4 and finished["bytes"] == len(result.body)
    assert finished["time_to_first_chunk_s"] < 0.3 and finished["duration_s"] > 1.1
    access = server.wait_event("request", inference_id="s-1")
    assert access["status"] == 200


def _wall(result, arrivals):
    offset = time.time() - time.monotonic()
    return [at + offset for at in arrivals]


def test_server_sent_events_pass_as_is(start_server):
    server = start_server("stream")
    result = stream(server.port, {"mode": "sse", "n": 3})
    assert result.status == 200 and result.complete
    assert result.headers["content-type"] == "text/event-stream"
    assert result.body.decode().count("event: token\ndata: ") == 3


def test_error_after_two_chunks_breaks_the_stream_and_frees_the_worker(start_server):
    server = start_server("stream", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    result = stream(server.port, {"mode": "raise", "n": 5}, {"X-Amzn-SageMaker-Inference-Id": "boom-1"})
    assert result.status == 200
    # two chunks (nginx may pass them as one), then no last chunk: the client sees a failure
    assert len(result.body.splitlines()) == 2 and not result.complete
    failed = server.wait_event("stream_failed", inference_id="boom-1")
    assert "model exploded after 2 chunks" in failed["error"] and failed["level"] == "error"
    assert server.wait_event("stream_finished", inference_id="boom-1")["outcome"] == "failed"
    again = stream(server.port, {"mode": "tokens", "n": 2})
    assert again.complete and len(again.body.splitlines()) == 2


def test_stream_that_yields_nothing_is_an_empty_answer(start_server):
    server = start_server("stream")
    result = stream(server.port, {"mode": "empty"}, {"X-Amzn-SageMaker-Inference-Id": "empty-1"})
    assert (result.status, result.body, result.headers.get("content-length")) == (200, b"", "0")
    finished = server.wait_event("stream_finished", inference_id="empty-1")
    assert (finished["chunks"], finished["outcome"]) == (0, "complete")


def test_bad_first_chunk_is_a_json_500(start_server):
    server = start_server("stream")
    response = server.invoke({"mode": "ints"})
    assert response.status == 500
    assert "yielded int; yield bytes or str" in response.json()["message"]


def test_timeout_bounds_each_gap_not_the_whole_stream(start_server):
    server = start_server("stream", env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    long = stream(server.port, {"mode": "tokens", "n": 4, "gap_s": 0.5})  # 1.5 s in all, gaps of 0.5 s
    assert long.complete and len(long.chunks) == 4
    started = time.monotonic()
    stalled = stream(server.port, {"mode": "stall", "n": 3, "stall_s": 5},
                     {"X-Amzn-SageMaker-Inference-Id": "stall-1"})
    assert len(stalled.chunks) == 1 and not stalled.complete
    assert time.monotonic() - started < 3
    timed_out = server.wait_event("stream_timed_out", inference_id="stall-1")
    assert timed_out["timeout_s"] == 1
    assert stream(server.port, {"mode": "tokens", "n": 1}).complete  # the worker is free again


def _leave_a_stream(server, marker, gap_s: float, inference_id: str, chunks: int, wait_s: float) -> float:
    """Read `chunks` chunks of a stream whose handler yields every gap_s and touches `marker` when
    its generator is closed, then close the connection; seconds until the marker appeared (wait_s at most)."""
    sock, reader, result = open_stream(server.port, {"mode": "disconnect", "gap_s": gap_s, "marker": str(marker)},
                                       {"X-Amzn-SageMaker-Inference-Id": inference_id})
    read_chunks(reader, result, limit=chunks)
    assert len(result.chunks) == chunks
    sock.close()
    left = time.monotonic()
    while not marker.exists() and time.monotonic() - left < wait_s:
        time.sleep(0.02)
    return time.monotonic() - left


def test_client_disconnect_closes_the_generator(start_server, tmp_path):
    server = start_server("stream", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    marker = tmp_path / "closed"
    _leave_a_stream(server, marker, gap_s=0.05, inference_id="gone-1", chunks=3, wait_s=5)
    assert marker.exists(), server.output()
    finished = server.wait_event("stream_finished", inference_id="gone-1")
    assert finished["outcome"] == "client_disconnected"
    assert stream(server.port, {"mode": "tokens", "n": 1}).complete  # the only worker is free


def test_client_leaving_stops_a_handler_busy_between_yields(start_server, tmp_path):
    server = start_server("stream", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    marker = tmp_path / "closed"
    waited_s = _leave_a_stream(server, marker, gap_s=8, inference_id="gone-2", chunks=1, wait_s=6)
    assert marker.exists() and waited_s < 4, server.output()  # not after the 8 s sleep
    assert server.wait_event("stream_finished", inference_id="gone-2")["outcome"] == "client_disconnected"
    assert stream(server.port, {"mode": "tokens", "n": 1}).complete


def test_predict_fn_streams_a_tuple_or_a_generator_typed_through_the_context(start_server):
    """docs/streaming.md promised predict_fn's (iterable, content_type); it was a 500 from the
    default output_fn, and set_response_content_type needed MMS's (idx, value) form (issue 24
    item 4). An SSE client's Accept: text/event-stream is no 406 when predict_fn streams."""
    server = start_server("predict_stream")
    for accept in (None, "text/event-stream"):
        answer = server.invoke({"mode": "tuple"}, accept=accept)
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "text/event-stream"
        assert answer.body.decode().count("data: ") == 3 and answer.headers.get("transfer-encoding") == "chunked"
    by_context = server.invoke({"mode": "context"}, accept="text/event-stream")
    assert (by_context.status, by_context.headers["content-type"]) == (200, "text/event-stream"), by_context.body
    assert by_context.body == b'data: {"token": 0}\n\ndata: {"token": 1}\n\n'
    mms = server.invoke({"mode": "mms"})
    assert (mms.status, mms.headers["content-type"]) == (200, "application/jsonlines"), mms.body
    assert mms.body == b'{"i": 0}\n{"i": 1}\n'
    assert server.invoke({"mode": "plain"}).json() == [1, 2]
    refused = server.invoke({"mode": "plain"}, accept="text/event-stream")  # no stream, no encoder for it
    assert refused.status == 406 and refused.json()["status"] == 406
