"""Large request bodies: limits enforced by nginx before Python, linear reads, one body of memory."""

from __future__ import annotations

import http.client
import json
import time

import pytest

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons

MIB = 1024 * 1024


def _upload(port: int, size: int, block: int = MIB, timeout: float = 120):
    """POST `size` bytes as application/octet-stream without holding them in the test's memory."""
    def blocks():
        pattern = b"\x01" * block
        left = size
        while left:
            piece = pattern[: min(block, left)]
            left -= len(piece)
            yield piece

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.monotonic()
        conn.request("POST", "/invocations", body=blocks(),
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.monotonic() - started
    finally:
        conn.close()


def test_one_byte_over_the_limit_is_a_json_413_from_nginx(start_server):
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})
    status, body, _ = _upload(server.port, MIB)
    assert status == 200 and json.loads(body)["length"] == MIB
    status, body, _ = _upload(server.port, MIB + 1)
    assert status == 413
    answer = json.loads(body)
    assert answer["status"] == 413 and "1 MiB" in answer["message"]
    # nginx answered alone: no upstream time in its access line
    rejected = server.wait_event("request", status=413)
    assert rejected["upstream_s"] in ("", "-"), rejected


def test_big_bodies_read_in_linear_time_with_no_limit(start_server):
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    _upload(server.port, 4 * MIB)  # warm up
    timings: dict[int, float] = {}
    for _ in range(3):  # the best of three: one upload on a shared machine can stall for 0.2 s
        for size_mb in (25, 100):
            status, body, elapsed = _upload(server.port, size_mb * MIB)
            assert status == 200, body[:300]
            assert json.loads(body)["length"] == size_mb * MIB and json.loads(body)["type"] == "bytes"
            timings[size_mb] = min(elapsed, timings.get(size_mb, elapsed))
    ratio = timings[100] / timings[25]
    # Linear is 4; the old `bytes +=` read was 15. When 25 MB takes ~10 ms (buffers absorb most of
    # it), the ratio is noise (8.5 seen in a CI rehearsal, 100 MB in 0.11 s): then 100 MB in under
    # 0.3 s is read in linear time too.
    assert ratio < 8 or timings[100] < 0.3, timings


def test_one_gigabyte_body_costs_about_one_body_of_memory(start_server):
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                                         "SAGEMAKER_MODEL_SERVER_TIMEOUT": "300"})
    status, body, _ = _upload(server.port, 1024)
    idle_rss = json.loads(body)["VmRSS"]
    size = 1024 * MIB
    status, body, elapsed = _upload(server.port, size, block=4 * MIB, timeout=300)
    assert status == 200, body[:300]
    answer = json.loads(body)
    assert answer["length"] == size
    assert answer["VmHWM"] - idle_rss < 1.15 * size, (answer, idle_rss)


def test_a_streamed_body_over_the_limit_is_a_json_413_before_python(start_server):
    """Bodies of 10 MB and more stream to the worker as they arrive: the limit still holds first."""
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "12", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    status, body, _ = _upload(server.port, 12 * MIB)
    assert status == 200 and json.loads(body)["length"] == 12 * MIB
    status, body, _ = _upload(server.port, 12 * MIB + 1)
    assert status == 413 and json.loads(body)["status"] == 413
    rejected = server.wait_event("request", status=413)
    assert rejected["upstream_s"] in ("", "-"), rejected


def test_a_slow_streamed_upload_longer_than_the_worker_timeout_arrives_whole(start_server):
    """A 20 MB body sent over ~9 s streams into the worker while it arrives; the worker heartbeats
    between slices, so gunicorn (timeout T + 5 s = 6 s here) does not kill it as stuck."""
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                                         "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"})
    size = 20 * MIB
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def slow_blocks():
        for _ in range(20):
            yield b"\x03" * MIB
            time.sleep(0.45)

    try:
        started = time.monotonic()
        conn.request("POST", "/invocations", body=slow_blocks(),
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        response = conn.getresponse()
        answer = json.loads(response.read())
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert response.status == 200 and answer["length"] == size, answer
    assert elapsed > 8, elapsed
    assert not server.events("worker_timeout"), server.events("worker_timeout")


def test_chunked_uploads_are_whole_bodies_and_limited_too(start_server):
    """Batch Transform with MaxPayloadInMB=0 sends chunked bodies: nginx de-chunks and spools them."""
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})

    def chunked(total: int) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            blocks = (b"\x02" * 100_000 for _ in range(total // 100_000))
            conn.request("POST", "/invocations", body=blocks, encode_chunked=True,
                         headers={"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    status, body = chunked(1_000_000)
    assert status == 200 and json.loads(body)["length"] == 1_000_000
    status, body = chunked(1_100_000)
    assert status == 413 and json.loads(body)["status"] == 413


def test_a_client_that_leaves_mid_upload_frees_the_worker(start_server):
    """A streamed big body whose client goes away: the worker sees the connection end inside the
    body, drops the request (no handler call) and takes the next one; nothing restarts."""
    import socket

    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: %d\r\n\r\n" % (50 * MIB))
    sock.sendall(b"\x04" * (10 * MIB))
    time.sleep(0.3)  # the worker is inside the body now
    sock.close()
    started = time.monotonic()
    status, body, _ = _upload(server.port, 12 * MIB, timeout=10)
    assert status == 200 and json.loads(body)["length"] == 12 * MIB
    assert time.monotonic() - started < 5  # the one worker was free again at once
    assert not server.events("worker_exited") and not server.events("child_restarting")


def test_concurrent_big_uploads_all_arrive_whole(start_server):
    from concurrent.futures import ThreadPoolExecutor

    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    sizes = [25 * MIB + i for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda size: _upload(server.port, size, timeout=60), sizes))
    assert [(status, json.loads(body)["length"]) for status, body, _ in results] == [(200, size) for size in sizes]


def test_a_streamed_body_is_logged_with_the_clients_path(start_server):
    """Bodies of 10 MB and more go through an internal location that streams them to the worker;
    the access log named that location (/_smc_streamed_body/invocations) instead of the client's
    path (issue 24 item 16)."""
    server = start_server("stream", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    status, body, _ = _upload(server.port, 12 * MIB)
    assert status == 200, body[:300]
    time.sleep(1.2)  # nginx flushes its buffered access log at least once a second
    logged = server.wait_event("request", status=200)
    assert (logged["method"], logged["path"]) == ("POST", "/invocations"), logged
import pytest

